"""Per-unit aggregation and the sufficient statistics of binary, continuous and ratio metrics.

Unit of analysis
----------------
Randomisation is by unit (user, conversation), so every metric is first aggregated to one
value per unit; observations of one unit are correlated, units are independent. A request
log becomes a unit table with :func:`aggregate_units`. A unit seen in more than one variant
(an assignment or logging bug) is dropped and counted: keeping it would contaminate both
arms.

Sufficient statistics
---------------------
For a binary or continuous metric an arm is summarised by (n, mean, sample variance with
ddof=1): :class:`ArmStats`. A ratio metric R = Σ numerator / Σ denominator (e.g. errors per
request, tokens per request, with the *unit* as the randomisation unit) is summarised by
:class:`RatioArmStats`: n, the means μ_N, μ_D, variances σ²_N, σ²_D and covariance σ_ND of
the per-unit numerator and denominator. Its variance follows from the delta method applied
to g(μ_N, μ_D) = μ_N / μ_D:

    Var(R̂) ≈ (σ²_N − 2 R σ_ND + R² σ²_D) / (n μ_D²),   R = μ_N / μ_D.

Treating requests as independent instead (the naive binomial/t variance on request rows)
understates this variance whenever requests of one unit are correlated.

:func:`grouped_stats` and :func:`grouped_ratio_stats` compute these for many groups at once
with ``np.bincount`` (one pass over the data per moment).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from loopline.experiments._common import FloatArray, IntArray, as_float_array

Aggregation = Literal["sum", "mean", "max", "min", "count", "any", "first"]


@dataclass(frozen=True)
class UnitTable:
    """One row per unit: ``frame`` has the unit column, the variant column and one column per
    aggregated metric; ``n_conflicting_units`` units were seen in several variants and
    dropped."""

    frame: pd.DataFrame
    n_conflicting_units: int
    unit_column: str
    variant_column: str


def aggregate_units(
    events: pd.DataFrame,
    aggregations: Mapping[str, Aggregation],
    *,
    unit: str = "unit",
    variant: str = "variant",
) -> UnitTable:
    """Aggregate an event log (one row per request/feedback event) to one row per unit.

    ``aggregations`` maps a column to how it is reduced per unit: ``sum`` (tokens, cost,
    errors), ``mean``, ``max``/``min``, ``count`` (non-null events), ``any`` (a binary
    outcome reached at least once, as 0/1) or ``first`` (a pre-period covariate repeated on
    every row).
    """
    missing = [c for c in (unit, variant, *aggregations) if c not in events.columns]
    if missing:
        raise KeyError(f"event log lacks columns {missing}")
    variants_per_unit = events.groupby(unit, sort=False)[variant].nunique()
    conflicting = variants_per_unit.index[variants_per_unit > 1]
    clean = events[~events[unit].isin(conflicting)] if len(conflicting) else events
    grouped = clean.groupby(unit, sort=True)
    columns: dict[str, pd.Series] = {variant: grouped[variant].first()}
    for column, how in aggregations.items():
        if how == "any":
            columns[column] = grouped[column].max().gt(0).astype(np.int64)
        else:
            columns[column] = grouped[column].agg(how)
    frame = pd.DataFrame(columns).reset_index()
    return UnitTable(frame, len(conflicting), unit, variant)


@dataclass(frozen=True)
class ArmStats:
    """n, mean and sample variance (ddof=1) of a per-unit metric in one arm."""

    n: int
    mean: float
    var: float

    @classmethod
    def from_values(cls, values: npt.ArrayLike) -> ArmStats:
        x = as_float_array(values, "values")
        if x.size < 2:
            raise ValueError("an arm needs at least two units")
        return cls(int(x.size), float(x.mean()), float(x.var(ddof=1)))

    @classmethod
    def from_counts(cls, successes: int, n: int) -> ArmStats:
        """A binary metric from its count of successes (variance with ddof=1, as from the
        0/1 values)."""
        if n < 2 or not 0 <= successes <= n:
            raise ValueError(f"need 0 <= successes <= n and n >= 2, got {successes}/{n}")
        p = successes / n
        return cls(n, p, p * (1 - p) * n / (n - 1))

    @property
    def std_error(self) -> float:
        return math.sqrt(self.var / self.n)


@dataclass(frozen=True)
class RatioArmStats:
    """Sufficient statistics of a ratio metric Σnum/Σden in one arm (per-unit sums)."""

    n: int
    mean_num: float
    mean_den: float
    var_num: float
    var_den: float
    cov: float

    @classmethod
    def from_values(cls, numerator: npt.ArrayLike, denominator: npt.ArrayLike) -> RatioArmStats:
        num = as_float_array(numerator, "numerator")
        den = as_float_array(denominator, "denominator")
        if num.shape != den.shape or num.size < 2:
            raise ValueError("numerator and denominator need the same length (>= 2)")
        cov = np.cov(num, den, ddof=1)
        return cls(
            int(num.size),
            float(num.mean()),
            float(den.mean()),
            float(cov[0, 0]),
            float(cov[1, 1]),
            float(cov[0, 1]),
        )

    @property
    def ratio(self) -> float:
        return self.mean_num / self.mean_den

    @property
    def var_ratio(self) -> float:
        """Delta-method variance of the ratio estimate (see the module docstring)."""
        return float(
            ratio_delta_variance(
                mean_num=self.mean_num,
                mean_den=self.mean_den,
                var_num=self.var_num,
                var_den=self.var_den,
                cov=self.cov,
                n=self.n,
            )
        )


def ratio_delta_variance(
    *,
    mean_num: npt.ArrayLike,
    mean_den: npt.ArrayLike,
    var_num: npt.ArrayLike,
    var_den: npt.ArrayLike,
    cov: npt.ArrayLike,
    n: npt.ArrayLike,
) -> FloatArray:
    """Var(μ̂_N/μ̂_D) ≈ (σ²_N − 2Rσ_ND + R²σ²_D)/(n μ_D²), vectorised over arms."""
    mn, md = np.asarray(mean_num, np.float64), np.asarray(mean_den, np.float64)
    r = mn / md
    num = np.asarray(var_num, np.float64) - 2 * r * np.asarray(cov, np.float64)
    num = num + r**2 * np.asarray(var_den, np.float64)
    return np.asarray(num / (np.asarray(n, np.float64) * md**2), dtype=np.float64)


@dataclass(frozen=True)
class GroupedStats:
    """Per-group n, mean and variance (ddof=1) arrays, index = group code."""

    n: IntArray
    mean: FloatArray
    var: FloatArray

    def arm(self, group: int) -> ArmStats:
        return ArmStats(int(self.n[group]), float(self.mean[group]), float(self.var[group]))


def _moments(values: FloatArray, codes: IntArray, n_groups: int) -> tuple[IntArray, FloatArray]:
    n = np.bincount(codes, minlength=n_groups).astype(np.int64)
    sums = np.bincount(codes, weights=values, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / n
    return n, mean


def grouped_stats(values: npt.ArrayLike, codes: npt.ArrayLike, n_groups: int) -> GroupedStats:
    """n, mean and variance of ``values`` per group code in ``[0, n_groups)``.

    Two-pass (centred) variance, so large means do not cancel the precision.
    """
    x = as_float_array(values, "values")
    g = np.asarray(codes, dtype=np.int64)
    n, mean = _moments(x, g, n_groups)
    dev = x - mean[g]
    ss = np.bincount(g, weights=dev * dev, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = ss / (n - 1)
    return GroupedStats(n, mean, np.asarray(var, dtype=np.float64))


@dataclass(frozen=True)
class GroupedRatioStats:
    """Per-group sufficient statistics of a ratio metric."""

    n: IntArray
    mean_num: FloatArray
    mean_den: FloatArray
    var_num: FloatArray
    var_den: FloatArray
    cov: FloatArray

    def arm(self, group: int) -> RatioArmStats:
        return RatioArmStats(
            int(self.n[group]),
            float(self.mean_num[group]),
            float(self.mean_den[group]),
            float(self.var_num[group]),
            float(self.var_den[group]),
            float(self.cov[group]),
        )


def grouped_ratio_stats(
    numerator: npt.ArrayLike, denominator: npt.ArrayLike, codes: npt.ArrayLike, n_groups: int
) -> GroupedRatioStats:
    """Per-group statistics of a ratio metric from per-unit numerator/denominator sums."""
    num = as_float_array(numerator, "numerator")
    den = as_float_array(denominator, "denominator")
    g = np.asarray(codes, dtype=np.int64)
    n, mn = _moments(num, g, n_groups)
    _, md = _moments(den, g, n_groups)
    dn, dd = num - mn[g], den - md[g]
    with np.errstate(invalid="ignore", divide="ignore"):
        vn = np.bincount(g, weights=dn * dn, minlength=n_groups) / (n - 1)
        vd = np.bincount(g, weights=dd * dd, minlength=n_groups) / (n - 1)
        cv = np.bincount(g, weights=dn * dd, minlength=n_groups) / (n - 1)
    return GroupedRatioStats(n, mn, md, vn, vd, cv)
