"""Reading datasets with clear errors; atomic writes that never leave partial files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from loopline.data.io import (
    DatasetNotFoundError,
    DatasetParseError,
    EmptyDatasetError,
    UnsupportedFormatError,
    read_dataset,
    read_prepared,
    write_json,
    write_jsonl,
)

FRAME = pd.DataFrame(
    {
        "ticket_id": ["T1", "T2"],
        "prompt": ['héllo "quoted"\nnext line', "second"],
        "n": [1, 2],
        "flag": [True, False],
        "maybe": [None, "x"],
    }
)


def test_jsonl_round_trip(tmp_path: Path) -> None:
    path = write_jsonl(FRAME, tmp_path / "sub" / "d.jsonl")
    assert path.read_text(encoding="utf-8").count("\n") == 2
    back = read_dataset(path)
    pd.testing.assert_frame_equal(back, FRAME)


def test_nan_is_written_as_null(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": [1.5, float("nan")]})
    text = write_jsonl(frame, tmp_path / "n.jsonl").read_text()
    assert text.splitlines() == ['{"x": 1.5}', '{"x": null}']


def test_csv_and_parquet(tmp_path: Path) -> None:
    FRAME.to_csv(tmp_path / "d.csv", index=False)
    FRAME.to_parquet(tmp_path / "d.parquet")
    assert read_dataset(tmp_path / "d.csv")["prompt"].tolist() == FRAME["prompt"].tolist()
    pd.testing.assert_frame_equal(read_dataset(tmp_path / "d.parquet"), FRAME)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"nope\.jsonl: file not found"):
        read_dataset(tmp_path / "nope.jsonl")


@pytest.mark.parametrize(
    ("name", "content", "error"),
    [
        ("e.jsonl", "", "file is empty"),
        ("b.jsonl", "\n  \n\n", "no records"),
        ("h.csv", "ticket_id,prompt\n", "no rows"),
        ("z.csv", "", "file is empty"),
    ],
)
def test_empty_files(tmp_path: Path, name: str, content: str, error: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(EmptyDatasetError, match=error):
        read_dataset(tmp_path / name)


def test_bad_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2,}\n{"a": 3}\n')
    with pytest.raises(DatasetParseError) as info:
        read_dataset(path)
    assert info.value.line == 3
    assert "bad.jsonl:3: not valid JSON" in str(info.value)


def test_json_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "list.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(DatasetParseError, match=r"list\.jsonl:2: expected a JSON object, got list"):
        read_dataset(path)


def test_not_utf8_and_bad_parquet(tmp_path: Path) -> None:
    (tmp_path / "latin.jsonl").write_bytes(b'{"a": "caf\xe9"}\n')
    with pytest.raises(DatasetParseError, match="not UTF-8"):
        read_dataset(tmp_path / "latin.jsonl")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DatasetParseError, match="not a readable Parquet file"):
        read_dataset(tmp_path / "junk.parquet")


def test_unsupported_suffix(tmp_path: Path) -> None:
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(UnsupportedFormatError, match=r"unsupported format '\.xlsx'"):
        read_dataset(tmp_path / "d.xlsx")


def test_read_prepared(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="prepared data directory not found"):
        read_prepared(tmp_path / "missing")
    for split in ("train", "val"):
        write_jsonl(FRAME, tmp_path / f"{split}.jsonl")
    with pytest.raises(DatasetNotFoundError, match=r"test\.jsonl: file not found"):
        read_prepared(tmp_path)
    write_jsonl(FRAME, tmp_path / "test.jsonl")
    assert set(read_prepared(tmp_path)) == {"train", "val", "test"}


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "d.jsonl"
    write_jsonl(FRAME, target)
    before = target.read_bytes()
    broken = FRAME.assign(n=[1, object()])  # not JSON-serialisable, fails on the 2nd row
    with pytest.raises(TypeError):
        write_jsonl(broken, target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl"]


def test_write_json_is_sorted_and_atomic(tmp_path: Path) -> None:
    path = write_json({"b": 1, "a": {"c": 2}}, tmp_path / "s.json")
    assert path.read_text() == '{\n  "a": {\n    "c": 2\n  },\n  "b": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]
