"""Frequentist tests for A/B comparisons, vectorised over many comparisons at once.

Every test compares a *treatment* arm with a *control* arm and reports the absolute
difference Δ = m_T − m_C and the relative difference Δ_rel = m_T / m_C − 1, each with a
two-sided (1 − α) confidence interval, plus a two-sided p-value for H₀: Δ = 0.

* **Welch t-test** (continuous metrics, unequal variances):
  SE² = s²_T/n_T + s²_C/n_C, t = Δ/SE, Welch–Satterthwaite
  ν = SE⁴ / [(s²_T/n_T)²/(n_T−1) + (s²_C/n_C)²/(n_C−1)], p = 2·F_ν(−|t|),
  CI Δ ± t_{ν,1−α/2}·SE. Assumes independent units and a mean that is approximately normal
  (CLT); heavy tails need more units (or :func:`bootstrap_difference`).
* **Two-proportion z-test** (binary metrics): the test statistic uses the pooled
  proportion p̄ = (x_T + x_C)/(n_T + n_C): z = Δ / √(p̄(1−p̄)(1/n_T + 1/n_C)); the interval
  for Δ is the unpooled Wald interval Δ ± z_{1−α/2}·√(p_T(1−p_T)/n_T + p_C(1−p_C)/n_C); the
  interval for the relative difference is the log (Katz) interval of the risk ratio,
  exp(log(p_T/p_C) ± z·√(1/x_T − 1/n_T + 1/x_C − 1/n_C)) − 1.
* **Relative difference for means and ratios**: delta method on g = m_T/m_C:
  Var ≈ Var(m_T)/m_C² + m_T²·Var(m_C)/m_C⁴ (normal quantiles).
* **Ratio metrics**: z-test on R_T − R_C with delta-method variances
  (:mod:`loopline.experiments.metrics`).
* **Mann–Whitney U** (skewed metrics; tests stochastic ordering, not means): normal
  approximation with tie and continuity corrections; reports P(T > C) + ½P(T = C).
* **Bootstrap** (assumptions in doubt): seeded percentile intervals from resamples drawn as
  index matrices, chunked to bound memory.
* **CUPED** (variance reduction with a pre-period covariate X): Y' = Y − θ(X − X̄) with
  θ = Σ_arms Σ(x−x̄_a)(y−ȳ_a) / Σ_arms Σ(x−x̄_a)², the pooled within-arm slope. The adjusted
  difference equals the treatment coefficient of the regression Y ~ 1 + T + X (ANCOVA); the
  variance shrinks by ≈ ρ², ρ the within-arm correlation of X and Y. X must not be affected
  by the treatment (measure it before exposure).
* **Sample-ratio mismatch**: Pearson χ² goodness of fit of the observed arm counts against
  the configured allocation; a p-value below a strict threshold (default 0.001) means the
  assignment or logging is broken and no effect estimate can be trusted.
* **Multiple comparisons**: Holm (family-wise error, step-down) and Benjamini–Hochberg
  (false discovery rate, step-up) adjusted p-values along the last axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import optimize, special
from scipy import stats as sps

from loopline.experiments._common import (
    BoolArray,
    FloatArray,
    as_float_array,
    check_alpha,
    two_sided_z_critical,
)
from loopline.experiments.metrics import ArmStats, RatioArmStats


def _f(x: npt.ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Comparison:
    """Treatment versus control on one metric (fields described in the module docstring).

    ``df`` is the Welch degrees of freedom (``inf`` for z-tests).
    """

    method: str
    alpha: float
    n_control: float
    n_treatment: float
    control_mean: float
    treatment_mean: float
    difference: float
    std_error: float
    ci_low: float
    ci_high: float
    relative_difference: float
    relative_ci_low: float
    relative_ci_high: float
    statistic: float
    p_value: float
    df: float

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha


@dataclass(frozen=True)
class ComparisonArrays:
    """:class:`Comparison` for many comparisons at once (fields are arrays that broadcast
    together); used by simulations and by the analysis of many metrics."""

    method: str
    alpha: float
    n_control: FloatArray
    n_treatment: FloatArray
    control_mean: FloatArray
    treatment_mean: FloatArray
    difference: FloatArray
    std_error: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    relative_difference: FloatArray
    relative_ci_low: FloatArray
    relative_ci_high: FloatArray
    statistic: FloatArray
    p_value: FloatArray
    df: FloatArray

    def at(self, index: int | tuple[int, ...] = ()) -> Comparison:
        """The scalar :class:`Comparison` at ``index`` (``()`` for 0-d results)."""
        shape = self.p_value.shape

        def get(values: FloatArray) -> float:
            return float(np.broadcast_to(values, shape)[index])

        return Comparison(
            method=self.method,
            alpha=self.alpha,
            n_control=get(self.n_control),
            n_treatment=get(self.n_treatment),
            control_mean=get(self.control_mean),
            treatment_mean=get(self.treatment_mean),
            difference=get(self.difference),
            std_error=get(self.std_error),
            ci_low=get(self.ci_low),
            ci_high=get(self.ci_high),
            relative_difference=get(self.relative_difference),
            relative_ci_low=get(self.relative_ci_low),
            relative_ci_high=get(self.relative_ci_high),
            statistic=get(self.statistic),
            p_value=get(self.p_value),
            df=get(self.df),
        )


def _relative_delta(
    mean_t: FloatArray, var_mean_t: FloatArray, mean_c: FloatArray, var_mean_c: FloatArray, z: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = mean_t / mean_c - 1.0
        se = np.sqrt(var_mean_t / mean_c**2 + mean_t**2 * var_mean_c / mean_c**4)
    return rel, rel - z * se, rel + z * se


# --------------------------------------------------------------------------- Welch / z


def welch_arrays(
    *,
    mean_c: npt.ArrayLike,
    var_c: npt.ArrayLike,
    n_c: npt.ArrayLike,
    mean_t: npt.ArrayLike,
    var_t: npt.ArrayLike,
    n_t: npt.ArrayLike,
    alpha: float = 0.05,
) -> ComparisonArrays:
    """Welch's t-test from sufficient statistics (sample variances with ddof=1)."""
    check_alpha(alpha)
    mc, vc, nc, mt, vt, nt = map(_f, (mean_c, var_c, n_c, mean_t, var_t, n_t))
    with np.errstate(divide="ignore", invalid="ignore"):
        a, b = vt / nt, vc / nc
        se2 = a + b
        se = np.sqrt(se2)
        diff = mt - mc
        t = diff / se
        df = se2**2 / (a**2 / (nt - 1) + b**2 / (nc - 1))
        p = 2.0 * special.stdtr(df, -np.abs(t))
        q = special.stdtrit(df, 1.0 - alpha / 2.0)
    rel, rlo, rhi = _relative_delta(mt, a, mc, b, two_sided_z_critical(alpha))
    return ComparisonArrays(
        "welch_t",
        alpha,
        nc,
        nt,
        mc,
        mt,
        diff,
        se,
        diff - q * se,
        diff + q * se,
        rel,
        rlo,
        rhi,
        t,
        np.asarray(p, np.float64),
        np.asarray(df, np.float64),
    )


def z_arrays(
    *,
    mean_c: npt.ArrayLike,
    var_mean_c: npt.ArrayLike,
    n_c: npt.ArrayLike,
    mean_t: npt.ArrayLike,
    var_mean_t: npt.ArrayLike,
    n_t: npt.ArrayLike,
    alpha: float = 0.05,
    method: str = "z",
) -> ComparisonArrays:
    """Large-sample z-test of two independent estimates given the variances *of the
    estimates* (not per-unit variances); relative difference by the delta method."""
    check_alpha(alpha)
    mc, vmc, nc, mt, vmt, nt = map(_f, (mean_c, var_mean_c, n_c, mean_t, var_mean_t, n_t))
    z_crit = two_sided_z_critical(alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(vmt + vmc)
        diff = mt - mc
        z = diff / se
        p = 2.0 * special.ndtr(-np.abs(z))
    rel, rlo, rhi = _relative_delta(mt, vmt, mc, vmc, z_crit)
    inf = np.full_like(p, np.inf)
    return ComparisonArrays(
        method,
        alpha,
        nc,
        nt,
        mc,
        mt,
        diff,
        se,
        diff - z_crit * se,
        diff + z_crit * se,
        rel,
        rlo,
        rhi,
        z,
        p,
        inf,
    )


def welch_ttest(
    control: npt.ArrayLike | ArmStats, treatment: npt.ArrayLike | ArmStats, alpha: float = 0.05
) -> Comparison:
    """Welch's t-test of treatment against control (raw per-unit values or
    :class:`ArmStats`)."""
    c = control if isinstance(control, ArmStats) else ArmStats.from_values(control)
    t = treatment if isinstance(treatment, ArmStats) else ArmStats.from_values(treatment)
    return welch_arrays(
        mean_c=c.mean, var_c=c.var, n_c=c.n, mean_t=t.mean, var_t=t.var, n_t=t.n, alpha=alpha
    ).at()


def two_proportion_arrays(
    successes_c: npt.ArrayLike,
    n_c: npt.ArrayLike,
    successes_t: npt.ArrayLike,
    n_t: npt.ArrayLike,
    alpha: float = 0.05,
) -> ComparisonArrays:
    """Two-proportion z-test (pooled statistic, Wald and log-ratio intervals), vectorised."""
    check_alpha(alpha)
    xc, nc, xt, nt = map(_f, (successes_c, n_c, successes_t, n_t))
    z_crit = two_sided_z_critical(alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        pc, pt = xc / nc, xt / nt
        pooled = (xc + xt) / (nc + nt)
        diff = pt - pc
        z = diff / np.sqrt(pooled * (1 - pooled) * (1 / nc + 1 / nt))
        p = 2.0 * special.ndtr(-np.abs(z))
        se = np.sqrt(pt * (1 - pt) / nt + pc * (1 - pc) / nc)
        log_rr = np.log(pt / pc)
        se_log = np.sqrt(1 / xt - 1 / nt + 1 / xc - 1 / nc)
        rel = pt / pc - 1.0
        rlo = np.exp(log_rr - z_crit * se_log) - 1.0
        rhi = np.exp(log_rr + z_crit * se_log) - 1.0
    inf = np.full_like(p, np.inf)
    return ComparisonArrays(
        "two_proportion_z",
        alpha,
        nc,
        nt,
        pc,
        pt,
        diff,
        se,
        diff - z_crit * se,
        diff + z_crit * se,
        rel,
        rlo,
        rhi,
        z,
        p,
        inf,
    )


def two_proportion_ztest(
    successes_control: int,
    n_control: int,
    successes_treatment: int,
    n_treatment: int,
    alpha: float = 0.05,
) -> Comparison:
    """Two-proportion z-test of treatment against control from counts."""
    for x, n in ((successes_control, n_control), (successes_treatment, n_treatment)):
        if n < 1 or not 0 <= x <= n:
            raise ValueError(f"need 0 <= successes <= n and n >= 1, got {x}/{n}")
    return two_proportion_arrays(
        successes_control, n_control, successes_treatment, n_treatment, alpha
    ).at()


def ratio_test(control: RatioArmStats, treatment: RatioArmStats, alpha: float = 0.05) -> Comparison:
    """z-test of a ratio metric (Σnum/Σden per arm) with delta-method variances."""
    return z_arrays(
        mean_c=control.ratio,
        var_mean_c=control.var_ratio,
        n_c=control.n,
        mean_t=treatment.ratio,
        var_mean_t=treatment.var_ratio,
        n_t=treatment.n,
        alpha=alpha,
        method="ratio_delta_z",
    ).at()


# --------------------------------------------------------------------------- Mann–Whitney


@dataclass(frozen=True)
class RankTestResult:
    """Mann–Whitney U of the treatment sample; ``prob_superiority`` = U/(n_T n_C)
    = P(T > C) + ½P(T = C) (0.5 under H₀)."""

    u_statistic: float
    z: float
    p_value: float
    prob_superiority: float
    n_control: int
    n_treatment: int


def mann_whitney(control: npt.ArrayLike, treatment: npt.ArrayLike) -> RankTestResult:
    """Two-sided Mann–Whitney U test, normal approximation with tie correction
    σ² = n_T n_C/12 · [(n+1) − Σ(t³−t)/(n(n−1))] and continuity correction ½."""
    c = as_float_array(control, "control")
    t = as_float_array(treatment, "treatment")
    n_c, n_t = c.size, t.size
    if n_c < 1 or n_t < 1:
        raise ValueError("both samples need at least one value")
    both = np.concatenate([t, c])
    ranks = sps.rankdata(both)
    u_t = float(ranks[:n_t].sum() - n_t * (n_t + 1) / 2.0)
    n = n_t + n_c
    _, ties = np.unique(both, return_counts=True)
    tie_term = float(np.sum(ties.astype(np.float64) ** 3 - ties))
    mu = n_t * n_c / 2.0
    sigma = math.sqrt(n_t * n_c / 12.0 * ((n + 1) - tie_term / (n * (n - 1)))) if n > 1 else 0.0
    u_max = max(u_t, n_t * n_c - u_t)
    if sigma == 0.0:
        z, p = 0.0, 1.0
    else:
        z = (u_max - mu - 0.5) / sigma
        p = min(1.0, max(0.0, 2.0 * float(special.ndtr(-z))))
    signed_z = z if u_t >= mu else -z
    return RankTestResult(u_t, signed_z, p, u_t / (n_t * n_c), n_c, n_t)


# --------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class BootstrapResult:
    """Percentile bootstrap of statistic(T) − statistic(C) and statistic(T)/statistic(C) − 1.

    ``p_value`` is the two-sided bootstrap approximation 2·min(P*(Δ* ≤ 0), P*(Δ* ≥ 0)).
    """

    statistic: str
    alpha: float
    n_resamples: int
    seed: int
    difference: float
    ci_low: float
    ci_high: float
    relative_difference: float
    relative_ci_low: float
    relative_ci_high: float
    p_value: float


BootstrapStatistic = Literal["mean", "median"] | float


def _stat_fn(statistic: BootstrapStatistic) -> tuple[str, float | None]:
    if statistic == "mean":
        return "mean", None
    if statistic == "median":
        return "median", 0.5
    q = float(statistic)
    if not 0.0 < q < 1.0:
        raise ValueError(f"a quantile statistic must lie in (0, 1), got {statistic}")
    return f"q{q:g}", q


def _apply(sample: FloatArray, q: float | None) -> FloatArray:
    """The mean (``q`` None) or the ``q`` quantile along the last axis."""
    if q is None:
        return np.asarray(sample.mean(axis=-1), dtype=np.float64)
    return np.asarray(np.quantile(sample, q, axis=-1), dtype=np.float64)


def _resampled(
    x: FloatArray, q: float | None, n_resamples: int, rng: np.random.Generator
) -> FloatArray:
    out = np.empty(n_resamples, dtype=np.float64)
    chunk = max(1, (1 << 22) // x.size)
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        out[start:stop] = _apply(x[idx], q)
    return out


def bootstrap_difference(
    control: npt.ArrayLike,
    treatment: npt.ArrayLike,
    *,
    statistic: BootstrapStatistic = "mean",
    n_resamples: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> BootstrapResult:
    """Seeded percentile bootstrap for a difference of means, medians or quantiles.

    Each arm is resampled with replacement independently (stratified by arm, as the arms are
    independent samples); ``n_resamples`` statistics per arm are computed from index matrices
    in chunks of at most 2²² draws. The interval is the (α/2, 1−α/2) percentile interval;
    its coverage is close to nominal for smooth statistics and moderate n, and it needs no
    normality assumption.
    """
    check_alpha(alpha)
    if n_resamples < 100:
        raise ValueError("use at least 100 bootstrap resamples")
    c = as_float_array(control, "control")
    t = as_float_array(treatment, "treatment")
    if c.size < 2 or t.size < 2:
        raise ValueError("each arm needs at least two values")
    name, q = _stat_fn(statistic)
    rng = np.random.default_rng(seed)
    sc = _resampled(c, q, n_resamples, rng)
    st = _resampled(t, q, n_resamples, rng)
    diffs = st - sc
    with np.errstate(divide="ignore", invalid="ignore"):
        rels = st / sc - 1.0
    est_c, est_t = float(_apply(c, q)), float(_apply(t, q))
    lo, hi = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    rlo, rhi = np.quantile(rels, [alpha / 2, 1 - alpha / 2])
    p = min(1.0, 2.0 * min(float(np.mean(diffs <= 0)), float(np.mean(diffs >= 0))))
    rel = est_t / est_c - 1.0 if est_c != 0 else math.nan
    return BootstrapResult(
        name,
        alpha,
        n_resamples,
        seed,
        est_t - est_c,
        float(lo),
        float(hi),
        rel,
        float(rlo),
        float(rhi),
        p,
    )


# --------------------------------------------------------------------------- CUPED


@dataclass(frozen=True)
class CupedResult:
    """CUPED-adjusted comparison. ``variance_reduction`` = 1 − SE²_adjusted / SE²_raw of the
    difference; ``correlation`` is the pooled within-arm correlation of covariate and
    metric (variance reduction ≈ correlation²)."""

    theta: float
    correlation: float
    variance_reduction: float
    adjusted: Comparison
    unadjusted: Comparison


def cuped_theta(
    y: npt.ArrayLike, x: npt.ArrayLike, codes: npt.ArrayLike, n_groups: int
) -> tuple[float, float]:
    """(θ, ρ): the pooled within-group slope of ``y`` on ``x`` and the pooled within-group
    correlation, for per-unit arrays and group codes in ``[0, n_groups)``."""
    yy, xx = _f(y), _f(x)
    g = np.asarray(codes, dtype=np.int64)
    n = np.bincount(g, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        my = np.bincount(g, weights=yy, minlength=n_groups) / n
        mx = np.bincount(g, weights=xx, minlength=n_groups) / n
    dy, dx = yy - my[g], xx - mx[g]
    sxx, syy, sxy = float(dx @ dx), float(dy @ dy), float(dx @ dy)
    if sxx <= 0.0:
        return 0.0, 0.0
    rho = sxy / math.sqrt(sxx * syy) if syy > 0 else 0.0
    return sxy / sxx, rho


def cuped_adjust(y: npt.ArrayLike, x: npt.ArrayLike, theta: float) -> FloatArray:
    """Y' = Y − θ(X − X̄): same mean as Y, smaller variance when X predicts Y."""
    xx = _f(x)
    return np.asarray(_f(y) - theta * (xx - xx.mean()), dtype=np.float64)


def cuped(
    control: npt.ArrayLike,
    control_covariate: npt.ArrayLike,
    treatment: npt.ArrayLike,
    treatment_covariate: npt.ArrayLike,
    alpha: float = 0.05,
) -> CupedResult:
    """CUPED: Welch test on Y' = Y − θ(X − X̄), θ the pooled within-arm slope."""
    yc, xc = as_float_array(control, "control"), as_float_array(control_covariate, "covariate")
    yt = as_float_array(treatment, "treatment")
    xt = as_float_array(treatment_covariate, "covariate")
    if yc.shape != xc.shape or yt.shape != xt.shape:
        raise ValueError("each arm needs one covariate value per unit")
    y, x = np.concatenate([yc, yt]), np.concatenate([xc, xt])
    codes = np.repeat(np.array([0, 1]), [yc.size, yt.size])
    theta, rho = cuped_theta(y, x, codes, 2)
    adj = cuped_adjust(y, x, theta)
    raw_cmp = welch_ttest(yc, yt, alpha)
    adj_cmp = welch_ttest(adj[: yc.size], adj[yc.size :], alpha)
    reduction = 1.0 - adj_cmp.std_error**2 / raw_cmp.std_error**2 if raw_cmp.std_error > 0 else 0.0
    return CupedResult(theta, rho, reduction, adj_cmp, raw_cmp)


# --------------------------------------------------------------------------- SRM


@dataclass(frozen=True)
class SrmResult:
    """Sample-ratio-mismatch check: Pearson χ² of observed arm counts against the expected
    allocation; ``mismatch`` when ``p_value < threshold``."""

    observed: tuple[int, ...]
    expected_share: tuple[float, ...]
    statistic: float
    df: int
    p_value: float
    threshold: float
    mismatch: bool

    @property
    def observed_share(self) -> tuple[float, ...]:
        total = sum(self.observed)
        return tuple(o / total for o in self.observed) if total else self.expected_share


def _shares(weights: Sequence[float]) -> FloatArray:
    w = as_float_array(weights, "weights")
    if w.size < 2 or np.any(w <= 0):
        raise ValueError("need at least two positive allocation weights")
    return np.asarray(w / w.sum(), dtype=np.float64)


def srm_check(
    counts: Sequence[int], weights: Sequence[float], threshold: float = 0.001
) -> SrmResult:
    """χ² = Σ (O_i − N w_i)² / (N w_i) on k − 1 degrees of freedom."""
    check_alpha(threshold, "threshold")
    w = _shares(weights)
    obs = np.asarray(counts, dtype=np.float64)
    if obs.shape != w.shape or np.any(obs < 0):
        raise ValueError("need one non-negative count per weight")
    total = obs.sum()
    if total == 0:
        return SrmResult(
            tuple(int(o) for o in obs), tuple(w.tolist()), 0.0, w.size - 1, 1.0, threshold, False
        )
    expected = total * w
    stat = float(np.sum((obs - expected) ** 2 / expected))
    p = float(special.chdtrc(w.size - 1, stat))
    return SrmResult(
        tuple(int(o) for o in obs), tuple(w.tolist()), stat, w.size - 1, p, threshold, p < threshold
    )


def srm_power(
    n_total: float,
    expected_weights: Sequence[float],
    actual_weights: Sequence[float],
    threshold: float = 0.001,
) -> float:
    """Probability that :func:`srm_check` flags a mismatch when units really split as
    ``actual_weights``: the χ² statistic is then ≈ noncentral χ²(k−1, λ) with
    λ = N Σ (a_i − w_i)²/w_i."""
    w, a = _shares(expected_weights), _shares(actual_weights)
    lam = n_total * float(np.sum((a - w) ** 2 / w))
    crit = float(special.chdtri(w.size - 1, threshold))
    return float(sps.ncx2.sf(crit, w.size - 1, lam))


def srm_sample_size(
    expected_weights: Sequence[float],
    actual_weights: Sequence[float],
    threshold: float = 0.001,
    power: float = 0.9,
) -> int:
    """Smallest total number of units at which a mismatch of ``actual_weights`` against
    ``expected_weights`` is detected with probability ≥ ``power``."""
    check_alpha(power, "power")
    w, a = _shares(expected_weights), _shares(actual_weights)
    if np.allclose(w, a):
        raise ValueError("actual and expected shares are equal: nothing to detect")

    def gap(n: float) -> float:
        return srm_power(n, w.tolist(), a.tolist(), threshold) - power

    hi = 10.0
    while gap(hi) < 0:
        hi *= 2.0
    n = optimize.brentq(gap, 1.0, hi, xtol=1e-6)
    return math.ceil(n)


# --------------------------------------------------------------------------- multiplicity


def holm_adjust(p_values: npt.ArrayLike) -> FloatArray:
    """Holm step-down adjusted p-values along the last axis:
    p̃_(i) = max_{j ≤ i} min(1, (m − j + 1) p_(j)) for sorted p_(1) ≤ … ≤ p_(m)."""
    p = _f(p_values)
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    ps = np.take_along_axis(p, order, axis=-1)
    adj_sorted = np.minimum(np.maximum.accumulate(ps * np.arange(m, 0, -1), axis=-1), 1.0)
    out = np.empty_like(p)
    np.put_along_axis(out, order, adj_sorted, axis=-1)
    return out


def bh_adjust(p_values: npt.ArrayLike) -> FloatArray:
    """Benjamini–Hochberg step-up adjusted p-values along the last axis:
    p̃_(i) = min_{j ≥ i} min(1, m p_(j) / j)."""
    p = _f(p_values)
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    ps = np.take_along_axis(p, order, axis=-1)
    scaled = ps * m / np.arange(1, m + 1)
    adj_sorted = np.minimum(np.flip(np.minimum.accumulate(np.flip(scaled, -1), axis=-1), -1), 1.0)
    out = np.empty_like(p)
    np.put_along_axis(out, order, adj_sorted, axis=-1)
    return out


@dataclass(frozen=True)
class MultipleTestResult:
    """Adjusted p-values and rejections (adjusted p ≤ α) in the input order."""

    method: Literal["holm", "bh"]
    alpha: float
    p_values: tuple[float, ...]
    adjusted: tuple[float, ...]
    reject: tuple[bool, ...]


def correct_pvalues(
    p_values: Sequence[float], method: Literal["holm", "bh"] = "holm", alpha: float = 0.05
) -> MultipleTestResult:
    """Holm (controls the family-wise error rate) or Benjamini–Hochberg (controls the false
    discovery rate under independence or positive dependence)."""
    check_alpha(alpha)
    p = as_float_array(p_values, "p_values")
    if p.size == 0:
        return MultipleTestResult(method, alpha, (), (), ())
    if np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    adj = holm_adjust(p) if method == "holm" else bh_adjust(p)
    reject: BoolArray = adj <= alpha
    return MultipleTestResult(
        method, alpha, tuple(p.tolist()), tuple(adj.tolist()), tuple(bool(r) for r in reject)
    )
