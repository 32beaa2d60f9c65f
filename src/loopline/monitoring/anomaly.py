"""Anomaly detection on the serving metric series: robust, seasonal where history allows.

Two steps, both pure (numpy and pandas only, no I/O):

1. :func:`metric_series` turns request-log rows into regular buckets: ``traffic`` (requests),
   ``error_rate`` (share of status >= 500), ``latency_p95_ms`` and ``cost_per_request``.
   A bucket without requests has traffic 0 and NaN ratios: "no data", not "no errors".
2. :func:`detect_anomalies` scores one series, :func:`detect_all` every column of such a frame.

The score of point ``t`` is a robust z: ``(x_t - baseline_t) / scale_t``, both computed from
points *before* ``t`` only, so the point never contaminates its own baseline and the flags are
causal (the flag a monitor sees at ``t`` is the one a later run reports for ``t``).

* **robust** (not enough seasons yet): median and MAD (× 1.4826, the normal-consistent
  factor) of the last ``window`` points.
* **seasonal** (at least ``min_seasons`` earlier values at the same position of the season):
  a profile ``P_t`` = median of the values one to ``max_seasons`` seasons back at the same
  position ± ``season_neighbours`` buckets; the residuals ``r = x - P`` of the recent points
  give the level (median of the last ``level_window`` residuals) and the scale (MAD of the
  last ``window``). ``baseline_t = P_t + level_t``: yesterday's shape at today's level.
* MAD = 0 (a constant or mostly constant history) falls back to the mean absolute deviation
  (× 1.2533); the scale is further never below ``max(min_abs_change, min_rel_change ×
  |baseline|) / threshold`` of the series' rule. That floor makes the score finite and means a
  point passes the threshold exactly when it is ``threshold`` robust SDs away **and** moves by
  at least the rule's minimum change (an error rate going from 0 to 0.2 % is not an anomaly).

A point *exceeds* when its score passes ``threshold`` in the rule's direction (or, for a rule
with ``zero_is_outage``, when it is 0 while the baseline expects at least
``no_traffic_min_expected``); it is *flagged* once ``persistence`` consecutive points exceed.
The false-alarm rates of the defaults are measured by ``benchmarks/anomaly.py`` and listed
in ``docs/anomaly-detection.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Direction = Literal["up", "down", "both"]
Method = Literal["seasonal", "robust", "insufficient_history"]

DIRECTIONS: tuple[str, ...] = ("up", "down", "both")
REQUIRED_COLUMNS: tuple[str, ...] = ("ts", "status", "latency_ms", "cost_usd")
SERIES_COLUMNS: tuple[str, ...] = ("traffic", "error_rate", "latency_p95_ms", "cost_per_request")
SERVER_ERROR_STATUS = 500
"""Requests with a status at or above this count as errors."""
LATENCY_QUANTILE = 0.95
MAD_TO_SIGMA = 1.4826
"""1 / Φ⁻¹(0.75): the MAD of a normal sample times this estimates its standard deviation."""
MEAN_AD_TO_SIGMA = math.sqrt(math.pi / 2)
"""The mean absolute deviation of a normal sample times this estimates its SD."""
_TINY = 1e-12


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SeriesRule(_Frozen):
    """How one metric series is judged.

    * ``direction``: ``up`` (only increases are anomalies), ``down`` or ``both``.
    * ``min_abs_change`` / ``min_rel_change``: a point is anomalous only if it moves away from
      its baseline by at least ``max(min_abs_change, min_rel_change × |baseline|)`` (in the
      series' units), whatever its score: tiny moves on a near-constant series do not alert.
    * ``zero_is_outage``: a value of exactly 0 where the baseline expects at least
      :attr:`AnomalyPolicy.no_traffic_min_expected` is anomalous whatever its score
      ("no traffic").
    * ``per_request``: the series is an aggregate over the requests of a bucket (a ratio,
      a quantile or a mean); :func:`detect_all` ignores its buckets with fewer than
      :attr:`AnomalyPolicy.min_requests` requests.
    """

    direction: Direction = "up"
    min_abs_change: float = Field(0.0, ge=0)
    min_rel_change: float = Field(0.0, ge=0)
    zero_is_outage: bool = False
    per_request: bool = True


def default_rules() -> dict[str, SeriesRule]:
    """The rules of the four :func:`metric_series` columns."""
    return {
        "traffic": SeriesRule(
            direction="both", min_rel_change=0.25, zero_is_outage=True, per_request=False
        ),
        "error_rate": SeriesRule(direction="up", min_abs_change=0.01),
        "latency_p95_ms": SeriesRule(direction="up", min_rel_change=0.2),
        "cost_per_request": SeriesRule(direction="up", min_rel_change=0.2),
    }


UNKNOWN_SERIES_RULE = SeriesRule(per_request=False)
"""Rule for a series whose name the policy has no rule for (in :func:`detect_anomalies`)."""


class AnomalyPolicy(_Frozen):
    """Named thresholds of the anomaly detection (see the module docstring for the method).

    Lengths are in buckets: with the default 300 s buckets, ``season_length`` 288 is one day,
    ``window`` 48 four hours, ``level_window`` 24 two hours.

    * ``threshold``: robust z a point must pass (in its rule's direction).
    * ``persistence``: consecutive exceeding points before a point is flagged (1 = every
      exceeding point is flagged). Each step adds a bucket of delay; 2 cuts the false alarms
      by 5 to 300 times per point (most on heavy-tailed series), see the benchmark. It applies to
      outages too.
    * ``window``: trailing points for the robust median and MAD (robust method) and for the
      residual scale (seasonal method); ``level_window`` (<= ``window``): trailing residuals
      for the seasonal level.
    * ``min_history``: valid trailing points needed before anything is scored.
    * ``seasonal``: use the seasonal baseline where history allows (False: robust only).
    * ``season_length``, ``min_seasons``, ``max_seasons``, ``season_neighbours``: the seasonal
      profile (see the module docstring). It is used at a point when at least ``min_seasons``
      of the ``max_seasons`` earlier seasons have a value at its position and at least
      ``min_history`` of the last ``window`` residuals exist: on a series without gaps, from
      point ``min_seasons × season_length + min_history`` on (two days and two hours).
    * ``min_requests``: buckets with fewer requests do not count for per-request series.
    * ``no_traffic_min_expected``: expected requests per bucket above which an empty bucket is
      an outage (P(0 requests) of a Poisson count with mean 10 is 4.5e-5).
    * ``rules``: one :class:`SeriesRule` per series name. Rules given here are merged over
      :func:`default_rules`, so a configuration can change one series and keep the others.
    """

    threshold: float = Field(4.0, gt=0)
    persistence: int = Field(2, ge=1)
    window: int = Field(48, ge=3)
    level_window: int = Field(24, ge=1)
    min_history: int = Field(24, ge=3)
    seasonal: bool = True
    season_length: int = Field(288, ge=2)
    min_seasons: int = Field(2, ge=1)
    max_seasons: int = Field(7, ge=1)
    season_neighbours: int = Field(1, ge=0)
    min_requests: int = Field(20, ge=0)
    no_traffic_min_expected: float = Field(10.0, gt=0)
    rules: dict[str, SeriesRule] = Field(default_factory=default_rules)

    @field_validator("rules", mode="before")
    @classmethod
    def _merge_rules(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {**default_rules(), **value}
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AnomalyPolicy:
        if self.level_window > self.window:
            raise ValueError(f"level_window ({self.level_window}) must be <= window")
        if self.min_history > self.window:
            raise ValueError(f"min_history ({self.min_history}) must be <= window")
        if self.max_seasons < self.min_seasons:
            raise ValueError(f"max_seasons ({self.max_seasons}) must be >= min_seasons")
        if 2 * self.season_neighbours >= self.season_length:
            raise ValueError("season_neighbours must be less than half of season_length")
        return self

    def rule_for(self, name: object) -> SeriesRule:
        """The rule of series ``name``; :data:`UNKNOWN_SERIES_RULE` for other names."""
        return self.rules.get(str(name), UNKNOWN_SERIES_RULE)


# --------------------------------------------------------------------------- bucketing


def metric_series(
    frame: pd.DataFrame,
    *,
    bucket_seconds: int = 300,
    start: float | None = None,
    end: float | None = None,
) -> pd.DataFrame:
    """Aggregate request-log rows into regular buckets of ``bucket_seconds``.

    Buckets are aligned to multiples of ``bucket_seconds`` since the Unix epoch (so with a
    bucket that divides a day, one position of a daily season is one time of day). The index
    is the bucket start (UTC ``Timestamp``); columns :data:`SERIES_COLUMNS`:

    * ``traffic``: requests in the bucket (answered or refused);
    * ``error_rate``: share of requests with status >= 500;
    * ``latency_p95_ms``: 95th percentile (linear interpolation) of ``latency_ms``;
    * ``cost_per_request``: mean ``cost_usd``.

    Empty buckets have traffic 0 and NaN for the other three columns. ``start`` and ``end``
    (Unix seconds) restrict the result to the *complete* buckets inside ``[start, end)``:
    ``start`` is rounded up and ``end`` down to the bucket grid. Without them the buckets run
    from the one holding the first row to the one holding the last; pass
    ``end=now`` so that the bucket still being filled is left out (it would look like a
    traffic drop).
    """
    if bucket_seconds <= 0:
        raise ValueError(f"bucket_seconds must be positive, got {bucket_seconds}")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"request frame lacks column(s) {missing}; need {list(REQUIRED_COLUMNS)}")
    ts = _numeric_column(frame, "ts")
    status = _numeric_column(frame, "status")
    latency = _numeric_column(frame, "latency_ms")
    cost = _numeric_column(frame, "cost_usd")
    if np.isnan(ts).any():
        raise ValueError("column 'ts' has missing values")

    first: int | None = None if start is None else math.ceil(start / bucket_seconds)
    stop: int | None = None if end is None else math.floor(end / bucket_seconds)
    bucket = np.floor(ts / bucket_seconds).astype(np.int64)
    if first is None:
        first = int(bucket.min()) if len(bucket) else stop
    if stop is None:
        stop = int(bucket.max()) + 1 if len(bucket) else first
    if first is None or stop is None:  # no rows and no bounds
        first = stop = 0
    if stop < first:
        raise ValueError(f"end ({end}) is before start ({start})")
    n = stop - first

    keep = (bucket >= first) & (bucket < stop)
    pos = bucket[keep] - first
    status, latency, cost = status[keep], latency[keep], cost[keep]
    traffic = np.bincount(pos, minlength=n).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        errors = np.bincount(pos, weights=(status >= SERVER_ERROR_STATUS), minlength=n)
        error_rate = np.where(traffic > 0, errors / np.maximum(traffic, 1), np.nan)
        cost_ok = ~np.isnan(cost)
        cost_sum = np.bincount(pos[cost_ok], weights=cost[cost_ok], minlength=n)
        cost_n = np.bincount(pos[cost_ok], minlength=n)
        cost_per_request = np.where(cost_n > 0, cost_sum / np.maximum(cost_n, 1), np.nan)
    p95 = np.full(n, np.nan)
    lat_ok = ~np.isnan(latency)
    if lat_ok.any():
        p95_by_bucket = pd.Series(latency[lat_ok]).groupby(pos[lat_ok]).quantile(LATENCY_QUANTILE)
        p95[p95_by_bucket.index.to_numpy()] = p95_by_bucket.to_numpy(dtype=float)

    index = pd.DatetimeIndex(
        pd.to_datetime((first + np.arange(n)) * bucket_seconds, unit="s", utc=True),
        name="bucket_start",
    )
    return pd.DataFrame(
        {
            "traffic": traffic,
            "error_rate": error_rate,
            "latency_p95_ms": p95,
            "cost_per_request": cost_per_request,
        },
        index=index,
    )


def _numeric_column(frame: pd.DataFrame, name: str) -> FloatArray:
    try:
        return pd.to_numeric(frame[name], errors="raise").to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"column {name!r} must be numeric: {exc}") from None


# --------------------------------------------------------------------------- detection


@dataclass(frozen=True)
class AnomalyResult:
    """Per-point scores and flags of one series, and the verdict on its latest point.

    ``values`` is the series as judged (buckets below ``min_requests`` blanked), ``score``
    the robust z (NaN where nothing was scored), ``baseline`` and ``scale`` the expected value
    and the robust SD (after the floor) it was computed from, ``exceed`` whether the point passed
    the threshold (or was an outage), ``flag`` whether it is anomalous after ``persistence``,
    ``methods`` the baseline used per point. ``method`` and ``reason`` describe the latest
    point.
    """

    name: str
    direction: str
    threshold: float
    values: pd.Series
    score: pd.Series
    baseline: pd.Series
    scale: pd.Series
    exceed: pd.Series
    flag: pd.Series
    methods: pd.Series
    latest_anomalous: bool
    latest_score: float
    method: Method
    reason: str

    @property
    def flagged_at(self) -> list[Any]:
        """Index labels of the flagged points."""
        return list(self.flag.index[self.flag.to_numpy()])

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (no per-point arrays; NaN becomes ``None``)."""
        last = self.values.index[-1] if len(self.values) else None
        return {
            "series": self.name,
            "direction": self.direction,
            "method": self.method,
            "latest_anomalous": self.latest_anomalous,
            "latest_score": _json_float(self.latest_score),
            "latest_value": _json_float(self.values.iloc[-1]) if len(self.values) else None,
            "latest_baseline": (
                _json_float(self.baseline.iloc[-1]) if len(self.baseline) else None
            ),
            "latest_at": _json_label(last),
            "threshold": self.threshold,
            "points": len(self.values),
            "flagged_points": int(self.flag.sum()),
            "reason": self.reason,
        }


def detect_anomalies(
    series: pd.Series,
    policy: AnomalyPolicy,
    *,
    direction: str | None = None,
    counts: pd.Series | None = None,
) -> AnomalyResult:
    """Score every point of ``series`` against a baseline of the points before it.

    The rule (minimum change, outage check, default direction) is the policy's rule for
    ``series.name``; ``direction`` (``up``, ``down``, ``both``) overrides the rule's.
    ``counts`` (requests per point, same index) blanks the points with fewer than
    ``policy.min_requests`` requests: they are neither scored nor part of any baseline.

    The index must be strictly increasing and evenly spaced (as :func:`metric_series` makes
    it); NaN values are "no data".
    """
    rule = policy.rule_for(series.name)
    chosen = rule.direction if direction is None else direction
    if chosen not in DIRECTIONS:
        raise ValueError(f"unknown direction {chosen!r}; expected one of {list(DIRECTIONS)}")
    _check_index(series.index, what=f"series {series.name!r}")
    try:
        x = series.to_numpy(dtype=float, na_value=np.nan).copy()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"series {series.name!r} must be numeric: {exc}") from None
    if np.isinf(x).any():
        raise ValueError(f"series {series.name!r} has infinite values")
    if counts is not None:
        if not counts.index.equals(series.index):
            raise ValueError("counts must have the same index as the series")
        c = counts.to_numpy(dtype=float, na_value=0.0)
        x[c < policy.min_requests] = np.nan

    base, scale, methods = _baselines(x, policy)
    floor = np.maximum(rule.min_abs_change, rule.min_rel_change * np.abs(base)) / policy.threshold
    scale_used = np.maximum(np.maximum(scale, floor), _TINY * np.maximum(1.0, np.abs(base)))
    scored = ~np.isnan(x) & ~np.isnan(base)
    score = np.full(len(x), np.nan)
    score[scored] = (x[scored] - base[scored]) / scale_used[scored]

    exceed = np.zeros(len(x), dtype=bool)
    s = np.where(scored, score, 0.0)
    if chosen in ("up", "both"):
        exceed |= s >= policy.threshold
    if chosen in ("down", "both"):
        exceed |= s <= -policy.threshold
    outage = np.zeros(len(x), dtype=bool)
    if rule.zero_is_outage and chosen in ("down", "both"):
        outage = scored & (x == 0) & (base >= policy.no_traffic_min_expected)
        exceed |= outage
    flag = _persistent(exceed, policy.persistence)

    idx = series.index
    name = str(series.name) if series.name is not None else "series"
    method_series = pd.Series(methods, index=idx, name=name, dtype=object)
    latest_score = float(score[-1]) if len(x) else math.nan
    latest_method: Method = methods[-1] if len(x) else "insufficient_history"
    result_reason = _reason(
        name,
        x=x,
        base=base,
        score=score,
        exceed=exceed,
        flag=flag,
        outage=outage,
        method=latest_method,
        policy=policy,
        direction=chosen,
    )
    return AnomalyResult(
        name=name,
        direction=chosen,
        threshold=policy.threshold,
        values=pd.Series(x, index=idx, name=name),
        score=pd.Series(score, index=idx, name=name),
        baseline=pd.Series(base, index=idx, name=name),
        scale=pd.Series(np.where(np.isnan(base), np.nan, scale_used), index=idx, name=name),
        exceed=pd.Series(exceed, index=idx, name=name),
        flag=pd.Series(flag, index=idx, name=name),
        methods=method_series,
        latest_anomalous=bool(flag[-1]) if len(x) else False,
        latest_score=latest_score,
        method=latest_method,
        reason=result_reason,
    )


def detect_all(series_frame: pd.DataFrame, policy: AnomalyPolicy) -> dict[str, AnomalyResult]:
    """:func:`detect_anomalies` on every column, each with its rule from ``policy.rules``.

    Per-request columns (``rule.per_request``) are judged only on buckets with at least
    ``policy.min_requests`` requests, which needs a ``traffic`` column. A column without a rule
    is an error (add a :class:`SeriesRule` for it to ``policy.rules``).
    """
    if series_frame.shape[1] == 0:
        raise ValueError("series frame has no columns")
    unknown = [str(c) for c in series_frame.columns if str(c) not in policy.rules]
    if unknown:
        raise ValueError(
            f"no rule for column(s) {unknown}; known: {sorted(policy.rules)} "
            "(add a SeriesRule to AnomalyPolicy.rules)"
        )
    _check_index(series_frame.index, what="series frame")
    counts = series_frame["traffic"] if "traffic" in series_frame.columns else None
    out: dict[str, AnomalyResult] = {}
    for column in series_frame.columns:
        rule = policy.rules[str(column)]
        if rule.per_request and counts is None and policy.min_requests > 0:
            raise ValueError(
                f"column {column!r} is per-request but the frame has no 'traffic' column to "
                "apply min_requests"
            )
        col = series_frame[column].rename(str(column))
        out[str(column)] = detect_anomalies(
            col, policy, counts=counts if rule.per_request else None
        )
    return out


# --------------------------------------------------------------------------- internals


def _check_index(index: pd.Index, *, what: str) -> None:
    if len(index) < 2:
        return
    if isinstance(index, pd.DatetimeIndex):
        values = index.asi8.astype(np.float64)
    elif pd.api.types.is_numeric_dtype(index.dtype):
        values = index.to_numpy(dtype=np.float64)
    else:
        raise ValueError(f"{what}: index must be datetimes or numbers, got {index.dtype}")
    step = np.diff(values)
    if not (step > 0).all():
        raise ValueError(f"{what}: index must be strictly increasing (sorted, no duplicates)")
    if not np.allclose(step, step[0], rtol=1e-9, atol=0):
        raise ValueError(f"{what}: index must be evenly spaced (bucket the data first)")


def _window_median(values: npt.NDArray[np.float64]) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Median along the last axis ignoring NaN, and the number of non-NaN values."""
    ordered = np.sort(values, axis=-1)  # NaN last
    count = (~np.isnan(values)).sum(axis=-1)
    lo = np.clip((count - 1) // 2, 0, None)
    hi = np.clip(count // 2, 0, values.shape[-1] - 1)
    rows = np.arange(values.shape[0])
    med = (ordered[rows, lo] + ordered[rows, hi]) / 2.0
    med[count == 0] = np.nan
    return med, count


def _window_scale(values: FloatArray) -> FloatArray:
    """Robust SD along the last axis: 1.4826 MAD, or 1.2533 mean AD where the MAD is 0."""
    centre, _ = _window_median(values)
    dev = np.abs(values - centre[:, None])
    mad, count = _window_median(dev)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_ad = np.nansum(dev, axis=-1) / count
    scale = MAD_TO_SIGMA * mad
    return np.where(scale > 0, scale, MEAN_AD_TO_SIGMA * mean_ad)


def _trailing(x: FloatArray, width: int) -> FloatArray:
    """Row t holds x[t - width .. t - 1] (NaN before the start)."""
    padded = np.concatenate([np.full(width, np.nan), x])
    return sliding_window_view(padded, width)[: len(x)]


def _lagged(x: FloatArray, lags: list[int]) -> FloatArray:
    """Column i of row t holds x[t - lags[i]] (NaN before the start)."""
    n, most = len(x), max(lags)
    padded = np.concatenate([np.full(most, np.nan), x])
    return np.stack([padded[most - lag : most - lag + n] for lag in lags], axis=1)


def _baselines(x: FloatArray, policy: AnomalyPolicy) -> tuple[FloatArray, FloatArray, list[Method]]:
    """Baseline, robust scale and method per point, from earlier points only."""
    n = len(x)
    if n == 0:
        return np.empty(0), np.empty(0), []
    with np.errstate(invalid="ignore", divide="ignore"):
        hist = _trailing(x, policy.window)
        robust_base, robust_count = _window_median(hist)
        robust_scale = _window_scale(hist)
    robust_ok = robust_count >= policy.min_history
    base = np.where(robust_ok, robust_base, np.nan)
    scale = np.where(robust_ok, robust_scale, np.nan)
    seasonal_ok = np.zeros(n, dtype=bool)
    if policy.seasonal and n > policy.min_seasons * policy.season_length:
        seasonal_base, seasonal_scale, seasonal_ok = _seasonal_baseline(x, policy)
        base = np.where(seasonal_ok, seasonal_base, base)
        scale = np.where(seasonal_ok, seasonal_scale, scale)
    methods: list[Method] = [
        "seasonal" if s else ("robust" if r else "insufficient_history")
        for s, r in zip(seasonal_ok.tolist(), robust_ok.tolist(), strict=True)
    ]
    return base, scale, methods


def _seasonal_baseline(
    x: FloatArray, policy: AnomalyPolicy
) -> tuple[FloatArray, FloatArray, BoolArray]:
    """Profile of earlier seasons plus the recent level of the residuals; where it applies."""
    m, h = policy.season_length, policy.season_neighbours
    seasons = range(1, policy.max_seasons + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        seen = (~np.isnan(_lagged(x, [k * m for k in seasons]))).sum(axis=1)
        lags = [k * m + j for k in seasons for j in range(-h, h + 1)]
        profile, _ = _window_median(_lagged(x, lags))
        profile[seen < policy.min_seasons] = np.nan
        resid_hist = _trailing(x - profile, policy.window)
        level, _ = _window_median(resid_hist[:, policy.window - policy.level_window :])
        scale = _window_scale(resid_hist)
        count = (~np.isnan(resid_hist)).sum(axis=1)
    ok = ~np.isnan(profile) & ~np.isnan(level) & (count >= policy.min_history)
    return profile + level, scale, ok


def _persistent(exceed: BoolArray, persistence: int) -> BoolArray:
    """True where this and the ``persistence - 1`` points before it all exceed."""
    if persistence <= 1:
        return exceed.copy()
    padded = np.concatenate([np.zeros(persistence - 1, dtype=bool), exceed])
    return np.asarray(sliding_window_view(padded, persistence).all(axis=1), dtype=bool)


def _reason(
    name: str,
    *,
    x: FloatArray,
    base: FloatArray,
    score: FloatArray,
    exceed: BoolArray,
    flag: BoolArray,
    outage: BoolArray,
    method: Method,
    policy: AnomalyPolicy,
    direction: str,
) -> str:
    if len(x) == 0:
        return f"{name}: no points"
    if np.isnan(x[-1]):
        return f"{name}: no data in the latest bucket (empty or below min_requests)"
    if method == "insufficient_history":
        return (
            f"{name}: insufficient history (needs {policy.min_history} valid points in the "
            f"last {policy.window})"
        )
    value, b, z = x[-1], base[-1], score[-1]
    label = "seasonal baseline" if method == "seasonal" else "baseline (trailing median)"
    if outage[-1]:
        what = f"{name}: no traffic in the latest bucket (expected about {b:.4g})"
    else:
        change = f" ({100 * (value - b) / abs(b):+.1f} %)" if abs(b) > _TINY else ""
        side = "above" if z >= 0 else "below"
        what = f"{name} {value:.4g} is {abs(z):.1f} robust SD {side} its {label} {b:.4g}{change}"
    if flag[-1]:
        return f"{what}; anomalous ({direction}, threshold {policy.threshold:g})"
    if exceed[-1]:
        return f"{what}; past the threshold, not yet for {policy.persistence} points in a row"
    return f"{what}; normal"


def _json_float(value: Any) -> float | None:
    v = float(value)
    return v if math.isfinite(v) else None


def _json_label(label: Any) -> Any:
    if label is None:
        return None
    if isinstance(label, pd.Timestamp):
        return label.isoformat()
    if isinstance(label, np.generic):
        return label.item()
    return label
