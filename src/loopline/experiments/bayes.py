"""Bayesian summaries of an experiment: chance to beat control and expected loss.

Models
------
* **Binary metrics (Beta–Binomial)**: with a Beta(a, b) prior, an arm with x successes in
  n units has posterior θ ~ Beta(a + x, b + n − x).
* **Continuous and ratio metrics (normal approximation)**: with a flat prior and the CLT, an
  arm's mean has posterior μ ~ N(m, V), V = s²/n (or the delta-method variance of a ratio).

Quantities (for "better" meaning higher, or lower when ``higher_is_better`` is false)
------------------------------------------------------------------------------------
* **Chance to beat control** P(θ_T better than θ_C). Beta: the one-dimensional integral
  ∫ f_T(x) F_C(x) dx by adaptive quadrature over the central 1 − 10⁻¹² of θ_T. Normal:
  Φ(d/s) with d the direction-aware difference of means and s² = V_T + V_C.
* **Expected loss** of shipping T instead of C: E[max(θ_C − θ_T, 0)] (direction-aware), the
  expected amount of metric given up if T is in fact worse. Beta: the identity
  E[(C − T)⁺] = ∫ F_T(x)(1 − F_C(x)) dx (for independent C, T), by quadrature. Normal:
  s·φ(d/s) − d·Φ(−d/s).
* **Chance to be best** and **expected loss versus the best arm**
  E[max_j θ_j − θ_i] across all arms: seeded Monte Carlo over ``draws`` joint posterior
  draws (standard error ≤ 0.5/√draws for probabilities).

Credible intervals are equal-tailed posterior quantiles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import integrate, special
from scipy import stats as sps

from loopline.experiments._common import FloatArray, check_alpha, two_sided_z_critical

_TAIL = 1e-12


@dataclass(frozen=True)
class VariantPosterior:
    """One arm's posterior summary. For the control arm ``prob_beat_control`` is 0.5 and
    ``expected_loss_vs_control`` 0."""

    variant: str
    mean: float
    credible_low: float
    credible_high: float
    prob_beat_control: float
    expected_loss_vs_control: float
    prob_best: float
    expected_loss: float


@dataclass(frozen=True)
class BayesianResult:
    """Posterior summaries of every arm (control first)."""

    model: Literal["beta_binomial", "normal"]
    control: str
    higher_is_better: bool
    credibility: float
    draws: int
    seed: int
    variants: tuple[VariantPosterior, ...]

    def variant(self, name: str) -> VariantPosterior:
        for v in self.variants:
            if v.variant == name:
                return v
        raise KeyError(name)


def beta_prob_greater(a_t: float, b_t: float, a_c: float, b_c: float) -> float:
    """P(θ_T > θ_C) for independent θ_T ~ Beta(a_t, b_t), θ_C ~ Beta(a_c, b_c)."""
    lo = float(special.betaincinv(a_t, b_t, _TAIL))
    hi = float(special.betaincinv(a_t, b_t, 1.0 - _TAIL))
    mid = a_t / (a_t + b_t)

    def integrand(x: float) -> float:
        return float(sps.beta.pdf(x, a_t, b_t) * special.betainc(a_c, b_c, x))

    value, _ = integrate.quad(
        integrand, lo, hi, points=[mid], limit=200, epsabs=1e-13, epsrel=1e-11
    )
    return min(1.0, max(0.0, value))


def beta_expected_shortfall(a_t: float, b_t: float, a_c: float, b_c: float) -> float:
    """E[max(θ_C − θ_T, 0)] = ∫ F_T(x)·(1 − F_C(x)) dx for independent Beta posteriors."""
    lo = float(special.betaincinv(a_t, b_t, _TAIL))
    hi = float(special.betaincinv(a_c, b_c, 1.0 - _TAIL))
    if hi <= lo:
        return 0.0
    inside = [p for p in (a_t / (a_t + b_t), a_c / (a_c + b_c)) if lo < p < hi]

    def integrand(x: float) -> float:
        return float(special.betainc(a_t, b_t, x) * special.betaincc(a_c, b_c, x))

    value, _ = integrate.quad(
        integrand, lo, hi, points=inside or None, limit=200, epsabs=1e-14, epsrel=1e-10
    )
    return max(0.0, value)


def _best_by_simulation(samples: FloatArray) -> tuple[FloatArray, FloatArray]:
    """P(best) and E[max − θ_i] from draws shaped (draws, arms), higher is better."""
    best = np.argmax(samples, axis=1)
    prob = np.bincount(best, minlength=samples.shape[1]) / samples.shape[0]
    loss = (samples.max(axis=1, keepdims=True) - samples).mean(axis=0)
    return np.asarray(prob, np.float64), np.asarray(loss, np.float64)


def beta_binomial(
    successes: Sequence[int],
    trials: Sequence[int],
    names: Sequence[str],
    *,
    control: int = 0,
    prior: tuple[float, float] = (1.0, 1.0),
    higher_is_better: bool = True,
    credibility: float = 0.95,
    draws: int = 100_000,
    seed: int = 0,
) -> BayesianResult:
    """Beta–Binomial posteriors of binary metrics for every arm (index ``control`` is the
    baseline); see the module docstring for the quantities."""
    check_alpha(credibility, "credibility")
    x = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    if x.shape != n.shape or x.shape != (len(names),) or len(names) < 2:
        raise ValueError("need one success count and one trial count per arm (>= 2 arms)")
    if np.any(x < 0) or np.any(x > n):
        raise ValueError("successes must lie in [0, trials]")
    if prior[0] <= 0 or prior[1] <= 0:
        raise ValueError("Beta prior parameters must be positive")
    a, b = prior[0] + x, prior[1] + n - x
    tail = (1.0 - credibility) / 2.0
    lows = special.betaincinv(a, b, tail)
    highs = special.betaincinv(a, b, 1.0 - tail)
    rng = np.random.default_rng(seed)
    samples = rng.beta(a, b, size=(draws, a.size))
    prob_best, loss = _best_by_simulation(samples if higher_is_better else -samples)
    out = []
    for i, name in enumerate(names):
        if i == control:
            beat, shortfall = 0.5, 0.0
        elif higher_is_better:
            beat = beta_prob_greater(a[i], b[i], a[control], b[control])
            shortfall = beta_expected_shortfall(a[i], b[i], a[control], b[control])
        else:
            beat = beta_prob_greater(a[control], b[control], a[i], b[i])
            shortfall = beta_expected_shortfall(a[control], b[control], a[i], b[i])
        out.append(
            VariantPosterior(
                name,
                float(a[i] / (a[i] + b[i])),
                float(lows[i]),
                float(highs[i]),
                beat,
                shortfall,
                float(prob_best[i]),
                float(loss[i]),
            )
        )
    return BayesianResult(
        "beta_binomial", names[control], higher_is_better, credibility, draws, seed, tuple(out)
    )


def normal_posterior(
    means: Sequence[float],
    variances_of_mean: Sequence[float],
    names: Sequence[str],
    *,
    control: int = 0,
    higher_is_better: bool = True,
    credibility: float = 0.95,
    draws: int = 100_000,
    seed: int = 0,
) -> BayesianResult:
    """Normal-approximation posteriors μ_i ~ N(m_i, V_i) (flat prior) for continuous or ratio
    metrics; ``variances_of_mean`` are V_i = s²_i/n_i (or delta-method variances)."""
    check_alpha(credibility, "credibility")
    m = np.asarray(means, dtype=np.float64)
    v = np.asarray(variances_of_mean, dtype=np.float64)
    if m.shape != v.shape or m.shape != (len(names),) or len(names) < 2:
        raise ValueError("need one mean and one variance per arm (>= 2 arms)")
    if np.any(v < 0) or not np.all(np.isfinite(m)):
        raise ValueError("variances must be >= 0 and means finite")
    sd = np.sqrt(v)
    z = two_sided_z_critical(1.0 - credibility)
    sign = 1.0 if higher_is_better else -1.0
    rng = np.random.default_rng(seed)
    samples = m + sd * rng.standard_normal(size=(draws, m.size))
    prob_best, loss = _best_by_simulation(sign * samples)
    out = []
    for i, name in enumerate(names):
        if i == control:
            beat, shortfall = 0.5, 0.0
        else:
            d = sign * (m[i] - m[control])
            s = math.sqrt(v[i] + v[control])
            if s == 0.0:
                beat, shortfall = (1.0 if d > 0 else 0.0 if d < 0 else 0.5), max(-d, 0.0)
            else:
                beat = float(special.ndtr(d / s))
                shortfall = float(s * math.exp(-0.5 * (d / s) ** 2) / math.sqrt(2 * math.pi))
                shortfall -= float(d * special.ndtr(-d / s))
                shortfall = max(0.0, shortfall)
        out.append(
            VariantPosterior(
                name,
                float(m[i]),
                float(m[i] - z * sd[i]),
                float(m[i] + z * sd[i]),
                beat,
                shortfall,
                float(prob_best[i]),
                float(loss[i]),
            )
        )
    return BayesianResult(
        "normal", names[control], higher_is_better, credibility, draws, seed, tuple(out)
    )
