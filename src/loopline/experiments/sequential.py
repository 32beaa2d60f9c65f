"""Sequential testing with always-valid inference: the mixture SPRT (mSPRT).

Method
------
Let Δ̂_n be the estimated difference (treatment − control) after n units, with estimated
variance V_n (Welch: V = s²_T/n_T + s²_C/n_C, for binary metrics too: s² is the sample
variance of the 0/1 values, p(1−p)·n/(n−1), so an arm contributes p(1−p)/(n−1); ratio
metrics: delta method). Asymptotically Δ̂_n ~ N(Δ, V_n). Mixing the likelihood ratio of
N(Δ, V) against N(0, V) over a normal prior Δ ~ N(0, τ²) gives (Johari, Koomen, Pekelis &
Walsh, "Peeking at A/B tests", KDD 2017; Robbins 1970)

    Λ_n = √(V_n / (V_n + τ²)) · exp( τ² Δ̂_n² / (2 V_n (V_n + τ²)) ).

Under H₀ (Δ = 0) Λ_n is a nonnegative martingale with mean 1, so by Ville's inequality
P(∃n: Λ_n ≥ 1/α) ≤ α. Hence

* the **always-valid p-value** p_n = min(1, min_{m ≤ n} 1/Λ_m) can be checked after every
  unit (continuous peeking) and stopping the first time p_n ≤ α keeps the false-positive
  rate ≤ α;
* inverting the test gives the **confidence sequence**
  Δ̂_n ± √( V_n (V_n + τ²)/τ² · (−2 log α + log((V_n + τ²)/V_n)) ),
  which covers Δ at all n simultaneously with probability ≥ 1 − α (and so at any
  data-dependent stopping time). The running intersection of the intervals is also valid.

This is the same boundary as the asymptotic Gaussian-mixture confidence sequence of
Waudby-Smith et al. ("Time-uniform central limit theory", 2023) with ρ² = τ²/σ². Validity
with *estimated* variances is asymptotic; monitoring therefore starts after
``min_units_per_variant`` units per arm.

Mixing parameter
----------------
τ is set on the scale of the per-unit standard deviation: τ² = φ² · σ̂², where
σ̂² = V_n / (1/n_T + 1/n_C) is the per-unit variance implied by V_n, so that
τ²/V_n = φ² · n_h with n_h = (1/n_T + 1/n_C)⁻¹. The width of the sequence relative to V_n
depends on u = τ²/V_n only through (1 + 1/u)(a + log(1 + u)), a = −2 log α, which is
minimal at the fixed point u* = a + log(1 + u*). :func:`mixing_sd_for_horizon` picks φ so
that u = u* at the planned sample size: φ = √(u*/n_h*) (= √(2u*/n*) for equal arms). The
sequence is then narrowest exactly where the experiment is planned to end, and still valid
before and after. A smaller φ tunes for smaller effects (narrower late, wider early).

Relative differences use the same construction on r̂ = m_T/m_C − 1 with its delta-method
variance and τ_r = τ/|m_C|.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from loopline.experiments._common import FloatArray, check_alpha
from loopline.experiments.metrics import ArmStats
from loopline.experiments.policy import SequentialConfig


def optimal_mixing_ratio(alpha: float) -> float:
    """u* solving u = −2 log α + log(1 + u): the τ²/V at which the boundary is narrowest."""
    check_alpha(alpha)
    a = -2.0 * math.log(alpha)
    u = a
    for _ in range(100):
        nxt = a + math.log1p(u)
        if abs(nxt - u) < 1e-14:
            break
        u = nxt
    return u


def mixing_sd_for_horizon(
    alpha: float, planned_units_per_variant: int, ratio: float = 1.0
) -> float:
    """φ (τ in per-unit standard deviations) tuning the confidence sequence to be narrowest
    at ``planned_units_per_variant`` control units and ``ratio`` times as many treatment
    units."""
    if planned_units_per_variant < 1 or ratio <= 0:
        raise ValueError("planned_units_per_variant and ratio must be positive")
    n_c = float(planned_units_per_variant)
    n_h = 1.0 / (1.0 / n_c + 1.0 / (ratio * n_c))
    return math.sqrt(optimal_mixing_ratio(alpha) / n_h)


def resolve_mixing_sd(config: SequentialConfig, alpha: float) -> float:
    """The configured φ, or the one tuned to the configured horizon."""
    if config.mixing_sd is not None:
        return config.mixing_sd
    return mixing_sd_for_horizon(alpha, config.planned_units_per_variant)


@dataclass(frozen=True)
class MsprtArrays:
    """Vectorised mSPRT quantities at one look each: log Λ, 1/Λ (not yet minimised over
    looks), and the confidence-sequence half-width."""

    log_lr: FloatArray
    p_value: FloatArray
    half_width: FloatArray


def msprt_arrays(
    difference: npt.ArrayLike, variance: npt.ArrayLike, tau2: npt.ArrayLike, alpha: float
) -> MsprtArrays:
    """log Λ, min(1, 1/Λ) and the half-width of the confidence sequence (module docstring),
    for arrays of estimates Δ̂, their variances V and mixing variances τ²."""
    check_alpha(alpha)
    d = np.asarray(difference, dtype=np.float64)
    v = np.asarray(variance, dtype=np.float64)
    t2 = np.asarray(tau2, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = v + t2
        log_lr = 0.5 * np.log(v / s) + t2 * d * d / (2.0 * v * s)
        p = np.minimum(1.0, np.exp(-log_lr))
        half = np.sqrt(v * s / t2 * (-2.0 * math.log(alpha) + np.log(s / v)))
    return MsprtArrays(log_lr, np.asarray(p, np.float64), np.asarray(half, np.float64))


def running_p_values(p_values: npt.ArrayLike) -> FloatArray:
    """Always-valid p-values along the last axis (looks): the running minimum of 1/Λ."""
    return np.asarray(np.minimum.accumulate(np.asarray(p_values, np.float64), axis=-1))


@dataclass(frozen=True)
class SequentialLook:
    """The state of an mSPRT after one look.

    ``p_value`` is the always-valid p-value (running minimum over looks); ``ci_low``/
    ``ci_high`` the running intersection of the confidence sequence for Δ, and
    ``relative_ci_low``/``relative_ci_high`` for Δ/m_C. ``monitoring`` is false before
    ``min_units_per_variant`` units per arm, when the look neither rejects nor narrows.
    """

    look: int
    alpha: float
    mixing_sd: float
    n_control: int
    n_treatment: int
    control_mean: float
    treatment_mean: float
    difference: float
    variance: float
    log_likelihood_ratio: float
    p_value: float
    ci_low: float
    ci_high: float
    relative_difference: float
    relative_ci_low: float
    relative_ci_high: float
    monitoring: bool

    @property
    def reject(self) -> bool:
        """H₀ (no difference) is rejected: safe to stop with a significant result."""
        return self.p_value <= self.alpha


def sequential_look(
    control: ArmStats,
    treatment: ArmStats,
    config: SequentialConfig,
    alpha: float = 0.05,
    previous: SequentialLook | None = None,
) -> SequentialLook:
    """Update an mSPRT with the cumulative statistics of both arms at a new look.

    V = s²_T/n_T + s²_C/n_C. For a ratio metric pass ``ArmStats(n, R̂, n·Var(R̂))`` so that
    s²/n is its delta-method variance. Pass the previous look to carry the running minimum
    p-value and the running intersection of the intervals.
    """
    check_alpha(alpha)
    phi = resolve_mixing_sd(config, alpha)
    n_c, n_t = control.n, treatment.n
    m_c, m_t = control.mean, treatment.mean
    diff = m_t - m_c
    var_c, var_t = control.var / n_c, treatment.var / n_t
    v = var_t + var_c
    n_h = 1.0 / (1.0 / n_c + 1.0 / n_t)
    tau2 = phi * phi * v * n_h
    monitoring = min(n_c, n_t) >= config.min_units_per_variant and v > 0
    look = 1 if previous is None else previous.look + 1
    rel = m_t / m_c - 1.0 if m_c != 0 else math.nan
    if monitoring:
        res = msprt_arrays(diff, v, tau2, alpha)
        log_lr, p_now, half = float(res.log_lr), float(res.p_value), float(res.half_width)
        if m_c != 0:
            v_rel = var_t / m_c**2 + m_t**2 * var_c / m_c**4
            r_half = float(msprt_arrays(rel, v_rel, tau2 / m_c**2, alpha).half_width)
            if not math.isfinite(r_half):
                # degenerate delta method (a constant zero treatment, e.g. every request
                # failed): the absolute sequence scaled by the control mean
                r_half = half / abs(m_c)
        else:
            r_half = math.inf
        lo, hi = diff - half, diff + half
        rlo, rhi = rel - r_half, rel + r_half
    else:
        log_lr, p_now = 0.0, 1.0
        lo, hi, rlo, rhi = -math.inf, math.inf, -math.inf, math.inf
    if previous is not None:
        p_now = min(p_now, previous.p_value)
        lo, hi = max(lo, previous.ci_low), min(hi, previous.ci_high)
        rlo, rhi = max(rlo, previous.relative_ci_low), min(rhi, previous.relative_ci_high)
    return SequentialLook(
        look=look,
        alpha=alpha,
        mixing_sd=phi,
        n_control=n_c,
        n_treatment=n_t,
        control_mean=m_c,
        treatment_mean=m_t,
        difference=diff,
        variance=v,
        log_likelihood_ratio=log_lr,
        p_value=p_now,
        ci_low=lo,
        ci_high=hi,
        relative_difference=rel,
        relative_ci_low=rlo,
        relative_ci_high=rhi,
        monitoring=monitoring,
    )


@dataclass(frozen=True)
class SequentialPath:
    """Vectorised mSPRT over looks (last axis) for many experiments (leading axes).

    ``p_value`` is the always-valid p-value (running minimum), ``rejected`` whether it has
    reached α by each look; ``half_width`` the per-look confidence-sequence half-width for
    the difference, ``relative_half_width`` for the relative difference.
    """

    alpha: float
    mixing_sd: float
    difference: FloatArray
    variance: FloatArray
    p_value: FloatArray
    half_width: FloatArray
    relative_difference: FloatArray
    relative_half_width: FloatArray

    @property
    def rejected(self) -> npt.NDArray[np.bool_]:
        return np.asarray(self.p_value <= self.alpha)


def sequential_path(
    *,
    mean_c: npt.ArrayLike,
    var_c: npt.ArrayLike,
    n_c: npt.ArrayLike,
    mean_t: npt.ArrayLike,
    var_t: npt.ArrayLike,
    n_t: npt.ArrayLike,
    alpha: float,
    mixing_sd: float,
    min_units_per_variant: int = 100,
) -> SequentialPath:
    """mSPRT for arrays of cumulative per-arm statistics shaped (..., looks); looks with
    fewer than ``min_units_per_variant`` units in an arm do not reject."""
    mc, vc, nc = (np.asarray(a, np.float64) for a in (mean_c, var_c, n_c))
    mt, vt, nt = (np.asarray(a, np.float64) for a in (mean_t, var_t, n_t))
    diff = mt - mc
    v = vt / nt + vc / nc
    n_h = 1.0 / (1.0 / nc + 1.0 / nt)
    tau2 = mixing_sd**2 * v * n_h
    res = msprt_arrays(diff, v, tau2, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = mt / mc - 1.0
        v_rel = vt / nt / mc**2 + mt**2 * (vc / nc) / mc**4
        rel_half = msprt_arrays(rel, v_rel, tau2 / mc**2, alpha).half_width
        # degenerate delta method (constant zero treatment): absolute sequence / |control|
        rel_half = np.where(np.isfinite(rel_half), rel_half, res.half_width / np.abs(mc))
    active = (np.minimum(nc, nt) >= min_units_per_variant) & (v > 0)
    p = np.where(active, res.p_value, 1.0)
    half = np.where(active, res.half_width, np.inf)
    rel_half = np.where(active & (mc != 0), rel_half, np.inf)
    return SequentialPath(
        alpha, mixing_sd, diff, np.asarray(v), running_p_values(p), half, rel, rel_half
    )
