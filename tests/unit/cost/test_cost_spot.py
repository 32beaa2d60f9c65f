"""Spot strategy: diversification, fallback rules and the interruption simulation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from loopline.cost.catalog import parse_catalog
from loopline.cost.planner import CapacityPlan, plan_capacity
from loopline.cost.policy import (
    CapacitySLO,
    FallbackPolicy,
    InterruptionModel,
    PlannerPolicy,
    ThroughputSpec,
)
from loopline.cost.spot import diversification, fallback_rules, simulate_interruptions

CATALOG = parse_catalog(
    "# t\n# as_of: 2026-01-01\n# source: tests\n"
    "cloud,region,instance_type,vcpu,memory_gib,gpu_type,gpu_count,on_demand_hourly,"
    "spot_hourly,interruption_band\n"
    "aws,us-east-1,a,4,16,,0,1.0,0.2,<5%\n"
    "aws,us-west-2,a,4,16,,0,1.0,0.22,5-10%\n"
    "gcp,us-central1,b,4,16,,0,1.05,0.21,<5%\n"
    "azure,eastus,c,4,16,,0,1.1,0.25,10-15%\n",
    "spot.csv",
)
SLO = CapacitySLO(availability=0.99, headroom=1.0, throughput=ThroughputSpec(per_vcpu=25.0))
MODEL = InterruptionModel(
    reclaim_probability={
        "<5%": 0.002,
        "5-10%": 0.004,
        "10-15%": 0.006,
        "15-20%": 0.01,
        ">20%": 0.02,
    }
)
POLICY = PlannerPolicy(max_spot_share_per_offer=0.25, interruption=MODEL)


def make_plan() -> CapacityPlan:
    hours = np.arange(48)
    demand = 1500 + 700 * np.sin(2 * np.pi * hours / 24)
    plan = plan_capacity(demand, CATALOG, SLO, POLICY)
    assert plan.feasible and any(lv.spot_capacity > 0 for lv in plan.levels)
    return plan


def exact_availability(plan: CapacityPlan, stress: float) -> float:
    """Mean over hours of P(surviving capacity ≥ required), enumerating reclaimed pools."""
    total = 0.0
    for h in range(plan.hours):
        lv = plan.level_of(h)
        spot = [a for a in lv.allocations if a.pricing == "spot"]
        ok = 0.0
        for hits in itertools.product((0, 1), repeat=len(spot)):
            p = [min(a.reclaim_probability * stress, 1.0) for a in spot]
            pr = math.prod(q if x else 1 - q for q, x in zip(p, hits, strict=True))
            lost = sum(a.capacity for a, x in zip(spot, hits, strict=True) if x)
            ok += pr * (lv.capacity - lost >= plan.required[h] - 1e-9)
        total += ok
    return total / plan.hours


def test_simulation_meets_the_target_and_matches_exact_availability() -> None:
    plan = make_plan()
    report = simulate_interruptions(plan, FallbackPolicy(runs=4000), seed=1)
    assert report.meets_target
    assert report.availability >= plan.availability_target
    assert report.availability == pytest.approx(exact_availability(plan, 1.0), abs=2e-3)
    # cost: reclaimed spot replaced by pricier on-demand for the rest of the hour
    assert report.cost_mean >= plan.nominal_cost - 1e-9
    assert report.interruptions_per_run > 0


def test_stress_lowers_availability_and_raises_cost_consistently() -> None:
    plan = make_plan()
    calm = simulate_interruptions(plan, FallbackPolicy(runs=3000), seed=2)
    stressed = simulate_interruptions(plan, FallbackPolicy(runs=3000, stress=30.0), seed=2)
    assert stressed.availability < calm.availability
    assert stressed.availability == pytest.approx(exact_availability(plan, 30.0), abs=0.01)
    assert stressed.cost_mean > calm.cost_mean
    assert stressed.fallback_replica_hours > calm.fallback_replica_hours
    assert stressed.served_fraction <= 1.0


def test_simulation_is_reproducible_by_seed() -> None:
    plan = make_plan()
    a = simulate_interruptions(plan, FallbackPolicy(runs=500, stress=10.0), seed=5)
    b = simulate_interruptions(plan, FallbackPolicy(runs=500, stress=10.0), seed=5)
    c = simulate_interruptions(plan, FallbackPolicy(runs=500, stress=10.0), seed=6)
    assert a == b
    assert a != c


def test_diversification_respects_the_cap_and_spreads_over_clouds() -> None:
    plan = make_plan()
    div = diversification(plan)
    assert div.within_cap and div.max_pool_share <= 0.25 + 1e-9
    assert div.spot_pools_used >= 3
    assert len(div.clouds) >= 2
    assert div.max_spot_pools >= 4 - 1  # at least three pools carry the busiest level


def test_fallback_rules_cover_every_spot_pool_used() -> None:
    plan = make_plan()
    rules = fallback_rules(plan, FallbackPolicy(replacement_delay_minutes=3))
    used = {a.offer for lv in plan.levels for a in lv.allocations if a.pricing == "spot"}
    assert {r.pool for r in rules} == used
    for r in rules:
        assert r.fallback_pricing == "on_demand" and r.fallback_offer == r.pool
        assert r.max_replicas == max(
            a.replicas
            for lv in plan.levels
            for a in lv.allocations
            if a.offer == r.pool and a.pricing == "spot"
        )
        assert "3 min" in r.description
