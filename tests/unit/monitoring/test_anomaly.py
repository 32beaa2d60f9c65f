"""Anomaly detection on metric series: bucketing, baselines, injected faults, false-alarm rate."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from loopline.monitoring.anomaly import (
    AnomalyPolicy,
    SeriesRule,
    detect_all,
    detect_anomalies,
    metric_series,
)

DAY = 288  # 5-minute buckets
Change = Callable[[pd.Series], pd.Series]
START = 1_704_067_200  # 2024-01-01T00:00:00Z, a multiple of 300 s

# Documented in docs/anomaly-detection.md ("Measured false-alarm rate"): per-point rates on
# light null series (Poisson traffic, binomial errors, Gaussian noise) with the defaults.
DOCUMENTED_EXCEED_RATE = 0.004  # past the threshold, before persistence
DOCUMENTED_FLAG_RATE = 0.0007  # flagged (two buckets in a row)


def null_frame(
    days: float,
    seed: int,
    *,
    traffic: float = 200.0,
    amplitude: float = 0.6,
    latency_noise: float = 0.075,
) -> pd.DataFrame:
    """Bucketed serving metrics with a daily cycle and sampling noise, no anomaly."""
    rng = np.random.default_rng(seed)
    n = round(days * DAY)
    shape = np.sin(2 * np.pi * np.arange(n) / DAY + rng.uniform(0, 2 * np.pi))
    rate = traffic * (1 + amplitude * shape)
    count = rng.poisson(rate)
    served = np.maximum(count, 1)
    errors = rng.binomial(count, 0.01)
    latency = (
        400
        * (1 + 0.3 * amplitude * shape)
        * np.exp(latency_noise * math.sqrt(traffic) / np.sqrt(served) * rng.standard_normal(n))
    )
    cost = 4e-4 * np.exp(0.6 / np.sqrt(served) * rng.standard_normal(n))
    index = pd.date_range(pd.Timestamp(START, unit="s", tz="UTC"), periods=n, freq="300s")
    return pd.DataFrame(
        {
            "traffic": count,
            "error_rate": errors / served,
            "latency_p95_ms": latency,
            "cost_per_request": cost,
        },
        index=index,
    )


def request_rows(rng: np.random.Generator, buckets: int, per_bucket: int = 40) -> pd.DataFrame:
    n = buckets * per_bucket
    ts = START + np.repeat(np.arange(buckets), per_bucket) * 300 + rng.uniform(0, 300, n)
    return pd.DataFrame(
        {
            "ts": ts,
            "status": np.where(rng.uniform(size=n) < 0.01, 500, 200),
            "latency_ms": rng.lognormal(np.log(150), 0.4, n),
            "cost_usd": rng.uniform(1e-4, 3e-4, n),
            "prompt_tokens": 20,
            "completion_tokens": 30,
            "model_version": "3",
            "variant": "stable",
            "cache_hit": False,
        }
    )


# --------------------------------------------------------------------------- bucketing


def test_metric_series_counts_p95_error_share_cost_and_empty_buckets() -> None:
    rng = np.random.default_rng(0)
    spans = {0: 30, 1: 7, 3: 12}  # bucket -> requests; bucket 2 is empty
    rows = []
    for b, k in spans.items():
        for _ in range(k):
            rows.append(
                {
                    "ts": START + b * 300 + float(rng.uniform(0, 299.9)),
                    "status": int(rng.choice([200, 200, 200, 404, 500, 503])),
                    "latency_ms": float(rng.lognormal(5, 0.5)),
                    "cost_usd": float(rng.uniform(0, 1e-3)),
                }
            )
    frame = pd.DataFrame(rows).sample(frac=1, random_state=1)  # order must not matter
    series = metric_series(frame, bucket_seconds=300)

    assert list(series.columns) == ["traffic", "error_rate", "latency_p95_ms", "cost_per_request"]
    assert len(series) == 4
    assert series.index[0] == pd.Timestamp(START, unit="s", tz="UTC")
    assert (np.diff(series.index.asi8) == 300 * 10**9).all()
    for b, k in spans.items():
        inside = frame[(frame.ts >= START + b * 300) & (frame.ts < START + (b + 1) * 300)]
        row = series.iloc[b]
        assert row.traffic == k == len(inside)
        assert row.error_rate == pytest.approx((inside.status >= 500).mean())
        assert row.latency_p95_ms == pytest.approx(np.percentile(inside.latency_ms, 95))
        assert row.cost_per_request == pytest.approx(inside.cost_usd.mean())
    empty = series.iloc[2]
    assert empty.traffic == 0
    assert np.isnan(empty.error_rate) and np.isnan(empty.latency_p95_ms)
    assert np.isnan(empty.cost_per_request)


def test_metric_series_start_end_keep_complete_buckets_only() -> None:
    rows = request_rows(np.random.default_rng(1), buckets=6, per_bucket=10)
    # start inside bucket 1 (rounded up to bucket 2), end inside bucket 5 (bucket 5 left out)
    series = metric_series(rows, start=START + 310, end=START + 5 * 300 + 120)
    assert series.index[0] == pd.Timestamp(START + 600, unit="s", tz="UTC")
    assert list(series.traffic) == [10, 10, 10]

    # bounds beyond the data give empty buckets, not an error
    wide = metric_series(rows, start=START - 600, end=START + 8 * 300)
    assert list(wide.traffic) == [0, 0, 10, 10, 10, 10, 10, 10, 0, 0]
    assert wide.error_rate.isna().sum() == 4

    nothing = metric_series(rows.iloc[:0], start=START, end=START + 900)
    assert list(nothing.traffic) == [0, 0, 0]
    assert nothing.latency_p95_ms.isna().all()


def test_metric_series_names_missing_columns_and_rejects_bad_bounds() -> None:
    rows = request_rows(np.random.default_rng(2), buckets=2)
    with pytest.raises(ValueError, match=r"latency_ms.*cost_usd|cost_usd.*latency_ms"):
        metric_series(rows.drop(columns=["latency_ms", "cost_usd"]))
    with pytest.raises(ValueError, match="before start"):
        metric_series(rows, start=START + 3000, end=START)
    with pytest.raises(ValueError, match="bucket_seconds"):
        metric_series(rows, bucket_seconds=0)
    with pytest.raises(ValueError, match="'status' must be numeric"):
        metric_series(rows.assign(status="ok"))


# --------------------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("column", "change"),
    [
        ("latency_p95_ms", lambda s: s * 3.0),
        ("error_rate", lambda s: s * 0 + 0.20),
        ("cost_per_request", lambda s: s * 1.6),
        ("traffic", lambda s: (s * 0.3).round()),
        ("traffic", lambda s: s * 0),
        ("traffic", lambda s: s * 2),
    ],
)
def test_injected_faults_are_flagged_on_their_second_bucket(column: str, change: Change) -> None:
    frame = null_frame(3, seed=3)
    onset = len(frame) - 3
    clean = detect_all(frame, AnomalyPolicy())[column]
    faulty = frame.copy()
    faulty.iloc[onset:, faulty.columns.get_loc(column)] = change(frame[column].iloc[onset:])
    result = detect_all(faulty, AnomalyPolicy())[column]

    assert result.method == "seasonal"
    assert not clean.flag.iloc[onset:].any()  # the same buckets without the fault
    assert result.exceed.iloc[onset:].all()
    assert not result.flag.iloc[onset] and result.flag.iloc[onset + 1 :].all()  # persistence 2
    assert result.latest_anomalous
    assert abs(result.latest_score) >= AnomalyPolicy().threshold
    # history before the fault is untouched by it (the baseline looks backwards only)
    pd.testing.assert_series_equal(result.score.iloc[:onset], clean.score.iloc[:onset])


@pytest.mark.parametrize(
    ("column", "change"),
    [("latency_p95_ms", lambda s: s * 1.5), ("error_rate", lambda s: s * 0 + 0.05)],
)
def test_milder_faults_are_mostly_flagged_within_four_buckets(column: str, change: Change) -> None:
    detected = 0
    for seed in range(10):
        frame = null_frame(3, seed=20 + seed)
        onset = len(frame) - 4
        series = frame[column].copy()
        series.iloc[onset:] = change(series.iloc[onset:])
        result = detect_anomalies(series, AnomalyPolicy(), counts=frame.traffic)
        assert not result.flag.iloc[onset - DAY : onset].any()  # no alarm the day before
        detected += bool(result.flag.iloc[onset:].any())
    assert detected >= 7  # benchmark (any time of day): 95 % and 80 %


def test_no_traffic_is_an_outage_only_where_traffic_is_expected() -> None:
    busy = null_frame(1, seed=4).traffic.astype(float)
    busy.iloc[-2:] = 0
    result = detect_anomalies(busy, AnomalyPolicy())
    assert result.latest_anomalous and "no traffic" in result.reason

    # about 11 requests per bucket: an empty bucket is not 4 robust SDs away, but is an outage
    sparse = pd.Series(np.random.default_rng(4).poisson(11, DAY).astype(float), name="traffic")
    sparse.iloc[-2:] = 0
    result = detect_anomalies(sparse, AnomalyPolicy())
    assert result.latest_score > -AnomalyPolicy().threshold
    assert result.latest_anomalous and "no traffic" in result.reason
    assert not detect_anomalies(sparse, AnomalyPolicy(no_traffic_min_expected=50)).latest_anomalous

    quiet = pd.Series(np.random.default_rng(4).poisson(1.5, DAY).astype(float), name="traffic")
    quiet.iloc[-2:] = 0
    assert not detect_anomalies(quiet, AnomalyPolicy()).flag.any()

    # an empty bucket blanks the per-request series: no data, no alarm
    frame = null_frame(1, seed=4)
    frame.iloc[-1] = [0, np.nan, np.nan, np.nan]
    results = detect_all(frame, AnomalyPolicy())
    assert not results["latency_p95_ms"].latest_anomalous
    assert "no data" in results["latency_p95_ms"].reason


def test_direction_up_ignores_drops_and_down_flags_them() -> None:
    frame = null_frame(1, seed=5)
    latency = frame.latency_p95_ms.copy()
    latency.iloc[-2:] *= 0.3
    assert not detect_anomalies(latency, AnomalyPolicy()).latest_anomalous  # rule: up only
    down = detect_anomalies(latency, AnomalyPolicy(), direction="down")
    assert down.latest_anomalous and down.latest_score < 0
    assert detect_anomalies(latency, AnomalyPolicy(), direction="both").latest_anomalous


def test_min_requests_ignores_ratio_buckets_with_few_requests() -> None:
    frame = null_frame(1, seed=6)
    frame.iloc[-2:, :2] = [[5, 0.4], [5, 0.4]]  # 2 of 5 requests failed, twice
    assert not detect_all(frame, AnomalyPolicy())["error_rate"].flag.iloc[-2:].any()
    assert np.isnan(detect_all(frame, AnomalyPolicy())["error_rate"].values.iloc[-1])
    assert detect_all(frame, AnomalyPolicy(min_requests=0))["error_rate"].latest_anomalous


def test_request_rows_to_alert_end_to_end() -> None:
    rng = np.random.default_rng(7)
    rows = request_rows(rng, buckets=120)
    slow = rows.ts >= START + 117 * 300
    rows.loc[slow, "latency_ms"] *= 3
    results = detect_all(metric_series(rows, end=START + 120 * 300), AnomalyPolicy())
    assert results["latency_p95_ms"].latest_anomalous
    assert results["latency_p95_ms"].method == "robust"  # less than two days of history
    assert not results["traffic"].latest_anomalous
    assert not results["error_rate"].latest_anomalous


# --------------------------------------------------------------------------- baselines


def test_seasonal_baseline_starts_after_min_seasons_plus_min_history() -> None:
    policy = AnomalyPolicy()
    frame = null_frame(3, seed=8)
    methods = detect_anomalies(frame.traffic, policy).methods.to_numpy()
    first_seasonal = policy.min_seasons * DAY + policy.min_history
    assert (methods[: policy.min_history] == "insufficient_history").all()
    assert (methods[policy.min_history : first_seasonal] == "robust").all()
    assert (methods[first_seasonal:] == "seasonal").all()

    needs_three = detect_anomalies(frame.traffic, AnomalyPolicy(min_seasons=3))
    assert "seasonal" not in set(needs_three.methods)
    assert needs_three.method == "robust"
    assert detect_anomalies(frame.traffic.iloc[:10], policy).method == "insufficient_history"


def test_seasonal_baseline_removes_false_alarms_of_a_trailing_median() -> None:
    # a daily batch job: every day at the same time 30 minutes of 3x traffic and 1.6x latency
    rng = np.random.default_rng(9)
    frame = null_frame(5, seed=9, amplitude=0.3)
    burst = (np.arange(len(frame)) % DAY >= 100) & (np.arange(len(frame)) % DAY < 106)
    frame.loc[burst, "traffic"] = rng.poisson(3 * frame.traffic[burst].to_numpy())
    frame.loc[burst, "latency_p95_ms"] *= 1.6
    seasonal = detect_all(frame, AnomalyPolicy())
    robust = detect_all(frame, AnomalyPolicy(seasonal=False))
    last_days = slice(3 * DAY, None)  # where the seasonal baseline is in use

    assert (seasonal["traffic"].methods.iloc[last_days] == "seasonal").all()
    for column in ("traffic", "latency_p95_ms"):
        for day in (3, 4):  # the job alarms every day ...
            during = slice(day * DAY + 100, day * DAY + 106)
            assert robust[column].flag.iloc[during].any()
        assert not seasonal[column].flag.iloc[last_days].any()  # ... but not seasonally
    assert not any(r.flag.iloc[last_days].any() for r in seasonal.values())


def test_seasonal_baseline_follows_a_lasting_level_shift() -> None:
    frame = null_frame(4, seed=13)
    shift = 3 * DAY
    grown = frame.traffic.astype(float)
    grown.iloc[shift:] = np.random.default_rng(13).poisson(1.5 * grown.iloc[shift:])
    result = detect_anomalies(grown, AnomalyPolicy())
    assert result.flag.iloc[shift : shift + 6].any()  # the jump is an anomaly at first ...
    assert not result.flag.iloc[shift + AnomalyPolicy().level_window :].any()  # ... not for long
    # over the last 6 hours the baseline is 1.5 x what it is without the shift
    last = slice(-DAY // 4, None)
    unshifted = detect_anomalies(frame.traffic, AnomalyPolicy()).baseline.iloc[last]
    assert (result.baseline.iloc[last] / unshifted).median() == pytest.approx(1.5, rel=0.1)


def test_constant_history_mad_zero_and_minimum_change() -> None:
    zero = pd.Series(np.zeros(60), name="error_rate")
    tiny = zero.copy()
    tiny.iloc[-2:] = 0.002  # 0 -> 0.2 %: below the rule's 1 pp
    result = detect_anomalies(tiny, AnomalyPolicy())
    assert not result.flag.any()
    assert np.isfinite(result.score.dropna()).all()
    big = zero.copy()
    big.iloc[-2:] = 0.05
    assert detect_anomalies(big, AnomalyPolicy()).latest_anomalous

    flat = pd.Series(np.full(60, 100.0), name="latency_p95_ms")
    nudged = flat.copy()
    nudged.iloc[-2:] = 110.0  # +10 %, rule needs +20 %
    assert not detect_anomalies(nudged, AnomalyPolicy()).flag.any()
    doubled = flat.copy()
    doubled.iloc[-2:] = 200.0
    assert detect_anomalies(doubled, AnomalyPolicy()).latest_anomalous

    # MAD 0 but a few distinct values: the mean absolute deviation gives the scale
    mostly = pd.Series(np.r_[np.zeros(40), [1.0] * 4, np.zeros(5)], name="other")
    scale = detect_anomalies(mostly, AnomalyPolicy()).scale.iloc[-1]
    assert scale == pytest.approx(math.sqrt(math.pi / 2) * 4 / 48)

    # no rule, no minimum change: a constant series still scores finitely
    unknown = pd.Series(np.r_[np.full(40, 5.0), 6.0, 6.0], name="other")
    res = detect_anomalies(unknown, AnomalyPolicy())
    assert res.latest_anomalous and np.isfinite(res.latest_score)
    assert res.score.iloc[30] == 0


def test_point_does_not_enter_its_own_baseline_and_flags_are_causal() -> None:
    frame = null_frame(3, seed=10)
    latency = frame.latency_p95_ms.copy()
    latency.iloc[-40:-30] *= 2
    full = detect_anomalies(latency, AnomalyPolicy())
    assert full.flag.any()
    for t in (len(latency) - 39, len(latency) - 35, len(latency) - 1, 2 * DAY + 30, 100):
        cut = detect_anomalies(latency.iloc[: t + 1], AnomalyPolicy())
        assert cut.latest_anomalous == full.flag.iloc[t]
        assert cut.latest_score == pytest.approx(full.score.iloc[t])

    for extreme in (-1e6, 1e6):  # robust statistics would hide one of the two, not both
        spiked = latency.copy()
        spiked.iloc[-1] = extreme
        again = detect_anomalies(spiked, AnomalyPolicy())
        assert again.baseline.iloc[-1] == full.baseline.iloc[-1]
        assert again.scale.iloc[-1] == full.scale.iloc[-1]
    # pure: the same input gives the same output
    pd.testing.assert_series_equal(detect_anomalies(latency, AnomalyPolicy()).score, full.score)


# --------------------------------------------------------------------------- false alarms


def test_null_series_false_alarm_rate_within_the_documented_rate() -> None:
    points = exceeded = flagged = 0
    for seed in range(8):
        frame = null_frame(4, seed=100 + seed)
        for result in detect_all(frame, AnomalyPolicy()).values():
            points += int(result.score.notna().sum())
            exceeded += int(result.exceed.sum())
            flagged += int(result.flag.sum())
    assert points > 30_000
    assert exceeded <= binom.ppf(0.999, points, DOCUMENTED_EXCEED_RATE)
    assert flagged <= binom.ppf(0.999, points, DOCUMENTED_FLAG_RATE)


# --------------------------------------------------------------------------- bad input, API


def test_bad_input_is_rejected_with_a_clear_error() -> None:
    series = null_frame(1, seed=11).latency_p95_ms
    with pytest.raises(ValueError, match="strictly increasing"):
        detect_anomalies(series.iloc[::-1], AnomalyPolicy())
    with pytest.raises(ValueError, match="strictly increasing"):
        detect_anomalies(pd.concat([series.iloc[:5], series.iloc[4:10]]), AnomalyPolicy())
    with pytest.raises(ValueError, match="evenly spaced"):
        detect_anomalies(series.drop(series.index[7]), AnomalyPolicy())
    with pytest.raises(ValueError, match="unknown direction 'sideways'"):
        detect_anomalies(series, AnomalyPolicy(), direction="sideways")
    with pytest.raises(ValueError, match="infinite"):
        detect_anomalies(series.replace(series.iloc[3], np.inf), AnomalyPolicy())
    with pytest.raises(ValueError, match="threshold"):
        AnomalyPolicy(threshold=-1)
    with pytest.raises(ValueError, match="min_abs_change"):
        SeriesRule(min_abs_change=-0.01)
    with pytest.raises(ValueError, match="level_window"):
        AnomalyPolicy(window=12, level_window=24, min_history=12)
    with pytest.raises(ValueError, match="persistence"):
        AnomalyPolicy(persistence=0)
    with pytest.raises(ValueError, match=r"no rule for column\(s\) \['quality'\]"):
        detect_all(null_frame(1, seed=11).assign(quality=0.8), AnomalyPolicy())


def test_policy_rules_merge_over_defaults() -> None:
    policy = AnomalyPolicy.model_validate(
        {"rules": {"error_rate": {"min_abs_change": 0.05}, "quality": {"direction": "down"}}}
    )
    assert policy.rules["error_rate"].min_abs_change == 0.05
    assert policy.rules["traffic"].direction == "both"  # kept from the defaults
    assert policy.rule_for("quality").direction == "down"
    assert policy.rule_for("not-configured").direction == "up"


def test_to_dict_is_json_friendly() -> None:
    frame = null_frame(1, seed=12)
    frame.iloc[-1] = [0, np.nan, np.nan, np.nan]
    for name, result in detect_all(frame, AnomalyPolicy()).items():
        summary = json.loads(json.dumps(result.to_dict(), allow_nan=False))
        assert summary["series"] == name
        assert summary["latest_at"] == frame.index[-1].isoformat()
        assert summary["method"] == "robust"
        assert isinstance(summary["reason"], str) and summary["reason"]
    assert detect_all(frame, AnomalyPolicy())["latency_p95_ms"].to_dict()["latest_score"] is None
