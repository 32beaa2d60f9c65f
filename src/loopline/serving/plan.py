"""The serving plan as a server sees it: loaded from its file, reloaded when it changes.

The model server and the router hold one :class:`PlanWatcher` each. ``current()`` is called
per request; it looks at the file's modification time at most every ``check_s`` seconds and
re-reads it only when it changed, so a request costs a clock read. The plan is written by
``loopline experiment`` with an atomic rename, so a reader sees the old or the new plan,
never half of one; a plan that does not parse (written by a newer Loopline, edited by hand)
keeps the last good one in force and is reported once in the log.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from pydantic import ValidationError

from loopline.experiments.runtime import ServingPlan

log = logging.getLogger("loopline.serving.plan")
EMPTY = ServingPlan()


class PlanWatcher:
    """The plan in ``path`` (an empty plan while the file does not exist)."""

    def __init__(self, path: str | Path | None, check_s: float = 1.0) -> None:
        self.path = Path(path) if path is not None else None
        self.check_s = check_s
        self._plan = EMPTY
        self._stamp: tuple[int, int] | None = None
        self._checked = -float("inf")
        self._lock = threading.Lock()
        self.errors = 0
        self.refresh()

    def refresh(self) -> ServingPlan:
        """Re-read the file now if it changed."""
        with self._lock:
            self._checked = time.monotonic()
            if self.path is None:
                return self._plan
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                self._plan, self._stamp = EMPTY, None
                return self._plan
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp == self._stamp:
                return self._plan
            try:
                plan = ServingPlan.model_validate(json.loads(self.path.read_bytes()))
            except (OSError, ValueError, ValidationError) as exc:
                if stamp != self._stamp:
                    self.errors += 1
                    log.error(
                        "serving plan %s is unreadable, keeping the last one: %s", self.path, exc
                    )
                self._stamp = stamp
                return self._plan
            self._plan, self._stamp = plan, stamp
            return plan

    def current(self) -> ServingPlan:
        if time.monotonic() - self._checked >= self.check_s:
            return self.refresh()
        return self._plan
