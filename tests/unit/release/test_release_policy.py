"""Release configuration models: defaults, validation, immutability."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from loopline.release import CanaryAnalysisPolicy, CanaryPolicy, ReleaseConfig, ShadowPolicy


def test_defaults_describe_a_four_step_canary() -> None:
    config = ReleaseConfig()
    assert config.strategy == "canary"
    assert config.canary.steps == (5.0, 25.0, 50.0, 100.0)
    assert config.canary.analysed_weights == (5.0, 25.0, 50.0)
    assert config.canary.analysed_steps == 3
    assert config.canary.analysis.enabled_metrics == ("error_rate", "latency_p99", "quality")
    assert config.shadow.analysed_steps == 1
    assert config.threshold.max_failed_checks == 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": (25.0, 5.0, 100.0)}, "increase strictly"),
        ({"steps": (5.0, 5.0)}, "increase strictly"),
        ({"steps": (0.0, 50.0)}, "must lie in (0, 100]"),
        ({"steps": (50.0, 150.0)}, "must lie in (0, 100]"),
        ({"steps": (100.0,)}, "at least one step below 100"),
        ({"steps": ()}, "at least one step"),
        ({"min_requests_per_step": 500, "max_requests_per_step": 100}, "max_requests_per_step"),
        ({"min_step_seconds": 60.0, "max_step_seconds": 30.0}, "max_step_seconds"),
        ({"on_inconclusive": "shrug"}, "on_inconclusive"),
        ({"stepz": (5.0,)}, "Extra inputs are not permitted"),
    ],
)
def test_canary_policy_rejects_bad_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace("]", r"\]")):
        CanaryPolicy.model_validate(kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"error_rate_margin": None, "latency_tail_margin": None, "quality_margin": None},
            "enable at least one canary metric",
        ),
        ({"rate_ratios": (0.5, 2.0)}, "ratios > 1"),
        ({"rate_ratios": ()}, "ratios > 1"),
        ({"alpha": 0.0}, "greater than 0"),
        ({"quality_margin": 1.5}, "less than 1"),
    ],
)
def test_analysis_policy_rejects_bad_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CanaryAnalysisPolicy.model_validate(kwargs)


def test_policies_are_frozen_and_parse_from_plain_data() -> None:
    config = ReleaseConfig.model_validate(
        {
            "strategy": "shadow",
            "shadow": {"mirror_percent": 25, "analysis": {"quality_margin": None}},
            "canary": {"steps": [10, 50, 100]},
        }
    )
    assert config.shadow == ShadowPolicy(
        mirror_percent=25.0, analysis=CanaryAnalysisPolicy(quality_margin=None)
    )
    assert config.canary.steps == (10.0, 50.0, 100.0)
    with pytest.raises(ValidationError, match="frozen"):
        config.canary.steps = (1.0,)  # type: ignore[misc]
