"""Cost tasks: thin wrappers over ``loopline.cost.operations``."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from loopline.config import Settings
from loopline.cost import operations


@task(name="cost-report", cache_policy=NONE, retries=1, retry_delay_seconds=5)
def report(settings: Settings, days: int, forecast_days: int) -> dict[str, Any]:
    result = operations.report(settings, days=days, forecast_days=forecast_days)
    logger = get_run_logger()
    logger.info(
        "spend %s USD over %d days (%s)", result.summary["total"], days, result.summary["state"]
    )
    for status in result.statuses:
        for alert in status.alerts:
            logger.warning("budget %s: %s", alert.budget, alert.message)
    logger.info("forecast: %s", result.forecast.summary_text())
    logger.info("report: %s", result.report_dir)
    return result.to_dict()


@task(name="capacity-plan", cache_policy=NONE)
def plan(settings: Settings) -> dict[str, Any]:
    """The dry-run capacity plan; a missing SLO or an empty request log skips it."""
    logger = get_run_logger()
    try:
        result = operations.plan(settings)
    except operations.CostError as exc:
        logger.warning("capacity plan skipped: %s", exc)
        return {"skipped": str(exc)}
    logger.info("%s (files in %s)", result.plan.summary, result.out_dir)
    return result.summary()


@task(name="cost-recommendations", cache_policy=NONE)
def recommend(settings: Settings) -> dict[str, Any]:
    result = operations.recommend(settings)
    logger = get_run_logger()
    for r in result.items:
        logger.info("%.2f USD/month: %s", r.monthly_savings, r.title)
    for note in result.notes:
        logger.info("note: %s", note)
    return result.to_dict()
