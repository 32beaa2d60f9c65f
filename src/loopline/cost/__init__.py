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
"""

from loopline.cost.budget import (
    BudgetAlert,
    BudgetStatus,
    EnforcementDecision,
    decide_enforcement,
    evaluate_budget,
    period_window,
)
from loopline.cost.catalog import (
    Catalog,
    CatalogError,
    Offer,
    PriceBook,
    TokenPrice,
    load_catalog,
    load_price_book,
)
from loopline.cost.forecast import BacktestReport, Forecast, backtest, forecast
from loopline.cost.ledger import (
    Aggregation,
    Attribution,
    ComputeUsage,
    CostLine,
    Ledger,
    LedgerError,
    RequestUsage,
    StorageUsage,
    compute_line,
    storage_line,
    token_line,
)
from loopline.cost.planner import CapacityPlan, plan_capacity
from loopline.cost.policy import (
    AlertPolicy,
    BudgetSpec,
    CapacitySLO,
    CostConfig,
    EnforcementPolicy,
    FallbackPolicy,
    ForecastSpec,
    InterruptionModel,
    PlannerPolicy,
    RecommendPolicy,
    ThroughputSpec,
)
from loopline.cost.recommend import ActionPlan, Recommendation, decide_apply
from loopline.cost.spot import SimulationReport, diversification, simulate_interruptions

__all__ = [
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
