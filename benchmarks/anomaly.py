"""Benchmark the metric-series anomaly detection: false alarms on null series, detection of faults.

    python benchmarks/anomaly.py [--seed N] [--runs N] [--quick]

Simulated serving metrics in 5-minute buckets (288 a day), the series the monitor judges:
traffic (requests per bucket), error rate, p95 latency and cost per request. Traffic has a
daily cycle of about ±60 % around 200 requests per bucket (two harmonics, random phase; about
70 at night and 330 at the peak); p95 latency is 400 ms and rises 30 % with load; the error
rate is 1 %; cost per request is $0.0004 with a ±10 % daily swing. Three null models:

* light    - Poisson traffic, binomial errors; latency and cost get log-normal noise with the
             sampling SD of a p95 (of log-normal latencies, σ = 0.5) and of a mean (CV 0.6) of
             the bucket's requests.
* heavy    - overdispersed traffic (Gamma-Poisson) and errors (beta-binomial), both with twice
             the variance of the light model at 200 requests; Student-t (3 df) noise on
             latency and cost: heavy tails.
* requests - request rows (log-normal latencies with 2 % of requests 4x slower, log-normal
             costs, 1 % status 500), bucketed by ``metric_series``: the whole path.

Null series of 1, 3 and 8 days give the per-point false-flag rate and false alerts (runs of
flagged points) per series-day of the default policy, side by side with the same policy
without the seasonal baseline (robust only: trailing median and MAD), and the exceedance
rate without persistence. Detection: each fault starts at a random bucket of the 8th day
(seasonal baseline in use, day or night) and lasts 2 hours (steps, drops) or 30 minutes
(error spikes); the series ends with it, so flags are what a monitor running every bucket
would have raised. Delay is counted in buckets from the first faulty bucket (0 = flagged at
once; the default persistence of 2 makes 1 the minimum).

Targets: false alerts <= 0.1 per series-day (light, 8 days) and <= 0.25 (heavy, 8 days);
latency x3, error rate 20 %, traffic 0 and traffic 30 % detected in >= 95 % of runs (light)
with a median delay <= 1 bucket.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from loopline.monitoring.anomaly import (
    SERIES_COLUMNS,
    AnomalyPolicy,
    detect_all,
    detect_anomalies,
    metric_series,
)

BUCKET = 300
DAY = 86_400 // BUCKET
TRAFFIC = 200.0
AMPLITUDE = 0.6
ERROR_RATE = 0.01
LATENCY_MS = 400.0
LATENCY_SIGMA = 0.5
COST = 4e-4
COST_CV = 0.6
OVERDISPERSION = 200.0
"""Gamma shape / beta concentration of the heavy model: twice the variance at 200 requests."""
P95_SD_FACTOR = 2.12
"""SD of log(sample p95) ≈ 2.12 σ / √n for log-normal latencies (asymptotic quantile SD)."""
P95_OVER_MEDIAN_WITH_SLOW_TAIL = 2.489
"""p95 / median of 98 % log-normal(σ = 0.5) and 2 % of the same 4x slower (solved numerically)."""
START = 1_704_067_200  # 2024-01-01T00:00:00Z

FALSE_ALERTS_TARGET = {"light": 0.1, "heavy": 0.25}
DETECTION_TARGET = 0.95
MUST_DETECT = ("latency x3", "error rate 20 %", "traffic 0", "traffic 30 %")


@dataclass(frozen=True)
class Fault:
    name: str
    series: str
    kind: str  # "latency" (multiplier), "errors" (rate), "traffic" (multiplier)
    value: float
    buckets: int


FAULTS = (
    Fault("latency x1.5", "latency_p95_ms", "latency", 1.5, 24),
    Fault("latency x3", "latency_p95_ms", "latency", 3.0, 24),
    Fault("error rate 5 %", "error_rate", "errors", 0.05, 6),
    Fault("error rate 20 %", "error_rate", "errors", 0.20, 6),
    Fault("traffic 0", "traffic", "traffic", 0.0, 24),
    Fault("traffic 30 %", "traffic", "traffic", 0.3, 24),
)


def daily_shape(n: int, rng: np.random.Generator) -> np.ndarray:
    """Daily cycle in [-1, 1] (two harmonics, random phase)."""
    t = np.arange(n)
    phase = rng.uniform(0, 2 * np.pi)
    wave = np.sin(2 * np.pi * t / DAY + phase) + 0.3 * np.sin(4 * np.pi * t / DAY + 2 * phase)
    return wave / 1.3


def simulate(
    rng: np.random.Generator, n: int, model: str, fault: Fault | None = None, onset: int = 0
) -> pd.DataFrame:
    """One series frame of ``n`` buckets (columns as ``metric_series`` makes them)."""
    shape = daily_shape(n, rng)
    expected = TRAFFIC * (1 + AMPLITUDE * shape)
    load = expected / TRAFFIC - 1
    lat_mult = np.ones(n)
    err = np.full(n, ERROR_RATE)
    rate = expected.copy()
    if fault is not None:
        window = slice(onset, onset + fault.buckets)
        if fault.kind == "latency":
            lat_mult[window] = fault.value
        elif fault.kind == "errors":
            err[window] = fault.value
        else:
            rate[window] *= fault.value
    if model == "requests":
        return _simulate_requests(rng, rate, err, LATENCY_MS * (1 + 0.3 * load) * lat_mult, shape)
    if model == "heavy":
        rate = rate * rng.gamma(OVERDISPERSION, 1 / OVERDISPERSION, n)
        err = rng.beta(err * OVERDISPERSION, (1 - err) * OVERDISPERSION)
    traffic = rng.poisson(rate)
    errors = rng.binomial(traffic, err)
    served = np.maximum(traffic, 1)
    if model == "heavy":
        e_lat, e_cost = rng.standard_t(3, n), rng.standard_t(3, n)
    else:
        e_lat, e_cost = rng.standard_normal(n), rng.standard_normal(n)
    latency = (
        LATENCY_MS
        * (1 + 0.3 * load)
        * lat_mult
        * np.exp(P95_SD_FACTOR * LATENCY_SIGMA / np.sqrt(served) * e_lat)
    )
    cost = COST * (1 + 0.1 * shape) * np.exp(COST_CV / np.sqrt(served) * e_cost)
    empty = traffic == 0
    index = pd.date_range(pd.Timestamp(START, unit="s", tz="UTC"), periods=n, freq=f"{BUCKET}s")
    return pd.DataFrame(
        {
            "traffic": traffic,
            "error_rate": np.where(empty, np.nan, errors / served),
            "latency_p95_ms": np.where(empty, np.nan, latency),
            "cost_per_request": np.where(empty, np.nan, cost),
        },
        index=index,
    )


def _simulate_requests(
    rng: np.random.Generator,
    rate: np.ndarray,
    err: np.ndarray,
    p95: np.ndarray,
    shape: np.ndarray,
) -> pd.DataFrame:
    """Request rows (2 % of requests 4x slower) bucketed by ``metric_series``."""
    n = len(rate)
    counts = rng.poisson(rate)
    bucket = np.repeat(np.arange(n), counts)
    total = len(bucket)
    ts = START + (bucket + rng.uniform(0, 1, total)) * BUCKET
    median = p95[bucket] / P95_OVER_MEDIAN_WITH_SLOW_TAIL
    latency = median * np.exp(LATENCY_SIGMA * rng.standard_normal(total))
    latency[rng.uniform(size=total) < 0.02] *= 4
    status = np.where(rng.uniform(size=total) < err[bucket], 500, 200)
    cost_mean = COST * (1 + 0.1 * shape[bucket])
    s = math.sqrt(math.log(1 + COST_CV**2))
    cost = cost_mean * np.exp(s * rng.standard_normal(total) - s * s / 2)
    rows = pd.DataFrame({"ts": ts, "status": status, "latency_ms": latency, "cost_usd": cost})
    return metric_series(rows, bucket_seconds=BUCKET, start=START, end=START + n * BUCKET)


# --------------------------------------------------------------------------- measurements


@dataclass
class NullTally:
    scored: int = 0
    seasonal: int = 0
    exceeded: int = 0
    flagged: int = 0
    alerts: int = 0
    robust_flagged: int = 0
    robust_alerts: int = 0

    def rate(self, count: int) -> float:
        return count / self.scored if self.scored else math.nan

    def per_day(self, count: int) -> float:
        return DAY * count / self.scored if self.scored else math.nan


def alerts(flag: np.ndarray) -> int:
    """Runs of consecutive flagged points (one alert each)."""
    return int(flag[0]) + int((flag[1:] & ~flag[:-1]).sum()) if len(flag) else 0


def run_null(
    model: str, days: int, runs: int, policy: AnomalyPolicy, rng: np.random.Generator
) -> dict[str, NullTally]:
    robust_only = policy.model_copy(update={"seasonal": False})
    tallies = {c: NullTally() for c in SERIES_COLUMNS}
    for _ in range(runs):
        frame = simulate(rng, days * DAY, model)
        default, robust = detect_all(frame, policy), detect_all(frame, robust_only)
        for col, tally in tallies.items():
            res, base = default[col], robust[col]
            flag, base_flag = res.flag.to_numpy(), base.flag.to_numpy()
            tally.scored += int(res.score.notna().sum())
            tally.seasonal += int((res.methods == "seasonal").sum())
            tally.exceeded += int(res.exceed.sum())
            tally.flagged += int(flag.sum())
            tally.alerts += alerts(flag)
            tally.robust_flagged += int(base_flag.sum())
            tally.robust_alerts += alerts(base_flag)
    return tallies


@dataclass(frozen=True)
class Detection:
    runs: int
    detected: float
    delays: tuple[int, ...]

    def delay(self, q: float) -> float:
        return float(np.percentile(self.delays, q)) if self.delays else math.nan


def run_fault(
    model: str, fault: Fault, runs: int, policy: AnomalyPolicy, rng: np.random.Generator
) -> tuple[Detection, Detection]:
    """Detection by the policy and, on the same series, by the policy without seasons."""
    n = 8 * DAY
    policies = (policy, policy.model_copy(update={"seasonal": False}))
    delays: tuple[list[int], list[int]] = ([], [])
    rule = policy.rules[fault.series]
    for _ in range(runs):
        onset = n - DAY + int(rng.integers(0, DAY - fault.buckets))
        frame = simulate(rng, n, model, fault, onset).iloc[: onset + fault.buckets]
        counts = frame["traffic"] if rule.per_request else None
        for p, found in zip(policies, delays, strict=True):
            flag = detect_anomalies(frame[fault.series], p, counts=counts).flag.to_numpy()
            if flag[onset:].any():
                found.append(int(np.argmax(flag[onset:])))
    seasonal, robust = (Detection(runs, len(d) / runs, tuple(d)) for d in delays)
    return seasonal, robust


# --------------------------------------------------------------------------- report


def pct(x: float, digits: int = 3) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.{digits}f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--runs", type=int, default=100, help="runs per fault and model")
    parser.add_argument("--quick", action="store_true", help="few runs (harness smoke check)")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    fault_runs = max(10, round(args.runs * scale))
    null_runs = {1: 200, 3: 80, 8: 40}
    rng = np.random.default_rng(args.seed)
    policy = AnomalyPolicy()
    started = time.perf_counter()

    null: list[tuple[str, int, int, dict[str, NullTally]]] = []
    for model in ("light", "heavy"):
        for days, full_runs in null_runs.items():
            runs = max(3, round(full_runs * scale))
            null.append((model, days, runs, run_null(model, days, runs, policy, rng)))
    req_runs = max(1, round(6 * scale))
    null.append(("requests", 8, req_runs, run_null("requests", 8, req_runs, policy, rng)))
    detections = {
        (model, f.name): run_fault(model, f, fault_runs, policy, rng)
        for model in ("light", "heavy")
        for f in FAULTS
    }
    elapsed = time.perf_counter() - started

    print(
        f"\nLoopline anomaly benchmark ({os.cpu_count()} cores, seed {args.seed}, {elapsed:.1f} s)"
    )
    print(
        f"policy: robust z >= {policy.threshold:g} for {policy.persistence} buckets in a row; "
        f"window {policy.window}, level window {policy.level_window}, min history "
        f"{policy.min_history}; seasonal after {policy.min_seasons} of {policy.season_length} "
        f"buckets (profile over <= {policy.max_seasons} seasons ± {policy.season_neighbours}); "
        f"min {policy.min_requests} requests per bucket"
    )
    header = (
        f"\n{'null model':<10}{'days':>5}{'runs':>6}  {'series':<18}{'points':>9}{'seasonal':>10}"
        f"{'exceed/pt':>11}{'flag/pt':>10}{'alerts/day':>12}  {'robust only: flag/pt':>21}"
        f"{'alerts/day':>12}"
    )
    print(header)
    print("-" * len(header))
    for model, days, runs, tallies in null:
        for i, (col, t) in enumerate(tallies.items()):
            lead = f"{model:<10}{days:>5}{runs:>6}" if i == 0 else " " * 21
            print(
                f"{lead}  {col:<18}{t.scored:>9}{pct(t.seasonal / max(t.scored, 1), 0):>10}"
                f"{pct(t.rate(t.exceeded)):>11}{pct(t.rate(t.flagged)):>10}"
                f"{t.per_day(t.alerts):>12.3f}  {pct(t.rate(t.robust_flagged)):>21}"
                f"{t.per_day(t.robust_alerts):>12.3f}"
            )
    print(
        "(exceed: past the threshold without persistence; alerts: runs of flagged points; "
        "robust only: the same policy with seasonal=False)"
    )
    header = (
        f"\n{'fault (8th day)':<18}{'model':<8}{'runs':>6}{'detected':>10}"
        f"{'delay median':>14}{'p90':>6}{'max':>6}  {'robust only: detected':>22}"
        f"{'delay median':>14}"
    )
    print(header)
    print("-" * len(header))
    for f in FAULTS:
        for model in ("light", "heavy"):
            d, r = detections[(model, f.name)]
            worst = max(d.delays) if d.delays else math.nan
            print(
                f"{f.name if model == 'light' else '':<18}{model:<8}{d.runs:>6}"
                f"{pct(d.detected, 1):>10}{d.delay(50):>14.1f}{d.delay(90):>6.1f}{worst:>6}"
                f"  {pct(r.detected, 1):>22}{r.delay(50):>14.1f}"
            )
    print(f"(delays in buckets of {BUCKET // 60} min from the first faulty bucket)")

    print()
    for model, days, _, tallies in null:
        if days != 8 or model not in FALSE_ALERTS_TARGET:
            continue
        worst_col, worst = max(
            ((c, t.per_day(t.alerts)) for c, t in tallies.items()), key=lambda kv: kv[1]
        )
        target = FALSE_ALERTS_TARGET[model]
        print(
            f"false alerts ({model}, 8 days): at most {worst:.3f} per series-day ({worst_col}); "
            f"target <= {target:g}: {'PASS' if worst <= target else 'FAIL'}"
        )
    for name in MUST_DETECT:
        d = detections[("light", name)][0]
        ok = d.detected >= DETECTION_TARGET and d.delay(50) <= 1
        print(
            f"{name} (light): detected {pct(d.detected, 1)}, median delay {d.delay(50):.0f} "
            f"bucket(s); target >= {100 * DETECTION_TARGET:.0f} % with a median delay <= 1: "
            f"{'PASS' if ok else 'FAIL'}"
        )


if __name__ == "__main__":
    main()
