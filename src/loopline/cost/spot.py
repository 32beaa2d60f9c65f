"""Spot strategy: diversification of a plan, its fallback rules, and a simulation of interruptions.

* :func:`diversification` measures how a :class:`~loopline.cost.planner.CapacityPlan` spreads
  spot capacity: largest pool share against the cap, pools, clouds and regions per hour.
* :func:`fallback_rules` states, per spot pool the plan uses, what happens on a reclaim:
  on-demand replicas of the same offer replace the lost ones after a delay (the node-pool
  fallback a cluster autoscaler implements).
* :func:`simulate_interruptions` replays the schedule many times with seeded random pool
  reclaims (the planner's model: pool-wide, independent, probability per band, optionally
  stressed) and the fallback rule, and reports the availability achieved (share of hours whose
  surviving capacity covers the required capacity, and the demand), the demand actually served,
  and the cost including replacement replicas.

Cost model of one simulated hour: the plan's nominal cost; a reclaimed pool stops billing its
spot replicas at the reclaim time u ~ U(0, 1) and bills the same number of on-demand replicas
from u to the end of the hour; those serve after ``replacement_delay_minutes``. Served demand
counts the shortfall for the whole delay, as if every reclaim of the hour happened at once
(pessimistic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loopline.cost.planner import CapacityPlan
from loopline.cost.policy import FallbackPolicy


@dataclass(frozen=True)
class FallbackRule:
    """What replaces a reclaimed spot pool."""

    pool: str
    fallback_offer: str
    fallback_pricing: str
    delay_minutes: float
    max_replicas: int
    reclaim_probability: float

    @property
    def description(self) -> str:
        return (
            f"on reclaim of spot {self.pool}: launch up to {self.max_replicas} on-demand "
            f"{self.fallback_offer} replicas (serving after {self.delay_minutes:g} min)"
        )


def fallback_rules(
    plan: CapacityPlan, policy: FallbackPolicy | None = None
) -> tuple[FallbackRule, ...]:
    """One rule per spot pool the plan uses: on-demand replicas of the same offer replace it."""
    policy = policy or FallbackPolicy()
    peak: dict[str, int] = {}
    prob: dict[str, float] = {}
    for lv in plan.levels:
        for a in lv.allocations:
            if a.pricing == "spot":
                peak[a.offer] = max(peak.get(a.offer, 0), a.replicas)
                prob[a.offer] = a.reclaim_probability
    return tuple(
        FallbackRule(
            pool, pool, "on_demand", policy.replacement_delay_minutes, peak[pool], prob[pool]
        )
        for pool in sorted(peak)
    )


@dataclass(frozen=True)
class DiversificationReport:
    """How spread out the plan's spot capacity is."""

    max_pool_share: float
    cap: float
    within_cap: bool
    min_spot_pools: int
    max_spot_pools: int
    spot_pools_used: int
    clouds: tuple[str, ...]
    regions: tuple[str, ...]
    max_spot_share: float

    @property
    def summary(self) -> str:
        return (
            f"{self.spot_pools_used} spot pools over {len(self.clouds)} clouds and "
            f"{len(self.regions)} regions; largest pool {100 * self.max_pool_share:.1f} % of "
            f"required capacity (cap {100 * self.cap:.1f} %)"
        )


def diversification(plan: CapacityPlan) -> DiversificationReport:
    """Largest spot pool share of a level's required capacity, pool counts, clouds and regions."""
    max_share, max_spot_share = 0.0, 0.0
    counts = []
    pools: set[str] = set()
    for lv in plan.levels:
        spot = [a for a in lv.allocations if a.pricing == "spot" and a.replicas > 0]
        counts.append(len(spot))
        pools |= {a.offer for a in spot}
        if lv.required > 0:
            max_share = max([max_share, *(a.capacity / lv.required for a in spot)])
        if lv.capacity > 0:
            max_spot_share = max(max_spot_share, lv.spot_capacity / lv.capacity)
    clouds = tuple(sorted({p.split("/")[0] for p in pools}))
    regions = tuple(sorted({"/".join(p.split("/")[:2]) for p in pools}))
    cap = plan.max_spot_share_per_offer
    return DiversificationReport(
        max_pool_share=max_share,
        cap=cap,
        within_cap=max_share <= cap + 1e-9,
        min_spot_pools=min(counts, default=0),
        max_spot_pools=max(counts, default=0),
        spot_pools_used=len(pools),
        clouds=clouds,
        regions=regions,
        max_spot_share=max_spot_share,
    )


@dataclass(frozen=True)
class SimulationReport:
    """Outcome of ``runs`` simulated horizons of the plan under spot interruptions."""

    runs: int
    hours: int
    seed: int
    stress: float
    availability: float
    demand_availability: float
    served_fraction: float
    worst_hour_availability: float
    availability_target: float
    interruptions_per_run: float
    planned_expected_cost: float
    cost_mean: float
    cost_p95: float
    fallback_replica_hours: float

    @property
    def meets_target(self) -> bool:
        """Achieved availability (required capacity covered) at or above the target."""
        return self.availability >= self.availability_target

    @property
    def summary(self) -> str:
        return (
            f"availability {100 * self.availability:.3f} % (target "
            f"{100 * self.availability_target:.3f} %), demand served "
            f"{100 * self.served_fraction:.3f} %, cost {self.cost_mean:,.2f} "
            f"(p95 {self.cost_p95:,.2f}, planned {self.planned_expected_cost:,.2f})"
        )


def simulate_interruptions(
    plan: CapacityPlan, policy: FallbackPolicy | None = None, seed: int = 0
) -> SimulationReport:
    """Seeded Monte-Carlo of pool reclaims over the schedule (see the module docstring)."""
    policy = policy or FallbackPolicy()
    rng = np.random.default_rng(seed)
    runs, hours = policy.runs, plan.hours
    delay = policy.replacement_delay_minutes / 60.0
    demand = np.asarray(plan.demand, dtype=float)
    required = np.asarray(plan.required, dtype=float)
    hour_level = np.asarray(plan.hour_level, dtype=np.int64)
    ok_req = np.zeros((runs, hours), dtype=bool)
    ok_dem = np.zeros((runs, hours), dtype=bool)
    served = np.zeros((runs, hours))
    cost = np.zeros((runs, hours))
    reclaims = np.zeros(runs)
    fallback_hours = np.zeros(runs)
    for index, lv in enumerate(plan.levels):
        cols = np.flatnonzero(hour_level == index)
        if cols.size == 0:
            continue
        spot = [a for a in lv.allocations if a.pricing == "spot" and a.replicas > 0]
        capacity = lv.capacity
        nominal = lv.nominal_cost_per_hour
        if not spot:
            ok_req[:, cols] = capacity >= required[cols] - 1e-9
            ok_dem[:, cols] = capacity >= demand[cols] - 1e-9
            served[:, cols] = np.minimum(demand[cols], capacity)
            cost[:, cols] = nominal
            continue
        p = np.minimum(np.array([a.reclaim_probability for a in spot]) * policy.stress, 1.0)
        cap = np.array([a.capacity for a in spot])
        replicas = np.array([a.replicas for a in spot], dtype=float)
        spot_bill = np.array([a.nominal_cost_per_hour for a in spot])
        od_price = np.array([float(plan.offer(a.offer).on_demand_hourly) for a in spot])
        shape = (runs, cols.size, len(spot))
        hit = rng.random(shape) < p
        when = rng.random(shape, dtype=np.float32)
        lost = hit @ cap
        avail = capacity - lost
        ok_req[:, cols] = avail >= required[cols] - 1e-9
        ok_dem[:, cols] = avail >= demand[cols] - 1e-9
        short = np.maximum(demand[cols] - avail, 0.0)
        served[:, cols] = np.minimum(demand[cols], capacity) - short * min(delay, 1.0)
        rest = np.where(hit, 1.0 - when, 0.0).astype(float)
        cost[:, cols] = nominal + rest @ (replicas * od_price) - rest @ spot_bill
        reclaims += hit.sum(axis=(1, 2))
        fallback_hours += (rest * replicas).sum(axis=(1, 2))
    total_demand = float(demand.sum())
    per_run_cost = cost.sum(axis=1)
    return SimulationReport(
        runs=runs,
        hours=hours,
        seed=seed,
        stress=policy.stress,
        availability=float(ok_req.mean()),
        demand_availability=float(ok_dem.mean()),
        served_fraction=float(served.sum() / (runs * total_demand)) if total_demand > 0 else 1.0,
        worst_hour_availability=float(ok_req.mean(axis=0).min()),
        availability_target=plan.availability_target,
        interruptions_per_run=float(reclaims.mean()),
        planned_expected_cost=plan.expected_cost,
        cost_mean=float(per_run_cost.mean()),
        cost_p95=float(np.quantile(per_run_cost, 0.95)),
        fallback_replica_hours=float(fallback_hours.mean()),
    )
