"""The DVC data stages: raw generation (redacted, atomic) and preparation (splits + stats)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from loopline.config import Settings
from loopline.data.contracts import DataValidationError
from loopline.data.corpus import CORPUS_COLUMNS, CUSTOMER_COLUMNS
from loopline.data.io import DatasetNotFoundError, read_dataset, read_prepared, write_jsonl
from loopline.data.pii import find_pii
from loopline.data.prepare import PREPARED_COLUMNS, generate_raw, prepare
from loopline.data.splits import SPLITS, normalise_prompt

SettingsFactory = Callable[..., Settings]


def test_generate_raw_writes_redacted_tickets_only(small_settings: SettingsFactory) -> None:
    settings = small_settings()
    path = generate_raw(settings)
    assert path == Path(settings.root) / "data" / "raw" / "tickets.jsonl"
    assert sorted(p.name for p in path.parent.iterdir()) == ["tickets.jsonl"]  # no temp files
    raw = read_dataset(path)
    assert list(raw.columns) == list(CORPUS_COLUMNS)
    assert len(raw) == settings.data.n_tickets
    for col in CUSTOMER_COLUMNS:
        assert raw[col].str.fullmatch(r"\[(NAME|EMAIL|PHONE)\]").all()
    text = path.read_text(encoding="utf-8")
    assert "@example" not in text
    for value in (*raw["prompt"], *raw["reply"]):
        assert find_pii(value) == []
    assert raw["prompt"].str.contains(r"\[(?:EMAIL|PHONE|CARD|NAME)\]").sum() > 20


def test_prepare_writes_leak_free_splits_and_stats(small_settings: SettingsFactory) -> None:
    settings = small_settings()
    raw = read_dataset(generate_raw(settings))
    paths = prepare(settings)
    assert set(paths) == {*SPLITS, "stats"}
    frames = read_prepared(paths["train"].parent)
    for split, frame in frames.items():
        assert list(frame.columns) == list(PREPARED_COLUMNS)
        assert (frame["split"] == split).all()
        assert not set(CUSTOMER_COLUMNS) & set(frame.columns)
    ids = [tid for f in frames.values() for tid in f["ticket_id"]]
    assert sorted(ids) == sorted(raw["ticket_id"])
    owners: dict[str, str] = {}
    for split, frame in frames.items():
        for prompt in frame["prompt"]:
            assert owners.setdefault(normalise_prompt(prompt), split) == split

    stats = json.loads(paths["stats"].read_text())
    assert stats["rows"] == len(raw)
    assert stats["splits"] == {s: len(frames[s]) for s in SPLITS}
    for split in SPLITS:
        counts = frames[split]["intent"].value_counts().to_dict()
        assert stats["intents"][split] == counts
    assert stats["splits"]["train"] / len(raw) == pytest.approx(0.8, abs=0.06)
    assert stats["redaction"]["residual_hits"] == {"EMAIL": 0, "PHONE": 0, "CARD": 0, "NAME": 0}
    assert stats["redaction"]["placeholders"]["EMAIL"] > 0
    assert stats["source"] == "data/raw/tickets.jsonl"


def test_stages_are_reproducible(small_settings: SettingsFactory) -> None:
    settings = small_settings()
    raw_path = generate_raw(settings)
    paths = prepare(settings)
    first = {k: p.read_bytes() for k, p in paths.items()} | {"raw": raw_path.read_bytes()}
    generate_raw(settings)
    second = {k: p.read_bytes() for k, p in prepare(settings).items()} | {
        "raw": raw_path.read_bytes()
    }
    assert first == second


def test_prepare_without_raw_data_fails_clearly(small_settings: SettingsFactory) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"tickets\.jsonl: file not found"):
        prepare(small_settings())


def test_prepare_with_validation_refuses_bad_raw_and_writes_nothing(
    small_settings: SettingsFactory,
) -> None:
    settings = small_settings()
    raw_path = generate_raw(settings)
    raw = read_dataset(raw_path)
    raw.loc[raw.index[:3], "intent"] = "lost_parcel"
    write_jsonl(raw, raw_path)
    with pytest.raises(DataValidationError, match="not in label set"):
        prepare(settings, validate=True)
    assert not (Path(settings.root) / settings.data.prepared_dir).exists()


def test_prepare_with_validation_passes_good_data(small_settings: SettingsFactory) -> None:
    settings = small_settings()
    generate_raw(settings)
    paths = prepare(settings, validate=True)
    assert all(p.exists() for p in paths.values())


def test_prepare_rejects_raw_without_required_columns(
    small_settings: SettingsFactory,
) -> None:
    settings = small_settings()
    raw_path = generate_raw(settings)
    write_jsonl(read_dataset(raw_path).drop(columns=["reply"]), raw_path)
    with pytest.raises(ValueError, match=r"lacks required column\(s\) \['reply'\]"):
        prepare(settings)
