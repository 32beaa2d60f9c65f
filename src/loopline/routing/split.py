"""Deterministic traffic splitting: smooth weighted round robin and sticky hashing.

Pure and independent of HTTP. :class:`SmoothWRR` is nginx's smooth weighted round robin:
every pick adds each arm's weight to its running score, takes the arm with the highest score
and subtracts the total weight from it. After one period (the sum of the weights) every score
is back to zero, so the sequence is periodic and every window of one period holds exactly
``weight`` picks of each arm; picks of an arm are spread evenly rather than bunched.

Percentages are turned into integer weights on a scale of 10,000 (0.01 pp resolution) and
reduced by their greatest common divisor, so 25 % becomes ``(3, 1)`` with a period of 4.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

SCALE = 10_000
"""Integer weight units per 100 %: percentages resolve to 0.01 pp."""


class SmoothWRR:
    """Smooth weighted round robin over non-negative integer weights (not all zero)."""

    __slots__ = ("_current", "_total", "_weights")

    def __init__(self, weights: Sequence[int]) -> None:
        if not weights:
            raise ValueError("weights must not be empty")
        for w in weights:
            if isinstance(w, bool) or not isinstance(w, int) or w < 0:
                raise ValueError(f"weights must be non-negative integers, got {w!r}")
        total = sum(weights)
        if total == 0:
            raise ValueError("at least one weight must be positive")
        self._weights = tuple(weights)
        self._total = total
        self._current = [0] * len(weights)

    @property
    def weights(self) -> tuple[int, ...]:
        return self._weights

    @property
    def period(self) -> int:
        """Picks after which the sequence repeats (the sum of the weights)."""
        return self._total

    def next(self) -> int:
        """The index of the next arm."""
        current = self._current
        best = 0
        best_score = -math.inf
        for i, w in enumerate(self._weights):
            score = current[i] + w
            current[i] = score
            if score > best_score:
                best, best_score = i, score
        current[best] -= self._total
        return best


def smooth_wrr_sequence(weights: Sequence[int], n: int) -> list[int]:
    """The first ``n`` picks of a fresh :class:`SmoothWRR` over ``weights``."""
    wrr = SmoothWRR(weights)
    return [wrr.next() for _ in range(n)]


def percent_weights(percent: float) -> tuple[int, int]:
    """Reduced integer weights ``(rest, share)`` for a share of ``percent`` in [0, 100]."""
    if not math.isfinite(percent) or not 0.0 <= percent <= 100.0:
        raise ValueError(f"percent must be within [0, 100], got {percent!r}")
    share = round(percent * SCALE / 100.0)
    rest = SCALE - share
    g = math.gcd(rest, share)
    return rest // g, share // g


class PercentSplitter:
    """Yes/no picks where exactly ``percent`` % of every period are yes (smooth WRR)."""

    __slots__ = ("_always", "_never", "_wrr", "percent")

    def __init__(self, percent: float) -> None:
        rest, share = percent_weights(percent)
        self.percent = percent
        self._never = share == 0
        self._always = rest == 0
        self._wrr = SmoothWRR((rest, share))

    def next(self) -> bool:
        """Whether the next request takes the share."""
        if self._never:
            return False
        if self._always:
            return True
        return self._wrr.next() == 1


def sticky_bucket(key: str) -> int:
    """A stable bucket in ``[0, SCALE)`` for ``key`` (BLAKE2b, identical across processes)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % SCALE


def sticky_choice(key: str, percent: float) -> bool:
    """Whether ``key`` falls in the ``percent`` % share; raising the share keeps every key
    that was already in it."""
    return sticky_bucket(key) < round(percent * SCALE / 100.0)
