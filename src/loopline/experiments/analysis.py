"""Analysis of an experiment from its per-unit table: one pure function, typed results.

:func:`analyze_experiment` takes one row per analysed unit (holdout excluded) with the
variant column and the metric columns, and returns an :class:`ExperimentResult`:

1. **SRM** check of the arm counts against the configured allocation.
2. For every metric and every treatment arm versus control:

   * binary without covariate: two-proportion z-test;
   * binary or continuous with a pre-period ``covariate``: CUPED (θ pooled within arms over
     all arms), then Welch on the adjusted values;
   * continuous: Welch t-test; ratio: delta-method z-test;
   * the reported interval and p-value are the **sequential** (mSPRT) ones when
     ``config.sequential`` is set, else the fixed-horizon ones (or a seeded bootstrap
     interval when the metric asks for it); the fixed-horizon comparison is always kept in
     :attr:`MetricResult.fixed`;
   * optional Mann–Whitney p-value (``rank_test``) on the raw values;
   * Bayesian chance to beat control and expected loss (Beta–Binomial for binary metrics,
     normal approximation otherwise).

3. **Multiplicity**: intervals use α/k for k treatment arms when
   ``split_alpha_across_variants`` (Bonferroni across arms); reported p-values are also
   adjusted across all (metric, arm) pairs by Holm or Benjamini–Hochberg.

Arm statistics are computed with ``np.bincount`` over integer arm codes, one pass per
moment, so the cost is linear in the number of units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd

from loopline.experiments._common import FloatArray, IntArray
from loopline.experiments.bayes import BayesianResult, beta_binomial, normal_posterior
from loopline.experiments.metrics import ArmStats, grouped_ratio_stats, grouped_stats
from loopline.experiments.policy import AnalysisConfig, MetricSpec
from loopline.experiments.sequential import SequentialLook, sequential_look
from loopline.experiments.stats import (
    Comparison,
    SrmResult,
    bh_adjust,
    bootstrap_difference,
    cuped_adjust,
    cuped_theta,
    holm_adjust,
    mann_whitney,
    srm_check,
    two_proportion_arrays,
    welch_arrays,
    z_arrays,
)

IntervalKind = Literal["fixed", "sequential", "bootstrap"]


@dataclass(frozen=True)
class MetricResult:
    """One metric, one treatment arm against control.

    ``difference``/``ci_*`` are treatment − control in the metric's units; ``relative_*``
    are relative to the control value. ``interval`` says where the reported interval and
    ``p_value`` come from. ``adjusted_p_value`` is corrected for multiplicity.
    """

    metric: str
    kind: Literal["binary", "continuous", "ratio"]
    variant: str
    control: str
    higher_is_better: bool
    alpha: float
    n_control: int
    n_treatment: int
    control_value: float
    treatment_value: float
    difference: float
    ci_low: float
    ci_high: float
    relative_difference: float
    relative_ci_low: float
    relative_ci_high: float
    p_value: float
    adjusted_p_value: float
    interval: IntervalKind
    method: str
    fixed: Comparison
    sequential: SequentialLook | None = None
    cuped_theta: float | None = None
    cuped_variance_reduction: float | None = None
    rank_p_value: float | None = None
    prob_beat_control: float | None = None
    expected_loss: float | None = None

    @property
    def improvement(self) -> float:
        """Relative change in the metric's good direction (positive = better)."""
        sign = 1.0 if self.higher_is_better else -1.0
        return sign * self.relative_difference

    @property
    def improvement_interval(self) -> tuple[float, float]:
        """Interval of :attr:`improvement` (relative, direction-aware)."""
        if self.higher_is_better:
            return self.relative_ci_low, self.relative_ci_high
        return -self.relative_ci_high, -self.relative_ci_low

    @property
    def absolute_improvement(self) -> float:
        """Absolute change in the metric's good direction (positive = better)."""
        return self.difference if self.higher_is_better else -self.difference

    @property
    def absolute_improvement_interval(self) -> tuple[float, float]:
        if self.higher_is_better:
            return self.ci_low, self.ci_high
        return -self.ci_high, -self.ci_low

    @property
    def significantly_better(self) -> bool:
        return self.improvement_interval[0] > 0

    @property
    def significantly_worse(self) -> bool:
        return self.improvement_interval[1] < 0


@dataclass(frozen=True)
class ExperimentResult:
    """Everything :func:`~loopline.experiments.decision.decide_experiment` needs."""

    experiment: str
    control: str
    treatments: tuple[str, ...]
    units: Mapping[str, int]
    srm: SrmResult
    metrics: tuple[MetricResult, ...]
    bayesian: Mapping[str, BayesianResult]
    alpha: float
    correction: str

    def metric(self, name: str, variant: str) -> MetricResult | None:
        for m in self.metrics:
            if m.metric == name and m.variant == variant:
                return m
        return None

    def for_variant(self, variant: str) -> tuple[MetricResult, ...]:
        return tuple(m for m in self.metrics if m.variant == variant)

    @property
    def min_units(self) -> int:
        return min(self.units.values()) if self.units else 0


@dataclass(frozen=True)
class _Prepared:
    kind: str
    method: str
    values: FloatArray | None
    arms: list[ArmStats]
    theta: float | None
    reduction_base: list[ArmStats] | None


def _arm_list(n: IntArray, mean: FloatArray, var: FloatArray) -> list[ArmStats]:
    return [ArmStats(int(a), float(b), float(c)) for a, b, c in zip(n, mean, var, strict=True)]


def _prepare(frame: pd.DataFrame, spec: MetricSpec, codes: IntArray, k: int) -> _Prepared:
    if spec.kind == "ratio":
        assert spec.numerator is not None and spec.denominator is not None
        num = frame[spec.numerator].to_numpy(np.float64)
        den = frame[spec.denominator].to_numpy(np.float64)
        ratio_stats = grouped_ratio_stats(num, den, codes, k)
        arms = []
        for i in range(k):
            arm = ratio_stats.arm(i)
            arms.append(ArmStats(arm.n, arm.ratio, arm.var_ratio * arm.n))
        return _Prepared("ratio", "ratio_delta_z", None, arms, None, None)
    y = frame[spec.value_column].to_numpy(np.float64)
    if spec.kind == "binary" and not np.all((y == 0) | (y == 1)):
        raise ValueError(f"binary metric {spec.name!r} has values other than 0 and 1")
    if spec.covariate is None:
        g = grouped_stats(y, codes, k)
        method = "two_proportion_z" if spec.kind == "binary" else "welch_t"
        return _Prepared(spec.kind, method, y, _arm_list(g.n, g.mean, g.var), None, None)
    x = frame[spec.covariate].to_numpy(np.float64)
    theta, _ = cuped_theta(y, x, codes, k)
    adjusted = cuped_adjust(y, x, theta)
    raw = grouped_stats(y, codes, k)
    adj = grouped_stats(adjusted, codes, k)
    return _Prepared(
        spec.kind,
        "cuped_welch_t",
        adjusted,
        _arm_list(adj.n, adj.mean, adj.var),
        theta,
        _arm_list(raw.n, raw.mean, raw.var),
    )


def _successes(arm: ArmStats) -> int:
    return round(arm.mean * arm.n) if arm.n > 0 else 0


def _fixed(prep: _Prepared, c: ArmStats, t: ArmStats, alpha: float) -> Comparison:
    if prep.method == "two_proportion_z":
        return two_proportion_arrays(_successes(c), c.n, _successes(t), t.n, alpha).at()
    if prep.method == "ratio_delta_z":
        return z_arrays(
            mean_c=c.mean,
            var_mean_c=c.var / c.n,
            n_c=c.n,
            mean_t=t.mean,
            var_mean_t=t.var / t.n,
            n_t=t.n,
            alpha=alpha,
            method="ratio_delta_z",
        ).at()
    return welch_arrays(
        mean_c=c.mean, var_c=c.var, n_c=c.n, mean_t=t.mean, var_t=t.var, n_t=t.n, alpha=alpha
    ).at()


def _bayes(
    spec: MetricSpec, prep: _Prepared, names: Sequence[str], config: AnalysisConfig
) -> BayesianResult:
    if prep.method == "two_proportion_z":
        successes = [_successes(a) for a in prep.arms]
        return beta_binomial(
            successes,
            [a.n for a in prep.arms],
            names,
            higher_is_better=spec.higher_is_better,
            seed=config.seed,
            draws=20_000,
        )
    return normal_posterior(
        [a.mean for a in prep.arms],
        [a.var / a.n for a in prep.arms],
        names,
        higher_is_better=spec.higher_is_better,
        seed=config.seed,
        draws=20_000,
    )


def _compare(
    units: pd.DataFrame,
    spec: MetricSpec,
    prep: _Prepared,
    *,
    codes: IntArray,
    names: Sequence[str],
    i: int,
    alpha: float,
    config: AnalysisConfig,
    bayes: BayesianResult | None,
) -> MetricResult:
    """Arm ``i`` against arm 0 on one prepared metric (adjusted p-value filled in later)."""
    c, t = prep.arms[0], prep.arms[i]
    fixed = _fixed(prep, c, t, alpha)
    reduction = None
    if prep.reduction_base is not None:
        base = prep.reduction_base
        se2_raw = base[0].var / base[0].n + base[i].var / base[i].n
        reduction = 1.0 - fixed.std_error**2 / se2_raw if se2_raw > 0 else 0.0
    interval: IntervalKind = "fixed"
    lo, hi, p = fixed.ci_low, fixed.ci_high, fixed.p_value
    rlo, rhi = fixed.relative_ci_low, fixed.relative_ci_high
    look = None
    if config.sequential is not None and min(c.n, t.n) >= 2:
        look = sequential_look(c, t, config.sequential, alpha)
        interval = "sequential"
        lo, hi, p = look.ci_low, look.ci_high, look.p_value
        rlo, rhi = look.relative_ci_low, look.relative_ci_high
    elif spec.bootstrap and prep.values is not None and min(c.n, t.n) >= 2:
        boot = bootstrap_difference(
            prep.values[codes == 0],
            prep.values[codes == i],
            n_resamples=config.bootstrap_resamples,
            alpha=alpha,
            seed=config.seed,
        )
        interval = "bootstrap"
        lo, hi = boot.ci_low, boot.ci_high
        rlo, rhi = boot.relative_ci_low, boot.relative_ci_high
    rank_p = None
    if spec.rank_test and spec.kind != "ratio" and min(c.n, t.n) >= 1:
        y = units[spec.value_column].to_numpy(np.float64)
        rank_p = mann_whitney(y[codes == 0], y[codes == i]).p_value
    post = bayes.variant(names[i]) if bayes is not None else None
    return MetricResult(
        metric=spec.name,
        kind=spec.kind,
        variant=names[i],
        control=names[0],
        higher_is_better=spec.higher_is_better,
        alpha=alpha,
        n_control=c.n,
        n_treatment=t.n,
        control_value=c.mean,
        treatment_value=t.mean,
        difference=t.mean - c.mean,
        ci_low=lo,
        ci_high=hi,
        relative_difference=(t.mean / c.mean - 1.0) if c.mean != 0 else math.nan,
        relative_ci_low=rlo,
        relative_ci_high=rhi,
        p_value=p,
        adjusted_p_value=math.nan,
        interval=interval,
        method=prep.method,
        fixed=fixed,
        sequential=look,
        cuped_theta=prep.theta,
        cuped_variance_reduction=reduction,
        rank_p_value=rank_p,
        prob_beat_control=None if post is None else post.prob_beat_control,
        expected_loss=None if post is None else post.expected_loss_vs_control,
    )


def analyze_experiment(
    units: pd.DataFrame,
    metrics: Sequence[MetricSpec],
    *,
    experiment: str,
    control: str,
    expected_weights: Mapping[str, float],
    config: AnalysisConfig | None = None,
    variant_column: str = "variant",
) -> ExperimentResult:
    """Analyse a per-unit table (see the module docstring). ``expected_weights`` gives every
    arm's configured share (control included); rows of other variants are an error."""
    config = config or AnalysisConfig()
    if control not in expected_weights:
        raise ValueError(f"control {control!r} has no expected weight")
    names = [control, *[v for v in expected_weights if v != control]]
    k = len(names)
    if k < 2:
        raise ValueError("an experiment needs at least two arms")
    cat = pd.Categorical(units[variant_column], categories=names)
    codes = np.asarray(cat.codes, dtype=np.int64)
    if np.any(codes < 0):
        unknown = sorted({str(v) for v in units.loc[codes < 0, variant_column].unique()})
        raise ValueError(f"rows with variants outside the experiment: {unknown}")
    counts = np.bincount(codes, minlength=k)
    srm = srm_check(counts.tolist(), [expected_weights[n] for n in names], config.srm_threshold)
    alpha = config.alpha / (k - 1) if config.split_alpha_across_variants else config.alpha
    raw: list[MetricResult] = []
    bayesian: dict[str, BayesianResult] = {}
    for spec in metrics:
        prep = _prepare(units, spec, codes, k)
        if config.bayesian and all(a.n >= 2 for a in prep.arms):
            bayesian[spec.name] = _bayes(spec, prep, names, config)
        raw.extend(
            _compare(
                units,
                spec,
                prep,
                codes=codes,
                names=names,
                i=i,
                alpha=alpha,
                config=config,
                bayes=bayesian.get(spec.name),
            )
            for i in range(1, k)
        )
    p_all = np.array([r.p_value for r in raw], dtype=np.float64)
    if p_all.size and config.correction != "none":
        finite = np.where(np.isnan(p_all), 1.0, p_all)
        adjusted = holm_adjust(finite) if config.correction == "holm" else bh_adjust(finite)
    else:
        adjusted = p_all
    results = tuple(
        replace(r, adjusted_p_value=float(a)) for r, a in zip(raw, adjusted, strict=True)
    )
    return ExperimentResult(
        experiment=experiment,
        control=control,
        treatments=tuple(names[1:]),
        units={n: int(c) for n, c in zip(names, counts, strict=True)},
        srm=srm,
        metrics=results,
        bayesian=bayesian,
        alpha=alpha,
        correction=config.correction,
    )
