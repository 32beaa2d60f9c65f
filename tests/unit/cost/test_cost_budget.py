"""Budgets: periods, alerts that fire before a breach on synthetic spend, enforcement as data."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from loopline.cost.budget import BudgetStatus, decide_enforcement, evaluate_budget, period_window
from loopline.cost.ledger import Attribution, CostLine, Ledger, money
from loopline.cost.policy import AlertPolicy, BudgetSpec, EnforcementPolicy, ForecastSpec

WEEK = datetime(2026, 11, 9, tzinfo=UTC)  # a Monday
HISTORY_START = WEEK - timedelta(days=14)
FAST = AlertPolicy(forecast=ForecastSpec(method="seasonal_naive", season_length=24))
BUDGET = BudgetSpec(name="search-weekly", amount=2000.0, period="weekly", scope={"team": "search"})


def spend_ledger(spike_from: datetime | None, seed: int = 0) -> Ledger:
    """Hourly compute spend of team search (about 240/day), doubling from ``spike_from``.

    Team support spends in parallel and must not count against the search budget.
    """
    rng = np.random.default_rng(seed)
    lines = []
    hours = int((WEEK + timedelta(days=7) - HISTORY_START).total_seconds() // 3600)
    for h in range(hours):
        start = HISTORY_START + timedelta(hours=h)
        rate = 10 + 4 * math.sin(2 * math.pi * h / 24)
        if spike_from is not None and start >= spike_from:
            rate *= 2
        rate *= 1 + rng.normal(0, 0.03)
        for team, scale in (("search", 1.0), ("support", 3.0)):
            lines.append(
                CostLine(
                    f"{team}-{h}",
                    "compute",
                    money(rate * scale),
                    start,
                    start + timedelta(hours=1),
                    Attribution(team=team, environment="prod"),
                    "aws",
                    Decimal(1),
                    "replica-hours",
                )
            )
    return Ledger(tuple(lines))


def walk_week(
    ledger: Ledger, budget: BudgetSpec, step_hours: int = 3
) -> list[tuple[int, BudgetStatus]]:
    """Evaluate the budget every few hours through the week (the ledger is cut at 'now')."""
    out = []
    for h in range(step_hours, 7 * 24, step_hours):
        now = WEEK + timedelta(hours=h)
        out.append((h, evaluate_budget(budget, ledger.window(HISTORY_START, now), now, FAST)))
    return out


def first(
    statuses: list[tuple[int, BudgetStatus]], predicate: Callable[[BudgetStatus], bool]
) -> int | None:
    return next((h for h, s in statuses if predicate(s)), None)


def test_period_windows_reset_daily_weekly_monthly() -> None:
    t = datetime(2026, 12, 17, 15, 30, tzinfo=UTC)  # a Thursday
    assert period_window("daily", t) == (
        datetime(2026, 12, 17, tzinfo=UTC),
        datetime(2026, 12, 18, tzinfo=UTC),
    )
    assert period_window("weekly", t) == (
        datetime(2026, 12, 14, tzinfo=UTC),
        datetime(2026, 12, 21, tzinfo=UTC),
    )
    assert period_window("monthly", t) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert period_window("monthly", datetime(2026, 2, 28, 23, tzinfo=UTC))[1] == datetime(
        2026, 3, 1, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="timezone"):
        period_window("daily", datetime(2026, 1, 1))


def test_hard_alert_fires_well_before_a_spike_breaches_the_budget() -> None:
    ledger = spend_ledger(spike_from=WEEK + timedelta(days=1))
    statuses = walk_week(ledger, BUDGET)
    breach = first(statuses, lambda s: any(a.kind == "hard_breached" for a in s.alerts))
    warned = first(statuses, lambda s: any(a.kind == "hard_projected" for a in s.alerts))
    assert breach is not None and warned is not None
    assert warned + 24 <= breach  # at least a day of warning
    status = dict(statuses)[warned]
    alert = next(a for a in status.alerts if a.kind == "hard_projected")
    assert alert.before_breach and alert.severity == "critical" and status.state == "critical"
    assert alert.projected_upper is not None
    assert alert.spent < BUDGET.amount <= alert.projected_upper
    # once a full day of the spike is in the history, the expected path times the breach
    actual = WEEK + timedelta(hours=breach)
    later = dict(statuses)[60].alerts
    timed = next(a for a in later if a.kind == "hard_projected")
    assert timed.expected_breach_at is not None
    assert abs(timed.expected_breach_at - actual) <= timedelta(hours=6)
    assert (
        timed.earliest_breach_at is not None
        and timed.earliest_breach_at <= timed.expected_breach_at
    )


def test_steady_spend_never_raises_a_hard_alert_but_warns_before_the_soft_limit() -> None:
    ledger = spend_ledger(spike_from=None, seed=1)
    statuses = walk_week(ledger, BUDGET)
    assert not any(a.kind.startswith("hard") for _, s in statuses for a in s.alerts)
    soft_breach = first(statuses, lambda s: any(a.kind == "soft_breached" for a in s.alerts))
    soft_warn = first(statuses, lambda s: any(a.kind == "soft_projected" for a in s.alerts))
    assert soft_breach is not None and soft_warn is not None and soft_warn < soft_breach
    # the period-end projection is close to what the week actually spends
    week_total = float(
        ledger.filter({"team": "search"}).window(WEEK, WEEK + timedelta(days=7)).total
    )
    mid = dict(statuses)[72].projection
    assert mid is not None and mid.lower_total <= week_total <= mid.upper_total


def test_scope_counts_only_its_lines_and_metrics_are_exported() -> None:
    ledger = spend_ledger(spike_from=None)
    now = WEEK + timedelta(hours=48)
    status = evaluate_budget(BUDGET, ledger.window(HISTORY_START, now), now, FAST)
    search = ledger.filter({"team": "search"}).window(WEEK, now).total
    assert status.spent == search
    assert status.burn_rate_per_hour == pytest.approx(float(search) / 48)
    metrics = status.metrics()
    assert metrics["spend"] == float(search) and "projected_upper" in metrics
    assert status.sustainable_burn_per_hour == pytest.approx(2000 / 168)


def test_holt_winters_projection_and_short_history() -> None:
    ledger = spend_ledger(spike_from=None)
    now = WEEK + timedelta(hours=30)
    status = evaluate_budget(BUDGET, ledger.window(HISTORY_START, now), now)
    assert status.projection is not None and status.projection.method == "holt_winters"
    young = ledger.window(WEEK, now)  # 30 h of history only
    quiet = evaluate_budget(BUDGET, young, now, FAST)
    assert quiet.projection is None and "fewer than the 48 h" in quiet.reasons[1]


def breached_status(spent_fraction: float) -> BudgetStatus:
    ledger = spend_ledger(spike_from=WEEK)
    budget = BUDGET.model_copy(update={"amount": 1000.0})
    for h in range(1, 7 * 24):
        now = WEEK + timedelta(hours=h)
        status = evaluate_budget(budget, ledger.window(HISTORY_START, now), now, FAST)
        if status.fraction_used >= spent_fraction:
            return status
    raise AssertionError("never reached")


def test_enforcement_on_a_hard_breach() -> None:
    status = breached_status(1.0)
    assert any(a.kind == "hard_breached" for a in status.alerts)
    limit = decide_enforcement(
        status, EnforcementPolicy(action="rate_limit", min_rate_fraction=0.2)
    )
    assert limit.action == "rate_limit" and limit.requires_guard and limit.rate_fraction == 0.2
    route = decide_enforcement(
        status,
        EnforcementPolicy(
            action="route_to_cheaper_variant", cheaper_variant="mini", guard="experiment"
        ),
    )
    assert route.action == "route_to_cheaper_variant" and route.target_variant == "mini"
    assert route.guard == "experiment"
    only = decide_enforcement(status, EnforcementPolicy(action="alert_only"))
    assert only.action == "alert_only" and not only.requires_guard


def test_enforcement_on_projection_scales_traffic_to_land_on_the_limit() -> None:
    status = breached_status(0.5)
    assert any(a.kind == "hard_projected" for a in status.alerts)
    assert decide_enforcement(status, EnforcementPolicy()).action == "none"
    decision = decide_enforcement(status, EnforcementPolicy(act_on_projection=True))
    assert decision.action == "rate_limit" and decision.rate_fraction is not None
    assert status.projection is not None
    rest = status.projection.expected_total - float(status.spent)
    assert decision.rate_fraction == pytest.approx((1000.0 - float(status.spent)) / rest)


def test_budget_spec_validation() -> None:
    with pytest.raises(ValueError, match="soft_threshold must be below"):
        BudgetSpec(name="x", amount=1, soft_threshold=1.0, hard_threshold=0.9)
    with pytest.raises(ValueError, match="unknown scope keys"):
        BudgetSpec(name="x", amount=1, scope={"owner": "me"})
    with pytest.raises(ValueError, match="cheaper_variant"):
        EnforcementPolicy(action="route_to_cheaper_variant")
