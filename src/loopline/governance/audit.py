"""Append-only audit trail: one JSON object per line, each entry chained to the one before.

An entry is ``{seq, timestamp, action, subject, actor, details, prev_hash, hash}`` where
``hash = sha256(canonical JSON of the entry without "hash")`` and ``prev_hash`` is the previous
entry's hash (64 zeros for the first). Canonical JSON: sorted keys, no whitespace, UTF-8,
no NaN. Editing, removing or reordering any entry breaks the chain at that entry, which
``verify`` reports by its sequence number. (Cutting entries off the *end* leaves a valid
shorter chain: keep ``head()`` elsewhere and pass it to ``verify(expected_head=...)`` to catch
that too.)

Appends are serialised across processes with an exclusive ``fcntl.flock`` on the file, and each
line is flushed and fsync'ed before the lock is released. A torn last line (a crash mid-write)
makes both ``verify`` and further ``append`` calls fail loudly instead of chaining onto it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loopline.config import Settings
from loopline.fsutil import fsync_dir

GENESIS = "0" * 64
FILE_NAME = "audit.jsonl"


class AuditIntegrityError(Exception):
    """The audit trail was altered; ``seq`` is the first entry that does not check out."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"audit trail broken at seq {seq}: {reason}")
        self.seq = seq
        self.reason = reason


class AuditEntry(BaseModel):
    """One line of the trail. ``hash`` covers every other field (see ``entry_hash``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    seq: int = Field(ge=0)
    timestamp: str
    action: str
    subject: str
    actor: str
    details: dict[str, Any] = Field(default_factory=dict)
    prev_hash: str = GENESIS
    hash: str = ""

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"hash"})

    def as_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), **_CANONICAL)


_CANONICAL: dict[str, Any] = {
    "sort_keys": True,
    "separators": (",", ":"),
    "ensure_ascii": False,
    "allow_nan": False,
}


def entry_hash(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, **_CANONICAL).encode("utf-8")).hexdigest()


def _normalise(details: Mapping[str, Any]) -> dict[str, Any]:
    """Details as they will be stored (JSON types only; Paths and the like become strings)."""
    try:
        loaded = json.loads(json.dumps(dict(details), default=str, allow_nan=False))
    except ValueError as exc:
        raise ValueError(f"audit details must be finite JSON values: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ValueError("audit details must be a mapping")
    return loaded


def _parse(line: bytes, expected_seq: int) -> AuditEntry:
    try:
        return AuditEntry.model_validate(json.loads(line))
    except (ValueError, ValidationError) as exc:
        reason = str(exc).splitlines()[0]
        raise AuditIntegrityError(expected_seq, f"unreadable entry ({reason})") from exc


def _last_line(fh: BinaryIO) -> bytes | None:
    """The file's last line (without its newline), read backwards from the end."""
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    if size == 0:
        return None
    fh.seek(size - 1)
    if fh.read(1) != b"\n":
        raise AuditIntegrityError(-1, "the last entry is incomplete (no trailing newline)")
    chunk = 4096
    buf = b""
    pos = size - 1
    while pos > 0:
        start = max(0, pos - chunk)
        fh.seek(start)
        buf = fh.read(pos - start) + buf
        pos = start
        if b"\n" in buf:
            break
    return buf.rsplit(b"\n", 1)[-1]


class AuditTrail:
    """The audit trail stored at ``path`` (``<state_dir>/audit.jsonl`` by default)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def for_settings(cls, settings: Settings) -> AuditTrail:
        return cls(settings.state_path / FILE_NAME)

    def append(
        self,
        action: str,
        subject: str,
        actor: str,
        details: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        if not action or not subject or not actor:
            raise ValueError("audit entries need an action, a subject and an actor")
        body_details = _normalise(details or {})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        with os.fdopen(fd, "r+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                last = _last_line(fh)
                if last is None:
                    seq, prev = 0, GENESIS
                else:
                    previous = _parse(last, -1)
                    seq, prev = previous.seq + 1, previous.hash
                entry = AuditEntry(
                    seq=seq,
                    timestamp=datetime.now(UTC).isoformat(timespec="microseconds"),
                    action=action,
                    subject=subject,
                    actor=actor,
                    details=body_details,
                    prev_hash=prev,
                )
                entry = entry.model_copy(update={"hash": entry_hash(entry.body())})
                fh.seek(0, os.SEEK_END)
                fh.write(entry.as_json().encode("utf-8") + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        if created:
            fsync_dir(self.path.parent)
        return entry

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        if not self.path.exists():
            return
        with self.path.open("rb") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
            try:
                data = fh.read()
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        if data and not data.endswith(b"\n"):
            last_index = data.count(b"\n")
            raise AuditIntegrityError(last_index, "the last entry is incomplete")
        yield from enumerate(data.splitlines())

    def entries(self) -> list[AuditEntry]:
        """All entries as stored (parsed, not verified)."""
        return [_parse(line, index) for index, line in self._lines()]

    def head(self) -> AuditEntry | None:
        entries = self.entries()
        return entries[-1] if entries else None

    def verify(self, expected_head: str | None = None) -> None:
        """Raise :class:`AuditIntegrityError` naming the first entry that breaks the chain."""
        prev = GENESIS
        count = 0
        for index, line in self._lines():
            entry = _parse(line, index)
            if entry.seq != index:
                raise AuditIntegrityError(
                    index, f"expected seq {index}, found seq {entry.seq} (removed or reordered)"
                )
            if entry.prev_hash != prev:
                raise AuditIntegrityError(
                    index, "prev_hash does not match the previous entry (removed or reordered)"
                )
            if entry_hash(entry.body()) != entry.hash:
                raise AuditIntegrityError(index, "hash does not match the content (edited)")
            prev = entry.hash
            count += 1
        if expected_head is not None and prev != expected_head:
            raise AuditIntegrityError(count, "the trail does not end at the expected head")
