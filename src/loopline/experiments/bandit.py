"""Thompson sampling over prompt (or model) variants with Bernoulli rewards.

Each arm i keeps a Beta(α_i, β_i) posterior of its success rate (prior Beta(α₀, β₀), then
α += successes, β += failures). Thompson sampling serves the next unit with the arm whose
posterior draw θ̃_i ~ Beta(α_i, β_i) is largest, so each arm is served with probability
equal to its posterior probability of being best: exploration fades automatically as the
posteriors concentrate, and regret grows logarithmically in the number of units (Agrawal &
Goyal, 2012).

A bandit *optimises* reward during the test; it does not give unbiased effect estimates
or error-rate guarantees (allocation depends on outcomes). Use it to pick among prompt
variants, and a fixed-allocation experiment to *measure* an effect.

:class:`BetaBernoulliBandit` is immutable: updates return a new state.
:func:`thompson_choose` draws for many independent bandits at once (simulation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from loopline.experiments._common import FloatArray, IntArray


@dataclass(frozen=True)
class BetaBernoulliBandit:
    """Arm names with their Beta posterior parameters."""

    arms: tuple[str, ...]
    alpha: tuple[float, ...]
    beta: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.arms) < 2 or len(set(self.arms)) != len(self.arms):
            raise ValueError(f"need at least two distinct arms, got {self.arms}")
        if not len(self.alpha) == len(self.beta) == len(self.arms):
            raise ValueError("need one alpha and one beta per arm")
        if min(self.alpha) <= 0 or min(self.beta) <= 0:
            raise ValueError("Beta parameters must be positive")

    @classmethod
    def new(
        cls, arms: Sequence[str], prior: tuple[float, float] = (1.0, 1.0)
    ) -> BetaBernoulliBandit:
        k = len(arms)
        return cls(tuple(arms), (prior[0],) * k, (prior[1],) * k)

    def _index(self, arm: str) -> int:
        try:
            return self.arms.index(arm)
        except ValueError:
            raise KeyError(f"unknown arm {arm!r}; arms are {self.arms}") from None

    def update(self, arm: str, successes: int = 0, failures: int = 0) -> BetaBernoulliBandit:
        """The posterior after observing ``successes`` and ``failures`` on ``arm``."""
        if successes < 0 or failures < 0:
            raise ValueError("counts must be non-negative")
        i = self._index(arm)
        alpha, beta = list(self.alpha), list(self.beta)
        alpha[i] += successes
        beta[i] += failures
        return BetaBernoulliBandit(self.arms, tuple(alpha), tuple(beta))

    def choose(self, rng: np.random.Generator) -> str:
        """One Thompson draw: the arm to serve next."""
        return self.arms[int(np.argmax(rng.beta(self.alpha, self.beta)))]

    def allocation(
        self, draws: int = 20_000, seed: int = 0, floor: float = 0.0
    ) -> Mapping[str, float]:
        """Traffic shares for the next period: each arm's posterior probability of being
        best (seeded Monte Carlo), optionally mixed with a uniform ``floor`` share per arm
        so that no arm starves (shares still sum to 1)."""
        k = len(self.arms)
        if not 0.0 <= floor * k <= 1.0:
            raise ValueError(f"floor {floor} too large for {k} arms")
        rng = np.random.default_rng(seed)
        samples = rng.beta(self.alpha, self.beta, size=(draws, k))
        prob = np.bincount(np.argmax(samples, axis=1), minlength=k) / draws
        shares = floor + (1.0 - floor * k) * prob
        return {a: float(s) for a, s in zip(self.arms, shares, strict=True)}

    @property
    def means(self) -> Mapping[str, float]:
        return {
            a: al / (al + be) for a, al, be in zip(self.arms, self.alpha, self.beta, strict=True)
        }


def thompson_choose(
    alpha: npt.ArrayLike, beta: npt.ArrayLike, rng: np.random.Generator
) -> IntArray:
    """Thompson choice for many bandits at once: ``alpha``/``beta`` shaped (bandits, arms)."""
    a = np.asarray(alpha, dtype=np.float64)
    b = np.asarray(beta, dtype=np.float64)
    draws: FloatArray = rng.beta(a, b)
    return np.asarray(np.argmax(draws, axis=-1), dtype=np.int64)
