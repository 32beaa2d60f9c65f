"""The monitoring dataset: descriptors from request-log records and training data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loopline.config import load_settings
from loopline.data.contracts import validate_prepared
from loopline.data.prepare import build_prepared, build_raw, read_fresh
from loopline.monitoring.dataset import (
    INPUT_COLUMNS,
    OUTPUT_COLUMNS,
    embed_prompts,
    read_feedback,
    reference_frame,
    requests_frame,
    select_window,
)
from loopline.monitoring.fresh import write_fresh_tickets
from loopline.monitoring.policy import QualityPolicy
from loopline.monitoring.quality import Baselines, check_quality
from tests.conftest import make_project


def record(i: int, prompt: str | None, reply: str | None, **kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "request_id": f"r{i}", "ts": 1000.0 + i, "endpoint": "chat", "status": 200,
        "prompt": prompt, "reply": reply, "latency_ms": 12.5, "prompt_tokens": 9,
        "completion_tokens": 20, "cost_usd": 0.0001, "model_version": "1",
        "variant": "stable", "cache_hit": False,
    }  # fmt: skip
    return {**base, **kw}


def test_descriptors_of_logged_requests() -> None:
    records = [
        record(0, "Where is order [ORDER]? Email me at [EMAIL]",
               "intent: shipping_status\nreply: It ships today, [NAME]."),
        record(1, "hola, mi paquete no llega", "reply: reply: reply: reply: reply: reply:"),
        record(2, "help", None, status=500),
        record(3, "off topic", "intent: off_topic\nreply: I can only help with your orders."),
        {"endpoint": "models", "ts": 5.0},  # not a completion: skipped
        record(4, None, None),  # no prompt (rejected body): skipped
    ]  # fmt: skip
    frame = requests_frame(records, feedback={"r0": 1.0})
    assert list(frame["request_id"]) == ["r0", "r1", "r2", "r3"]
    assert set(INPUT_COLUMNS + OUTPUT_COLUMNS) <= set(frame.columns)
    r0, r1, r2, r3 = (frame.iloc[i] for i in range(4))
    assert r0.prompt_pii == 1 and r0.reply_pii == 1 and r0.prompt_chars == len(records[0]["prompt"])
    assert r0.reply_intent == "shipping_status" and r0.reply_well_formed == "yes"
    assert r1.reply_intent == "none" and r1.reply_well_formed == "no" and r1.reply_repetition > 0.5
    assert r2.status == 500 and r2.reply_words == 0 and r2.reply_quality < r0.reply_quality
    assert r3.reply_refusal == "yes" and r0.reply_refusal == "no"
    assert r0.feedback == 1.0 and np.isnan(r1.feedback)
    assert frame["ood_score"].isna().all()  # filled by embed_prompts


def test_window_keeps_the_newest_rows_of_the_period() -> None:
    records = [record(i, "p", "r", ts=float(i)) for i in range(100)]
    picked = select_window(reversed(records), now=90.0, minutes=0.5, max_rows=10)
    assert [r["ts"] for r in picked] == [float(t) for t in range(81, 91)]
    only_v2 = select_window(
        [record(0, "p", "r", model_version="2", ts=5.0), record(1, "p", "r", ts=6.0)],
        now=10.0, minutes=1, max_rows=10, versions=["2"],
    )  # fmt: skip
    assert [r["model_version"] for r in only_v2] == ["2"]


def test_reference_describes_the_training_targets() -> None:
    train = pd.DataFrame(
        {
            "prompt": ["a b c", "d e"],
            "intent": ["billing_refund", "shipping_status"],
            "reply": ["Done.", "It ships soon."],
        }
    )
    ref = reference_frame(train, max_rows=10)
    assert list(ref["reply_intent"]) == ["billing_refund", "shipping_status"]
    assert set(ref["reply_well_formed"]) == {"yes"}
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['reply'\]"):
        reference_frame(train.drop(columns=["reply"]), max_rows=10)
    with pytest.raises(ValueError, match="empty"):
        reference_frame(train.iloc[:0], max_rows=10)


def test_ood_scores_use_the_nearest_other_reference_text(tmp_path: Path) -> None:
    """Unit vectors stand in for embeddings; duplicates of a reference text are not its
    neighbours, and reference embeddings are cached by their texts."""
    vectors = {"a": [1.0, 0.0], "a2": [1.0, 0.0], "b": [0.0, 1.0], "c": [0.6, 0.8]}
    calls: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.array([vectors[t.split("#")[0]] for t in texts])

    train = pd.DataFrame({"prompt": ["a", "a", "b", "c"], "intent": ["x"] * 4, "reply": ["y"] * 4})
    ref = reference_frame(train, 10)
    cur = requests_frame([record(0, "a2", "r"), record(1, "b#2", "r")])
    embed_prompts(ref, cur, encode, max_rows=10, cache_dir=tmp_path)
    # "a" has an identical twin, which is masked: its nearest other text is "c" (cos 0.6).
    assert list(ref["ood_score"].round(6)) == [0.4, 0.4, 0.2, 0.2]
    assert list(cur["ood_score"].round(6)) == [0.0, 0.0]
    ref2, cur2 = reference_frame(train, 10), requests_frame([record(0, "c", "r")])
    embed_prompts(ref2, cur2, encode, max_rows=10, cache_dir=tmp_path)
    assert calls[-1] == ["c"]  # the reference came from the cache


def test_feedback_files_give_the_latest_rating(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(
        '{"request_id": "r1", "rating": 0}\nnot json\n{"request_id": "r1", "rating": 1}\n'
    )
    assert read_feedback(tmp_path) == {"r1": 1.0}
    assert read_feedback(tmp_path / "missing") == {}


def test_quality_check_against_its_baseline(tmp_path: Path) -> None:
    policy = QualityPolicy(max_drop=0.1, min_samples=4)
    assert not check_quality("probes", "1", [0.8] * 3, 0.9, policy).dropped  # too few
    ok = check_quality("probes", "1", [0.85] * 5, 0.9, policy)
    low = check_quality("probes", "1", [0.7] * 5, 0.9, policy)
    assert not ok.dropped and low.dropped and "below baseline" in low.reason
    base = Baselines(tmp_path / "b.json")
    assert base.set_if_missing("1", "probes", 0.9) == 0.9
    assert base.set_if_missing("1", "probes", 0.5) == 0.9  # the first one stays
    assert base.get("2", "probes") is None


def test_fresh_tickets_join_the_corpus_and_pass_the_contract(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p")
    settings = load_settings(root, env="local")
    path = write_fresh_tickets(settings, 60, seed=4, stamp="t1")
    fresh = read_fresh(path.parent)
    assert fresh is not None and 40 <= len(fresh) <= 60  # over-long prompts are dropped
    assert fresh["ticket_id"].str.startswith("FRS-t1-").all()
    assert (fresh["prompt"].str.len() <= settings.data.max_prompt_chars).all()
    raw, _ = build_raw(settings.data.model_copy(update={"n_tickets": 200}), fresh)
    assert len(raw) == 200 + len(fresh)
    frames, _ = build_prepared(raw, settings.data)
    validate_prepared(frames, settings)  # raises on any failed expectation
    with pytest.raises(ValueError, match="kinds must be among"):
        write_fresh_tickets(settings, 5, seed=1, kinds=("new_intent",))
