"""Capacity planner: optimality against brute force, feasibility and availability on every plan."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from loopline.cost.catalog import Catalog, load_catalog, parse_catalog
from loopline.cost.planner import (
    CapacityPlan,
    chernoff_tail,
    group_levels,
    plan_capacity,
    risk_budget,
)
from loopline.cost.policy import CapacitySLO, InterruptionModel, PlannerPolicy, ThroughputSpec

HEADER = "# test catalog\n# as_of: 2026-01-01\n# source: hand-made for tests\n"
COLUMNS = (
    "cloud,region,instance_type,vcpu,memory_gib,gpu_type,gpu_count,"
    "on_demand_hourly,spot_hourly,interruption_band\n"
)
BANDS = ("<5%", "5-10%", "10-15%", "15-20%", ">20%")
MODERATE = InterruptionModel(
    reclaim_probability={
        "<5%": 0.001,
        "5-10%": 0.002,
        "10-15%": 0.004,
        "15-20%": 0.01,
        ">20%": 0.03,
    },
    replacement_overhead_hours=0.25,
)
HARSH = InterruptionModel(
    reclaim_probability={"<5%": 0.02, "5-10%": 0.05, "10-15%": 0.1, "15-20%": 0.15, ">20%": 0.25},
    replacement_overhead_hours=0.25,
)


def tiny_catalog(rows: list[tuple[str, str, str, int, float, float, str]]) -> Catalog:
    """rows: (cloud, region, instance_type, vcpu, on_demand, spot, band)."""
    body = "".join(
        f"{c},{r},{t},{v},{4 * v},,0,{od},{sp},{band}\n" for c, r, t, v, od, sp, band in rows
    )
    return parse_catalog(HEADER + COLUMNS + body, "tiny.csv")


def random_instance(seed: int) -> tuple[Catalog, CapacitySLO, PlannerPolicy, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = []
    sizes = rng.choice([1, 2], size=3)
    for i, size in enumerate(sizes):
        od = round(float(size * rng.uniform(0.9, 1.2)), 3)
        spot = round(od * float(rng.uniform(0.12, 0.35)), 3)
        cloud = ("aws", "gcp")[i % 2]
        rows.append((cloud, f"r{i}", f"t{i}", int(size) * 4, od, spot, str(rng.choice(BANDS))))
    slo = CapacitySLO(
        availability=float(rng.choice([0.99, 0.995])),
        headroom=1.1,
        min_replicas=1,
        throughput=ThroughputSpec(per_vcpu=25.0),  # 100 tok/s per size unit
    )
    policy = PlannerPolicy(
        max_spot_share_per_offer=float(rng.choice([0.25, 0.34, 0.5])),
        spare_capacity_options=(0.0, 0.25, 0.5, 1.0),
        interruption=MODERATE,
        max_levels=8,
    )
    demand = rng.uniform(500, 1000, size=2).round(1)
    return tiny_catalog(rows), slo, policy, demand


def brute_force(level: float, catalog: Catalog, slo: CapacitySLO, policy: PlannerPolicy) -> float:
    """Cheapest fleet by enumeration of every integer fleet and spare option (no pruning)."""
    theta = policy.max_spot_share_per_offer
    eps = 1 - slo.availability
    offers = catalog.offers
    tau = np.array([slo.throughput.for_offer(o) or 0.0 for o in offers])
    p = np.array([policy.interruption.probability(o) for o in offers])
    spot_cost = np.array([float(o.spot_hourly) for o in offers]) * (
        1 + p * policy.interruption.replacement_overhead_hours
    )
    od_cost = np.array([float(o.on_demand_hourly) for o in offers])
    rho_max = max(policy.spare_capacity_options)
    spot_ranges = [range(math.floor(theta * level / t + 1e-9) + 1) for t in tau]
    od_ranges = [
        range(max(math.ceil(level * (1 + rho_max) / t - 1e-9), slo.min_replicas) + 1) for t in tau
    ]
    spot = np.array(list(itertools.product(*spot_ranges)), dtype=float)
    od = np.array(list(itertools.product(*od_ranges)), dtype=float)
    best = math.inf
    for rho in policy.spare_capacity_options:
        mu = risk_budget(rho / theta, eps)
        s_ok = spot[(spot @ (p * tau)) <= theta * level * mu * (1 + 1e-12) + 1e-12]
        cap = (s_ok @ tau)[:, None] + (od @ tau)[None, :]
        count = s_ok.sum(1)[:, None] + od.sum(1)[None, :]
        cost = (s_ok @ spot_cost)[:, None] + (od @ od_cost)[None, :]
        feasible = (cap >= level * (1 + rho) - 1e-9) & (count >= slo.min_replicas)
        if feasible.any():
            best = min(best, float(cost[feasible].min()))
    return best


def shortfall_probability(plan: CapacityPlan, level_index: int, need: float) -> float:
    """Exact P(capacity after pool reclaims < need) by enumerating reclaimed subsets."""
    lv = plan.levels[level_index]
    spot = [a for a in lv.allocations if a.pricing == "spot"]
    total = lv.capacity
    prob = 0.0
    for hits in itertools.product((0, 1), repeat=len(spot)):
        pr = math.prod(
            a.reclaim_probability if h else 1 - a.reclaim_probability
            for a, h in zip(spot, hits, strict=True)
        )
        lost = sum(a.capacity for a, h in zip(spot, hits, strict=True) if h)
        if total - lost < need - 1e-9:
            prob += pr
    return prob


def assert_feasible(plan: CapacityPlan, slo: CapacitySLO, policy: PlannerPolicy) -> None:
    theta = policy.max_spot_share_per_offer
    assert plan.feasible, plan.reasons
    for h in range(plan.hours):
        lv = plan.level_of(h)
        required = plan.required[h]
        assert lv.required >= required - 1e-9
        assert lv.capacity >= required * (1 + lv.spare_fraction) - 1e-9  # SLO + spare
        if plan.demand[h] > 0:
            assert lv.replicas >= slo.min_replicas
        for a in lv.allocations:
            if a.pricing == "spot":
                assert a.capacity <= theta * lv.required + 1e-9  # diversification cap
        assert lv.shortfall_bound <= 1 - slo.availability + 1e-12


@pytest.mark.parametrize("seed", range(12))
def test_planner_matches_brute_force_on_small_instances(seed: int) -> None:
    catalog, slo, policy, demand = random_instance(seed)
    plan = plan_capacity(demand, catalog, slo, policy)
    assert_feasible(plan, slo, policy)
    assert plan.stats.level_overprovision == 0.0  # two hours, exact levels
    for lv in plan.levels:
        assert lv.cost_per_hour == pytest.approx(
            brute_force(lv.required, catalog, slo, policy), abs=1e-9
        )
        assert lv.mip_gap <= 1e-9
    # the exact availability of every level meets the target
    for i, lv in enumerate(plan.levels):
        assert shortfall_probability(plan, i, lv.required) <= 1 - slo.availability + 1e-12


def test_interruption_risk_limits_spot_share() -> None:
    rows = [
        ("aws", "a", "safe", 4, 1.0, 0.3, "<5%"),
        ("aws", "b", "risky", 4, 1.0, 0.2, ">20%"),
        ("gcp", "c", "mid", 4, 1.0, 0.3, "5-10%"),
    ]
    catalog = tiny_catalog(rows)
    slo = CapacitySLO(availability=0.999, headroom=1.0, throughput=ThroughputSpec(per_vcpu=25.0))
    calm = PlannerPolicy(max_spot_share_per_offer=0.25)
    harsh = calm.model_copy(update={"interruption": HARSH})
    demand = [2000.0]
    easy = plan_capacity(demand, catalog, slo, calm)
    hard = plan_capacity(demand, catalog, slo, harsh)
    for plan, policy in ((easy, calm), (hard, harsh)):
        assert_feasible(plan, slo, policy)
    assert hard.spot_share(0) < easy.spot_share(0)
    assert hard.expected_cost > easy.expected_cost
    # the cheapest but riskiest pool is used less under the harsh model
    risky = {a.offer: a.replicas for a in hard.allocations(0)}.get("aws/b/risky", 0)
    risky_calm = {a.offer: a.replicas for a in easy.allocations(0)}.get("aws/b/risky", 0)
    assert risky <= risky_calm


def test_full_catalog_week_is_feasible_exact_and_beats_baselines() -> None:
    catalog = load_catalog()
    slo = CapacitySLO(
        availability=0.999,
        throughput=ThroughputSpec(
            per_gpu={"T4": 1500.0, "L4": 3000.0, "A10G": 3500.0}, per_vcpu=120.0
        ),
    )
    h = np.arange(168)
    demand = 40_000 + 30_000 * np.sin(2 * np.pi * (h % 24 - 8) / 24) * np.where(
        h // 24 % 7 < 5, 1, 0.5
    )
    policy = PlannerPolicy()
    plan = plan_capacity(demand, catalog, slo, policy)
    assert_feasible(plan, slo, policy)
    assert plan.stats.max_gap <= 1e-9
    assert all(s == "optimal" for s in plan.stats.statuses)
    assert plan.stats.n_levels <= policy.max_levels
    od = plan.baseline("all_on_demand").cost
    single = plan.baseline("single_cheapest_offer").cost
    assert plan.expected_cost < od <= single + 1e-9
    assert plan.savings("all_on_demand") > 0.2
    schedule = plan.schedule()
    for hour in (0, 50, 167):  # the schedule reproduces each hour's fleet
        fleet = {(a.offer, a.pricing): a.replicas for a in plan.allocations(hour)}
        assert {k: v[hour] for k, v in schedule.items() if v[hour]} == fleet


def test_no_spot_plan_equals_on_demand_baseline() -> None:
    catalog, slo, policy, demand = random_instance(3)
    plan = plan_capacity(demand, catalog, slo, policy.model_copy(update={"allow_spot": False}))
    assert all(a.pricing == "on_demand" for lv in plan.levels for a in lv.allocations)
    assert plan.expected_cost == pytest.approx(plan.baseline("all_on_demand").cost)


def test_unplannable_inputs_come_back_infeasible_with_reasons() -> None:
    catalog = load_catalog()
    no_throughput = CapacitySLO(throughput=ThroughputSpec(per_gpu={"TPU": 1.0}))
    plan = plan_capacity([100.0], catalog, no_throughput)
    assert not plan.feasible and "no catalog offer" in plan.reasons[0]
    slo = CapacitySLO(throughput=ThroughputSpec(per_vcpu=100.0))
    assert not plan_capacity([-1.0], catalog, slo).feasible
    assert not plan_capacity([], catalog, slo).feasible


def test_zero_demand_hours_scale_to_zero_when_allowed() -> None:
    catalog, slo, policy, _ = random_instance(1)
    plan = plan_capacity([0.0, 300.0], catalog, slo.model_copy(update={"min_replicas": 0}), policy)
    assert plan.allocations(0) == ()
    assert plan.capacity(1) >= 300.0 * slo.headroom


def test_group_levels_is_the_least_overprovisioning_partition() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        values = rng.integers(0, 50, size=9).astype(float)
        k = int(rng.integers(1, 5))
        levels, assign = group_levels(values, k)
        assert np.all(levels[assign] >= values)
        got = float(np.sum(levels[assign] - values))
        distinct = np.unique(values)
        best = math.inf
        for cuts in itertools.combinations(range(1, len(distinct)), min(k, len(distinct)) - 1):
            groups = np.split(distinct, cuts)
            cost = sum(float(np.sum(g.max() - values[np.isin(values, g)])) for g in groups)
            best = min(best, cost)
        assert got == pytest.approx(best)


def test_risk_budget_inverts_the_chernoff_bound() -> None:
    for k in (0.5, 1.0, 3.0, 10.0):
        for eps in (1e-2, 1e-3, 1e-4):
            mu = risk_budget(k, eps)
            assert 0 < mu < k
            assert chernoff_tail(mu, k) == pytest.approx(eps, rel=1e-6)
            assert chernoff_tail(mu * 1.01, k) > eps
    assert risk_budget(0.0, 1e-3) == 0.0
    assert chernoff_tail(2.0, 1.0) == 1.0


def test_small_instances_exercise_both_spot_and_on_demand_plans() -> None:
    with_spot = 0
    for seed in range(12):
        catalog, slo, policy, demand = random_instance(seed)
        plan = plan_capacity(demand, catalog, slo, policy)
        with_spot += any(lv.spot_capacity > 0 for lv in plan.levels)
    assert 4 <= with_spot < 12  # the brute-force comparison covers both kinds of optimum
