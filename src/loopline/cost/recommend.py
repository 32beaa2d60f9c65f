"""Savings recommendations with monthly estimates, and the actions that implement them.

Recommenders (pure, each returns typed :class:`Recommendation` values with reasons):

* :func:`recommend_right_sizing`: a deployment's observed peak fits a cheaper instance type in
  the same cloud and region at the target utilisation (or it is under-provisioned).
* :func:`recommend_cache`: raising the response-cache hit rate to what a replay showed
  achievable removes that share of paid requests.
* :func:`recommend_routing`: an experiment showed a cheaper model non-inferior (its primary
  metric's improvement interval lies above −margin and guardrails held): route to it.
* :func:`recommend_scale_to_zero`: recurring idle windows in the demand profile, long enough to
  pay for a cold start.
* :func:`recommend_capacity_plan`: adopt a :class:`~loopline.cost.planner.CapacityPlan` instead
  of the all-on-demand fleet.

Actions: :func:`render_tfvars` (Terraform variables as JSON-ready dict), :func:`render_node_pools`
and :func:`render_hpa` (Kubernetes HorizontalPodAutoscaler) render a plan;
:func:`decide_apply` decides whether an :class:`ActionPlan` may be applied: dry-run by default,
and a real apply needs an approval.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import yaml

from loopline.cost.catalog import Catalog, Pricing
from loopline.cost.planner import CapacityPlan
from loopline.cost.policy import CapacitySLO, RecommendPolicy

RecommendationKind = Literal[
    "right_sizing", "under_provisioned", "cache", "routing", "scale_to_zero", "capacity_plan"
]


@dataclass(frozen=True)
class Recommendation:
    """One proposed change, its monthly cost before and after, why, and how (``actions``)."""

    kind: RecommendationKind
    subject: str
    title: str
    current_monthly_cost: float
    proposed_monthly_cost: float
    reasons: tuple[str, ...]
    actions: Mapping[str, Any] = field(default_factory=dict)

    @property
    def monthly_savings(self) -> float:
        return self.current_monthly_cost - self.proposed_monthly_cost


def rank(recommendations: Sequence[Recommendation]) -> tuple[Recommendation, ...]:
    """Largest monthly savings first (under-provisioning warnings, which cost more, last)."""
    return tuple(sorted(recommendations, key=lambda r: -r.monthly_savings))


# --------------------------------------------------------------------------- right-sizing


@dataclass(frozen=True)
class DeploymentUsage:
    """A running deployment and the peak load it actually saw (tokens/s, e.g. the p95 hour)."""

    name: str
    offer: str
    pricing: Pricing
    replicas: int
    peak_tokens_per_s: float
    hours_per_month: float | None = None


def recommend_right_sizing(
    deployments: Sequence[DeploymentUsage],
    catalog: Catalog,
    slo: CapacitySLO,
    policy: RecommendPolicy | None = None,
) -> tuple[Recommendation, ...]:
    """Cheapest same-cloud, same-region fleet that keeps peak load within the target utilisation.

    Needed capacity is ``max(peak × headroom, peak / target_utilization)``; candidate fleets are
    ``⌈needed / τ⌉`` replicas (at least ``slo.min_replicas``) of each measured instance type.
    """
    policy = policy or RecommendPolicy()
    out: list[Recommendation] = []
    for dep in deployments:
        current = catalog.get(dep.offer)
        hours = dep.hours_per_month or policy.hours_per_month
        need = max(
            dep.peak_tokens_per_s * slo.headroom, dep.peak_tokens_per_s / policy.target_utilization
        )
        cur_tau = slo.throughput.for_offer(current) or 0.0
        cur_cost = dep.replicas * float(current.price(dep.pricing)) * hours
        best: tuple[float, int, str] | None = None
        for o in catalog.filter(clouds=[current.cloud], regions=[current.region]).offers:
            tau = slo.throughput.for_offer(o)
            if not tau:
                continue
            n = max(math.ceil(need / tau - 1e-9), slo.min_replicas, 1)
            cost = n * float(o.price(dep.pricing)) * hours
            if best is None or cost < best[0] - 1e-9:
                best = (cost, n, o.key)
        if best is None:
            continue
        cost, n, key = best
        if dep.replicas * cur_tau < need:
            out.append(
                Recommendation(
                    kind="under_provisioned",
                    subject=dep.name,
                    title=f"{dep.name}: capacity below the SLO need; run {n} × {key}",
                    current_monthly_cost=cur_cost,
                    proposed_monthly_cost=cost,
                    reasons=(
                        f"{dep.replicas} × {dep.offer} serve {dep.replicas * cur_tau:,.0f} tok/s, "
                        f"peak {dep.peak_tokens_per_s:,.0f} tok/s needs {need:,.0f}",
                    ),
                    actions={
                        "deployment": dep.name,
                        "offer": key,
                        "replicas": n,
                        "pricing": dep.pricing,
                    },
                )
            )
        elif cur_cost - cost >= policy.min_monthly_savings:
            out.append(
                Recommendation(
                    kind="right_sizing",
                    subject=dep.name,
                    title=f"{dep.name}: {dep.replicas} × {dep.offer} → {n} × {key}",
                    current_monthly_cost=cur_cost,
                    proposed_monthly_cost=cost,
                    reasons=(
                        f"peak {dep.peak_tokens_per_s:,.0f} tok/s needs {need:,.0f} tok/s "
                        f"(headroom {slo.headroom}, utilisation ≤ {policy.target_utilization})",
                        f"current fleet serves {dep.replicas * cur_tau:,.0f} tok/s",
                    ),
                    actions={
                        "deployment": dep.name,
                        "offer": key,
                        "replicas": n,
                        "pricing": dep.pricing,
                    },
                )
            )
    return tuple(out)


# --------------------------------------------------------------------------- cache


@dataclass(frozen=True)
class CacheStats:
    """Cache performance now and what a replay of the request log showed achievable."""

    name: str
    requests_per_month: float
    hit_rate: float
    achievable_hit_rate: float
    cost_per_request: float
    evidence: str = ""


def recommend_cache(
    stats: CacheStats, policy: RecommendPolicy | None = None
) -> tuple[Recommendation, ...]:
    """Savings of raising the hit rate: every extra hit is a paid request avoided."""
    policy = policy or RecommendPolicy()
    if not 0 <= stats.hit_rate <= 1 or not 0 <= stats.achievable_hit_rate <= 1:
        raise ValueError("hit rates must lie in [0, 1]")
    current = stats.requests_per_month * (1 - stats.hit_rate) * stats.cost_per_request
    proposed = stats.requests_per_month * (1 - stats.achievable_hit_rate) * stats.cost_per_request
    if current - proposed < policy.min_monthly_savings:
        return ()
    return (
        Recommendation(
            kind="cache",
            subject=stats.name,
            title=(
                f"{stats.name}: raise cache hit rate {100 * stats.hit_rate:.1f} % → "
                f"{100 * stats.achievable_hit_rate:.1f} %"
            ),
            current_monthly_cost=current,
            proposed_monthly_cost=proposed,
            reasons=tuple(
                r
                for r in (
                    f"{stats.requests_per_month:,.0f} requests/month at "
                    f"{stats.cost_per_request:.6f} per paid request",
                    stats.evidence,
                )
                if r
            ),
            actions={"cache": stats.name, "target_hit_rate": stats.achievable_hit_rate},
        ),
    )


# --------------------------------------------------------------------------- routing


@dataclass(frozen=True)
class ExperimentSummary:
    """What an experiment established about a cheaper candidate against control.

    ``improvement_interval`` is the interval of the candidate's relative improvement on the
    primary metric (direction-aware: positive is better), as the experiments package reports it.
    """

    experiment: str
    control_variant: str
    control_model: str
    candidate_variant: str
    candidate_model: str
    primary_metric: str
    improvement_interval: tuple[float, float]
    non_inferiority_margin: float
    guardrails_passed: bool
    control_cost_per_request: float
    candidate_cost_per_request: float
    requests_per_month: float

    @property
    def non_inferior(self) -> bool:
        return (
            self.guardrails_passed and self.improvement_interval[0] > -self.non_inferiority_margin
        )


def recommend_routing(
    summary: ExperimentSummary, policy: RecommendPolicy | None = None
) -> tuple[Recommendation, ...]:
    """Route traffic to the candidate when it is non-inferior and cheaper per request."""
    policy = policy or RecommendPolicy()
    lo, hi = summary.improvement_interval
    current = summary.requests_per_month * summary.control_cost_per_request
    proposed = summary.requests_per_month * summary.candidate_cost_per_request
    if not summary.non_inferior or current - proposed < policy.min_monthly_savings:
        return ()
    return (
        Recommendation(
            kind="routing",
            subject=summary.experiment,
            title=(
                f"route {summary.control_variant} traffic to {summary.candidate_variant} "
                f"({summary.candidate_model})"
            ),
            current_monthly_cost=current,
            proposed_monthly_cost=proposed,
            reasons=(
                f"{summary.primary_metric} improvement interval [{100 * lo:+.2f} %, "
                f"{100 * hi:+.2f} %] lies above the −{100 * summary.non_inferiority_margin:.2f} % "
                "non-inferiority margin",
                "guardrails held",
                f"cost per request {summary.control_cost_per_request:.6f} → "
                f"{summary.candidate_cost_per_request:.6f}",
            ),
            actions={
                "experiment": summary.experiment,
                "route_to": summary.candidate_variant,
                "model": summary.candidate_model,
                "via": "experiment guard",
            },
        ),
    )


# --------------------------------------------------------------------------- scale to zero


@dataclass(frozen=True)
class IdleWindow:
    """A run of idle hours in a cyclic demand profile: ``[start, start + hours)`` mod length."""

    start: int
    hours: int


def idle_windows(
    profile: npt.ArrayLike, threshold: float, min_hours: int
) -> tuple[IdleWindow, ...]:
    """Cyclic runs of hours with demand ≤ ``threshold`` lasting at least ``min_hours``."""
    d = np.asarray(profile, dtype=float).reshape(-1)
    idle = d <= threshold
    n = len(d)
    if n == 0 or not idle.any():
        return ()
    if idle.all():
        return (IdleWindow(0, n),)
    first_busy = int(np.argmin(idle))  # rotate so the profile starts busy
    rot = np.roll(idle, -first_busy)
    windows = []
    t = 0
    while t < n:
        if rot[t]:
            s = t
            while t < n and rot[t]:
                t += 1
            if t - s >= min_hours:
                windows.append(IdleWindow((s + first_busy) % n, t - s))
        else:
            t += 1
    return tuple(sorted(windows, key=lambda w: w.start))


def recommend_scale_to_zero(
    name: str,
    profile: npt.ArrayLike,
    idle_cost_per_hour: float,
    policy: RecommendPolicy | None = None,
) -> tuple[Recommendation, ...]:
    """Scale ``name`` to zero in recurring idle windows of ``profile`` (one cycle, e.g. 168 h).

    ``idle_cost_per_hour`` is what the fleet kept up while idle costs. Each window pays one cold
    start (``cold_start_minutes`` of that cost).
    """
    policy = policy or RecommendPolicy()
    d = np.asarray(profile, dtype=float).reshape(-1)
    windows = idle_windows(d, policy.idle_demand_tokens_per_s, policy.min_idle_hours)
    if not windows:
        return ()
    cycles = policy.hours_per_month / len(d)
    idle_hours = sum(w.hours for w in windows)
    current = idle_hours * idle_cost_per_hour * cycles
    cold = len(windows) * policy.cold_start_minutes / 60 * idle_cost_per_hour * cycles
    if current - cold < policy.min_monthly_savings:
        return ()
    weekly = len(d) == 168
    schedule = [
        {
            "start_hour": w.start,
            "hours": w.hours,
            **({"day": w.start // 24, "hour_of_day": w.start % 24} if weekly else {}),
        }
        for w in windows
    ]
    return (
        Recommendation(
            kind="scale_to_zero",
            subject=name,
            title=(
                f"{name}: scale to zero in {len(windows)} idle windows ({idle_hours} h per cycle)"
            ),
            current_monthly_cost=current,
            proposed_monthly_cost=cold,
            reasons=(
                f"demand ≤ {policy.idle_demand_tokens_per_s:g} tok/s for {idle_hours} of "
                f"{len(d)} hours in runs of ≥ {policy.min_idle_hours} h",
                f"one cold start ({policy.cold_start_minutes:g} min) per window",
            ),
            actions={"deployment": name, "min_replicas": 0, "zero_windows": schedule},
        ),
    )


# --------------------------------------------------------------------------- capacity plan


def recommend_capacity_plan(
    plan: CapacityPlan, name: str, policy: RecommendPolicy | None = None
) -> tuple[Recommendation, ...]:
    """Adopt ``plan`` instead of the all-on-demand fleet (monthly figures scale the horizon)."""
    policy = policy or RecommendPolicy()
    if not plan.feasible or plan.hours == 0:
        return ()
    scale = policy.hours_per_month / plan.hours
    current = plan.baseline("all_on_demand").cost * scale
    proposed = plan.expected_cost * scale
    if current - proposed < policy.min_monthly_savings:
        return ()
    return (
        Recommendation(
            kind="capacity_plan",
            subject=name,
            title=f"{name}: adopt the spot/on-demand capacity plan",
            current_monthly_cost=current,
            proposed_monthly_cost=proposed,
            reasons=(plan.summary, *plan.reasons),
            actions={
                "tfvars": render_tfvars(plan, name),
                "node_pools": render_node_pools(plan, name),
                "hpa": render_hpa(plan, name),
            },
        ),
    )


# --------------------------------------------------------------------------- actions


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def render_node_pools(plan: CapacityPlan, name: str) -> list[dict[str, Any]]:
    """One node pool per (offer, pricing) the schedule uses, sized by its hourly range."""
    pools = []
    for (key, pricing), replicas in plan.schedule().items():
        offer = plan.offer(key)
        pools.append(
            {
                "name": _slug(f"{name}-{offer.instance_type}-{offer.region}-{pricing}")[:63],
                "cloud": offer.cloud,
                "region": offer.region,
                "instance_type": offer.instance_type,
                "capacity_type": "SPOT" if pricing == "spot" else "ON_DEMAND",
                "min_size": int(min(replicas)),
                "max_size": int(max(replicas)),
                "desired_size": int(replicas[0]),
                "labels": {"loopline.io/workload": name, "loopline.io/pricing": pricing},
                "taints": (
                    [{"key": "loopline.io/spot", "value": "true", "effect": "NoSchedule"}]
                    if pricing == "spot"
                    else []
                ),
                "fallback": "on-demand of the same instance type" if pricing == "spot" else None,
            }
        )
    return pools


def render_tfvars(plan: CapacityPlan, name: str) -> dict[str, Any]:
    """Terraform variables (``*.auto.tfvars.json`` content) for the plan's node pools."""
    return {
        "workload": name,
        "availability_target": plan.availability_target,
        "node_pools": render_node_pools(plan, name),
        "replica_schedule": {
            f"{key}|{pricing}": list(replicas)
            for (key, pricing), replicas in plan.schedule().items()
        },
        "expected_cost_usd": round(plan.expected_cost, 2),
    }


def render_hpa(plan: CapacityPlan, name: str, namespace: str = "loopline") -> dict[str, Any]:
    """A HorizontalPodAutoscaler (autoscaling/v2) bounded by the schedule's replica range.

    Scales on a per-pod ``tokens_per_second`` metric with the target set to the lowest
    per-replica throughput used, divided by the SLO headroom implied by the plan; the hourly
    replica schedule rides along as an annotation for a scheduled scaler.
    """
    totals = [sum(a.replicas for a in plan.allocations(h)) for h in range(plan.hours)]
    taus = [a.throughput_per_replica for lv in plan.levels for a in lv.allocations]
    ratio = (
        max(r / d for r, d in zip(plan.required, plan.demand, strict=True) if d > 0)
        if any(d > 0 for d in plan.demand)
        else 1.0
    )
    target = (min(taus) / ratio) if taus else 0.0
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {"loopline.io/replica-schedule": json.dumps(totals)},
        },
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": max(1, min(totals, default=1)),
            "maxReplicas": max(1, max(totals, default=1)),
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": "tokens_per_second"},
                        "target": {"type": "AverageValue", "averageValue": f"{target:.0f}"},
                    },
                }
            ],
            "behavior": {
                "scaleDown": {"stabilizationWindowSeconds": 600},
                "scaleUp": {"stabilizationWindowSeconds": 60},
            },
        },
    }


def to_yaml(obj: Any) -> str:
    """YAML text of a rendered action (HPA, node pools)."""
    return yaml.safe_dump(obj, sort_keys=False)


@dataclass(frozen=True)
class ActionPlan:
    """Rendered actions of one recommendation; ``dry_run`` unless explicitly turned off."""

    title: str
    tfvars: Mapping[str, Any]
    node_pools: Sequence[Mapping[str, Any]]
    hpa: Mapping[str, Any]
    dry_run: bool = True

    @classmethod
    def from_plan(cls, plan: CapacityPlan, name: str) -> ActionPlan:
        return cls(
            title=f"capacity plan for {name}",
            tfvars=render_tfvars(plan, name),
            node_pools=render_node_pools(plan, name),
            hpa=render_hpa(plan, name),
        )


@dataclass(frozen=True)
class Approval:
    """A human approval of an action plan (recorded in the audit trail by the caller)."""

    approver: str
    approved_at: datetime
    reference: str = ""


@dataclass(frozen=True)
class ApplyDecision:
    """Whether an action plan is applied for real or only shown (dry run), and why."""

    apply: bool
    dry_run: bool
    reasons: tuple[str, ...]


def decide_apply(
    actions: ActionPlan, approval: Approval | None = None, dry_run: bool | None = None
) -> ApplyDecision:
    """Dry run unless a real apply is asked for (plan or ``dry_run=False``) *and* approved."""
    wants_dry = actions.dry_run if dry_run is None else dry_run
    if wants_dry:
        return ApplyDecision(False, True, (f"{actions.title}: dry run (default); nothing applied",))
    if approval is None or not approval.approver.strip():
        return ApplyDecision(
            False, True, (f"{actions.title}: apply requested without an approval; dry run only",)
        )
    return ApplyDecision(
        True,
        False,
        (
            f"{actions.title}: approved by {approval.approver} at "
            f"{approval.approved_at.isoformat()}"
            + (f" ({approval.reference})" if approval.reference else ""),
        ),
    )
