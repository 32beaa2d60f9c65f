"""Durable, all-or-nothing file writes shared by every module that persists state."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def fsync_dir(directory: Path) -> None:
    """Make a rename or create in ``directory`` durable (best effort where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_writer(path: Path | str) -> Iterator[IO[str]]:
    """Open a text file that appears at ``path`` only once fully written and fsynced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def jsonable(value: Any) -> Any:
    """JSON fallback for numpy scalars, NaN/NaT (as null) and anything else (as text)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy scalars
        return jsonable(value.item())
    if type(value).__name__ == "NaTType":
        return None
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)


def write_json(data: Mapping[str, Any] | list[Any], path: Path | str) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    path = Path(path)
    with atomic_writer(path) as handle:
        json.dump(data, handle, indent=2, sort_keys=True, default=jsonable)
        handle.write("\n")
    return path


def read_json(path: Path | str) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def tail_text(
    path: Path | str, lines: int = 20, *, missing: str = "(no log)", empty: str = ""
) -> str:
    """The last ``lines`` lines of a text file (for error messages about a process's log)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return missing
    return "\n".join(text.splitlines()[-lines:]) or empty
