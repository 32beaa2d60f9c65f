"""Reading datasets with clear errors, and writing them atomically.

``read_dataset`` understands ``.jsonl`` (one JSON object per line), ``.csv`` and ``.parquet``.
Every failure is a ``DatasetError`` naming the file and, for JSON lines, the line number.
Writers never leave a partial file: they write a temporary file in the target directory,
fsync it and ``os.replace`` it over the destination.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from loopline.data.splits import SPLITS
from loopline.fsutil import atomic_writer, write_json

__all__ = ["atomic_writer", "read_dataset", "read_prepared", "write_json", "write_jsonl"]

SUPPORTED_SUFFIXES: tuple[str, ...] = (".jsonl", ".csv", ".parquet")


class DatasetError(ValueError):
    """A dataset file cannot be read. ``path`` names it; ``line`` is set for JSON lines."""

    def __init__(self, path: Path | str, message: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.reason = message
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {message}")


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The file (or prepared directory) does not exist."""


class EmptyDatasetError(DatasetError):
    """The file exists but holds no records."""


class DatasetParseError(DatasetError):
    """The file's content is not valid for its format."""


class UnsupportedFormatError(DatasetError):
    """The file extension is not one ``read_dataset`` knows."""


def read_dataset(path: Path | str) -> pd.DataFrame:
    """Read a ``.jsonl``, ``.csv`` or ``.parquet`` file into a DataFrame.

    Raises ``DatasetNotFoundError``, ``EmptyDatasetError`` (no bytes, only blank lines, or
    no rows), ``DatasetParseError`` (with the line number for JSON lines) or
    ``UnsupportedFormatError``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UnsupportedFormatError(
            path, f"unsupported format {suffix or '(none)'!r}; use one of {SUPPORTED_SUFFIXES}"
        )
    if not path.exists():
        raise DatasetNotFoundError(path, "file not found")
    if not path.is_file():
        raise DatasetNotFoundError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise EmptyDatasetError(path, "file is empty (0 bytes)")
    if suffix == ".jsonl":
        frame = _read_jsonl(path)
    elif suffix == ".csv":
        frame = _read_csv(path)
    else:
        frame = _read_parquet(path)
    if len(frame) == 0:
        raise EmptyDatasetError(path, "file holds no rows")
    return frame


def _read_jsonl(path: Path) -> pd.DataFrame:
    records: list[dict[str, Any]] = []
    columns: dict[str, None] = {}  # ordered union of keys
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise DatasetParseError(path, f"cannot open: {exc}") from exc
    with handle:
        lineno = 0
        try:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetParseError(
                        path, f"not valid JSON ({exc.msg} at column {exc.colno})", line=lineno
                    ) from None
                if not isinstance(obj, dict):
                    raise DatasetParseError(
                        path, f"expected a JSON object, got {type(obj).__name__}", line=lineno
                    )
                records.append(obj)
                columns.update(dict.fromkeys(obj))
        except UnicodeDecodeError as exc:
            raise DatasetParseError(
                path, f"not UTF-8 text ({exc.reason})", line=lineno + 1
            ) from None
    if not records:
        raise EmptyDatasetError(path, "file has no records (only blank lines)")
    return pd.DataFrame.from_records(records, columns=list(columns))


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise EmptyDatasetError(path, "file has no CSV header or rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetParseError(path, f"not valid CSV: {exc}") from None


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError, ImportError) as exc:
        raise DatasetParseError(path, f"not a readable Parquet file: {exc}") from None
    except Exception as exc:  # pyarrow raises its own ArrowInvalid family
        raise DatasetParseError(path, f"not a readable Parquet file: {exc}") from None


def read_prepared(directory: Path | str) -> dict[str, pd.DataFrame]:
    """The prepared splits ``{train,val,test}.jsonl`` of ``directory``, keyed by split."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetNotFoundError(directory, "prepared data directory not found")
    return {split: read_dataset(directory / f"{split}.jsonl") for split in SPLITS}


# -- writing (atomic_writer and write_json come from loopline.fsutil) -----------------------


def _jsonable(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy scalars
        return _jsonable(value.item())
    if value is pd.NaT:
        return None
    return value


def write_jsonl(df: pd.DataFrame, path: Path | str) -> Path:
    """Write ``df`` as JSON lines, atomically. Missing values become ``null``."""
    path = Path(path)
    columns = [str(c) for c in df.columns]
    with atomic_writer(path) as handle:
        for row in df.itertuples(index=False, name=None):
            record = {c: _jsonable(v) for c, v in zip(columns, row, strict=True)}
            handle.write(json.dumps(record, ensure_ascii=False))
            handle.write("\n")
    return path
