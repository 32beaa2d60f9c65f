"""Capacity planner: hourly demand + SLO + price catalog → replica schedule, as a MILP.

``plan_capacity(demand, catalog, slo, policy) -> CapacityPlan`` chooses, for every hour of
the horizon, integer replicas per offer (cloud, region, instance type) and per pricing (spot or
on-demand) so that the fleet serves the demand at the latency target with the availability
target, at least expected cost. The result is the autoscaling policy (an hourly replica
schedule), its cost, the all-on-demand and single-cheapest-offer baselines, and solver stats.

Model
-----
Required capacity of hour h: ``R_h = demand_h × slo.headroom`` (tokens/s). Offer o serves
``τ_o`` tokens/s per replica at the latency target (``slo.throughput``). Spot pool o is
reclaimed as a whole within an hour with probability ``p_o`` (its interruption band, see
:class:`~loopline.cost.policy.InterruptionModel`), independently of other pools.

For a capacity level ``L`` (hours are grouped into levels, below) the MILP is::

    min   Σ_o c^spot_o · s_o + Σ_o c^od_o · d_o                 (expected $/hour)
    s.t.  Σ_o τ_o (s_o + d_o) ≥ L · (1 + Σ_j ρ_j z_j)            capacity + spare
          Σ_o p_o τ_o s_o     ≤ θ L · Σ_j μ*_j z_j               interruption-risk budget
          Σ_j z_j = 1                                            one spare option
          Σ_o (s_o + d_o)     ≥ slo.min_replicas
          0 ≤ s_o ≤ ⌊θ L / τ_o⌋,  d_o ≥ 0,  s, d ∈ ℤ,  z ∈ {0, 1}

* ``c^spot_o = spot price × (1 + p_o × replacement_overhead_hours)`` (expected cost of a spot
  replica-hour including the billed time lost to interruptions), ``c^od_o`` the on-demand price.
* ``θ`` (``max_spot_share_per_offer``) is the diversification cap: no spot pool carries more
  than ``θ L``; ``θ L`` is also the loss unit of the availability bound.
* ``ρ_j`` are the spare-capacity options (``spare_capacity_options``); ``z`` picks one. With
  ``k_j = ρ_j / θ`` loss units of spare, ``μ*_j`` is the largest expected loss (in loss units)
  for which the Chernoff bound ``P(S ≥ k) ≤ e^{-μ} (e μ / k)^k`` on the lost units
  ``S = Σ_o (τ_o s_o / θL) · Bernoulli(p_o)`` stays below ``1 − availability``.

Availability guarantee: capacity falls short of ``R_h ≤ L`` only if the reclaimed spot capacity
exceeds the spare ``ρ L = k θ L``, i.e. ``S > k``; each term of S lies in [0, 1] (the cap), so
the Chernoff bound applies and ``P(shortfall) ≤ 1 − availability`` in every hour. On-demand
capacity is the fallback that carries whatever spot cannot. Riskier bands consume more of the
risk budget, so interruption risk directly limits the spot share; ρ = 0 forbids spot.

Compactness (why 168 h × the full catalog solves in well under 2 s)
-------------------------------------------------------------------
1. *Separability*: hours share no constraint, so the horizon decomposes into one problem per
   capacity level instead of one MILP with H × offers integers.
2. *Levels*: hours are grouped into at most ``max_levels`` levels. The grouping is the exact
   dynamic-programming optimum that minimises total over-provisioned capacity
   ``Σ_h (L(h) − R_h)`` over contiguous groups of the sorted requirements; each hour is served
   by its level's plan (a level plan is feasible for every hour at or below it, including the
   availability bound, whose loss unit is the level's). With at most ``max_levels`` distinct
   requirements the grouping is exact (no over-provisioning). The over-provisioning is
   reported (``SolveStats.level_overprovision``).
3. *Exact pruning*: an on-demand offer is dropped when another offer has at least its
   throughput at no higher price; a spot pool is dropped when its cap allows no replica, when a
   single on-demand offer covers its throughput for no more than its expected cost, or when
   pools that dominate it (≥ throughput, ≤ cost, ≤ risk per replica) have enough capped
   capacity to hold any optimal fleet. None of these removes every optimal solution.
4. *Spare options one at a time*: the binaries z are branched on up front. A greedy fleet
   gives a first incumbent; options whose fractional-knapsack bound exceeds it are dropped;
   the rest get an LP bound, and a fleet rounded from each LP optimum tightens the incumbent.
   Options are then solved in LP-bound order until the bound exceeds the best fleet found.
5. *Reduced-cost fixing*: with the option's LP bound LB and the incumbent's cost UB, a variable
   at a bound whose reduced cost exceeds UB − LB is fixed there (it cannot move in any fleet
   costing at most UB).
6. *Class aggregation*: free variables with equal throughput and equal risk per replica differ
   only in cost, so one integer per class (filled cheapest first through continuous
   variables) reformulates the MILP exactly with a handful of integers. The relaxation
   without the risk row needs only throughput classes; when its fleet satisfies the risk row
   it is optimal (optimal for a relaxation and feasible), otherwise the (throughput, risk)
   aggregation is solved.

Every MILP is solved with ``mip_rel_gap = 0``; the largest gap HiGHS reports is
``SolveStats.max_gap``.

Baselines (same hourly levels): *all on-demand* is the same MILP without spot (the best
on-demand mix, exact); *single cheapest offer* serves every hour with on-demand replicas of the
one offer with the lowest on-demand price per token/s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import Bounds, LinearConstraint, brentq, linprog, milp

from loopline.cost.catalog import Catalog, Offer, Pricing
from loopline.cost.policy import CapacitySLO, PlannerPolicy

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_TOL = 1e-9


# --------------------------------------------------------------------------- availability bound


def chernoff_tail(mu: float, k: float) -> float:
    """Upper bound on ``P(S ≥ k)`` for a sum S of independent [0, 1] variables with mean ``mu``.

    ``e^{-μ} (e μ / k)^k`` for ``0 < μ < k``; 1 when ``μ ≥ k``; 0 when ``μ = 0 < k``.
    """
    if k <= 0 or mu >= k:
        return 1.0
    if mu <= 0:
        return 0.0
    return math.exp(-mu + k * (1.0 + math.log(mu / k)))


def risk_budget(k: float, epsilon: float) -> float:
    """Largest mean loss ``μ`` (loss units) with ``chernoff_tail(μ, k) ≤ epsilon``; 0 for k = 0."""
    if k <= 0:
        return 0.0
    if chernoff_tail(k * (1 - 1e-12), k) <= epsilon:  # pragma: no cover - epsilon ≥ 1
        return k
    return float(brentq(lambda m: chernoff_tail(m, k) - epsilon, 1e-300, k * (1 - 1e-12)))


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Allocation:
    """Replicas of one offer at one pricing in one hour (or level)."""

    offer: str
    pricing: Pricing
    replicas: int
    throughput_per_replica: float
    price_per_replica_hour: float
    expected_cost_per_replica_hour: float
    reclaim_probability: float = 0.0

    @property
    def capacity(self) -> float:
        return self.replicas * self.throughput_per_replica

    @property
    def cost_per_hour(self) -> float:
        """Expected $/hour (spot includes the interruption overhead)."""
        return self.replicas * self.expected_cost_per_replica_hour

    @property
    def nominal_cost_per_hour(self) -> float:
        return self.replicas * self.price_per_replica_hour


@dataclass(frozen=True)
class LevelPlan:
    """The optimal fleet for one capacity level and the evidence behind it.

    ``spare_fraction`` is the ρ the MILP picked, ``loss_units`` the expected reclaimed
    capacity in units of θ L (μ), ``shortfall_bound`` the Chernoff bound on the probability
    that interruptions push capacity below the level (≤ 1 − availability). ``mip_gap`` is the
    largest gap of the MILPs solved for the level, ``nodes`` their branch-and-bound nodes,
    ``n_variables`` the free integer variables of the largest one after fixing.
    """

    index: int
    required: float
    allocations: tuple[Allocation, ...]
    spare_fraction: float
    loss_units: float
    shortfall_bound: float
    status: str
    mip_gap: float
    nodes: int
    n_variables: int
    seconds: float
    all_on_demand_cost_per_hour: float
    single_offer_cost_per_hour: float

    @property
    def capacity(self) -> float:
        return sum(a.capacity for a in self.allocations)

    @property
    def spot_capacity(self) -> float:
        return sum(a.capacity for a in self.allocations if a.pricing == "spot")

    @property
    def on_demand_capacity(self) -> float:
        return self.capacity - self.spot_capacity

    @property
    def cost_per_hour(self) -> float:
        return sum(a.cost_per_hour for a in self.allocations)

    @property
    def nominal_cost_per_hour(self) -> float:
        return sum(a.nominal_cost_per_hour for a in self.allocations)

    @property
    def replicas(self) -> int:
        return sum(a.replicas for a in self.allocations)


@dataclass(frozen=True)
class Baseline:
    """A reference plan's cost over the horizon."""

    name: str
    description: str
    cost: float


@dataclass(frozen=True)
class SolveStats:
    """How the plan was computed: sizes, times, the worst MILP gap, level grouping effect.

    ``n_milps`` counts every MILP solved (plan and all-on-demand baseline, all levels);
    ``max_variables`` is the most free variables any of them had after pruning and fixing.
    """

    seconds: float
    n_hours: int
    n_distinct_requirements: int
    n_levels: int
    n_milps: int
    max_gap: float
    max_variables: int
    eligible_offers: int
    level_overprovision: float
    statuses: tuple[str, ...]


@dataclass(frozen=True)
class CapacityPlan:
    """An hourly replica schedule with its expected cost, baselines and reasons.

    Hour ``h`` runs the fleet of ``levels[hour_level[h]]``. ``feasible`` is false when no
    eligible offer exists (nothing to plan with) or a level MILP failed; ``reasons`` say why.
    """

    feasible: bool
    demand: tuple[float, ...]
    required: tuple[float, ...]
    hour_level: tuple[int, ...]
    levels: tuple[LevelPlan, ...]
    expected_cost: float
    nominal_cost: float
    baselines: tuple[Baseline, ...]
    stats: SolveStats
    availability_target: float
    max_spot_share_per_offer: float
    reasons: tuple[str, ...] = ()
    _offers: dict[str, Offer] = field(default_factory=dict, repr=False, compare=False)

    @property
    def hours(self) -> int:
        return len(self.demand)

    def level_of(self, hour: int) -> LevelPlan:
        return self.levels[self.hour_level[hour]]

    def allocations(self, hour: int) -> tuple[Allocation, ...]:
        return self.level_of(hour).allocations

    def capacity(self, hour: int) -> float:
        return self.level_of(hour).capacity

    def baseline(self, name: str) -> Baseline:
        for b in self.baselines:
            if b.name == name:
                return b
        raise KeyError(f"no baseline {name!r}")

    def savings(self, baseline: str) -> float:
        """Fraction of the baseline's cost the plan saves (0.4 = 40 % cheaper)."""
        base = self.baseline(baseline).cost
        return 1.0 - self.expected_cost / base if base > 0 else 0.0

    def schedule(self) -> dict[tuple[str, Pricing], tuple[int, ...]]:
        """Replicas per hour for every (offer, pricing) used: the autoscaling policy."""
        keys = sorted({(a.offer, a.pricing) for lv in self.levels for a in lv.allocations})
        out: dict[tuple[str, Pricing], list[int]] = {k: [0] * self.hours for k in keys}
        for h in range(self.hours):
            for a in self.allocations(h):
                out[(a.offer, a.pricing)][h] = a.replicas
        return {k: tuple(v) for k, v in out.items()}

    def offer(self, key: str) -> Offer:
        """The catalog offer behind an allocation's ``offer`` key."""
        return self._offers[key]

    def offers_used(self) -> tuple[Offer, ...]:
        """Distinct offers the schedule uses (spot or on-demand), catalog order."""
        used = {a.offer for lv in self.levels for a in lv.allocations if a.replicas > 0}
        return tuple(o for k, o in self._offers.items() if k in used)

    def spot_share(self, hour: int) -> float:
        lv = self.level_of(hour)
        return lv.spot_capacity / lv.capacity if lv.capacity > 0 else 0.0

    @property
    def summary(self) -> str:
        if not self.feasible:
            return "no feasible plan: " + "; ".join(self.reasons)
        parts = [f"expected cost {self.expected_cost:,.2f} over {self.hours} h"]
        for b in self.baselines:
            parts.append(f"{100 * self.savings(b.name):.1f} % below {b.name}")
        return ", ".join(parts)


# --------------------------------------------------------------------------- internals


@dataclass(frozen=True)
class _Candidates:
    offers: tuple[Offer, ...]
    tau: FloatArray
    od_price: FloatArray
    spot_price: FloatArray
    spot_cost: FloatArray
    reclaim: FloatArray


def _candidates(catalog: Catalog, slo: CapacitySLO, policy: PlannerPolicy) -> _Candidates:
    pool = catalog.filter(
        clouds=policy.clouds,
        regions=policy.regions,
        exclude_instance_types=policy.exclude_instance_types,
    )
    offers: list[Offer] = []
    tau: list[float] = []
    for o in pool.offers:
        t = slo.throughput.for_offer(o)
        if t is not None and t > 0:
            offers.append(o)
            tau.append(t)
    p = np.array([policy.interruption.probability(o) for o in offers], dtype=float)
    spot = np.array([float(o.spot_hourly) for o in offers], dtype=float)
    return _Candidates(
        offers=tuple(offers),
        tau=np.array(tau, dtype=float),
        od_price=np.array([float(o.on_demand_hourly) for o in offers], dtype=float),
        spot_price=spot,
        spot_cost=spot * (1.0 + p * policy.interruption.replacement_overhead_hours),
        reclaim=p,
    )


def _undominated(tau: FloatArray, cost: FloatArray) -> IntArray:
    """Indices not dominated by another (≥ throughput, ≤ cost; ties broken by index)."""
    n = len(tau)
    keep = []
    idx = np.arange(n)
    for i in range(n):
        weak = (tau >= tau[i]) & (cost <= cost[i])
        strict = (tau > tau[i]) | (cost < cost[i]) | (idx < i)
        if not np.any(weak & strict & (idx != i)):
            keep.append(i)
    return np.array(keep, dtype=np.int64)


def group_levels(
    required: Sequence[float] | FloatArray, max_levels: int
) -> tuple[FloatArray, IntArray]:
    """Group hourly requirements into at most ``max_levels`` levels, minimising over-provision.

    Returns ``(levels, hour_level)``: ascending level values (each the largest requirement of
    its group) and, per hour, the index of its level. Exact dynamic programme over contiguous
    groups of the sorted distinct values, weighted by how many hours share each value.
    """
    r = np.asarray(required, dtype=float)
    values, inverse, counts = np.unique(r, return_inverse=True, return_counts=True)
    n = len(values)
    if n <= max_levels:
        return values, inverse.astype(np.int64)
    w = counts.astype(float)
    cw = np.concatenate([[0.0], np.cumsum(w)])
    cs = np.concatenate([[0.0], np.cumsum(w * values)])
    inf = math.inf
    # dp[l, j]: least over-provision covering values[0..j] with l+1 groups, last ending at j.
    dp = np.full((max_levels, n), inf)
    arg = np.zeros((max_levels, n), dtype=np.int64)
    dp[0] = values * cw[1:] - cs[1:]
    starts = np.arange(n)
    for level in range(1, max_levels):
        for j in range(level, n):
            i = starts[1 : j + 1]  # group is values[i..j]
            group = values[j] * (cw[j + 1] - cw[i]) - (cs[j + 1] - cs[i])
            total = dp[level - 1, i - 1] + group
            best = int(np.argmin(total))
            dp[level, j] = total[best]
            arg[level, j] = i[best]
    ends: list[int] = []
    j, level = n - 1, max_levels - 1
    while j >= 0:
        ends.append(j)
        if level == 0:
            break
        j, level = int(arg[level, j]) - 1, level - 1
    ends.reverse()
    level_of_value = np.zeros(n, dtype=np.int64)
    start = 0
    for g, end in enumerate(ends):
        level_of_value[start : end + 1] = g
        start = end + 1
    levels = values[np.array(ends)]
    return levels, level_of_value[inverse]


@dataclass(frozen=True)
class _LevelResult:
    allocations: tuple[Allocation, ...]
    spare: float
    loss_units: float
    bound: float
    status: str
    gap: float
    nodes: int
    n_vars: int
    cost: float
    milps: int = 0


def _greedy_upper_bound(
    level: float,
    spot: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
    od: tuple[FloatArray, FloatArray],
    options: tuple[FloatArray, FloatArray],
    *,
    theta: float,
    min_replicas: int,
) -> float:
    """Cost of a feasible fleet built greedily (an upper bound for reduced-cost fixing).

    For each spare option: fill spot pools in order of expected cost per token/s, whole
    replicas, within their caps and the risk budget, stopping when the next replica costs more
    than covering the rest on demand; cover the rest with the cheapest single on-demand type.
    """
    s_tau, s_cost, s_risk, s_cap = spot
    d_tau, d_cost = od
    order = np.argsort(s_cost / s_tau) if len(s_tau) else np.zeros(0, dtype=np.int64)

    def od_cover(deficit: float) -> tuple[float, int]:
        if deficit <= 0:
            return 0.0, 0
        n = np.ceil(deficit / d_tau - _TOL)
        best = int(np.argmin(n * d_cost))
        return float(n[best] * d_cost[best]), int(n[best])

    best_total = math.inf
    for rho, mu in zip(*options, strict=True):
        need = level * (1.0 + rho)
        budget = theta * level * mu
        cost, capacity, risk, replicas = 0.0, 0.0, 0.0, 0
        for i in order:
            room = int(s_cap[i])
            while room > 0 and capacity < need and risk + s_risk[i] <= budget * (1 + 1e-12):
                rest_cost, _ = od_cover(need - capacity)
                if s_tau[i] >= need - capacity and s_cost[i] >= rest_cost:
                    break
                cost += s_cost[i]
                capacity += s_tau[i]
                risk += s_risk[i]
                replicas += 1
                room -= 1
        extra, n_od = od_cover(need - capacity)
        total = cost + extra
        if replicas + n_od < min_replicas:
            total += (min_replicas - replicas - n_od) * float(d_cost.min())
        best_total = min(best_total, total)
    return best_total


def _knapsack_bounds(
    cost: FloatArray, tau: FloatArray, upper: FloatArray, needs: FloatArray
) -> FloatArray:
    """Fractional-knapsack lower bounds: cheapest fractional cover of each capacity need.

    Drops the risk and replica-count rows and integrality, so each value bounds the level MILP
    of that spare option from below (cheap pruning of the options before any LP).
    """
    order = np.argsort(cost / tau)
    cap = (tau * upper)[order]
    price = (cost / tau)[order]
    filled = np.concatenate([[0.0], np.cumsum(cap)])
    spent = np.concatenate([[0.0], np.cumsum(cap * price)])
    out = np.empty(len(needs))
    for j, need in enumerate(needs):
        k = int(np.searchsorted(filled, need, side="left"))
        if k > len(cap):
            out[j] = math.inf
        elif k == 0:
            out[j] = 0.0
        else:
            out[j] = spent[k - 1] + (need - filled[k - 1]) * price[k - 1]
    return out


def _rounded_lp_cost(
    lp: _LP,
    c: FloatArray,
    tau: FloatArray,
    risk: FloatArray,
    bounds: tuple[FloatArray, FloatArray],
    *,
    need: float,
    risk_cap: float,
    min_count: int,
) -> float:
    """Cost of a feasible fleet rounded from an LP optimum (an upper bound), or ``inf``.

    Rounds the LP fleet down, then covers the missing capacity with the cheaper of: whole
    replicas of one risk-free variable (on-demand), or one replica of a variable with room
    whose risk still fits.
    """
    lo, hi = bounds
    x = np.minimum(np.maximum(np.floor(lp.x + 1e-9), lo), hi)
    deficit = need - float(tau @ x)
    used = float(risk @ x)
    if used > risk_cap * (1 + 1e-9) + 1e-12:
        return math.inf
    cost = float(c @ x)
    count = float(x.sum())
    if deficit > 1e-9:
        safe = np.flatnonzero((risk == 0) & (tau > 0))
        options = []
        if len(safe):
            n = np.ceil(deficit / tau[safe] - _TOL)
            fits = x[safe] + n <= hi[safe]
            if fits.any():
                k = int(np.argmin(np.where(fits, n * c[safe], np.inf)))
                options.append((float(n[k] * c[safe][k]), float(n[k])))
        room = (x + 1 <= hi) & (tau >= deficit) & (used + risk <= risk_cap * (1 + 1e-9) + 1e-12)
        if room.any():
            k = int(np.argmin(np.where(room, c, np.inf)))
            options.append((float(c[k]), 1.0))
        if not options:
            return math.inf
        extra, added = min(options)
        cost += extra
        count += added
    if count < min_count:
        safe = np.flatnonzero(risk == 0)
        if not len(safe):
            return math.inf
        cost += (min_count - count) * float(c[safe].min())
    return cost


def _aggregated_milp(
    c: FloatArray,
    tau: FloatArray,
    risk: FloatArray,
    bounds: tuple[FloatArray, FloatArray],
    *,
    need: float,
    min_count: int,
    risk_cap: float | None,
    time_limit: float,
) -> tuple[FloatArray, Any] | None:
    """The level MILP aggregated by class: one integer per class, cheapest-first fill.

    Free variables of one class differ only in cost, so an optimal fleet fills each class
    cheapest first; one integer per class plus continuous fill variables (whose LP fills
    cheapest first) reformulates the MILP exactly with far fewer integers. With ``risk_cap``
    the classes are (throughput, risk per replica) and the risk row is kept: exact for the
    level MILP. Without it the classes are throughputs and the risk row is dropped: exact for
    that relaxation. The fill is expanded to whole replicas per offer (cheapest, then least
    risky, first). Returns the expanded fleet and the solver result, or ``None`` when
    infeasible.
    """
    lo, hi = bounds
    free = np.flatnonzero(hi > lo)
    keys = np.column_stack([tau[free], risk[free] if risk_cap is not None else np.zeros(len(free))])
    classes, member_class = np.unique(keys, axis=0, return_inverse=True)
    member_class = member_class.reshape(-1)
    n_g, n_y = len(classes), len(free)
    scale = max(need, 1.0)
    rows: list[FloatArray] = []
    row_lo: list[float] = []
    row_hi: list[float] = []
    for g in range(n_g):
        row = np.zeros(n_g + n_y)
        row[g] = 1.0
        row[n_g + np.flatnonzero(member_class == g)] = -1.0
        rows.append(row)
        row_lo.append(0.0)
        row_hi.append(0.0)
    rows.append(np.concatenate([classes[:, 0] / scale, np.zeros(n_y)]))
    row_lo.append((need - float(tau @ lo)) / scale)
    row_hi.append(np.inf)
    if risk_cap is not None:
        risk_scale = max(risk_cap, 1e-12)
        rows.append(np.concatenate([classes[:, 1] / risk_scale, np.zeros(n_y)]))
        row_lo.append(-np.inf)
        row_hi.append((risk_cap - float(risk @ lo)) / risk_scale)
    if min_count > 0:
        rows.append(np.concatenate([np.ones(n_g), np.zeros(n_y)]))
        row_lo.append(min_count - float(lo.sum()))
        row_hi.append(np.inf)
    span = hi[free] - lo[free]
    upper = np.concatenate([[span[member_class == g].sum() for g in range(n_g)], span])
    res = milp(
        np.concatenate([np.zeros(n_g), c[free]]),
        constraints=LinearConstraint(np.array(rows), row_lo, row_hi),
        integrality=np.concatenate([np.ones(n_g), np.zeros(n_y)]),
        bounds=Bounds(np.zeros(n_g + n_y), upper),
        options={"mip_rel_gap": 0.0, "time_limit": time_limit},
    )
    if res.x is None:
        return None
    x = lo.astype(float).copy()
    for g in range(n_g):
        units = round(float(res.x[g]))
        members = free[member_class == g]
        for i in sorted(members, key=lambda i: (c[i], risk[i], i)):
            take = min(units, round(float(hi[i] - lo[i])))
            x[i] += take
            units -= take
    return x, res


@dataclass(frozen=True)
class _LP:
    value: float
    x: FloatArray
    reduced_lower: FloatArray
    reduced_upper: FloatArray


def _lp_bound(
    c: FloatArray,
    a: FloatArray,
    rows: tuple[list[float], list[float]],
    bounds: tuple[FloatArray, FloatArray],
) -> tuple[float, _LP | None]:
    """LP relaxation value (a lower bound; ``inf`` if infeasible) and its reduced costs."""
    lo_rows, hi_rows = np.asarray(rows[0]), np.asarray(rows[1])
    ub_mask, lb_mask = np.isfinite(hi_rows), np.isfinite(lo_rows)
    res = linprog(
        c,
        A_ub=np.vstack([a[ub_mask], -a[lb_mask]]),
        b_ub=np.concatenate([hi_rows[ub_mask], -lo_rows[lb_mask]]),
        bounds=np.column_stack(bounds),
        method="highs",
    )
    if res.status == 2:
        return math.inf, None
    if res.status != 0:
        return -math.inf, None  # no usable bound: the option is searched without fixing
    return float(res.fun), _LP(float(res.fun), res.x, res.lower.marginals, res.upper.marginals)


def _fix_by_reduced_cost(
    lp: _LP, bounds: tuple[FloatArray, FloatArray], incumbent: float
) -> tuple[FloatArray, FloatArray]:
    """LP-based reduced-cost fixing (exact for solutions costing at most ``incumbent``).

    With LP bound LB and reduced cost d of a variable at a bound, moving it one unit off that
    bound costs at least |d| (the LP value function is convex), so if LB + |d| exceeds the
    incumbent's cost, no solution at or below the incumbent moves it.
    """
    lo, hi = bounds
    if not math.isfinite(incumbent):
        return lo, hi
    slack = incumbent - lp.value + 1e-7 * max(1.0, abs(incumbent))
    at_lo = (lp.x <= lo + 1e-9) & (lp.reduced_lower > slack)
    at_hi = (lp.x >= hi - 1e-9) & (-lp.reduced_upper > slack)
    new_lo, new_hi = lo.copy(), hi.copy()
    new_hi[at_lo] = lo[at_lo]
    new_lo[at_hi] = hi[at_hi]
    return new_lo, new_hi


def _spare_options(slo: CapacitySLO, policy: PlannerPolicy) -> tuple[FloatArray, FloatArray]:
    """Spare-capacity options ρ_j (usable ones only) and their risk budgets μ*_j."""
    theta = policy.max_spot_share_per_offer
    eps = 1.0 - slo.availability
    rho = np.array(policy.spare_capacity_options, dtype=float)
    mu = np.array([risk_budget(r / theta, eps) for r in rho])
    return rho, mu


def _solve_level(
    level: float,
    cand: _Candidates,
    od_keep: IntArray,
    slo: CapacitySLO,
    policy: PlannerPolicy,
    *,
    options: tuple[FloatArray, FloatArray] | None,
) -> _LevelResult:
    """The level MILP for ``level``, solved exactly as the module docstring describes.

    ``options`` are the spare-capacity options and risk budgets; ``None`` plans on-demand only.
    """
    theta = policy.max_spot_share_per_offer
    spot = options is not None
    rho, mu = options if options is not None else (np.zeros(1), np.zeros(1))
    if level <= 0 and slo.min_replicas == 0:
        return _LevelResult((), 0.0, 0.0, 0.0, "empty", 0.0, 0, 0, 0.0)
    scale = level if level > 0 else 1.0
    need_max = level * (1.0 + rho.max())

    tau, p = cand.tau, cand.reclaim
    # spot pools: capped, not beaten by a single on-demand offer, not buried under dominators
    spot_idx = np.zeros(0, dtype=np.int64)
    if spot and len(rho) > 1:
        cap = np.floor(theta * level / tau + _TOL)
        ok = np.flatnonzero(cap >= 1)
        od_cover = np.array(
            [np.min(np.ceil(tau[i] / tau[od_keep] - _TOL) * cand.od_price[od_keep]) for i in ok]
        )
        ok = ok[od_cover > cand.spot_cost[ok]]
        bound_cap = max(need_max + tau.max(), slo.min_replicas * tau.max())
        keep = []
        for i in ok:
            weak = (
                (tau[ok] >= tau[i])
                & (cand.spot_cost[ok] <= cand.spot_cost[i])
                & (p[ok] * tau[ok] <= p[i] * tau[i])
            )
            strict = (
                (tau[ok] > tau[i])
                | (cand.spot_cost[ok] < cand.spot_cost[i])
                | (p[ok] * tau[ok] < p[i] * tau[i])
                | (ok < i)
            )
            dom = weak & strict & (ok != i)
            if float(np.sum(tau[ok][dom] * cap[ok][dom])) < bound_cap:
                keep.append(i)
        spot_idx = np.array(keep, dtype=np.int64)
    else:
        cap = np.zeros(len(tau))
    n_s, n_d = len(spot_idx), len(od_keep)
    n = n_s + n_d
    c = np.concatenate([cand.spot_cost[spot_idx], cand.od_price[od_keep]])
    risk_scale = theta * max(float(mu.max()), 1e-12)  # keeps the risk row's RHS near 1
    rows = [
        np.concatenate([tau[spot_idx], tau[od_keep]]) / scale,
        np.concatenate([p[spot_idx] * tau[spot_idx] / (scale * risk_scale), np.zeros(n_d)]),
    ]
    if slo.min_replicas > 0:
        rows.append(np.ones(n))
    matrix = np.array(rows)
    od_hi = np.maximum(np.ceil(need_max / tau[od_keep] - _TOL), slo.min_replicas)
    hi0 = np.concatenate([cap[spot_idx], od_hi])
    lo0 = np.zeros(n)

    def row_bounds(j: int) -> tuple[list[float], list[float]]:
        lower = [level * (1.0 + rho[j]) / scale, -np.inf]
        upper = [np.inf, theta * mu[j] / risk_scale]
        if slo.min_replicas > 0:
            lower.append(float(slo.min_replicas))
            upper.append(np.inf)
        return lower, upper

    # Exact search over the spare options: LP bounds order them and prune those that cannot
    # beat the best fleet found; reduced-cost fixing shrinks each remaining MILP.
    best_cost = _greedy_upper_bound(
        level,
        (tau[spot_idx], cand.spot_cost[spot_idx], p[spot_idx] * tau[spot_idx], cap[spot_idx]),
        (tau[od_keep], cand.od_price[od_keep]),
        (rho, mu),
        theta=theta,
        min_replicas=slo.min_replicas,
    )
    quick = _knapsack_bounds(c, matrix[0] * scale, hi0, level * (1.0 + rho))
    best: tuple[int, FloatArray, float, int] | None = None
    gap, nodes, size, milps = 0.0, 0, 0, 0
    # LP bound of every option the knapsack bound cannot rule out, and rounded LP fleets
    hi_opts: dict[int, FloatArray] = {}
    lps: dict[int, tuple[float, _LP | None]] = {}
    for j in np.argsort(quick, kind="stable"):
        if quick[j] > best_cost + 1e-9 * max(1.0, best_cost):
            break  # sorted: no later option can beat the best fleet either
        hi_j = hi0.copy()
        if mu[j] <= 0:
            hi_j[:n_s] = 0.0  # no risk budget: no spot
        hi_opts[j] = hi_j
        lps[j] = _lp_bound(c, matrix, row_bounds(j), (lo0, hi_j))
        lp = lps[j][1]
        if lp is not None:
            best_cost = min(
                best_cost,
                _rounded_lp_cost(
                    lp,
                    c,
                    matrix[0] * scale,
                    matrix[1] * scale * risk_scale,
                    (lo0, hi_j),
                    need=level * (1.0 + rho[j]),
                    risk_cap=theta * level * mu[j],
                    min_count=slo.min_replicas,
                ),
            )
    for j in sorted(lps, key=lambda k: lps[k][0]):
        lb, lp = lps[j]
        if lb > best_cost + 1e-9 * max(1.0, best_cost):
            break  # sorted by bound: the rest cannot beat the best fleet either
        hi_j = hi_opts[j]
        lo, hi = _fix_by_reduced_cost(lp, (lo0, hi_j), best_cost) if lp is not None else (lo0, hi_j)
        size = max(size, int(np.sum(hi > lo)))
        risk_row = matrix[1] * scale * risk_scale  # p·τ per variable
        risk_cap = theta * level * mu[j]
        x_j: FloatArray | None = None
        res: Any = None
        for exact in (False, True):  # the relaxation first: usually its fleet is feasible
            agg = _aggregated_milp(
                c,
                matrix[0] * scale,
                risk_row,
                (lo, hi),
                need=level * (1.0 + rho[j]),
                min_count=slo.min_replicas,
                risk_cap=risk_cap if exact else None,
                time_limit=policy.time_limit_seconds,
            )
            milps += 1
            if agg is None:
                break  # infeasible (the relaxation too): nothing at or below the incumbent
            x_agg, res = agg
            nodes += int(getattr(res, "mip_node_count", 0) or 0)
            if exact or float(risk_row @ x_agg) <= risk_cap * (1 + 1e-9) + 1e-12:
                x_j = x_agg  # optimal: exact, or optimal for a relaxation and feasible
                break
        if x_j is None:
            continue  # nothing at or below the incumbent with this spare option
        gap = max(gap, float(res.mip_gap) if getattr(res, "mip_gap", None) is not None else 0.0)
        cost_j = float(c @ x_j)
        if best is None or cost_j < best[2] - 1e-12:
            best = (j, x_j, cost_j, res.status)
            best_cost = min(best_cost, cost_j)
    if best is None:
        return _LevelResult(
            (), 0.0, 0.0, 1.0, "failed: no feasible fleet", math.inf, nodes, n, 0.0, milps
        )
    chosen, x_raw, cost, status_code = best
    x = np.round(x_raw).astype(np.int64)
    allocations: list[Allocation] = []
    for j, i in enumerate(spot_idx):
        if x[j] > 0:
            o = cand.offers[i]
            allocations.append(
                Allocation(
                    o.key,
                    "spot",
                    int(x[j]),
                    float(tau[i]),
                    float(cand.spot_price[i]),
                    float(cand.spot_cost[i]),
                    float(p[i]),
                )
            )
    for j, i in enumerate(od_keep):
        if x[n_s + j] > 0:
            o = cand.offers[i]
            allocations.append(
                Allocation(
                    o.key,
                    "on_demand",
                    int(x[n_s + j]),
                    float(tau[i]),
                    float(cand.od_price[i]),
                    float(cand.od_price[i]),
                )
            )
    spare = float(rho[chosen])
    loss = float(np.sum(p[spot_idx] * tau[spot_idx] * x[:n_s]) / (theta * scale))
    bound = chernoff_tail(loss, spare / theta) if loss > 0 else 0.0
    capacity = float(np.sum(tau[spot_idx] * x[:n_s]) + np.sum(tau[od_keep] * x[n_s:]))
    if capacity < level * (1.0 + spare) * (1 - 1e-9) or loss > float(mu[chosen]) * (1 + 1e-6):
        return _LevelResult(
            (), spare, loss, 1.0, "failed: rounding broke a constraint", 0.0, nodes, n, 0.0, milps
        )
    status = "optimal" if status_code == 0 else "stopped at the time limit"
    return _LevelResult(
        tuple(allocations), spare, loss, bound, status, gap, nodes, size, cost, milps
    )


def _infeasible(
    demand: FloatArray, slo: CapacitySLO, policy: PlannerPolicy, why: str
) -> CapacityPlan:
    stats = SolveStats(0.0, len(demand), 0, 0, 0, math.inf, 0, 0, 0.0, ())
    return CapacityPlan(
        feasible=False,
        demand=tuple(float(d) for d in demand),
        required=tuple(float(d * slo.headroom) for d in demand),
        hour_level=(),
        levels=(),
        expected_cost=math.inf,
        nominal_cost=math.inf,
        baselines=(),
        stats=stats,
        availability_target=slo.availability,
        max_spot_share_per_offer=policy.max_spot_share_per_offer,
        reasons=(why,),
    )


def plan_capacity(
    demand: Sequence[float] | npt.ArrayLike,
    catalog: Catalog,
    slo: CapacitySLO,
    policy: PlannerPolicy | None = None,
) -> CapacityPlan:
    """Plan the cheapest hourly fleet that meets ``slo`` for ``demand`` (tokens/s per hour).

    Pure: no I/O. See the module docstring for the MILP, the availability guarantee and the
    grouping of hours into levels. Never raises for an unplannable input: the plan comes back
    with ``feasible=False`` and the reasons.
    """
    policy = policy or PlannerPolicy()
    start = time.perf_counter()
    d = np.asarray(demand, dtype=float).reshape(-1)
    if d.size == 0:
        return _infeasible(d, slo, policy, "empty demand horizon")
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        return _infeasible(d, slo, policy, "demand must be finite and non-negative")
    cand = _candidates(catalog, slo, policy)
    if not cand.offers:
        return _infeasible(
            d, slo, policy, "no catalog offer has a measured throughput within the allowed clouds"
        )
    required = d * slo.headroom
    levels, hour_level = group_levels(required, policy.max_levels)
    od_keep = _undominated(cand.tau, cand.od_price)
    options = _spare_options(slo, policy) if policy.allow_spot else None
    cheapest = int(np.argmin(cand.od_price / cand.tau))
    level_plans: list[LevelPlan] = []
    n_milps, max_vars = 0, 0
    for index, level in enumerate(levels):
        t0 = time.perf_counter()
        best = _solve_level(float(level), cand, od_keep, slo, policy, options=options)
        dt = time.perf_counter() - t0
        base = _solve_level(float(level), cand, od_keep, slo, policy, options=None)
        n_milps += best.milps + base.milps
        max_vars = max(max_vars, best.n_vars, base.n_vars)
        single = max(math.ceil(level / cand.tau[cheapest] - _TOL), slo.min_replicas)
        if level <= 0 and slo.min_replicas == 0:
            single = 0
        level_plans.append(
            LevelPlan(
                index=index,
                required=float(level),
                allocations=best.allocations,
                spare_fraction=best.spare,
                loss_units=best.loss_units,
                shortfall_bound=best.bound,
                status=best.status,
                mip_gap=best.gap,
                nodes=best.nodes,
                n_variables=best.n_vars,
                seconds=dt,
                all_on_demand_cost_per_hour=base.cost,
                single_offer_cost_per_hour=single * float(cand.od_price[cheapest]),
            )
        )
    weights = np.bincount(hour_level, minlength=len(levels)).astype(float)
    expected = float(sum(w * lv.cost_per_hour for w, lv in zip(weights, level_plans, strict=True)))
    nominal = float(
        sum(w * lv.nominal_cost_per_hour for w, lv in zip(weights, level_plans, strict=True))
    )
    all_od = float(
        sum(w * lv.all_on_demand_cost_per_hour for w, lv in zip(weights, level_plans, strict=True))
    )
    single_cost = float(
        sum(w * lv.single_offer_cost_per_hour for w, lv in zip(weights, level_plans, strict=True))
    )
    cheapest_offer = cand.offers[cheapest]
    baselines = (
        Baseline("all_on_demand", "best on-demand-only mix per hour (same MILP, no spot)", all_od),
        Baseline(
            "single_cheapest_offer",
            f"on-demand {cheapest_offer.key} only (lowest on-demand $ per token/s)",
            single_cost,
        ),
    )
    failed = [lv for lv in level_plans if lv.status.startswith("failed")]
    total_required = float(required.sum())
    over = float(np.sum(levels[hour_level] - required))
    stats = SolveStats(
        seconds=time.perf_counter() - start,
        n_hours=len(d),
        n_distinct_requirements=len(np.unique(required)),
        n_levels=len(levels),
        n_milps=n_milps,
        max_gap=max((lv.mip_gap for lv in level_plans), default=0.0),
        max_variables=max_vars,
        eligible_offers=len(cand.offers),
        level_overprovision=over / total_required if total_required > 0 else 0.0,
        statuses=tuple(lv.status for lv in level_plans),
    )
    reasons = [
        f"{len(cand.offers)} eligible offers, {len(levels)} capacity levels for {len(d)} hours",
        f"availability target {slo.availability} per hour; worst shortfall bound "
        f"{max((lv.shortfall_bound for lv in level_plans), default=0.0):.2e}",
    ]
    reasons += [f"level {lv.index} ({lv.required:.0f} tok/s): {lv.status}" for lv in failed]
    return CapacityPlan(
        feasible=not failed,
        demand=tuple(float(x) for x in d),
        required=tuple(float(x) for x in required),
        hour_level=tuple(int(x) for x in hour_level),
        levels=tuple(level_plans),
        expected_cost=expected,
        nominal_cost=nominal,
        baselines=baselines,
        stats=stats,
        availability_target=slo.availability,
        max_spot_share_per_offer=policy.max_spot_share_per_offer,
        reasons=tuple(reasons),
        _offers={o.key: o for o in cand.offers},
    )
