"""Benchmark the canary analysis: sequential statistics against a Flagger-kind threshold policy.

    python benchmarks/canary.py [--seed N] [--runs N] [--quick]

Both policies judge the same simulated traffic model (loopline.release.simulation) through
the library's own vectorised decision functions, in the same run:

* sequential - analyze_canary_arrays: exact event-share test (errors, slow requests) and
               mSPRT (quality), Bonferroni over metrics and steps, release-wide α = 1 %;
               looks after every 25 candidate requests.
* threshold  - threshold_check_arrays the Flagger way: one check per fixed interval, a
               passing check advances a step, rollback at 5 failed checks. Its interval is
               calibrated in this run: the shortest interval from a grid whose false-rollback
               rate on identical candidates is <= 1 %, the same target as the sequential
               policy (a shorter interval rolls back faster but falsely more often).

Stable: 2 % failed requests, 1 % slower than the reference latency (its p99), quality scores
0.80 +- 0.15; canary steps 5 -> 25 -> 50 -> 100 %; margins +1 pp errors, +1 pp slow share,
-3 % quality. Scenarios: identical candidates (false rollbacks; >= 500 runs), +5 pp errors and
-10 % quality (requests until rollback), and two more for context: +2 pp slow requests, and
+1 pp errors, exactly at the margin (how often each policy promotes it).

Targets: false rollbacks <= 1 %; median requests to rollback of the degraded candidates
<= 0.5 x the threshold policy's. Requests are those served by the candidate (the users exposed
to it); the total including stable traffic is shown alongside.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from loopline.release.analysis import metric_alpha
from loopline.release.policy import CanaryPolicy, ThresholdPolicy
from loopline.release.simulation import (
    SimulationResult,
    TrafficModel,
    simulate_sequential,
    simulate_threshold,
)

INTERVAL_GRID = (25, 50, 75, 100, 125, 150, 200, 300, 400, 600)
"""Candidate requests per threshold interval at the first (5 %) step."""
FALSE_ROLLBACK_TARGET = 0.01
REQUEST_RATIO_TARGET = 0.5


def calibrate_interval(
    stable: TrafficModel,
    weights: tuple[float, ...],
    policy: ThresholdPolicy,
    runs: int,
    rng: np.random.Generator,
) -> tuple[int, list[tuple[int, float]]]:
    """Shortest interval (total requests) with false rollbacks <= target; the whole scan."""
    scan: list[tuple[int, float]] = []
    chosen: int | None = None
    for per_candidate in INTERVAL_GRID:
        interval = round(per_candidate * 100 / weights[0])
        res = simulate_threshold(
            stable, stable, weights, policy, runs=runs, rng=rng, interval_requests=interval
        )
        scan.append((per_candidate, res.rollback_rate))
        if res.rollback_rate <= FALSE_ROLLBACK_TARGET:
            chosen = interval
            break
    if chosen is None:
        raise SystemExit("no interval in the grid keeps the threshold policy's false rollbacks low")
    return chosen, scan


def fmt_rate(x: float) -> str:
    return f"{100 * x:6.2f} %"


def fmt_n(x: float) -> str:
    return "      -" if math.isnan(x) else f"{x:7.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--runs", type=int, default=500, help="runs per degraded scenario")
    parser.add_argument("--identical-runs", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="few runs (harness smoke check)")
    args = parser.parse_args()
    runs, identical_runs = (100, 200) if args.quick else (args.runs, args.identical_runs)
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()

    stable = TrafficModel(error_rate=0.02, slow_share=0.01, quality_mean=0.80, quality_sd=0.15)
    canary = CanaryPolicy(steps=(5.0, 25.0, 50.0, 100.0), max_step_seconds=None)
    threshold = ThresholdPolicy()
    weights = canary.analysed_weights
    interval, scan = calibrate_interval(stable, weights, threshold, identical_runs, rng)

    scenarios: list[tuple[str, TrafficModel, int, str]] = [
        ("identical candidate", stable, identical_runs, "false rollbacks <= 1 %"),
        ("+5 pp errors", stable.degraded(errors_pp=0.05), runs, "seq <= 0.5 x threshold"),
        ("-10 % quality", stable.degraded(quality_rel=0.10), runs, "seq <= 0.5 x threshold"),
        ("+2 pp slow requests", stable.degraded(slow_pp=0.02), runs, "context"),
        ("+1 pp errors (= margin)", stable.degraded(errors_pp=0.01), runs, "context"),
    ]
    results: list[tuple[str, str, SimulationResult, SimulationResult]] = []
    for name, candidate, n, target in scenarios:
        seq = simulate_sequential(stable, candidate, canary, runs=n, rng=rng, look_requests=25)
        thr = simulate_threshold(
            stable, candidate, weights, threshold, runs=n, rng=rng, interval_requests=interval
        )
        results.append((name, target, seq, thr))
    elapsed = time.perf_counter() - start

    a = canary.analysis
    print(
        f"\nLoopline canary benchmark ({os.cpu_count()} cores, seed {args.seed}, {elapsed:.1f} s)"
    )
    print(
        f"stable: {100 * stable.error_rate:.0f} % errors, {100 * stable.slow_share:.0f} % slow, "
        f"quality {stable.quality_mean:.2f} +- {stable.quality_sd:.2f}; steps "
        + " -> ".join(f"{w:g}" for w in canary.steps)
        + " %"
    )
    print(
        f"sequential: alpha {a.alpha:g} release-wide (alpha_m {metric_alpha(canary):.3g} per "
        f"metric and step), promotion alpha {a.promotion_alpha:g}, looks every 25 candidate "
        "requests"
    )
    scanned = ", ".join(f"{c}: {100 * r:.1f} %" for c, r in scan)
    print(
        f"threshold: {threshold.max_failed_checks} failed checks roll back; interval "
        f"{interval} requests = {round(interval * weights[0] / 100)} candidate requests at "
        f"{weights[0]:g} % (calibrated: false rollbacks by interval [{scanned}])"
    )
    header = (
        f"\n{'scenario':<25}{'policy':<12}{'runs':>6}{'rolled back':>13}"
        f"{'median cand. req.':>19}{'(all req.)':>12}{'vs threshold':>17}  target"
    )
    print(header)
    print("-" * (len(header) + 22))
    verdicts: list[str] = []
    for name, target, seq, thr in results:
        ratio = seq.median_requests_to_rollback() / thr.median_requests_to_rollback()
        degraded = name != "identical candidate"
        for policy_name, res in (("sequential", seq), ("threshold", thr)):
            shown = res.median_requests_to_rollback() if degraded else math.nan
            total = res.median_requests_to_rollback(total=True) if degraded else math.nan
            vs = "1.00 (baseline)" if policy_name == "threshold" else f"{ratio:.2f}"
            if not degraded:
                vs = ""
            row = (
                f"{name if policy_name == 'sequential' else '':<25}{policy_name:<12}"
                f"{res.runs:>6}{fmt_rate(res.rollback_rate):>13}{fmt_n(shown):>19}"
                f"{fmt_n(total):>12}{vs:>17}  {target if policy_name == 'sequential' else ''}"
            )
            print(row.rstrip())
        if name == "identical candidate":
            ok = seq.rollback_rate <= FALSE_ROLLBACK_TARGET
            verdicts.append(
                f"false rollbacks: sequential {100 * seq.rollback_rate:.2f} % "
                f"(threshold {100 * thr.rollback_rate:.2f} %): {'PASS' if ok else 'FAIL'}"
            )
            promote = (seq.median_requests_to_promote(), thr.median_requests_to_promote())
            verdicts.append(
                "identical candidate, median candidate requests until promotion: "
                f"sequential {promote[0]:.0f}, threshold {promote[1]:.0f} (the sequential "
                "policy promotes a step only once every metric is shown within its margin)"
            )
        elif target.startswith("seq"):
            ok = ratio <= REQUEST_RATIO_TARGET and seq.rollback_rate >= 0.99
            verdicts.append(
                f"{name}: median requests to rollback {ratio:.2f} x threshold, sequential "
                f"rolled back {100 * seq.rollback_rate:.1f} %: {'PASS' if ok else 'FAIL'}"
            )
        elif "margin" in name:
            verdicts.append(
                f"{name}: promoted by sequential {100 * seq.promotion_rate:.1f} % "
                f"(bound {100 * a.promotion_alpha:.0f} %), by threshold "
                f"{100 * thr.promotion_rate:.1f} %"
            )
    print()
    for line in verdicts:
        print(line)


if __name__ == "__main__":
    main()
