"""The dataset contract refuses broken data with a message naming the problem and column.

Each case starts from a good prepared dataset (generated, redacted, split), breaks it in one
way, writes it to disk and validates the directory like the pipeline does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd
import pytest

from loopline.config import DataConfig, Settings
from loopline.data import contracts
from loopline.data.contracts import (
    DataValidationError,
    ValidationReport,
    validate_frame,
    validate_path,
    validate_prepared,
)
from loopline.data.io import write_jsonl
from loopline.data.prepare import build_prepared, build_raw
from loopline.data.splits import SPLITS

SettingsFactory = Callable[..., Settings]
Frames = dict[str, pd.DataFrame]


@lru_cache(maxsize=2)
def _good(cfg: DataConfig) -> tuple[pd.DataFrame, Frames]:
    raw, _ = build_raw(cfg)
    frames, _ = build_prepared(raw, cfg)
    return raw, frames


def good_frames(settings: Settings) -> Frames:
    return {k: v.copy() for k, v in _good(settings.data)[1].items()}


def write_dir(frames: Frames, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for split, frame in frames.items():
        write_jsonl(frame, directory / f"{split}.jsonl")
    return directory


def refused(path: Path, settings: Settings) -> tuple[str, ValidationReport]:
    with pytest.raises(DataValidationError) as info:
        validate_path(path, settings)
    report = info.value.report
    assert not report.success
    message = str(info.value)
    # every failed check is on its own line, after the header
    assert message.splitlines()[1:] == [f"  {r.message}" for r in report.failures]
    return message, report


# -- one broken dataset per case ------------------------------------------------------------


def drop_intent_in_test(f: Frames) -> None:
    f["test"] = f["test"].drop(columns=["intent"])


def drop_reply_everywhere(f: Frames) -> None:
    for split in SPLITS:
        f[split] = f[split].drop(columns=["reply"])


def integer_ticket_ids(f: Frames) -> None:
    f["val"]["ticket_id"] = range(1000, 1000 + len(f["val"]))


def number_as_prompt(f: Frames) -> None:
    f["train"]["prompt"] = f["train"]["prompt"].astype(object)
    f["train"].loc[3, "prompt"] = 12345


def null_replies(f: Frames) -> None:
    f["train"].loc[[1, 5], "reply"] = None


def prompts_leak_across_splits(f: Frames) -> None:
    # the same tickets, shouted and re-spaced, end up in test: normalised they are equal
    copies = f["train"].loc[10:12, "prompt"].str.upper().str.replace(" ", "  ")
    f["test"].loc[0:2, "prompt"] = copies.to_numpy()


def ticket_id_in_two_files(f: Frames) -> None:
    f["val"].loc[0, "ticket_id"] = f["train"].loc[0, "ticket_id"]


def unknown_label(f: Frames) -> None:
    f["test"].loc[0:2, "intent"] = "lost_parcel"


def pii_left_in(f: Frames) -> None:
    f["train"].loc[0, "prompt"] += " Mail me: bob.jones@example.com"
    f["val"].loc[1, "reply"] += " Call us back on 415-555-0132."
    f["test"].loc[2, "prompt"] += " My card is 4111 1111 1111 1111."


def over_long_prompt(f: Frames) -> None:
    f["train"].loc[4, "prompt"] = "Where is my order? " * 40  # 760 chars > 600


def blank_prompt(f: Frames) -> None:
    f["val"].loc[2, "prompt"] = "   \n "


def wrong_split_value(f: Frames) -> None:
    f["train"].loc[0, "split"] = "test"


def over_long_reply(f: Frames) -> None:
    f["val"].loc[0, "reply"] = "Thanks for waiting. " * 25  # 500 chars > 400


@dataclass(frozen=True)
class Case:
    breaks: Callable[[Frames], None]
    expected: tuple[str, ...]  # substrings of the error message, one per failed check
    checks: tuple[tuple[str, str | None], ...]  # (check, column) of each failure


CASES = {
    "missing column": Case(
        drop_intent_in_test,
        ("test.jsonl: missing required column 'intent'",),
        (("required_column", "intent"),),
    ),
    "missing column everywhere": Case(
        drop_reply_everywhere,
        tuple(f"{s}.jsonl: missing required column 'reply'" for s in SPLITS),
        (("required_column", "reply"),) * 3,
    ),
    "wrong type (ints in one file)": Case(
        integer_ticket_ids,
        ("value(s) are not strings, e.g. 1000 (int), 1001 (int), 1002 (int)",),
        (("string_type", "ticket_id"),),
    ),
    "wrong type (one value)": Case(
        number_as_prompt,
        ("train.jsonl: column 'prompt': 1 value(s) are not strings, e.g. 12345 (int)",),
        (("string_type", "prompt"),),
    ),
    "nulls": Case(
        null_replies,
        ("train.jsonl: column 'reply': 2 null value(s), e.g. at ticket_id 'TKT-",),
        (("not_null", "reply"),),
    ),
    "duplicates across splits": Case(
        prompts_leak_across_splits,
        (
            "train.jsonl: column 'prompt': 3 prompt(s) also appear (normalised) in another split",
            "test.jsonl: column 'prompt': 3 prompt(s) also appear (normalised) in another split",
        ),
        (("split_leakage", "prompt"), ("split_leakage", "prompt")),
    ),
    "duplicate ticket id": Case(
        ticket_id_in_two_files,
        (
            "train.jsonl: column 'ticket_id': 1 duplicated value(s), e.g. 'TKT-000001' "
            "(also in val.jsonl)",
            "val.jsonl: column 'ticket_id': 1 duplicated value(s), e.g. 'TKT-000001' "
            "(also in train.jsonl)",
        ),
        (("unique", "ticket_id"), ("unique", "ticket_id")),
    ),
    "unknown label": Case(
        unknown_label,
        ("test.jsonl: column 'intent': 3 value(s) not in label set, e.g. 'lost_parcel'",),
        (("label_set", "intent"),),
    ),
    "PII left in": Case(
        pii_left_in,
        (
            "train.jsonl: column 'prompt': 1 value(s) contain personal data left after "
            "redaction (1 with an email address)",
            "test.jsonl: column 'prompt': 1 value(s) contain personal data left after "
            "redaction (1 with a card-like number)",
            "val.jsonl: column 'reply': 1 value(s) contain personal data left after "
            "redaction (1 with a phone number)",
        ),
        (("pii", "prompt"), ("pii", "prompt"), ("pii", "reply")),
    ),
    "over-long prompt": Case(
        over_long_prompt,
        (
            "train.jsonl: column 'prompt': 1 value(s) empty or longer than 600 characters, "
            "e.g. ticket_id 'TKT-",
        ),
        (("length", "prompt"),),
    ),
    "over-long reply": Case(
        over_long_reply,
        ("val.jsonl: column 'reply': 1 value(s) empty or longer than 400 characters",),
        (("length", "reply"),),
    ),
    "blank prompt": Case(
        blank_prompt,
        ("val.jsonl: column 'prompt': 1 blank value(s)",),
        (("blank", "prompt"),),
    ),
    "split column disagrees with file": Case(
        wrong_split_value,
        ("train.jsonl: column 'split': 1 value(s) are not 'train', e.g. 'test'",),
        (("split_name", "split"),),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_broken_dataset_is_refused(
    name: str, small_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = small_settings()
    case = CASES[name]
    frames = good_frames(settings)
    case.breaks(frames)
    message, report = refused(write_dir(frames, tmp_path / "prepared"), settings)
    for expected in case.expected:
        assert expected in message, f"{expected!r} not in:\n{message}"
    assert [(r.check, r.column) for r in report.failures] == list(case.checks)
    assert len(message.splitlines()) == 1 + len(case.expected)


def test_pii_is_never_quoted_in_the_error(small_settings: SettingsFactory, tmp_path: Path) -> None:
    settings = small_settings()
    frames = good_frames(settings)
    pii_left_in(frames)
    message, report = refused(write_dir(frames, tmp_path), settings)
    for secret in ("bob.jones@example.com", "415-555-0132", "4111 1111 1111 1111"):
        assert secret not in message
        assert not any(secret in e for r in report.results for e in r.examples)


# -- structural problems: GX cannot even run ------------------------------------------------


def test_empty_file(small_settings: SettingsFactory, tmp_path: Path) -> None:
    settings = small_settings()
    directory = write_dir(good_frames(settings), tmp_path)
    (directory / "test.jsonl").write_text("")
    message, report = refused(directory, settings)
    assert "test.jsonl: file is empty (0 bytes)" in message
    assert report.failures[0].expectation == "file_readable"
    assert len(report.failures) == 1  # the two readable files passed every check


def test_missing_file(small_settings: SettingsFactory, tmp_path: Path) -> None:
    settings = small_settings()
    directory = write_dir(good_frames(settings), tmp_path)
    (directory / "val.jsonl").unlink()
    message, _ = refused(directory, settings)
    assert "val.jsonl: file not found" in message


def test_missing_directory_and_file(small_settings: SettingsFactory, tmp_path: Path) -> None:
    settings = small_settings()
    message, _ = refused(tmp_path / "nowhere", settings)
    assert "no such file or directory" in message
    message, _ = refused(tmp_path / "nowhere.jsonl", settings)
    assert "nowhere.jsonl: file not found" in message


def test_unreadable_json_names_file_and_line(
    small_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = small_settings()
    directory = write_dir(good_frames(settings), tmp_path)
    lines = (directory / "train.jsonl").read_text().splitlines()
    lines[4] = lines[4][:-10]  # truncated record on line 5
    (directory / "train.jsonl").write_text("\n".join(lines) + "\n")
    message, _ = refused(directory, settings)
    assert "train.jsonl:5: not valid JSON" in message


def test_csv_with_header_only(small_settings: SettingsFactory, tmp_path: Path) -> None:
    path = tmp_path / "tickets.csv"
    path.write_text("ticket_id,prompt,intent,reply\n")
    message, _ = refused(path, small_settings())
    assert "tickets.csv: file holds no rows" in message


def test_single_file_with_integer_column(small_settings: SettingsFactory, tmp_path: Path) -> None:
    settings = small_settings()
    frame = good_frames(settings)["test"]
    frame["intent"] = range(len(frame))
    path = write_jsonl(frame, tmp_path / "test.jsonl")
    message, report = refused(path, settings)
    assert "test.jsonl: column 'intent': expected strings, column has dtype int64" in message
    assert [(r.check, r.column) for r in report.failures] == [("string_type", "intent")]


def test_in_memory_problems(small_settings: SettingsFactory) -> None:
    settings = small_settings()
    frames = good_frames(settings)
    with pytest.raises(DataValidationError) as info:
        validate_prepared({"train": frames["train"], "test": frames["test"].iloc[0:0]}, settings)
    message = str(info.value)
    assert "val: split 'val' is missing" in message
    assert "test: table has 0 rows, expected at least 1" in message


def test_several_problems_are_all_listed(small_settings: SettingsFactory, tmp_path: Path) -> None:
    settings = small_settings()
    frames = good_frames(settings)
    for breaks in (unknown_label, null_replies, over_long_reply, pii_left_in):
        breaks(frames)
    message, report = refused(write_dir(frames, tmp_path), settings)
    assert len(report.failures) == 6
    for needle in ("not in label set", "null value(s)", "longer than 400", "email address"):
        assert needle in message


# -- good data passes ---------------------------------------------------------------------


def test_good_dataset_passes(small_settings: SettingsFactory, tmp_path: Path) -> None:
    settings = small_settings()
    frames = good_frames(settings)
    directory = write_dir(frames, tmp_path)
    report = validate_path(directory, settings)
    assert report.success and report.failures == ()
    assert report.rows == {f"{s}.jsonl": len(frames[s]) for s in SPLITS}
    assert sum(report.rows.values()) == settings.data.n_tickets
    checks = {r.check for r in report.results}
    assert {"required_column", "not_null", "string_type", "length", "label_set"} <= checks
    assert {"unique", "split_leakage", "pii", "split_name", "row_count"} <= checks
    assert "passed" in report.summary()
    # in memory, one file at a time, and the raw file all pass too
    assert validate_prepared(frames, settings).success
    assert validate_path(directory / "test.jsonl", settings).success
    raw = _good(settings.data)[0]
    assert validate_frame(raw, settings, name="tickets.jsonl").success


def test_report_without_raising(small_settings: SettingsFactory) -> None:
    settings = small_settings()
    frames = good_frames(settings)
    unknown_label(frames)
    report = validate_prepared(frames, settings, raise_on_failure=False)
    assert not report.success
    (failure,) = report.failures
    assert failure.expectation == "expect_column_values_to_be_in_set"
    assert failure.column == "intent"
    assert failure.unexpected_count == 3
    assert failure.examples == ("'lost_parcel'",)
    with pytest.raises(DataValidationError):
        report.raise_for_failures()
    # the report is what the pipeline stores: it survives a JSON round trip unchanged
    payload = json.loads(json.dumps(report.model_dump(mode="json")))
    restored = ValidationReport.model_validate(payload)
    assert restored == report
    assert str(DataValidationError(restored)) == str(DataValidationError(report))


def test_validation_writes_nothing(
    small_settings: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = small_settings()
    directory = write_dir(good_frames(settings), tmp_path / "data")
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HOME", str(home))
    contracts._reset_gx_cache()  # build a fresh GX context under the watched HOME/cwd
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert validate_path(directory, settings).success
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before
    assert os.environ.get("GX_ANALYTICS_ENABLED") == "false"
