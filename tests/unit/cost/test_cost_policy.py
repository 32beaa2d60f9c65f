"""Cost configuration models: strict, frozen, validated."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from loopline.cost.catalog import load_catalog
from loopline.cost.policy import (
    BudgetSpec,
    CostConfig,
    InterruptionModel,
    PlannerPolicy,
    ThroughputSpec,
)


def test_throughput_resolution_order() -> None:
    catalog = load_catalog()
    spec = ThroughputSpec(
        per_instance={"g6.xlarge": 2500.0}, per_gpu={"L4": 3000.0}, per_vcpu=100.0
    )
    assert spec.for_offer(catalog.get("aws/us-east-1/g6.xlarge")) == 2500.0  # explicit instance
    assert spec.for_offer(catalog.get("aws/us-east-1/g6.12xlarge")) == 4 * 3000.0  # per GPU
    assert spec.for_offer(catalog.get("aws/us-east-1/m7i.xlarge")) == 4 * 100.0  # per vCPU
    assert spec.for_offer(catalog.get("aws/us-east-1/g5.xlarge")) is None  # A10G unmeasured
    with pytest.raises(ValidationError, match="positive"):
        ThroughputSpec(per_gpu={"L4": 0.0})


def test_interruption_model_needs_every_band() -> None:
    model = InterruptionModel()
    assert model.probability(load_catalog().get("aws/us-east-1/m7i.xlarge")) == 0.002
    with pytest.raises(ValidationError, match="bands missing"):
        InterruptionModel(reclaim_probability={"<5%": 0.01})
    bad = dict(model.reclaim_probability, **{">20%": 1.5})
    with pytest.raises(ValidationError, match=r"\(0, 1\)"):
        InterruptionModel(reclaim_probability=bad)


def test_planner_policy_always_offers_no_spare() -> None:
    assert PlannerPolicy(spare_capacity_options=(0.5, 0.2)).spare_capacity_options == (
        0.0,
        0.2,
        0.5,
    )
    with pytest.raises(ValidationError):
        PlannerPolicy(max_spot_share_per_offer=0.0)
    with pytest.raises(ValidationError, match="extra"):
        PlannerPolicy.model_validate({"max_levels": 4, "levels": 3})


def test_cost_config_bundles_and_checks_budget_names() -> None:
    config = CostConfig.model_validate(
        {"budgets": [{"name": "a", "amount": 10}, {"name": "b", "amount": 5, "period": "daily"}]}
    )
    assert config.budgets[1].period == "daily" and config.planner.max_levels == 16
    with pytest.raises(ValidationError, match="unique"):
        CostConfig(budgets=(BudgetSpec(name="a", amount=1), BudgetSpec(name="a", amount=2)))
