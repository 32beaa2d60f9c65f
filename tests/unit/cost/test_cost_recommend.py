"""Recommendations with monthly savings, rendered actions, dry-run and approval."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from loopline.cost.catalog import load_catalog
from loopline.cost.planner import plan_capacity
from loopline.cost.policy import CapacitySLO, RecommendPolicy, ThroughputSpec
from loopline.cost.recommend import (
    ActionPlan,
    Approval,
    CacheStats,
    DeploymentUsage,
    ExperimentSummary,
    decide_apply,
    idle_windows,
    rank,
    recommend_cache,
    recommend_capacity_plan,
    recommend_right_sizing,
    recommend_routing,
    recommend_scale_to_zero,
    render_hpa,
    render_node_pools,
    render_tfvars,
    to_yaml,
)

CATALOG = load_catalog()
SLO = CapacitySLO(
    headroom=1.2,
    throughput=ThroughputSpec(per_gpu={"T4": 1500.0, "A10G": 3500.0, "L4": 3000.0}, per_vcpu=120.0),
)


def test_right_sizing_moves_an_oversized_fleet_to_the_cheapest_fit() -> None:
    dep = DeploymentUsage(
        "chat", "aws/us-east-1/g5.2xlarge", "on_demand", 6, peak_tokens_per_s=5000.0
    )
    (rec,) = recommend_right_sizing([dep], CATALOG, SLO)
    assert rec.kind == "right_sizing"
    offer = CATALOG.get(rec.actions["offer"])
    assert offer.region == "us-east-1" and offer.cloud == "aws"
    tau = SLO.throughput.for_offer(offer)
    assert tau is not None and rec.actions["replicas"] * tau >= 5000.0 / 0.7  # target utilisation
    assert rec.current_monthly_cost == pytest.approx(6 * 1.212 * 730)
    assert rec.monthly_savings == pytest.approx(
        rec.current_monthly_cost - rec.actions["replicas"] * float(offer.on_demand_hourly) * 730
    )
    # no cheaper fleet in the same place covers the need
    for o in CATALOG.filter(clouds=["aws"], regions=["us-east-1"]).offers:
        t = SLO.throughput.for_offer(o)
        if t:
            n = max(int(np.ceil(5000.0 / 0.7 / t - 1e-9)), 1)
            assert n * float(o.on_demand_hourly) * 730 >= rec.proposed_monthly_cost - 1e-6


def test_right_sizing_flags_an_under_provisioned_fleet() -> None:
    dep = DeploymentUsage("chat", "aws/us-east-1/g4dn.xlarge", "spot", 1, peak_tokens_per_s=4000.0)
    (rec,) = recommend_right_sizing([dep], CATALOG, SLO)
    assert rec.kind == "under_provisioned" and rec.monthly_savings < 0
    best = DeploymentUsage("chat", rec.actions["offer"], "spot", rec.actions["replicas"], 4000.0)
    assert recommend_right_sizing([best], CATALOG, SLO) == ()  # already the best fit


def test_cache_savings_follow_the_extra_hits() -> None:
    stats = CacheStats("faq", 1_000_000, 0.2, 0.45, 0.002, "replay of last week's log")
    (rec,) = recommend_cache(stats)
    assert rec.monthly_savings == pytest.approx(1_000_000 * 0.25 * 0.002)
    assert "replay" in rec.reasons[-1]
    assert recommend_cache(CacheStats("faq", 1000, 0.2, 0.21, 0.001)) == ()  # below the floor
    with pytest.raises(ValueError, match="hit rates"):
        recommend_cache(CacheStats("faq", 1000, 1.2, 0.5, 0.001))


def summary(lo: float, guardrails: bool = True, cheaper: bool = True) -> ExperimentSummary:
    return ExperimentSummary(
        experiment="mini-vs-4o",
        control_variant="control",
        control_model="gpt-4o",
        candidate_variant="mini",
        candidate_model="gpt-4o-mini",
        primary_metric="resolution_rate",
        improvement_interval=(lo, lo + 0.04),
        non_inferiority_margin=0.02,
        guardrails_passed=guardrails,
        control_cost_per_request=0.006,
        candidate_cost_per_request=0.0004 if cheaper else 0.007,
        requests_per_month=300_000,
    )


def test_routing_only_to_a_non_inferior_cheaper_model() -> None:
    (rec,) = recommend_routing(summary(-0.01))
    assert rec.kind == "routing" and rec.actions["route_to"] == "mini"
    assert rec.monthly_savings == pytest.approx(300_000 * (0.006 - 0.0004))
    assert recommend_routing(summary(-0.03)) == ()  # lower bound below -margin: not shown
    assert recommend_routing(summary(-0.01, guardrails=False)) == ()
    assert recommend_routing(summary(0.01, cheaper=False)) == ()


def test_scale_to_zero_finds_cyclic_idle_windows() -> None:
    week = np.full(168, 500.0)
    for day in range(7):
        week[day * 24 : day * 24 + 6] = 0.0  # 00:00-06:00 idle every day
    week[167] = 0.0  # Sunday 23:00 joins Monday's night window across the wrap
    windows = idle_windows(week, 0.0, 3)
    assert (windows[0].start, windows[0].hours) == (24, 6) and len(windows) == 7
    assert any(w.start == 167 and w.hours == 7 for w in windows)
    (rec,) = recommend_scale_to_zero("chat", week, idle_cost_per_hour=2.0)
    idle_hours = 43
    cycles = 730 / 168
    assert rec.current_monthly_cost == pytest.approx(idle_hours * 2.0 * cycles)
    assert rec.proposed_monthly_cost == pytest.approx(7 * 5 / 60 * 2.0 * cycles)
    assert rec.actions["min_replicas"] == 0 and len(rec.actions["zero_windows"]) == 7
    assert recommend_scale_to_zero("chat", np.full(168, 10.0), 2.0) == ()
    short = np.full(24, 5.0)
    short[3:5] = 0.0
    assert idle_windows(short, 0.0, 3) == ()


def test_plan_actions_render_to_tfvars_node_pools_and_hpa() -> None:
    h = np.arange(48)
    demand = 20_000 + 15_000 * np.sin(2 * np.pi * h / 24)
    plan = plan_capacity(demand, CATALOG, SLO)
    tfvars = render_tfvars(plan, "chat")
    json.dumps(tfvars)  # JSON-ready
    pools = render_node_pools(plan, "chat")
    schedule = plan.schedule()
    assert len(pools) == len(schedule)
    for pool, ((key, pricing), replicas) in zip(pools, schedule.items(), strict=True):
        assert pool["instance_type"] == plan.offer(key).instance_type
        assert pool["capacity_type"] == ("SPOT" if pricing == "spot" else "ON_DEMAND")
        assert (pool["min_size"], pool["max_size"]) == (min(replicas), max(replicas))
    hpa = render_hpa(plan, "chat")
    totals = [sum(a.replicas for a in plan.allocations(i)) for i in range(48)]
    assert hpa["spec"]["minReplicas"] == min(totals) and hpa["spec"]["maxReplicas"] == max(totals)
    assert json.loads(hpa["metadata"]["annotations"]["loopline.io/replica-schedule"]) == totals
    assert "HorizontalPodAutoscaler" in to_yaml(hpa)
    (rec,) = recommend_capacity_plan(plan, "chat")
    assert rec.monthly_savings == pytest.approx(
        (plan.baseline("all_on_demand").cost - plan.expected_cost) * 730 / 48
    )
    assert rank([rec, *recommend_cache(CacheStats("c", 1e9, 0.1, 0.2, 0.01))])[0].kind == "cache"


def test_applying_is_dry_run_by_default_and_needs_approval() -> None:
    h = np.arange(24)
    plan = plan_capacity(10_000 + 5_000 * np.sin(2 * np.pi * h / 24), CATALOG, SLO)
    actions = ActionPlan.from_plan(plan, "chat")
    assert actions.dry_run
    dry = decide_apply(actions)
    assert not dry.apply and dry.dry_run
    unapproved = decide_apply(actions, dry_run=False)
    assert not unapproved.apply and "without an approval" in unapproved.reasons[0]
    ok = decide_apply(
        actions, Approval("alice", datetime(2026, 11, 27, tzinfo=UTC), "CHG-1"), dry_run=False
    )
    assert ok.apply and not ok.dry_run and "alice" in ok.reasons[0]
    assert not decide_apply(actions, Approval("alice", datetime(2026, 11, 27, tzinfo=UTC))).apply


def test_policy_models_are_frozen_and_strict() -> None:
    policy = RecommendPolicy()
    with pytest.raises(ValueError, match="extra"):
        RecommendPolicy(unknown=1)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="frozen"):
        policy.min_idle_hours = 5  # type: ignore[misc]
