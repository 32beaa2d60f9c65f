"""decide_experiment: table-driven."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from loopline.experiments.analysis import ExperimentResult, MetricResult
from loopline.experiments.decision import decide_experiment
from loopline.experiments.policy import DecisionPolicy, GuardrailSpec
from loopline.experiments.stats import Comparison, srm_check

NAN = float("nan")
DUMMY = Comparison("welch_t", 0.05, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1)
POLICY = DecisionPolicy(
    primary_metric="resolved",
    guardrails=(
        GuardrailSpec(metric="latency", max_relative_degradation=0.05),
        GuardrailSpec(metric="errors", max_relative_degradation=0.0),
    ),
    non_inferiority_margin=0.01,
    cost_metric="cost",
    value_per_unit=1.0,
    min_units_per_variant=100,
)


@dataclass(frozen=True)
class M:
    """A metric line: relative change (lo, est, hi) against a control value."""

    metric: str
    rel: tuple[float, float, float]
    control: float = 1.0
    higher: bool = True
    variant: str = "B"
    interval: str = "sequential"


def metric(m: M, n: int) -> MetricResult:
    lo, est, hi = m.rel
    return MetricResult(
        metric=m.metric, kind="continuous", variant=m.variant, control="A",
        higher_is_better=m.higher, alpha=0.05, n_control=n, n_treatment=n,
        control_value=m.control, treatment_value=m.control * (1 + est),
        difference=m.control * est, ci_low=m.control * lo, ci_high=m.control * hi,
        relative_difference=est, relative_ci_low=lo, relative_ci_high=hi,
        p_value=0.5, adjusted_p_value=0.5, interval=m.interval,  # type: ignore[arg-type]
        method="welch_t", fixed=DUMMY,
    )  # fmt: skip


def result(
    lines: list[M], *, n: int = 5000, counts: tuple[int, ...] | None = None
) -> ExperimentResult:
    variants = sorted({m.variant for m in lines})
    counts = counts or (n,) * (len(variants) + 1)
    return ExperimentResult(
        experiment="exp",
        control="A",
        treatments=tuple(variants),
        units=dict(zip(["A", *variants], counts, strict=True)),
        srm=srm_check(list(counts), [1.0] * len(counts)),
        metrics=tuple(metric(m, min(counts)) for m in lines),
        bayesian={},
        alpha=0.05,
        correction="holm",
    )


# Healthy guardrails and equal cost (control cost 0.01 per unit).
OK = [
    M("latency", (-0.02, 0.0, 0.03), 800.0, higher=False),
    M("errors", (-0.2, -0.1, -0.01), 0.02, higher=False),
    M("cost", (-0.05, 0.0, 0.05), 0.01, higher=False),
]


def with_(*lines: M, base: list[M] = OK) -> list[M]:
    names = {(m.metric, m.variant) for m in lines}
    return [*lines, *(m for m in base if (m.metric, m.variant) not in names)]


@dataclass(frozen=True)
class Case:
    name: str
    lines: list[M]
    action: str
    variant: str | None = None
    affected: tuple[str, ...] = ()
    valid: bool = True
    policy: DecisionPolicy = POLICY
    counts: tuple[int, ...] | None = None
    reason: str = ""
    alert: str = ""
    statuses: dict[str, str] = field(default_factory=dict)


CASES = [
    Case(
        "winner ships",
        with_(M("resolved", (0.02, 0.05, 0.08), 0.5)),
        "ship",
        "B",
        reason="confidently better",
        statuses={"B": "winner"},
    ),
    Case(
        "inconclusive keeps running",
        with_(M("resolved", (-0.02, 0.01, 0.04), 0.5)),
        "keep_running",
        statuses={"B": "inconclusive"},
    ),
    Case(
        "primary harm stops",
        with_(M("resolved", (-0.08, -0.05, -0.02), 0.5)),
        "stop_for_harm",
        affected=("B",),
        reason="confidently worse",
        statuses={"B": "harmful"},
    ),
    Case(
        "latency breach rolls back",
        with_(
            M("resolved", (0.02, 0.05, 0.08), 0.5),
            M("latency", (0.06, 0.08, 0.10), 800.0, higher=False),
        ),
        "roll_back",
        affected=("B",),
        reason="guardrail latency degraded",
        statuses={"B": "guardrail_breach"},
    ),
    Case(
        "error-rate breach with zero margin",
        with_(
            M("resolved", (-0.01, 0.0, 0.01), 0.5),
            M("errors", (0.01, 0.2, 0.4), 0.02, higher=False),
        ),
        "roll_back",
        affected=("B",),
        statuses={"B": "guardrail_breach"},
    ),
    Case(
        "latency within the margin is not a breach",
        with_(
            M("resolved", (0.02, 0.05, 0.08), 0.5),
            M("latency", (0.01, 0.03, 0.045), 800.0, higher=False),
        ),
        "ship",
        "B",
    ),
    Case(
        "pending guardrail blocks shipping",
        with_(
            M("resolved", (0.02, 0.05, 0.08), 0.5),
            M("latency", (-0.01, 0.03, 0.07), 800.0, higher=False),
        ),
        "keep_running",
        reason="guardrails pending: latency",
        statuses={"B": "guardrail_pending"},
    ),
    Case(
        "SRM blocks shipping",
        with_(M("resolved", (0.02, 0.05, 0.08), 0.5)),
        "keep_running",
        valid=False,
        counts=(5000, 5400),
        alert="sample-ratio mismatch",
    ),
    Case(
        "SRM does not block a guardrail roll-back",
        with_(
            M("resolved", (0.02, 0.05, 0.08), 0.5),
            M("latency", (0.06, 0.08, 0.10), 800.0, higher=False),
        ),
        "roll_back",
        affected=("B",),
        valid=False,
        counts=(5000, 5400),
        alert="sample-ratio mismatch",
    ),
    Case(
        "SRM may be overridden",
        with_(M("resolved", (0.02, 0.05, 0.08), 0.5)),
        "ship",
        "B",
        counts=(5000, 5400),
        policy=POLICY.model_copy(update={"allow_ship_with_srm": True}),
        alert="sample-ratio mismatch",
    ),
    Case(
        "cheaper and non-inferior ships",
        with_(
            M("resolved", (-0.005, 0.002, 0.009), 0.5),
            M("cost", (-0.5, -0.4, -0.3), 0.01, higher=False),
        ),
        "ship",
        "B",
        reason="cheaper by",
        statuses={"B": "cheaper_non_inferior"},
    ),
    Case(
        "cheaper but possibly inferior keeps running",
        with_(
            M("resolved", (-0.03, -0.01, 0.01), 0.5),
            M("cost", (-0.5, -0.4, -0.3), 0.01, higher=False),
        ),
        "keep_running",
        statuses={"B": "inconclusive"},
    ),
    Case(
        "cheaper only by point estimate is not enough",
        with_(
            M("resolved", (-0.005, 0.002, 0.009), 0.5),
            M("cost", (-0.5, -0.2, 0.1), 0.01, higher=False),
        ),
        "keep_running",
    ),
    Case(
        "costlier winner worth its price ships",  # gain 0.5·0.10 = 0.05 > extra 0.01·1.0
        with_(
            M("resolved", (0.05, 0.10, 0.15), 0.5), M("cost", (0.8, 1.0, 1.2), 0.01, higher=False)
        ),
        "ship",
        "B",
        reason="worth its extra cost",
        statuses={"B": "winner"},
    ),
    Case(
        "costlier winner not worth its price",  # gain 0.5·0.01 = 0.005 < extra 0.02
        with_(
            M("resolved", (0.005, 0.01, 0.015), 0.5), M("cost", (1.8, 2.0, 2.2), 0.01, higher=False)
        ),
        "keep_running",
        reason="net value -0.015",
        statuses={"B": "not_worth_cost"},
    ),
    Case(
        "costlier winner without a value per unit never ships",
        with_(
            M("resolved", (0.05, 0.10, 0.15), 0.5), M("cost", (0.8, 1.0, 1.2), 0.01, higher=False)
        ),
        "keep_running",
        policy=POLICY.model_copy(update={"value_per_unit": None}),
        reason="no value_per_unit",
        statuses={"B": "not_worth_cost"},
    ),
    Case(
        "too few units",
        with_(M("resolved", (0.02, 0.05, 0.08), 0.5)),
        "keep_running",
        counts=(60, 60),
        reason="smallest arm has 60 units",
    ),
    Case(
        "fixed horizon: no peeking before the horizon",
        [M("resolved", (0.02, 0.05, 0.08), 0.5, interval="fixed")],
        "keep_running",
        policy=POLICY.model_copy(update={"guardrails": (), "max_units_per_variant": 10_000}),
        reason="waiting for 10000 units",
    ),
    Case(
        "fixed horizon reached with a winner ships",
        [M("resolved", (0.02, 0.05, 0.08), 0.5, interval="fixed")],
        "ship",
        "B",
        counts=(10_000, 10_000),
        policy=POLICY.model_copy(update={"guardrails": (), "max_units_per_variant": 10_000}),
    ),
    Case(
        "horizon reached without a winner rolls back",
        with_(M("resolved", (-0.01, 0.0, 0.01), 0.5)),
        "roll_back",
        affected=("B",),
        counts=(20_000, 20_000),
        policy=POLICY.model_copy(update={"max_units_per_variant": 20_000}),
        reason="horizon of 20000",
    ),
    Case(
        "missing primary metric is invalid",
        list(OK),
        "keep_running",
        valid=False,
        alert="primary metric resolved missing",
        statuses={"B": "missing_data"},
    ),
    Case(
        "missing guardrail blocks shipping",
        [
            M("resolved", (0.02, 0.05, 0.08), 0.5),
            M("latency", (-0.02, 0.0, 0.03), 800.0, higher=False),
        ],
        "keep_running",
        reason="guardrail errors has no result",
    ),
    Case(
        "harm in one arm stops it even if another wins",
        with_(
            M("resolved", (0.02, 0.05, 0.08), 0.5),
            M("resolved", (-0.08, -0.05, -0.02), 0.5, variant="C"),
            base=OK + [M(m.metric, m.rel, m.control, m.higher, "C") for m in OK],
        ),
        "stop_for_harm",
        affected=("C",),
        statuses={"B": "winner", "C": "harmful"},
    ),
    Case(
        "best net value wins among several winners",
        with_(
            M("resolved", (0.02, 0.05, 0.08), 0.5),
            M("resolved", (0.05, 0.08, 0.11), 0.5, variant="C"),
            base=OK + [M(m.metric, m.rel, m.control, m.higher, "C") for m in OK],
        ),
        "ship",
        "C",
    ),
    Case(
        "lower-is-better primary metric",
        with_(M("resolved", (-0.08, -0.05, -0.02), 0.5, higher=False)),
        "ship",
        "B",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decision_table(case: Case) -> None:
    decision = decide_experiment(result(case.lines, counts=case.counts), case.policy)
    assert decision.action == case.action
    assert decision.variant == case.variant
    assert decision.affected == case.affected
    assert decision.valid == case.valid
    assert decision.reasons and all(isinstance(r, str) and r for r in decision.reasons)
    if case.reason:
        assert any(case.reason in r for r in decision.reasons), decision.reasons
    if case.alert:
        assert any(case.alert in a for a in decision.alerts), decision.alerts
    else:
        assert decision.alerts == ()
    statuses = {v.variant: v.status for v in decision.verdicts}
    for variant, status in case.statuses.items():
        assert statuses[variant] == status
    assert decision.summary.startswith(case.action)


def test_verdict_carries_the_cost_arithmetic() -> None:
    lines = with_(
        M("resolved", (0.05, 0.10, 0.15), 0.5), M("cost", (0.8, 1.0, 1.2), 0.01, higher=False)
    )
    (verdict,) = decide_experiment(result(lines), POLICY).verdicts
    assert verdict.cost_difference == pytest.approx(0.01)
    assert verdict.net_value_per_unit == pytest.approx(0.05 * 1.0 - 0.01)
    assert verdict.primary_interval == (0.05, 0.15)
    doubled = POLICY.model_copy(update={"value_per_unit": 0.1})  # 0.005 < 0.01: not worth it
    assert decide_experiment(result(lines), doubled).action == "keep_running"
