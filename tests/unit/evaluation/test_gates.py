from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest

from loopline.config import GateSpec, load_settings
from loopline.evaluation.gates import GateResult, evaluate_gates

ROUGE = GateSpec(metric="rouge_l", min=0.45, max_regression=0.03)
ACC = GateSpec(metric="intent_accuracy", min=0.60, max_regression=0.03)
LATENCY = GateSpec(
    metric="latency_p95_ms", higher_is_better=False, max=5000.0, max_regression=500.0
)
GOOD = {"rouge_l": 0.50, "intent_accuracy": 0.90, "latency_p95_ms": 1200.0}


def check(result: GateResult, name: str) -> Any:
    (found,) = [c for c in result.checks if c.name == name]
    return found


@dataclass(frozen=True)
class Case:
    gate: GateSpec
    candidate: dict[str, float]
    champion: dict[str, float] | None
    check: str  # min | max | no_regression
    passed: bool
    message: str


ACC_88 = {"intent_accuracy": 0.88}
LAT_1000 = {"latency_p95_ms": 1000.0}
# fmt: off
CASES = [
    # absolute minimum, inclusive
    Case(ROUGE, {"rouge_l": 0.412}, None, "min", False, "rouge_l = 0.412 below minimum 0.450"),
    Case(ROUGE, {"rouge_l": 0.45}, None, "min", True, "rouge_l = 0.450 meets minimum 0.450"),
    Case(ROUGE, {"rouge_l": 0.9}, None, "min", True, "rouge_l = 0.900 meets minimum 0.450"),
    # absolute maximum (lower is better), inclusive
    Case(LATENCY, {"latency_p95_ms": 5210.0}, None, "max", False,
         "latency_p95_ms = 5210.000 above maximum 5000.000"),
    Case(LATENCY, {"latency_p95_ms": 5000.0}, None, "max", True,
         "latency_p95_ms = 5000.000 within maximum 5000.000"),
    # regression, higher is better
    Case(ACC, {"intent_accuracy": 0.829}, ACC_88, "no_regression", False,
         "intent_accuracy regressed by 0.051 vs champion 0.880 (tolerance 0.030)"),
    # exactly at the tolerance passes, although 0.88 - 0.85 = 0.030000000000000027
    Case(ACC, {"intent_accuracy": 0.85}, ACC_88, "no_regression", True,
         "intent_accuracy regressed by 0.030 vs champion 0.880 (tolerance 0.030)"),
    Case(ACC, {"intent_accuracy": 0.88}, ACC_88, "no_regression", True,
         "intent_accuracy unchanged vs champion 0.880 (tolerance 0.030)"),
    Case(ACC, {"intent_accuracy": 0.95}, ACC_88, "no_regression", True,
         "intent_accuracy improved by 0.070 vs champion 0.880 (tolerance 0.030)"),
    # regression, lower is better: latency going up is the regression
    Case(LATENCY, {"latency_p95_ms": 1700.0}, LAT_1000, "no_regression", False,
         "latency_p95_ms regressed by 700.000 vs champion 1000.000 (tolerance 500.000)"),
    Case(LATENCY, {"latency_p95_ms": 400.0}, LAT_1000, "no_regression", True,
         "latency_p95_ms improved by 600.000 vs champion 1000.000 (tolerance 500.000)"),
    # a missing metric fails every check of its gate
    Case(ROUGE, {}, None, "min", False, "rouge_l is missing from the candidate's metrics"),
    Case(ROUGE, {}, {"rouge_l": 0.5}, "no_regression", False,
         "rouge_l is missing from the candidate's metrics"),
    # non-finite values fail
    Case(ROUGE, {"rouge_l": math.nan}, None, "min", False, "rouge_l = nan is not a finite number"),
]
# fmt: on


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.gate.metric}.{c.check}-{c.passed}")
def test_single_check(case: Case) -> None:
    result = evaluate_gates(case.candidate, case.champion, [case.gate])
    found = check(result, f"{case.gate.metric}.{case.check}")
    assert found.passed is case.passed
    assert found.message == case.message
    assert found.metric == case.gate.metric
    assert not found.skipped
    assert result.passed is (case.passed and all(c.passed for c in result.checks))


def test_regression_skipped_without_champion_is_recorded_as_passed() -> None:
    result = evaluate_gates({"rouge_l": 0.5}, None, [ROUGE])
    reg = check(result, "rouge_l.no_regression")
    assert reg.passed and reg.skipped
    assert reg.kind == "regression"
    assert "skipped: no champion to compare with" in reg.message
    assert result.passed
    assert result.skipped == (reg,)
    assert result.summary == "all 2 gate checks passed (1 skipped: no champion to compare with)"


def test_regression_skipped_when_champion_lacks_the_metric() -> None:
    result = evaluate_gates({"rouge_l": 0.5}, {"chrf": 40.0}, [ROUGE])
    reg = check(result, "rouge_l.no_regression")
    assert reg.passed and reg.skipped
    assert "champion has no usable rouge_l" in reg.message


def test_kinds_thresholds_and_references() -> None:
    result = evaluate_gates(GOOD, {"rouge_l": 0.52, "latency_p95_ms": 1000.0}, [ROUGE, LATENCY])
    assert [(c.name, c.kind) for c in result.checks] == [
        ("rouge_l.min", "min"),
        ("rouge_l.no_regression", "regression"),
        ("latency_p95_ms.max", "max"),
        ("latency_p95_ms.no_regression", "regression"),
    ]
    reg = check(result, "rouge_l.no_regression")
    assert reg.reference == pytest.approx(0.52)
    assert reg.threshold == pytest.approx(0.49)  # worst value still allowed
    lat = check(result, "latency_p95_ms.no_regression")
    assert lat.threshold == pytest.approx(1500.0)
    assert lat.higher_is_better is False
    assert result.direction("latency_p95_ms") is False
    assert result.direction("rouge_l") is True
    assert result.direction("chrf") is None


def test_failures_and_summary() -> None:
    result = evaluate_gates(
        {"rouge_l": 0.40, "intent_accuracy": 0.80},
        {"rouge_l": 0.50, "intent_accuracy": 0.90},
        [ROUGE, ACC],
    )
    assert not result.passed
    assert [c.name for c in result.failures] == [
        "rouge_l.min",
        "rouge_l.no_regression",
        "intent_accuracy.no_regression",
    ]
    assert result.summary == (
        "3 of 4 gate checks failed: rouge_l.min, rouge_l.no_regression, "
        "intent_accuracy.no_regression"
    )


def test_no_gates_pass_trivially() -> None:
    result = evaluate_gates({}, None, [])
    assert result.passed and result.checks == ()
    assert result.summary == "no gates configured"


def test_result_is_frozen() -> None:
    result = evaluate_gates(GOOD, None, [ROUGE])
    with pytest.raises(AttributeError):
        result.passed = False  # type: ignore[misc]


def test_configured_gates_from_loopline_yaml(project_root: Any) -> None:
    settings = load_settings(project_root, env="local")
    metrics = {
        "intent_accuracy": 0.91,
        "rouge_l": 0.86,
        "chrf": 70.0,
        "semantic_similarity": 0.9,
        "latency_p95_ms": 300.0,
    }
    first = evaluate_gates(metrics, None, settings.gates)
    assert first.passed
    assert len(first.checks) == 9  # four metrics with min + regression, latency with max
    worse = {**metrics, "chrf": 66.0}
    second = evaluate_gates(worse, metrics, settings.gates)
    assert [c.message for c in second.failures] == [
        "chrf regressed by 4.000 vs champion 70.000 (tolerance 3.000)"
    ]
