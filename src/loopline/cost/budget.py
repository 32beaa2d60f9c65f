"""Budgets: spend per scope and period, alerts *before* a breach, and enforcement as data.

``evaluate_budget(budget, ledger, now, policy) -> BudgetStatus`` is pure. It sums the scope's
spend in the current period (reset daily at 00:00 UTC, weekly on Monday 00:00 UTC, monthly on
the 1st), forecasts the rest of the period from the scope's hourly spend history
(:mod:`~loopline.cost.forecast`) and raises typed alerts:

* ``hard_breached`` / ``soft_breached``: spend already reached the hard / soft threshold.
* ``hard_projected`` / ``soft_projected``: spend is still below the threshold, but the upper
  bound of the period-end spend interval (spent so far + the interval of the forecast *sum*
  of the remaining hours) reaches it. These fire before the breach; ``expected_breach_at`` is
  when the expected path crosses the threshold, ``earliest_breach_at`` when the upper bound
  does.

``decide_enforcement(status, policy) -> EnforcementDecision`` turns a hard breach (or, when
configured, a projected one) into an action a task performs through the canary or experiment
guard: route traffic to a cheaper variant, or rate-limit to the fraction of traffic that lands
spend at the hard limit by period end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

from loopline.cost.forecast import forecast
from loopline.cost.ledger import Ledger
from loopline.cost.policy import AlertPolicy, BudgetSpec, EnforcementPolicy, Period

AlertKind = Literal["hard_breached", "soft_breached", "hard_projected", "soft_projected"]
Severity = Literal["warning", "critical"]
EnforcementAction = Literal["none", "route_to_cheaper_variant", "rate_limit", "alert_only"]


def period_window(period: Period, at: datetime) -> tuple[datetime, datetime]:
    """``[start, end)`` of the budget period containing ``at`` (UTC)."""
    if at.tzinfo is None:
        raise ValueError("use timezone-aware datetimes")
    t = at.astimezone(UTC)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return day, day + timedelta(days=1)
    if period == "weekly":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    start = day.replace(day=1)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end


@dataclass(frozen=True)
class Projection:
    """Forecast period-end spend: ``expected_total`` within ``[lower_total, upper_total]``."""

    method: str
    level: float
    history_hours: int
    remaining_hours: int
    expected_total: float
    lower_total: float
    upper_total: float
    expected_breach_at: dict[str, datetime | None]
    earliest_breach_at: dict[str, datetime | None]


@dataclass(frozen=True)
class BudgetAlert:
    """One alert about one budget, with the numbers behind it."""

    budget: str
    kind: AlertKind
    severity: Severity
    threshold_amount: float
    spent: float
    projected_total: float | None
    projected_upper: float | None
    expected_breach_at: datetime | None
    earliest_breach_at: datetime | None
    message: str

    @property
    def before_breach(self) -> bool:
        return self.kind.endswith("_projected")


@dataclass(frozen=True)
class BudgetStatus:
    """Where a budget stands now: spend, burn, projection and alerts."""

    budget: BudgetSpec
    now: datetime
    period_start: datetime
    period_end: datetime
    spent: Decimal
    projection: Projection | None
    alerts: tuple[BudgetAlert, ...]
    reasons: tuple[str, ...]

    @property
    def fraction_used(self) -> float:
        return float(self.spent) / self.budget.amount

    @property
    def remaining(self) -> float:
        return self.budget.amount - float(self.spent)

    @property
    def elapsed_hours(self) -> float:
        return (self.now - self.period_start).total_seconds() / 3600

    @property
    def period_hours(self) -> float:
        return (self.period_end - self.period_start).total_seconds() / 3600

    @property
    def burn_rate_per_hour(self) -> float:
        """Average spend per hour so far this period."""
        return float(self.spent) / self.elapsed_hours if self.elapsed_hours > 0 else 0.0

    @property
    def sustainable_burn_per_hour(self) -> float:
        """Spend per hour that would exactly use the budget over the period."""
        return self.budget.amount / self.period_hours

    @property
    def state(self) -> Literal["ok", "warning", "critical"]:
        if any(a.severity == "critical" for a in self.alerts):
            return "critical"
        return "warning" if self.alerts else "ok"

    def metrics(self) -> dict[str, float]:
        """Gauges for a Prometheus exporter (spend, budget, burn rates, projection)."""
        out = {
            "spend": float(self.spent),
            "budget": self.budget.amount,
            "fraction_used": self.fraction_used,
            "burn_rate_per_hour": self.burn_rate_per_hour,
            "sustainable_burn_per_hour": self.sustainable_burn_per_hour,
        }
        if self.projection is not None:
            out["projected_total"] = self.projection.expected_total
            out["projected_upper"] = self.projection.upper_total
        return out


def _crossing(
    start: datetime, spent: float, path: list[float], threshold: float
) -> datetime | None:
    """Time at which ``spent + path[i]`` (end of hour i) first reaches ``threshold``."""
    for i, value in enumerate(path):
        if spent + value >= threshold:
            return start + timedelta(hours=i + 1)
    return None


def _project(
    budget: BudgetSpec,
    scoped: Ledger,
    *,
    now: datetime,
    end: datetime,
    spent: float,
    policy: AlertPolicy,
) -> tuple[Projection | None, str]:
    remaining = math.ceil((end - now).total_seconds() / 3600 - 1e-9)
    if remaining <= 0:
        return None, "period ends now: nothing left to project"
    hist_start = now - timedelta(hours=policy.history_hours)
    first = min((line.start for line in scoped), default=None)
    if first is not None and first > hist_start:
        hist_start = now - timedelta(hours=math.floor((now - first).total_seconds() / 3600))
    history = scoped.by_period(hist_start, now, "hour").values()
    if len(history) < policy.min_history_steps:
        return None, (
            f"{len(history)} h of spend history, fewer than the {policy.min_history_steps} h "
            "needed to project"
        )
    spec = policy.forecast
    if len(history) < 2 * spec.season_length:
        spec = spec.model_copy(update={"method": "seasonal_naive"})
    fc = forecast(history, remaining, spec)
    mean_path, _, upper_path = fc.cumulative()
    expected, lower, upper = fc.total()
    thresholds = {
        "soft": budget.soft_threshold * budget.amount,
        "hard": budget.hard_threshold * budget.amount,
    }
    return (
        Projection(
            method=fc.method,
            level=fc.level,
            history_hours=len(history),
            remaining_hours=remaining,
            expected_total=spent + max(expected, 0.0),
            lower_total=spent + max(lower, 0.0),
            upper_total=spent + max(upper, 0.0),
            expected_breach_at={
                k: _crossing(now, spent, list(mean_path), v) for k, v in thresholds.items()
            },
            earliest_breach_at={
                k: _crossing(now, spent, list(upper_path), v) for k, v in thresholds.items()
            },
        ),
        f"{fc.method} projection over {remaining} h from {len(history)} h of history",
    )


def evaluate_budget(
    budget: BudgetSpec, ledger: Ledger, now: datetime, policy: AlertPolicy | None = None
) -> BudgetStatus:
    """Status and alerts of ``budget`` at ``now`` from ``ledger`` (see the module docstring)."""
    policy = policy or AlertPolicy()
    start, end = period_window(budget.period, now)
    now = now.astimezone(UTC)
    scoped = ledger.filter(budget.scope)
    spent_dec = scoped.window(start, now).total
    spent = float(spent_dec)
    soft = budget.soft_threshold * budget.amount
    hard = budget.hard_threshold * budget.amount
    projection, why = _project(budget, scoped, now=now, end=end, spent=spent, policy=policy)
    reasons = [
        f"{budget.name}: spent {spent:,.2f} of {budget.amount:,.2f} "
        f"({100 * spent / budget.amount:.1f} %) in the {budget.period} period from "
        f"{start:%Y-%m-%d %H:%M}",
        why,
    ]
    alerts: list[BudgetAlert] = []

    def alert(kind: AlertKind, severity: Severity, threshold: float, message: str) -> None:
        alerts.append(
            BudgetAlert(
                budget=budget.name,
                kind=kind,
                severity=severity,
                threshold_amount=threshold,
                spent=spent,
                projected_total=projection.expected_total if projection else None,
                projected_upper=projection.upper_total if projection else None,
                expected_breach_at=(
                    projection.expected_breach_at[kind.split("_")[0]] if projection else None
                ),
                earliest_breach_at=(
                    projection.earliest_breach_at[kind.split("_")[0]] if projection else None
                ),
                message=message,
            )
        )

    if spent >= hard:
        alert("hard_breached", "critical", hard, f"hard limit {hard:,.2f} breached: {spent:,.2f}")
    elif projection is not None and projection.upper_total >= hard:
        alert(
            "hard_projected",
            "critical",
            hard,
            f"period-end spend projected {projection.expected_total:,.2f} "
            f"(upper {projection.upper_total:,.2f} at {100 * projection.level:.0f} %) "
            f"reaches the hard limit {hard:,.2f}",
        )
    if spent >= soft and spent < hard:
        alert("soft_breached", "warning", soft, f"soft limit {soft:,.2f} reached: {spent:,.2f}")
    elif spent < soft and projection is not None and projection.upper_total >= soft:
        alert(
            "soft_projected",
            "warning",
            soft,
            f"period-end spend projected {projection.expected_total:,.2f} "
            f"(upper {projection.upper_total:,.2f}) reaches the soft limit {soft:,.2f}",
        )
    reasons += [a.message for a in alerts]
    return BudgetStatus(
        budget=budget,
        now=now,
        period_start=start,
        period_end=end,
        spent=spent_dec,
        projection=projection,
        alerts=tuple(alerts),
        reasons=tuple(reasons),
    )


@dataclass(frozen=True)
class EnforcementDecision:
    """What to do about a budget, for a task to perform through ``guard``.

    ``rate_fraction`` is the share of current traffic to admit (rate-limit);
    ``target_variant`` the cheaper variant to route to. ``action == "none"`` needs nothing.
    """

    budget: str
    action: EnforcementAction
    guard: str
    reasons: tuple[str, ...]
    target_variant: str | None = None
    rate_fraction: float | None = None

    @property
    def requires_guard(self) -> bool:
        return self.action in ("route_to_cheaper_variant", "rate_limit")


def decide_enforcement(status: BudgetStatus, policy: EnforcementPolicy) -> EnforcementDecision:
    """Enforcement for a hard breach (or a projected one when ``act_on_projection``)."""
    name = status.budget.name
    kinds = {a.kind for a in status.alerts}
    triggered = "hard_breached" in kinds or (policy.act_on_projection and "hard_projected" in kinds)
    if not triggered:
        why = (
            "no hard-limit breach"
            + (" projected" if "hard_projected" in kinds else "")
            + " that the policy acts on"
        )
        return EnforcementDecision(name, "none", policy.guard, (why,))
    hard = status.budget.hard_threshold * status.budget.amount
    spent = float(status.spent)
    trigger = "breached" if "hard_breached" in kinds else "projected to be breached"
    reasons = [f"hard limit {hard:,.2f} {trigger} (spent {spent:,.2f})"]
    if policy.action == "alert_only":
        return EnforcementDecision(
            name, "alert_only", policy.guard, (*reasons, "policy: alert only")
        )
    if policy.action == "route_to_cheaper_variant":
        reasons.append(
            f"route traffic to {policy.cheaper_variant} through the {policy.guard} guard"
        )
        return EnforcementDecision(
            name, "route_to_cheaper_variant", policy.guard, tuple(reasons), policy.cheaper_variant
        )
    allowed = hard - spent
    projected_rest = (
        status.projection.expected_total - spent if status.projection is not None else math.inf
    )
    if allowed <= 0 or projected_rest <= 0:
        fraction = policy.min_rate_fraction if allowed <= 0 else 1.0
    else:
        fraction = min(1.0, max(policy.min_rate_fraction, allowed / projected_rest))
    reasons.append(
        f"admit {100 * fraction:.1f} % of traffic: {max(allowed, 0):,.2f} left against "
        f"{projected_rest:,.2f} projected for the rest of the period"
    )
    return EnforcementDecision(
        name, "rate_limit", policy.guard, tuple(reasons), rate_fraction=fraction
    )
