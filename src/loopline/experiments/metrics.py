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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

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

    The result is what ``events.groupby(unit, sort=True)[column].agg(how)`` gives (``any``:
    ``max() > 0`` as int64), including its treatment of missing values: ``sum`` skips them
    (0 for a unit without values), ``mean``/``max``/``min`` skip them (NaN without values),
    ``count`` counts the non-null values, ``first`` is the first non-null value in row order
    and ``any`` is 0 without values; integer sums keep the column's dtype when every sum fits
    it (int64/uint64 otherwise; bool gives int64). Rows without a unit id are ignored, rows
    without a variant do not make a unit conflicting, the variant column holds the unit's
    first non-null variant, and the units come sorted by id (only the ids present, also for a
    categorical unit column). An empty log gives an empty frame with these columns. Float sums
    and means are not Kahan-compensated as in pandas, and float32 columns are summed in
    float64: they can differ from pandas by rounding.

    Implementation: the unit ids are coded once (a lookup table for integer ids spanning at
    most about twice as many values as there are rows, else ``pd.factorize``; string ids are
    sorted by Python's ``sorted``, much faster than numpy's object argsort), then each
    reduction is one ``np.bincount`` or ``ufunc.at`` pass over the codes, in blocks of rows
    where it needs temporary arrays; conflicting units are dropped from the per-unit results.
    Dtypes without a numpy path (extension dtypes, and object, datetime and float16 columns
    except for ``count``/``first``) and reductions outside :data:`Aggregation` are left to
    pandas groupby on the same codes.
    """
    missing = [c for c in (unit, variant, *aggregations) if c not in events.columns]
    if missing:
        raise KeyError(f"event log lacks columns {missing}")
    if unit in aggregations:
        raise ValueError(f"the unit column {unit!r} cannot be aggregated")
    codes, unit_ids = _unit_codes(events[unit])
    if codes.size and codes.min() < 0:  # missing unit ids: groupby drops these rows
        rows = np.flatnonzero(codes >= 0)
        events = events[list(dict.fromkeys([variant, *aggregations]))].iloc[rows]
        codes = codes[rows]
    groups = _Groups(codes, len(unit_ids))
    del codes
    variants = events[variant]
    first_rows, conflicting = _first_variant_rows(variants, groups)
    kept = np.flatnonzero(~conflicting)
    columns: dict[str, Any] = {
        unit: unit_ids.take(kept),
        variant: _first_values(variants, first_rows)[kept],
    }
    for column, how in aggregations.items():
        columns[column] = _aggregate(events[column], how, groups)[kept]
    del groups  # the row codes are not needed to build the frame
    # The columns are fresh arrays: the frame takes them over (a copy would double the peak).
    frame = pd.DataFrame(columns, copy=False)
    return UnitTable(frame, int(conflicting.sum()), unit, variant)


_BLOCK = 1 << 21
"""Rows per block of the row-wise passes: bounds the size of their temporary arrays."""


def _blocks(rows: int) -> Iterator[slice]:
    for start in range(0, rows, _BLOCK):
        yield slice(start, min(start + _BLOCK, rows))


def _unit_codes(ids: pd.Series) -> tuple[npt.NDArray[np.intp], pd.Index]:
    """Codes of the unit ids in ``[0, n_units)`` in sorted id order (-1: missing id), and the
    sorted distinct ids."""
    dtype = ids.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iu" and len(ids):
        values = ids.to_numpy()
        lo, hi = values.min(), values.max()
        span = int(hi) - int(lo) + 1
        if span <= max(2 * values.size, 1 << 16):
            # Dense ids: a lookup table instead of hashing. x - lo wraps around in the column's
            # dtype; read as unsigned it is the exact offset (it lies in [0, span)).
            offset_dtype = np.dtype(f"u{dtype.itemsize}")
            present = np.zeros(span, dtype=np.bool_)
            for block in _blocks(values.size):
                present[(values[block] - lo).view(offset_dtype)] = True
            lookup = np.cumsum(present, dtype=np.int32 if span < 2**31 else np.intp)
            np.subtract(lookup, 1, out=lookup)
            codes = np.empty(values.size, dtype=np.intp)
            for block in _blocks(values.size):
                codes[block] = lookup[(values[block] - lo).view(offset_dtype)]
            uniques = np.flatnonzero(present).astype(dtype) + lo
            return codes, pd.Index(uniques, dtype=dtype)
    if isinstance(dtype, np.dtype) and dtype.kind == "O":
        codes, uniques = pd.factorize(ids, sort=False)
        if pd.api.types.infer_dtype(uniques, skipna=False) == "string":
            # Python's sort of a list of str orders as ``sort=True`` does (numpy's object
            # argsort), several times faster.
            labels = uniques.tolist()
            order = np.array(sorted(range(len(labels)), key=labels.__getitem__), dtype=np.intp)
            rank = np.empty(order.size + 1, dtype=np.intp)
            rank[order] = np.arange(order.size, dtype=np.intp)
            rank[-1] = -1  # code -1 (missing id) stays -1
            codes = np.asarray(codes, dtype=np.intp)
            for block in _blocks(codes.size):
                codes[block] = rank[codes[block]]
            return codes, pd.Index(uniques).take(order)
    codes, uniques = pd.factorize(ids, sort=True)  # other dtypes, sparse or mixed-type ids
    return np.asarray(codes, dtype=np.intp), pd.Index(uniques)


class _Groups:
    """Row codes in ``[0, n)`` with the per-group quantities shared by several columns."""

    def __init__(self, codes: npt.NDArray[np.intp], n: int) -> None:
        self.codes = codes
        self.n = n
        self._sizes: IntArray | None = None
        self._first: npt.NDArray[np.intp] | None = None

    def counts(self, mask: npt.NDArray[np.bool_] | None) -> IntArray:
        """Rows per group (only rows where ``mask``)."""
        if mask is None:
            if self._sizes is None:
                self._sizes = np.bincount(self.codes, minlength=self.n).astype(np.int64)
            return self._sizes
        counts = np.zeros(self.n, dtype=np.int64)
        for block in _blocks(self.codes.size):
            counts += np.bincount(self.codes[block][mask[block]], minlength=self.n)
        return counts

    def first_rows(self, mask: npt.NDArray[np.bool_] | None) -> npt.NDArray[np.intp]:
        """Position of each group's first row (only rows where ``mask``; -1: none)."""
        if mask is None and self._first is not None:
            return self._first
        m = self.codes.size
        first = np.full(self.n, m, dtype=np.intp)
        for block in _blocks(m):
            codes = self.codes[block]
            rows = np.arange(block.start, block.stop, dtype=np.intp)
            if mask is not None:
                codes, rows = codes[mask[block]], rows[mask[block]]
            np.minimum.at(first, codes, rows)
        first[first == m] = -1
        if mask is None:
            self._first = first
        return first

    def sums(self, x: npt.NDArray[Any], skip: npt.NDArray[np.bool_] | None = None) -> FloatArray:
        """Float64 sum of ``x`` per group, leaving out rows where ``skip`` (not compensated)."""
        if x.dtype == np.float64 and skip is None:
            return np.asarray(np.bincount(self.codes, weights=x, minlength=self.n), np.float64)
        total = np.zeros(self.n, dtype=np.float64)
        for block in _blocks(x.size):
            weights = x[block].astype(np.float64)
            if skip is not None:
                weights[skip[block]] = 0.0
            total += np.bincount(self.codes[block], weights=weights, minlength=self.n)
        return total

    def flag(self, x: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
        """Groups with a row where ``x`` is true."""
        hit = np.zeros(self.n, dtype=np.bool_)
        for block in _blocks(x.size):
            hit[self.codes[block][x[block]]] = True
        return hit


def _first_variant_rows(
    variants: pd.Series, groups: _Groups
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
    """Each unit's first row with a variant (-1: none) and whether it has rows with another
    variant (missing variants ignored)."""
    if isinstance(variants.dtype, pd.CategoricalDtype):
        variant_codes = np.asarray(variants.cat.codes)
    else:
        variant_codes = np.asarray(pd.factorize(variants)[0])
    has_variant = variant_codes >= 0
    first_rows = groups.first_rows(None if has_variant.all() else has_variant)
    first_code = np.where(first_rows >= 0, variant_codes[first_rows], -1)
    conflicting = np.zeros(groups.n, dtype=np.bool_)
    for block in _blocks(variant_codes.size):
        codes, own = groups.codes[block], variant_codes[block]
        other = (own != first_code[codes]) & has_variant[block]
        conflicting[codes[other]] = True
    return first_rows, conflicting


def _first_values(values: pd.Series, rows: npt.NDArray[np.intp]) -> Any:
    """``values`` at ``rows``, missing (as pandas ``first`` returns it) where ``rows`` is -1."""
    dtype = values.dtype
    if not isinstance(dtype, np.dtype):
        return values.array.take(rows, allow_fill=True)
    arr = values.to_numpy()
    none = rows < 0
    out = arr[np.where(none, 0, rows)] if arr.size else np.empty(rows.size, dtype=dtype)
    if none.any():
        if dtype.kind == "O":
            out[none] = None
        elif dtype.kind in "mM":
            out[none] = np.array("NaT", dtype=dtype)
        else:  # floats: ints and bools cannot be missing
            out[none] = np.nan
    return out


_FAST = frozenset({"sum", "mean", "max", "min", "any"})


def _aggregate(values: pd.Series, how: str, groups: _Groups) -> Any:
    """One column reduced per group, as ``values.groupby(codes).agg(how)`` (see
    :func:`aggregate_units`); a numpy array or an extension array, indexed by group."""
    dtype = values.dtype
    numpy_dtype = isinstance(dtype, np.dtype)
    if how == "first" or (how == "count" and numpy_dtype):
        notna = values.notna().to_numpy()
        mask = None if notna.all() else notna
        if how == "count":
            return groups.counts(mask)
        return _first_values(values, groups.first_rows(mask))
    if not (numpy_dtype and how in _FAST and dtype.kind in "biuf" and dtype != np.float16):
        return _pandas_aggregate(values, how, groups)
    x = values.to_numpy()
    if how == "any":
        return groups.flag(x > 0).astype(np.int64)
    if how in ("max", "min"):
        return _extreme(x, how, groups)
    if dtype.kind != "f":
        return _integer_sum(x, groups) if how == "sum" else groups.sums(x) / groups.counts(None)
    nan = np.isnan(x)
    skip = nan if nan.any() else None
    total = groups.sums(x, skip)
    if how == "sum":
        return total.astype(dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / groups.counts(None if skip is None else ~skip)
    return mean.astype(dtype)


def _extreme(x: npt.NDArray[Any], how: str, groups: _Groups) -> npt.NDArray[Any]:
    """Per-group max/min skipping NaN (NaN for a group without values)."""
    dtype = x.dtype
    ufunc: np.ufunc
    if dtype.kind == "b":
        return _extreme(x.view(np.uint8), how, groups).astype(np.bool_)
    if dtype.kind == "f":
        ufunc, start = (np.fmax, np.nan) if how == "max" else (np.fmin, np.nan)
    else:
        info = np.iinfo(dtype)
        ufunc, start = (np.maximum, info.min) if how == "max" else (np.minimum, info.max)
    out = np.full(groups.n, start, dtype=dtype)
    ufunc.at(out, groups.codes, x)
    return out


def _integer_sum(x: npt.NDArray[Any], groups: _Groups) -> npt.NDArray[Any]:
    """Exact per-group sum of an integer or bool column, in int64 (uint64 for unsigned
    columns) and cast back to the column's integer dtype when every sum fits it (as pandas
    does)."""
    dtype = x.dtype
    acc = np.dtype(np.uint64) if dtype.kind == "u" else np.dtype(np.int64)
    bound = max(abs(int(x.min())), abs(int(x.max()))) if x.size else 0
    if bound * x.size < 2**53:  # every partial float64 sum is an exact integer
        total = groups.sums(x).astype(acc)
    else:  # wraps around on overflow, as pandas does
        total = np.zeros(groups.n, dtype=acc)
        for block in _blocks(x.size):
            np.add.at(total, groups.codes[block], x[block].astype(acc))
    if dtype.kind == "b":
        return total
    info = np.iinfo(dtype)
    if total.size == 0 or (info.min <= total.min() and total.max() <= info.max):
        return total.astype(dtype)
    return total


def _pandas_aggregate(values: pd.Series, how: str, groups: _Groups) -> Any:
    """The reduction by pandas groupby on the unit codes (dtypes without a numpy path)."""
    grouped = values.groupby(groups.codes, sort=True)
    result = grouped.max().gt(0).astype(np.int64) if how == "any" else grouped.agg(how)
    return result.reindex(pd.RangeIndex(groups.n)).array


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
