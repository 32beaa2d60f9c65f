"""The request log: one JSON line per served request, durable before the reply leaves.

Monitoring, experiments and cost all read this log, so it must neither lose nor repeat a
request. A single writer thread owns the file and commits in groups: every entry queued while
the previous ``fsync`` ran is written and synced together, and each caller's future resolves
only after the ``fsync`` that covers its line. Under load one ``fsync`` serves a whole batch;
idle, a request waits for one ``fsync`` (about 0.3 ms here).

Files live in one directory: ``requests.jsonl`` is the active file; when it would exceed
``max_bytes`` it is renamed to ``requests-<UTC time>-<seq>.jsonl`` (a rename is atomic, so a
reader sees each line in exactly one file) and a new active file is started.
:func:`read_request_log` yields every entry of every file in order.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopline.fsutil import fsync_dir

ACTIVE = "requests.jsonl"
_ROTATED_GLOB = "requests-*.jsonl"


class RequestLogError(RuntimeError):
    """The request log cannot be written (disk full, permissions, closed log)."""


@dataclass
class _Pending:
    line: bytes
    done: Future[None]


class RequestLog:
    """Append-only, size-rotated, group-committed JSONL log in ``directory``."""

    def __init__(self, directory: str | Path, *, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.directory.mkdir(parents=True, exist_ok=True)
        # One writer per directory: a second server must not interleave or rotate our file.
        self._lock = (self.directory / ".lock").open("a")
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._lock.close()
            raise RequestLogError(
                f"request log {self.directory} is in use by another server process"
            ) from exc
        self._path = self.directory / ACTIVE
        self._fh = self._path.open("ab")
        self._size = self._fh.tell()
        self._pending: list[_Pending] = []
        self._cv = threading.Condition()
        self._closed = False
        self._rotations = 0
        self.commits = 0
        self.lines = 0
        self._thread = threading.Thread(target=self._run, name="loopline-request-log", daemon=True)
        self._thread.start()

    # -- producer side -----------------------------------------------------------------------
    def append(self, entry: Mapping[str, Any]) -> Future[None]:
        """Queue ``entry``; the future resolves once its line is on disk (after ``fsync``)."""
        text = json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str)
        # A lone surrogate from a hostile client becomes "?": the log stays valid UTF-8.
        line = (text + "\n").encode("utf-8", errors="replace")
        fut: Future[None] = Future()
        with self._cv:
            if self._closed:
                raise RequestLogError(f"request log {self.directory} is closed")
            self._pending.append(_Pending(line, fut))
            self._cv.notify()
        return fut

    def write(self, entry: Mapping[str, Any], timeout: float = 30.0) -> None:
        """Append and wait until durable (for synchronous callers)."""
        self.append(entry).result(timeout)

    # -- writer thread -------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._closed:
                    self._cv.wait()
                batch, self._pending = self._pending, []
                closing = self._closed
            if batch:
                self._commit(batch)
            if closing and not batch:
                return

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            data = b"".join(p.line for p in batch)
            if self._size and self._size + len(data) > self.max_bytes:
                self._rotate()
            self._fh.write(data)
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._size += len(data)
            self.commits += 1
            self.lines += len(batch)
        except OSError as exc:
            error = RequestLogError(f"cannot write request log {self._path}: {exc}")
            for p in batch:
                p.done.set_exception(error)
            return
        for p in batch:
            p.done.set_result(None)

    def _rotate(self) -> None:
        self._fh.close()
        self._rotations += 1
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.directory / f"requests-{stamp}-{os.getpid()}-{self._rotations:06d}.jsonl"
        os.replace(self._path, target)
        self._fh = self._path.open("ab")
        fsync_dir(self.directory)
        self._size = 0

    def close(self) -> None:
        """Flush everything queued, then close the file."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=30)
        self._fh.close()
        self._lock.close()


def log_files(directory: str | Path) -> list[Path]:
    """The log's files, oldest first (rotated files by name, the active file last)."""
    root = Path(directory)
    files = sorted(root.glob(_ROTATED_GLOB), key=lambda p: p.name)
    if (root / ACTIVE).is_file():
        files.append(root / ACTIVE)
    return files


def open_server_log(root: str | Path, name: str, *, max_bytes: int) -> RequestLog:
    """The log of one server under ``root``: ``root/<name>``, or ``root/<name>-<pid>`` when
    another live server already writes there."""
    try:
        return RequestLog(Path(root) / name, max_bytes=max_bytes)
    except RequestLogError:
        return RequestLog(Path(root) / f"{name}-{os.getpid()}", max_bytes=max_bytes)


def read_request_logs(root: str | Path) -> Iterator[dict[str, Any]]:
    """Every entry of every server log under ``root`` (each server's entries in order)."""
    base = Path(root)
    if (base / ACTIVE).is_file() or any(base.glob(_ROTATED_GLOB)):
        yield from read_request_log(base)
    for sub in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
        yield from read_request_log(sub)


def read_request_log(directory: str | Path) -> Iterator[dict[str, Any]]:
    """Every complete entry of the log in ``directory``, oldest first.

    A torn last line (a crash while writing, never acknowledged to a client) is skipped.
    """
    for path in log_files(directory):
        with path.open("rb") as fh:
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break
                yield json.loads(raw)
