"""Loopline's marker file inside a model folder, and atomic folder writes.

A folder trained (or fine-tuned) by Loopline is an ordinary Hugging Face model folder plus
``loopline_model.json``. The marker records which prompt format the model learned, so a bare
directory can be loaded with the right formatting without being told.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from loopline.models.base import MARKER_FILE
from loopline.models.prompting import PROMPT_FORMAT

__all__ = [
    "MARKER_FILE",
    "MARKER_VERSION",
    "ModelMarker",
    "atomic_directory",
    "read_marker",
    "write_marker",
]
MARKER_VERSION = 1


class ModelMarker(BaseModel):
    """Contents of ``loopline_model.json``."""

    model_config = ConfigDict(frozen=True, extra="allow")

    format_version: int = MARKER_VERSION
    prompt_format: str = PROMPT_FORMAT
    mode: str = Field("scratch", description="scratch | full | lora")
    base_model: str | None = None
    max_seq_len: int = Field(160, ge=1, description="longest sequence seen in training")


def write_marker(folder: Path, marker: ModelMarker) -> Path:
    path = folder / MARKER_FILE
    path.write_text(json.dumps(marker.model_dump(), indent=2, sort_keys=True) + "\n", "utf-8")
    return path


def read_marker(folder: Path) -> ModelMarker | None:
    """The folder's marker, or ``None`` when it has none. A malformed marker is an error."""
    path = Path(folder) / MARKER_FILE
    if not path.is_file():
        return None
    try:
        data: Any = json.loads(path.read_text("utf-8"))
        marker = ModelMarker.model_validate(data)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a valid Loopline model marker: {exc}") from exc
    if marker.format_version > MARKER_VERSION:
        raise ValueError(
            f"{path}: marker format_version {marker.format_version} is newer than this "
            f"Loopline understands ({MARKER_VERSION}); upgrade Loopline to load it"
        )
    if marker.prompt_format != PROMPT_FORMAT:
        raise ValueError(
            f"{path}: model was trained with prompt format {marker.prompt_format!r}, "
            f"this Loopline speaks {PROMPT_FORMAT!r}"
        )
    return marker


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``target`` to fill; on success it replaces ``target``.

    On an exception the temporary folder is removed and ``target`` is left as it was, so a
    crash never leaves a half-written model folder behind. The sibling lives in the same
    parent so the final rename is a same-filesystem rename.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = target.parent / f".{target.name}.tmp-{tag}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.parent / f".{target.name}.old-{tag}"
    if target.exists():
        target.rename(old)
    try:
        tmp.rename(target)
    except BaseException:
        if old.exists():
            old.rename(target)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
