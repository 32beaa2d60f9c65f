"""Cost management: price catalog, ledger, budgets and forecasts, capacity planning, savings.

Pure planning code (no provider calls, no Prefect): adapters and flows perform the side
effects these decisions name.

* :mod:`~loopline.cost.catalog`: dated price catalog of compute offers and the token price book.
* :mod:`~loopline.cost.ledger`: attributed cost lines, exact aggregation.
* :mod:`~loopline.cost.forecast`: seasonal forecasts with intervals and back-tests.
* :mod:`~loopline.cost.budget`: budgets, alerts before a breach, enforcement decisions.
* :mod:`~loopline.cost.planner`: ``plan_capacity(demand, catalog, slo) -> CapacityPlan`` (MILP).
* :mod:`~loopline.cost.spot`: diversification, fallback rules, interruption simulation.
* :mod:`~loopline.cost.recommend`: savings recommendations and rendered actions.
* :mod:`~loopline.cost.aws`: the AWS adapter (boto3, imported only when called): bill import
  from Cost Explorer and catalog price refresh. Not imported here.
* :mod:`~loopline.cost.operations`: the I/O layer (request log, deployment records, reports,
  plan files, MLflow); :mod:`~loopline.cost.report` renders the HTML report. Not imported here.

Exports are imported on first use, so reading the configuration (which holds
:class:`~loopline.cost.policy.CostConfig`) stays cheap.
"""

from loopline.lazy import lazy_getattr

_EXPORTS = {
    "AccountingPolicy": "loopline.cost.policy",
    "ActionPlan": "loopline.cost.recommend",
    "Aggregation": "loopline.cost.ledger",
    "AlertPolicy": "loopline.cost.policy",
    "Attribution": "loopline.cost.ledger",
    "BacktestReport": "loopline.cost.forecast",
    "BudgetAlert": "loopline.cost.budget",
    "BudgetSpec": "loopline.cost.policy",
    "BudgetStatus": "loopline.cost.budget",
    "CapacityPlan": "loopline.cost.planner",
    "CapacitySLO": "loopline.cost.policy",
    "Catalog": "loopline.cost.catalog",
    "CatalogError": "loopline.cost.catalog",
    "ComputeUsage": "loopline.cost.ledger",
    "CostConfig": "loopline.cost.policy",
    "CostLine": "loopline.cost.ledger",
    "EnforcementDecision": "loopline.cost.budget",
    "EnforcementPolicy": "loopline.cost.policy",
    "FallbackPolicy": "loopline.cost.policy",
    "Forecast": "loopline.cost.forecast",
    "ForecastSpec": "loopline.cost.policy",
    "InterruptionModel": "loopline.cost.policy",
    "Ledger": "loopline.cost.ledger",
    "LedgerError": "loopline.cost.ledger",
    "Offer": "loopline.cost.catalog",
    "PlannerPolicy": "loopline.cost.policy",
    "PriceBook": "loopline.cost.catalog",
    "RecommendPolicy": "loopline.cost.policy",
    "Recommendation": "loopline.cost.recommend",
    "RequestUsage": "loopline.cost.ledger",
    "SimulationReport": "loopline.cost.spot",
    "StorageUsage": "loopline.cost.ledger",
    "ThroughputSpec": "loopline.cost.policy",
    "TokenPrice": "loopline.cost.catalog",
    "backtest": "loopline.cost.forecast",
    "compute_line": "loopline.cost.ledger",
    "decide_apply": "loopline.cost.recommend",
    "decide_enforcement": "loopline.cost.budget",
    "diversification": "loopline.cost.spot",
    "evaluate_budget": "loopline.cost.budget",
    "forecast": "loopline.cost.forecast",
    "load_catalog": "loopline.cost.catalog",
    "load_price_book": "loopline.cost.catalog",
    "period_window": "loopline.cost.budget",
    "plan_capacity": "loopline.cost.planner",
    "simulate_interruptions": "loopline.cost.spot",
    "storage_line": "loopline.cost.ledger",
    "token_line": "loopline.cost.ledger",
}
__getattr__ = lazy_getattr(__name__, _EXPORTS)
__all__ = [
    "AccountingPolicy",
    "ActionPlan",
    "Aggregation",
    "AlertPolicy",
    "Attribution",
    "BacktestReport",
    "BudgetAlert",
    "BudgetSpec",
    "BudgetStatus",
    "CapacityPlan",
    "CapacitySLO",
    "Catalog",
    "CatalogError",
    "ComputeUsage",
    "CostConfig",
    "CostLine",
    "EnforcementDecision",
    "EnforcementPolicy",
    "FallbackPolicy",
    "Forecast",
    "ForecastSpec",
    "InterruptionModel",
    "Ledger",
    "LedgerError",
    "Offer",
    "PlannerPolicy",
    "PriceBook",
    "RecommendPolicy",
    "Recommendation",
    "RequestUsage",
    "SimulationReport",
    "StorageUsage",
    "ThroughputSpec",
    "TokenPrice",
    "backtest",
    "compute_line",
    "decide_apply",
    "decide_enforcement",
    "diversification",
    "evaluate_budget",
    "forecast",
    "load_catalog",
    "load_price_book",
    "period_window",
    "plan_capacity",
    "simulate_interruptions",
    "storage_line",
    "token_line",
]
