"""Benchmark the capacity planner on the full shipped catalog over a 168-hour horizon.

    python benchmarks/cost.py [--repeat 3] [--levels 16] [--exact]

Measured in the same run, on one seeded synthetic week of demand (tokens/s per hour: daily
cycle, quieter weekend, noise; peak about 100k tok/s):

* solve   - wall time of ``plan_capacity`` (median of ``--repeat`` runs); target ≤ 2 s
* gap     - the largest MILP optimality gap HiGHS reports over all level MILPs; target 0
* savings - the plan's expected cost against the all-on-demand baseline (best on-demand-only
            mix, same MILP) and the single-cheapest-offer baseline, side by side with ratios
* spot    - a seeded interruption simulation of the plan: availability achieved vs target,
            and the simulated cost (interruptions + on-demand fallback); the same plan for a
            market with 10x the reclaim probabilities shows risk limiting the spot share

``--exact`` also solves every hour separately (no level grouping) to show what grouping costs.
Per-replica throughputs are assumptions for a small model (per GPU type, per vCPU), stated
below; the planner reads them from the SLO.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from loopline.cost.catalog import load_catalog
from loopline.cost.planner import CapacityPlan, plan_capacity
from loopline.cost.policy import CapacitySLO, InterruptionModel, PlannerPolicy, ThroughputSpec
from loopline.cost.spot import diversification, simulate_interruptions

THROUGHPUT = ThroughputSpec(
    per_gpu={
        "T4": 1500.0,
        "A10G": 3500.0,
        "A10": 3500.0,
        "L4": 3000.0,
        "A100-40GB": 9000.0,
        "A100-80GB": 10000.0,
        "H100": 18000.0,
        "H100-NVL": 20000.0,
    },
    per_vcpu=120.0,
)
SLO = CapacitySLO(latency_p95_ms=800, availability=0.999, headroom=1.2, throughput=THROUGHPUT)


def week_of_demand(seed: int = 7) -> np.ndarray:
    """One synthetic week of hourly demand (tokens/s): daily cycle, weekend dip, noise."""
    rng = np.random.default_rng(seed)
    h = np.arange(168)
    daily = np.sin(2 * np.pi * (h % 24 - 8) / 24)
    weekday = np.where((h // 24) % 7 < 5, 1.0, 0.6)
    demand = (55_000 + 40_000 * daily) * weekday + rng.normal(0, 2_500, 168)
    return np.clip(demand, 3_000, None)


def timed_plan(
    demand: np.ndarray, policy: PlannerPolicy, repeat: int
) -> tuple[float, CapacityPlan]:
    catalog = load_catalog()
    times, plan = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        plan = plan_capacity(demand, catalog, SLO, policy)
        times.append(time.perf_counter() - t0)
    assert plan is not None
    return statistics.median(times), plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="solves to time (median)")
    parser.add_argument("--levels", type=int, default=PlannerPolicy().max_levels)
    parser.add_argument("--exact", action="store_true", help="also solve each hour separately")
    args = parser.parse_args()

    demand = week_of_demand()
    catalog = load_catalog()
    policy = PlannerPolicy(max_levels=args.levels)
    seconds, plan = timed_plan(demand, policy, args.repeat)
    sim = simulate_interruptions(plan, seed=0)
    div = diversification(plan)
    s = plan.stats

    print(
        f"\nLoopline capacity-planner benchmark: {len(catalog)} offers in {catalog.header.as_of} "
        f"catalog, {s.eligible_offers} eligible, {s.n_hours} h horizon, {os.cpu_count()} cores"
    )
    print(f"{'measure':<34}{'value':>14}  note")
    solve_rows = [
        ("solve time (s, median)", f"{seconds:.3f}", f"target <= 2 s; {args.repeat} runs"),
        ("max MILP gap", f"{s.max_gap:.1e}", "target 0 (mip_rel_gap=0)"),
        ("MILPs solved", f"{s.n_milps}", "plan + all-on-demand baseline, all levels"),
        ("capacity levels / distinct hours", f"{s.n_levels}/{s.n_distinct_requirements}", ""),
        ("largest MILP (free variables)", f"{s.max_variables}", "after exact pruning/fixing"),
        ("over-provision from levels", f"{100 * s.level_overprovision:.2f} %", "of required"),
    ]
    for name, value, note in solve_rows:
        print(f"{name:<34}{value:>14}  {note}")

    base_od = plan.baseline("all_on_demand").cost
    base_single = plan.baseline("single_cheapest_offer")
    print(f"\n{'cost over 168 h (USD)':<34}{'cost':>14}{'plan / this':>13}{'savings':>10}")
    cost_rows = [
        ("capacity plan (expected)", plan.expected_cost),
        ("all on-demand (best mix)", base_od),
        ("single cheapest offer", base_single.cost),
    ]
    for name, cost in cost_rows:
        ratio = plan.expected_cost / cost
        print(f"{name:<34}{cost:>14,.2f}{ratio:>13.3f}{100 * (1 - ratio):>9.1f}%")
    print(f"  single cheapest offer = {base_single.description}")

    print(f"\nspot: {div.summary}; spot share up to {100 * div.max_spot_share:.1f} % of capacity")
    print(f"simulation ({sim.runs} runs, seed {sim.seed}): {sim.summary}")

    calm = policy.interruption.reclaim_probability
    harsh_model = InterruptionModel(reclaim_probability={k: 10 * v for k, v in calm.items()})
    harsh_s, harsh = timed_plan(demand, policy.model_copy(update={"interruption": harsh_model}), 1)
    harsh_div = diversification(harsh)
    print(
        f"harsh spot market (10x reclaim probabilities): {harsh_s:.2f} s, spot share up to "
        f"{100 * harsh_div.max_spot_share:.1f} %, spare "
        f"{min(lv.spare_fraction for lv in harsh.levels):.1f}-"
        f"{max(lv.spare_fraction for lv in harsh.levels):.1f} of required, "
        f"{100 * harsh.savings('all_on_demand'):.1f} % below all on-demand, "
        f"simulated availability {100 * simulate_interruptions(harsh, seed=0).availability:.3f} %"
    )

    if args.exact:
        exact_s, exact = timed_plan(demand, policy.model_copy(update={"max_levels": 168}), 1)
        print(
            f"\nexact per-hour plan (168 levels): {exact_s:.2f} s, cost "
            f"{exact.expected_cost:,.2f}; levels cost "
            f"{100 * (plan.expected_cost / exact.expected_cost - 1):+.2f} % vs exact, "
            f"max gap {exact.stats.max_gap:.1e}"
        )


if __name__ == "__main__":
    main()
