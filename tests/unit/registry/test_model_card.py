from __future__ import annotations

from collections.abc import Callable

from loopline.config import GateSpec, PromotionPolicy, Settings
from loopline.evaluation.gates import evaluate_gates
from loopline.registry.lineage import Lineage
from loopline.registry.mlflow_registry import RegisteredVersion
from loopline.registry.model_card import render_card, render_model_card
from loopline.registry.promotion import CandidateSummary, decide_promotion

GATES = (
    GateSpec(metric="intent_accuracy", min=0.60, max_regression=0.03),
    GateSpec(metric="rouge_l", min=0.45, max_regression=0.03),
    GateSpec(metric="latency_p95_ms", higher_is_better=False, max=5000.0),
)
METRICS = {
    "intent_accuracy": 0.912,
    "rouge_l": 0.871,
    "latency_p95_ms": 412.5,
    "tokens_per_s": 640.0,
    "n_examples": 300.0,
}
SLICES = {
    "billing": {
        "n": 80,
        "intent_accuracy": 0.95,
        "rouge_l": 0.9,
        "chrf": 71.0,
        "semantic_similarity": 0.93,
    },
    "refund": {
        "n": 12,
        "intent_accuracy": 0.5,
        "rouge_l": 0.41,
        "chrf": 40.0,
        "semantic_similarity": 0.7,
    },
}
LINEAGE = Lineage(
    git_commit="a" * 40,
    git_dirty=True,
    data_hashes={"data/raw": "1" * 32 + ".dir", "data/prepared": "2" * 32 + ".dir"},
    config_hash="c" * 64,
    model_fingerprint="f" * 64,
)
TRAIN = {
    "mode": "scratch",
    "steps": 600,
    "final_loss": 0.7312,
    "loss_curve": [3.0, 2.0, 1.0],
    "wall_seconds": 91.2,
    "seed": 42,
    "base_model": None,
}


def card(**kw: object) -> str:
    gates = evaluate_gates(METRICS, {"intent_accuracy": 0.9, "rouge_l": 0.86}, GATES)
    args: dict[str, object] = {
        "model_name": "loopline-support",
        "version": "3",
        "metrics": METRICS,
        "lineage": LINEAGE,
        "gates": gates,
        "slices": SLICES,
        "train_report": TRAIN,
        "run_id": "r" * 32,
        "base_model": None,
        "model_license": "Apache-2.0",
    }
    args.update(kw)
    return render_card(**args)  # type: ignore[arg-type]


def section(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_card_has_every_section_in_order() -> None:
    text = card()
    assert text.startswith("# Model card: loopline-support v3\n")
    titles = [line[3:] for line in text.splitlines() if line.startswith("## ")]
    assert titles == [
        "Intended use",
        "Training data",
        "Training",
        "Evaluation",
        "Evaluation slices (per intent)",
        "Limitations",
        "Base model and license",
        "Lineage",
    ]


def test_metrics_table_has_gate_verdicts() -> None:
    ev = section(card(), "Evaluation")
    assert "Gates passed: all 5 gate checks passed." in ev
    assert "| metric | value | gate | verdict |" in ev
    assert "| intent_accuracy | 0.912 | ≥ 0.600 | pass |" in ev
    assert "| intent_accuracy | 0.912 | no regression vs 0.900 | pass |" in ev
    assert "| latency_p95_ms | 412.500 | ≤ 5000.000 | pass |" in ev
    assert "| tokens_per_s | 640.000 | — | not gated |" in ev
    assert "| n_examples | 300 | — | not gated |" in ev


def test_failed_gates_are_marked_and_explained() -> None:
    bad = {**METRICS, "rouge_l": 0.40}
    gates = evaluate_gates(bad, None, GATES)
    ev = section(card(metrics=bad, gates=gates), "Evaluation")
    assert "Gates FAILED: 1 of 5 gate checks failed: rouge_l.min" in ev
    assert "| rouge_l | 0.400 | ≥ 0.450 | **FAIL** |" in ev
    assert "| rouge_l | 0.400 | no regression (no champion) | skipped |" in ev
    assert "- rouge_l = 0.400 below minimum 0.450" in ev


def test_slices_table_flags_weak_and_small_slices() -> None:
    sl = section(card(), "Evaluation slices (per intent)")
    assert "| intent | n | intent_accuracy | rouge_l | chrf | semantic_similarity |" in sl
    assert "| billing | 80 | 0.950 | 0.900 | 71.000 | 0.930 |" in sl
    assert "| refund | 12 | 0.500 ⚠ | 0.410 ⚠ | 40.000 | 0.700 |" in sl
    assert "- refund: rouge_l 0.410 below the gate minimum 0.450" in sl
    assert "Slices with fewer than 20 examples: refund." in sl
    assert "No per-intent slices" in card(slices={})


def test_training_data_version_and_dvc_hashes() -> None:
    data = section(card(), "Training data")
    assert f"`{LINEAGE.data_version}`" in data
    assert "| data/prepared | `" + "2" * 32 + ".dir` |" in data
    assert "| data/raw | `" + "1" * 32 + ".dir` |" in data
    no_dvc = Lineage("unknown", None, {}, "c" * 64, "f" * 64)
    assert "No `dvc.lock` was found" in section(card(lineage=no_dvc), "Training data")


def test_training_base_model_license_and_limitations() -> None:
    text = card()
    tr = section(text, "Training")
    assert "| final_loss | 0.731 |" in tr and "| loss_curve | 3 points |" in tr
    assert "| mode | scratch |" in tr and "| base_model | — |" in tr
    lic = section(text, "Base model and license")
    assert "- Base model: none (tiny Llama-architecture model trained from scratch)" in lic
    assert "- License: Apache-2.0" in lic
    assert "synthetic" in section(text, "Limitations")
    assert "human agent" in section(text, "Intended use")
    custom = card(base_model="hf:SmolLM2-135M-Instruct", limitations=["Only for demos."])
    assert "- Base model: hf:SmolLM2-135M-Instruct" in custom
    assert section(custom, "Limitations").strip().endswith("- Only for demos.")


def test_lineage_section() -> None:
    lin = section(card(), "Lineage")
    assert "| git commit | `" + "a" * 40 + "` |" in lin
    assert "| working tree dirty | yes |" in lin
    assert "| MLflow run | `" + "r" * 32 + "` |" in lin
    assert "| model fingerprint | `" + "f" * 64 + "` |" in lin
    assert "uncommitted changes" in lin
    clean = Lineage("b" * 40, False, {}, "c" * 64, "f" * 64)
    assert "| working tree dirty | no |" in card(lineage=clean)
    assert "uncommitted" not in card(lineage=clean)


def test_promotion_decision_is_shown() -> None:
    gates = evaluate_gates(METRICS, None, GATES)
    decision = decide_promotion(
        CandidateSummary("3", METRICS), None, gates, PromotionPolicy(mode="manual")
    )
    text = card(gates=gates, decision=decision)
    assert "**Promotion decision:** await_approval" in text
    promo = section(text, "Promotion")
    assert "Action: **await_approval** (champion: none)" in promo
    assert "- promotion mode is manual: an approval is required" in promo


def test_table_cells_are_escaped() -> None:
    text = card(slices={"a|b": {"n": 30, "rouge_l": 0.5}})
    assert "| a\\|b | 30 | 0.500 |" in text


def test_card_of_a_registered_version(small_settings: Callable[..., Settings]) -> None:
    settings = small_settings(model={"license": "MIT"})
    version = RegisteredVersion(
        name="loopline-support",
        version="7",
        run_id="abc123",
        model_uri="models:/loopline-support/7",
        metrics={"rouge_l": 0.5, "intent_accuracy": 0.9, "slice.billing.rouge_l": 0.4},
        tags=LINEAGE.as_tags(),
        aliases=("challenger",),
    )
    eval_report = {"metrics": METRICS, "slices": SLICES}
    gates = evaluate_gates(METRICS, None, GATES)
    text = render_model_card(
        settings=settings,
        version=version,
        train_report={**TRAIN, "base_model": "hf:/models/smol"},
        eval_report=eval_report,
        gates=gates,
    )
    assert text.startswith("# Model card: loopline-support v7\n")
    assert "| intent_accuracy | 0.912 | ≥ 0.600 | pass |" in text  # from the eval report
    assert "| refund | 12 |" in text
    assert "- Base model: hf:/models/smol" in text and "- License: MIT" in text
    assert "| MLflow run | `abc123` |" in text
    assert "| git commit | `" + "a" * 40 + "` |" in text  # lineage read back from the tags
    assert LINEAGE.data_version in text

    # without reports: the version's own evaluation metrics, no slices
    bare = render_model_card(settings=settings, version=version)
    assert "| rouge_l | 0.500 | — | not gated |" in bare
    assert "slice.billing" not in bare
    assert "No per-intent slices were reported." in bare
