"""The ``cost`` flow: this environment's spend report (budgets, alerts before a breach,
forecast), a dry-run capacity plan for the next week and savings recommendations."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.params import CostParams
from loopline.config import load_settings
from tasks import cost as cost_tasks

Params = CostParams


@flow(name="cost", log_prints=True)
def cost(params: CostParams | None = None) -> dict[str, Any]:
    params = params or CostParams()
    settings = load_settings(params.project_root, env=params.env)
    out: dict[str, Any] = {"report": cost_tasks.report(settings, params.days, params.forecast_days)}
    if params.plan:
        out["plan"] = cost_tasks.plan(settings)
    if params.recommend:
        out["recommendations"] = cost_tasks.recommend(settings)
    return out
