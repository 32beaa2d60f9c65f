"""A bounded, columnar ring of per-request records (what the canary analysis reads)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

ARMS: tuple[str, ...] = ("stable", "candidate", "shadow")
_ARM_CODE = {name: i for i, name in enumerate(ARMS)}
COLUMNS: tuple[str, ...] = ("t", "ok", "status", "latency_ms", "quality")


class StatsRing:
    """The last ``capacity`` request records, oldest overwritten first.

    ``total`` is the global sequence number: records ever added (a record's sequence number
    is its position in that count). Columns are preallocated numpy arrays; a null quality is
    stored as NaN.
    """

    def __init__(self, capacity: int = 200_000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.total = 0
        self._t = np.zeros(capacity, dtype=np.float64)
        self._arm = np.zeros(capacity, dtype=np.int8)
        self._ok = np.zeros(capacity, dtype=np.bool_)
        self._status = np.zeros(capacity, dtype=np.int16)
        self._latency = np.zeros(capacity, dtype=np.float64)
        self._quality = np.zeros(capacity, dtype=np.float64)

    def add(
        self,
        t: float,
        arm: str,
        *,
        ok: bool,
        status: int,
        latency_ms: float,
        quality: float | None,
    ) -> int:
        """Record one request; returns its sequence number."""
        i = self.total % self.capacity
        self._t[i] = t
        self._arm[i] = _ARM_CODE[arm]
        self._ok[i] = ok
        self._status[i] = status
        self._latency[i] = latency_ms
        self._quality[i] = math.nan if quality is None else quality
        seq = self.total
        self.total += 1
        return seq

    def __len__(self) -> int:
        return min(self.total, self.capacity)

    def _order(self) -> np.ndarray:
        """Ring positions of the retained records, oldest first."""
        n = len(self)
        if self.total <= self.capacity:
            return np.arange(n)
        start = self.total % self.capacity
        return np.concatenate([np.arange(start, self.capacity), np.arange(0, start)])

    def query(self, since: float = 0.0, arms: Iterable[str] = ARMS) -> dict[str, dict[str, Any]]:
        """Columns (numpy arrays, oldest first) per arm of the records with ``t >= since``."""
        order = self._order()
        keep = order[self._t[order] >= since]
        codes = self._arm[keep]
        out: dict[str, dict[str, Any]] = {}
        for arm in arms:
            idx = keep[codes == _ARM_CODE[arm]]
            out[arm] = {
                "t": self._t[idx],
                "ok": self._ok[idx],
                "status": self._status[idx],
                "latency_ms": self._latency[idx],
                "quality": self._quality[idx],
            }
        return out


def columns_to_json(columns: dict[str, Any]) -> dict[str, list[Any]]:
    """One arm's columns as JSON lists (NaN quality as null)."""
    quality = columns["quality"]
    return {
        "t": columns["t"].tolist(),
        "ok": columns["ok"].tolist(),
        "status": columns["status"].tolist(),
        "latency_ms": columns["latency_ms"].tolist(),
        "quality": [None if math.isnan(q) else q for q in quality.tolist()],
    }
