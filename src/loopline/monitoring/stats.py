"""Per-column drift statistics: Evidently 0.7's values, vectorised, and a two-sample test.

``column_drift(reference, current)`` compares one column of a monitoring window with the
reference window and returns a frozen :class:`ColumnDrift` (method, statistic, threshold,
verdict). ``drift_table`` does it for every column of two frames. Pure: no I/O, no state, and
the same data always gives the same result (the Monte-Carlo p-value uses a fixed seed).

Numeric columns get exactly the statistic Evidently 0.7.23's ``DataDriftPreset`` picks by
default (the rules and where they live in Evidently's source are in
``docs/drift-statistics.md``):

* NaN and ±inf are dropped from each side; an empty side is an error.
* A reference of at most ``SMALL_REFERENCE_MAX_ROWS`` (1,000) rows (counted after the drop):
  the two-sample Kolmogorov-Smirnov p-value, drift when ``p <= 0.05``.
* A larger reference: the Wasserstein-1 distance divided by the reference's population
  standard deviation (ddof 0, floored at 0.001), drift when ``>= 0.1``.
* A numeric column with at most ``FEW_VALUES_MAX`` (5) distinct values over both sides is
  compared as categories instead (below).

Categorical columns (and few-valued numeric ones), ``categorical=`` chooses:

* ``"two_sample"`` (default): Pearson's chi-square test of homogeneity on the 2 x k table of
  counts (reference and current as two samples), drift when ``p < 0.05``, at every size. When
  an expected count is below ``MIN_EXPECTED_COUNT`` the p-value is the Monte-Carlo
  permutation p-value (tables drawn with both margins fixed), which is valid at any size.
* ``"evidently"``: Evidently's own choice and value: at most 1,000 reference rows, the
  chi-square goodness-of-fit test of the current counts against the reference *proportions*
  (``p < 0.05``), or for two values the pooled two-proportion Z-test (``p < 0.05``); above,
  the Jensen-Shannon distance of the two distributions (natural log, ``>= 0.1``).

Evidently's goodness-of-fit test treats the reference proportions as exact, so reference
noise counts as drift, and a category absent from the reference gives p = 0; with small or
unbalanced samples it alarms on undrifted data far more often than 5 % of the time
(measured in ``benchmarks/drift_false_alarms.py``). That is why the default differs.

Evidently itself is imported only in :func:`evidently_drift_values` (seconds to import),
which runs a real ``Report([DataDriftPreset()])`` for the tests and the benchmark.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats
from scipy.spatial import distance

__all__ = [
    "CATEGORICAL",
    "CATEGORICAL_MODES",
    "DEFAULT_DRIFT_SHARE",
    "DEFAULT_THRESHOLDS",
    "KINDS",
    "NUMERIC",
    "ColumnDrift",
    "column_drift",
    "drift_table",
    "drifted_share",
    "evidently_drift_values",
    "infer_kind",
    "is_drifted",
]

NUMERIC = "numeric"
CATEGORICAL = "categorical"
KINDS = (NUMERIC, CATEGORICAL)
CATEGORICAL_MODES = ("two_sample", "evidently")

# --- Evidently 0.7.23's rules (named, so that nothing is a literal buried in the code) -----
SMALL_REFERENCE_MAX_ROWS = 1000
"""Reference rows (after dropping NaN/inf) up to which Evidently uses tests, not distances."""
FEW_VALUES_MAX = 5
"""A numeric column with at most this many distinct values (both sides) is compared as
categories."""
BINARY_MAX_VALUES = 2
"""At most this many distinct values (small reference): the Z-test instead of chi-square."""
INTEGER_CARDINALITY_LIMIT = 10
"""An integer column with at most this many distinct values is categorical."""
WASSERSTEIN_MIN_STD = 0.001
"""Floor of the reference standard deviation that normalises the Wasserstein distance."""
DEFAULT_DRIFT_SHARE = 0.5
"""Evidently's dataset-level rule: drift when the share of drifted columns is >= this."""

# --- the two-sample categorical test ---------------------------------------------------------
MIN_EXPECTED_COUNT = 5.0
"""Smallest expected cell count for which the asymptotic chi-square p-value is used."""
MONTE_CARLO_DRAWS = 1999
"""Permutation tables for the Monte-Carlo p-value; (draws + 1) * alpha is an integer."""
MONTE_CARLO_SEED = 20240917
"""Fixed seed: the same data always gives the same p-value."""
TIE_RELATIVE_TOLERANCE = 1e-10
"""Simulated statistics this close to the observed one count as ties (as extreme)."""

KS = "ks"
WASSERSTEIN = "wasserstein"
EVIDENTLY_CHISQUARE = "evidently_chisquare"
Z_TEST = "z"
JENSENSHANNON = "jensenshannon"
CHISQUARE_HOMOGENEITY = "chisquare_homogeneity"

DEFAULT_THRESHOLDS: Mapping[str, float] = {
    KS: 0.05,
    WASSERSTEIN: 0.1,
    EVIDENTLY_CHISQUARE: 0.05,
    Z_TEST: 0.05,
    JENSENSHANNON: 0.1,
    CHISQUARE_HOMOGENEITY: 0.05,
}
"""Default threshold per method (Evidently's defaults; alpha 0.05 for our test)."""

_P_VALUE_METHODS = frozenset({KS, EVIDENTLY_CHISQUARE, Z_TEST, CHISQUARE_HOMOGENEITY})
_DISTANCE_METHODS = frozenset({WASSERSTEIN, JENSENSHANNON})

_EVIDENTLY_METHOD_NAMES: Mapping[str, str] = {
    "K-S p_value": KS,
    "Wasserstein distance (normed)": WASSERSTEIN,
    "chi-square p_value": EVIDENTLY_CHISQUARE,
    "Z-test p_value": Z_TEST,
    "Jensen-Shannon distance": JENSENSHANNON,
}
"""Evidently's display names of its default methods -> ours."""


@dataclass(frozen=True)
class ColumnDrift:
    """The drift verdict for one column."""

    column: str
    kind: str
    """``numeric`` or ``categorical`` (the column's type, not the test's)."""
    method: str
    """``ks``, ``wasserstein``, ``chisquare_homogeneity``, ``evidently_chisquare``, ``z`` or
    ``jensenshannon``."""
    statistic: float
    """The value compared with the threshold: a p-value for tests, a distance otherwise."""
    threshold: float
    drifted: bool
    n_reference: int
    """Values compared after dropping NaN/inf."""
    n_current: int

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["statistic"] = float(self.statistic)
        out["threshold"] = float(self.threshold)
        out["drifted"] = bool(self.drifted)
        return out


def is_drifted(method: str, statistic: float, threshold: float) -> bool:
    """The comparison each method makes, as Evidently makes it.

    KS: ``p <= threshold``; chi-square, Z and our test: ``p < threshold``; distances:
    ``value >= threshold``. A NaN statistic is no drift.
    """
    if method == KS:
        return bool(statistic <= threshold)
    if method in _P_VALUE_METHODS:
        return bool(statistic < threshold)
    if method in _DISTANCE_METHODS:
        return bool(statistic >= threshold)
    raise ValueError(f"unknown drift method {method!r}; known: {sorted(DEFAULT_THRESHOLDS)}")


def drifted_share(columns: Sequence[ColumnDrift]) -> float:
    """Share of drifted columns (Evidently's dataset drift is ``share >= DEFAULT_DRIFT_SHARE``)."""
    if not columns:
        raise ValueError("no columns: the drift share of an empty table is undefined")
    return sum(1 for c in columns if c.drifted) / len(columns)


# --- kind inference ----------------------------------------------------------------------------


def _as_series(values: pd.Series | np.ndarray | Sequence[Any]) -> pd.Series:
    if isinstance(values, pd.Series):
        return values
    if isinstance(values, pd.DataFrame):
        raise ValueError("expected one column (a Series or 1-d array), got a DataFrame")
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-d column, got an array of shape {arr.shape}")
    return pd.Series(arr)


def infer_kind(values: pd.Series | np.ndarray, *, column: str = "value") -> str:
    """``numeric`` or ``categorical`` by Evidently 0.7's rule (``infer_column_type``).

    Floats are numeric; integers are categorical when they have at most
    ``INTEGER_CARDINALITY_LIMIT`` distinct values, numeric otherwise; booleans, pandas
    categoricals and strings are categorical. Evidently infers the type from the *current*
    data, so pass the current column. Two deliberate differences: strings are always
    categorical (Evidently calls a string column "text" when more than half of its values are
    distinct, which a small window of intents easily is), and unsigned/nullable integers and
    nullable floats follow the int/float rules (Evidently leaves them untyped and skips them).
    Anything else (datetimes, mixed objects, all missing) is a ValueError.
    """
    series = _as_series(values)
    dtype = series.dtype
    name = dtype.name.lower()
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return CATEGORICAL
    if name.startswith("float"):
        return NUMERIC
    if name.startswith(("int", "uint")):
        return CATEGORICAL if series.nunique() <= INTEGER_CARDINALITY_LIMIT else NUMERIC
    if pd.api.types.is_string_dtype(dtype):
        present = series.dropna()
        if present.empty:
            raise ValueError(f"column {column!r}: all values are missing, its kind is unknown")
        first, last = present.iloc[0], present.iloc[-1]
        if isinstance(first, str) and isinstance(last, str):
            return CATEGORICAL
        raise ValueError(
            f"column {column!r}: object values of type {type(first).__name__} are neither "
            "numbers nor strings; pass its kind explicitly"
        )
    raise ValueError(
        f"column {column!r}: cannot compare values of dtype {dtype} for drift "
        "(numeric, integer, boolean, categorical or string columns only)"
    )


# --- cleaning ----------------------------------------------------------------------------------


def _numeric_values(values: pd.Series | np.ndarray, column: str, side: str) -> np.ndarray:
    """Finite float64 values, the way Evidently cleans a column (±inf -> NaN, dropna)."""
    if isinstance(values, pd.Series):
        dtype = values.dtype
        if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)):
            raise ValueError(
                f"column {column!r}: kind 'numeric' needs numbers, the {side} data has dtype "
                f"{dtype}"
            )
        arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        raw = np.asarray(values)
        if raw.ndim != 1:
            raise ValueError(f"column {column!r}: the {side} data is not 1-d ({raw.shape})")
        if not (np.issubdtype(raw.dtype, np.number) or raw.dtype == np.bool_):
            raise ValueError(
                f"column {column!r}: kind 'numeric' needs numbers, the {side} data has dtype "
                f"{raw.dtype}"
            )
        arr = raw.astype(np.float64, copy=False)
    finite = np.isfinite(arr)
    if not finite.all():
        arr = arr[finite]
    if arr.size == 0:
        raise ValueError(
            f"column {column!r}: the {side} data is empty (no finite values after dropping "
            "NaN and inf)"
        )
    return arr


def _column_array(values: pd.Series | np.ndarray, column: str, side: str) -> np.ndarray:
    if isinstance(values, pd.DataFrame):
        raise ValueError(f"column {column!r}: expected one column, got a DataFrame")
    arr = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"column {column!r}: the {side} data is not 1-d ({arr.shape})")
    return arr


def _infinite(uniques: Any) -> np.ndarray:
    """Which distinct values are ±inf (Evidently turns them into NaN and drops them)."""
    values = np.asarray(uniques)
    if values.dtype.kind in "fc":
        return np.isinf(values)
    if values.dtype == object:
        return np.fromiter(
            (isinstance(v, (float, np.floating)) and math.isinf(v) for v in values),
            dtype=bool,
            count=values.size,
        )
    return np.zeros(values.shape, dtype=bool)


def _category_counts(
    reference: pd.Series | np.ndarray, current: pd.Series | np.ndarray, column: str
) -> tuple[Any, np.ndarray, np.ndarray]:
    """Distinct present values of both sides and their counts on each side (aligned).

    Missing values (NaN, None, NA) and ±inf are dropped, as Evidently drops them; a side
    with nothing left is a ValueError.
    """
    ref = _column_array(reference, column, "reference")
    cur = _column_array(current, column, "current")
    try:
        codes, uniques = pd.factorize(np.concatenate([ref, cur]))
    except TypeError as exc:  # unhashable values
        raise ValueError(
            f"column {column!r}: values cannot be counted as categories ({exc})"
        ) from exc
    k = len(uniques)
    codes += 1  # missing values are -1: count them in bin 0 and drop it
    ref_counts = np.bincount(codes[: ref.size], minlength=k + 1)[1:]
    cur_counts = np.bincount(codes[ref.size :], minlength=k + 1)[1:]
    infinite = _infinite(uniques)
    if infinite.any():
        keep = ~infinite
        uniques, ref_counts, cur_counts = uniques[keep], ref_counts[keep], cur_counts[keep]
    for side, counts in (("reference", ref_counts), ("current", cur_counts)):
        if int(counts.sum()) == 0:
            raise ValueError(
                f"column {column!r}: the {side} data is empty (no values after dropping "
                "missing and infinite ones)"
            )
    return uniques, ref_counts, cur_counts


def _sorted_counts(us: np.ndarray, vs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct values and aligned counts of two sorted arrays with few distinct values."""
    keys = np.union1d(np.unique(us), np.unique(vs))
    ref_counts = np.diff(np.searchsorted(us, keys, side="left"), append=us.size)
    cur_counts = np.diff(np.searchsorted(vs, keys, side="left"), append=vs.size)
    return keys, ref_counts, cur_counts


def _distinct_sorted(sorted_values: np.ndarray) -> int:
    return 1 + int(np.count_nonzero(sorted_values[1:] != sorted_values[:-1]))


def _union_distinct(us: np.ndarray, vs: np.ndarray, cap: int) -> int:
    """Distinct values over both sorted arrays; exact up to ``cap``, else ``cap + 1``."""
    if _distinct_sorted(us) > cap or _distinct_sorted(vs) > cap:
        return cap + 1
    return int(np.union1d(np.unique(us), np.unique(vs)).size)


# --- the statistics ----------------------------------------------------------------------------


def _wasserstein_sorted(us: np.ndarray, vs: np.ndarray) -> float:
    """Wasserstein-1 distance of two sorted samples, as the L1 distance of quantile functions.

    The quantile function of ``us`` steps at levels k/n, that of ``vs`` at j/m. On the common
    grid of 1/(n*m) the steps are the integers k*m and j*n; their merged order follows from
    integer arithmetic (no search), and on each interval between consecutive steps both
    quantile functions are constant. Same value as scipy's CDF formulation to rounding.
    """
    n, m = us.size, vs.size
    steps = np.empty(n + m, dtype=np.int64)
    k = np.arange(1, n + 1, dtype=np.int64)
    # position of u's k-th step: k-1 earlier u steps + the v steps strictly below k*m
    steps[(k - 1) + (k * m - 1) // n] = k * m
    j = np.arange(1, m + 1, dtype=np.int64)
    # position of v's j-th step: j-1 earlier v steps + the u steps at or below j*n
    steps[(j - 1) + (j * n) // m] = j * n
    del k, j
    widths = np.diff(steps, prepend=0).astype(np.float64)
    steps -= 1
    gaps = us[steps // m]
    gaps -= vs[steps // n]
    np.abs(gaps, out=gaps)
    gaps *= widths
    return float(gaps.sum()) / (float(n) * float(m))


def _normed_wasserstein(us: np.ndarray, vs: np.ndarray) -> float:
    norm = max(float(np.std(us)), WASSERSTEIN_MIN_STD)
    return _wasserstein_sorted(us, vs) / norm


def _evidently_chisquare(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Evidently's chi-square: goodness of fit of the current counts to the reference shares."""
    n_ref, n_cur = int(ref_counts.sum()), int(cur_counts.sum())
    expected = ref_counts * (n_cur / n_ref)
    # scipy.stats.chisquare's sum; a category missing from the reference gives inf, p = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = float(np.sum((cur_counts - expected) ** 2 / expected))
    return float(special.chdtrc(ref_counts.size - 1, statistic))


def _evidently_z(keys: Any, ref_counts: np.ndarray, cur_counts: np.ndarray, column: str) -> float:
    """Evidently's pooled two-proportion Z-test (share of values other than the smallest)."""
    if len(keys) == 1:
        return 1.0
    try:
        first = min(range(len(keys)), key=lambda i: keys[i])
    except TypeError as exc:
        raise ValueError(f"column {column!r}: its two values cannot be ordered ({exc})") from exc
    n1, n2 = int(ref_counts.sum()), int(cur_counts.sum())
    p1 = float(n1 - int(ref_counts[first])) / n1
    p2 = float(n2 - int(cur_counts[first])) / n2
    pooled = float(p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - special.ndtr(np.abs(z))))


def _jensenshannon(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    ref_share = ref_counts / ref_counts.sum()
    cur_share = cur_counts / cur_counts.sum()
    return float(distance.jensenshannon(ref_share, cur_share))


def _pearson(diff: np.ndarray, inv_expected: np.ndarray) -> np.ndarray:
    return np.einsum("...j,j->...", diff * diff, inv_expected)


def _homogeneity_p_value(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Chi-square test of homogeneity of two samples of categories (a 2 x k table).

    Asymptotic p-value when every expected count is at least ``MIN_EXPECTED_COUNT``;
    otherwise the Monte-Carlo permutation p-value: current rows drawn from the multivariate
    hypergeometric distribution of the pooled counts (both margins fixed), p = (1 + #{X²* >=
    X²}) / (draws + 1), which never exceeds its level under the null.
    """
    k = ref_counts.size
    if k < 2:
        return 1.0
    totals = (ref_counts + cur_counts).astype(np.int64)
    n_ref, n_cur = int(ref_counts.sum()), int(cur_counts.sum())
    n = n_ref + n_cur
    expected_cur = totals * (n_cur / n)
    expected_ref = totals * (n_ref / n)
    # (O_ref - E_ref) = -(O_cur - E_cur): X² = sum d² (1/E_cur + 1/E_ref)
    inv = 1.0 / expected_cur + 1.0 / expected_ref
    observed = float(_pearson(cur_counts - expected_cur, inv))
    if min(float(expected_cur.min()), float(expected_ref.min())) >= MIN_EXPECTED_COUNT:
        return float(stats.chi2.sf(observed, k - 1))
    rng = np.random.default_rng(MONTE_CARLO_SEED)
    draws = rng.multivariate_hypergeometric(
        totals, n_cur, size=MONTE_CARLO_DRAWS, method="marginals"
    )
    simulated = _pearson(draws - expected_cur, inv)
    tolerance = TIE_RELATIVE_TOLERANCE * max(1.0, observed)
    extreme = int(np.count_nonzero(simulated >= observed - tolerance))
    return (1 + extreme) / (MONTE_CARLO_DRAWS + 1)


def _categorical_method(
    keys: Any,
    ref_counts: np.ndarray,
    cur_counts: np.ndarray,
    *,
    n_reference: int,
    mode: str,
    column: str,
) -> tuple[str, float]:
    if mode == "two_sample":
        return CHISQUARE_HOMOGENEITY, _homogeneity_p_value(ref_counts, cur_counts)
    if n_reference > SMALL_REFERENCE_MAX_ROWS:
        return JENSENSHANNON, _jensenshannon(ref_counts, cur_counts)
    if len(keys) <= BINARY_MAX_VALUES:
        return Z_TEST, _evidently_z(keys, ref_counts, cur_counts, column)
    return EVIDENTLY_CHISQUARE, _evidently_chisquare(ref_counts, cur_counts)


def _check_mode(mode: str) -> None:
    if mode not in CATEGORICAL_MODES:
        raise ValueError(
            f"unknown categorical method {mode!r}; use one of {', '.join(CATEGORICAL_MODES)}"
        )


def _check_threshold(threshold: float, method: str, column: str) -> float:
    value = float(threshold)
    if not math.isfinite(value) or value <= 0 or (method in _P_VALUE_METHODS and value > 1):
        raise ValueError(
            f"column {column!r}: threshold {threshold!r} is not valid for method {method!r} "
            "(a significance level in (0, 1] for tests, a positive distance otherwise)"
        )
    return value


def column_drift(
    reference: pd.Series | np.ndarray,
    current: pd.Series | np.ndarray,
    *,
    column: str = "value",
    kind: str | None = None,
    categorical: str = "two_sample",
    threshold: float | None = None,
) -> ColumnDrift:
    """Drift of one column: Evidently's statistic for numeric data, our test for categories.

    ``kind=None`` infers it from the current data (:func:`infer_kind`, Evidently's rule);
    ``threshold=None`` uses the chosen method's default (:data:`DEFAULT_THRESHOLDS`).
    """
    _check_mode(categorical)
    if kind is None:
        kind = infer_kind(current, column=column)
    elif kind not in KINDS:
        raise ValueError(f"column {column!r}: unknown kind {kind!r}; use one of {KINDS}")

    if kind == NUMERIC:
        ref = _numeric_values(reference, column, "reference")
        cur = _numeric_values(current, column, "current")
        us, vs = np.sort(ref), np.sort(cur)
        del ref, cur
        n_values = _union_distinct(us, vs, FEW_VALUES_MAX)
        if n_values <= FEW_VALUES_MAX:
            keys, ref_counts, cur_counts = _sorted_counts(us, vs)
            method, statistic = _categorical_method(
                keys, ref_counts, cur_counts, n_reference=us.size, mode=categorical, column=column
            )
        elif us.size <= SMALL_REFERENCE_MAX_ROWS:
            method, statistic = KS, float(stats.ks_2samp(us, vs).pvalue)
        else:
            method, statistic = WASSERSTEIN, _normed_wasserstein(us, vs)
        n_reference, n_current = int(us.size), int(vs.size)
    else:
        keys, ref_counts, cur_counts = _category_counts(reference, current, column)
        n_reference, n_current = int(ref_counts.sum()), int(cur_counts.sum())
        method, statistic = _categorical_method(
            keys, ref_counts, cur_counts, n_reference=n_reference, mode=categorical, column=column
        )

    limit = _check_threshold(
        DEFAULT_THRESHOLDS[method] if threshold is None else threshold, method, column
    )
    return ColumnDrift(
        column=column,
        kind=kind,
        method=method,
        statistic=statistic,
        threshold=limit,
        drifted=is_drifted(method, statistic, limit),
        n_reference=n_reference,
        n_current=n_current,
    )


def _resolve_columns(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str] | None
) -> list[str]:
    if columns is None:
        ref_cols, cur_cols = list(reference.columns), list(current.columns)
        only_ref = [c for c in ref_cols if c not in set(cur_cols)]
        only_cur = [c for c in cur_cols if c not in set(ref_cols)]
        if only_ref or only_cur:
            raise ValueError(
                "reference and current have different columns: "
                f"only in reference {only_ref}, only in current {only_cur}"
            )
        names = ref_cols
    else:
        if isinstance(columns, str):
            raise ValueError(f"columns must be a sequence of names, got the string {columns!r}")
        names = list(columns)
        for name in names:
            missing = [
                side
                for side, f in (("reference", reference), ("current", current))
                if name not in f.columns
            ]
            if missing:
                raise ValueError(
                    f"column {name!r} is missing from the {' and '.join(missing)} data"
                )
    if not names:
        raise ValueError("no columns to compare")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate column names: {names}")
    return [str(n) for n in names]


def _check_keys(mapping: Mapping[str, Any] | None, names: list[str], what: str) -> None:
    if mapping:
        unknown = sorted(set(mapping) - set(names))
        if unknown:
            raise ValueError(f"{what} given for columns that are not compared: {unknown}")


def drift_table(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    columns: Sequence[str] | None = None,
    kinds: Mapping[str, str] | None = None,
    categorical: str = "two_sample",
    thresholds: Mapping[str, float] | None = None,
) -> list[ColumnDrift]:
    """:func:`column_drift` for each column (all shared columns by default), in order.

    ``kinds`` and ``thresholds`` override the inferred kind and the default threshold per
    column.
    """
    _check_mode(categorical)
    names = _resolve_columns(reference, current, columns)
    _check_keys(kinds, names, "kinds")
    _check_keys(thresholds, names, "thresholds")
    kinds = kinds or {}
    thresholds = thresholds or {}
    return [
        column_drift(
            reference[name],
            current[name],
            column=name,
            kind=kinds.get(name),
            categorical=categorical,
            threshold=thresholds.get(name),
        )
        for name in names
    ]


# --- the real thing, for the equivalence tests and the benchmark ---------------------------------


def evidently_drift_values(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    kinds: Mapping[str, str] | None = None,
) -> dict[str, ColumnDrift]:
    """Run Evidently 0.7's ``Report([DataDriftPreset(columns)])`` and return its verdicts.

    ``kinds`` become an explicit ``DataDefinition`` (columns not named there are typed by
    Evidently's own inference); without it Evidently infers every type from the current
    data. The method, value and threshold come from each ``ValueDrift`` metric and the drift
    flag from its test; the counts are the values left after Evidently's NaN/inf drop.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.core.datasets import infer_column_type
    from evidently.legacy.core import ColumnType
    from evidently.presets import DataDriftPreset

    names = _resolve_columns(reference, current, columns)
    _check_keys(kinds, names, "kinds")
    for name, kind in (kinds or {}).items():
        if kind not in KINDS:
            raise ValueError(f"column {name!r}: unknown kind {kind!r}; use one of {KINDS}")
    ref = reference[names]
    cur = current[names]

    typed: dict[str, str] = {}
    for name in names:
        if kinds and name in kinds:
            typed[name] = kinds[name]
            continue
        inferred = infer_column_type(cur[name])
        if inferred == ColumnType.Numerical:
            typed[name] = NUMERIC
        elif inferred == ColumnType.Categorical:
            typed[name] = CATEGORICAL
        else:
            raise ValueError(
                f"column {name!r}: Evidently types it as {inferred.value}, not numerical or "
                "categorical; pass its kind in kinds="
            )
    definition = None
    if kinds:
        definition = DataDefinition(
            numerical_columns=[n for n in names if typed[n] == NUMERIC],
            categorical_columns=[n for n in names if typed[n] == CATEGORICAL],
        )
    report = Report([DataDriftPreset(columns=names)], include_tests=True)
    with warnings.catch_warnings():
        # Evidently's own statistics and widgets divide by zero on inf and unseen values
        warnings.simplefilter("ignore", RuntimeWarning)
        cur_ds = Dataset.from_pandas(cur, data_definition=definition)
        ref_ds = Dataset.from_pandas(ref, data_definition=definition)
        result = report.run(cur_ds, ref_ds).dict()
    flags: dict[str, bool] = {}
    for test in result.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type") == "evidently:metric_v2:ValueDrift":
            status = test["status"]
            flags[params["column"]] = getattr(status, "value", status) == "FAIL"

    out: dict[str, ColumnDrift] = {}
    for metric in result["metrics"]:
        config = metric["config"]
        if config.get("type") != "evidently:metric_v2:ValueDrift":
            continue
        name = config["column"]
        display = config["method"]
        if display not in _EVIDENTLY_METHOD_NAMES:
            raise ValueError(f"column {name!r}: Evidently used an unexpected method {display!r}")
        if name not in flags:
            raise ValueError(f"column {name!r}: Evidently reported no drift test")
        _, ref_counts, cur_counts = _category_counts(ref[name], cur[name], name)
        out[name] = ColumnDrift(
            column=name,
            kind=typed[name],
            method=_EVIDENTLY_METHOD_NAMES[display],
            statistic=float(metric["value"]),
            threshold=float(config["threshold"]),
            drifted=flags[name],
            n_reference=int(ref_counts.sum()),
            n_current=int(cur_counts.sum()),
        )
    missing = [n for n in names if n not in out]
    if missing:
        raise ValueError(f"Evidently returned no drift value for columns {missing}")
    return out
