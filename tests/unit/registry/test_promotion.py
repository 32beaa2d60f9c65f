from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from loopline.config import GateSpec, PromotionPolicy
from loopline.evaluation.gates import evaluate_gates
from loopline.registry.promotion import CandidateSummary, decide_promotion

GATES = (
    GateSpec(metric="rouge_l", min=0.45, max_regression=0.03),
    GateSpec(metric="intent_accuracy", min=0.60, max_regression=0.03),
    GateSpec(metric="latency_p95_ms", higher_is_better=False, max=5000.0),
)
AUTO = PromotionPolicy(mode="auto", primary_metric="rouge_l", min_improvement=0.0)
AUTO_STRICT = PromotionPolicy(mode="auto", primary_metric="rouge_l", min_improvement=0.01)
MANUAL = PromotionPolicy(mode="manual", primary_metric="rouge_l", min_improvement=0.0)
LATENCY_PRIMARY = PromotionPolicy(primary_metric="latency_p95_ms", min_improvement=50.0)


def m(rouge: float | None = 0.50, acc: float = 0.90, lat: float = 1000.0) -> dict[str, float]:
    out = {"intent_accuracy": acc, "latency_p95_ms": lat}
    if rouge is not None:
        out["rouge_l"] = rouge
    return out


@dataclass
class Case:
    id: str
    candidate: dict[str, float]
    champion: dict[str, float] | None
    policy: PromotionPolicy
    action: str
    reason_contains: list[str] = field(default_factory=list)
    improvement: float | None = None


# fmt: off
CASES = [
    Case("first-version-promotes", m(), None, AUTO, "promote",
         ["no champion yet: the first version that passes becomes champion"]),
    Case("first-version-manual-awaits", m(), None, MANUAL, "await_approval",
         ["promotion mode is manual: an approval is required"]),
    Case("first-version-fails-gate", m(rouge=0.40), None, AUTO, "reject",
         ["rouge_l = 0.400 below minimum 0.450"]),
    Case("improves", m(rouge=0.53), m(rouge=0.50), AUTO, "promote",
         ["rouge_l 0.530 vs champion v1 0.500: improvement +0.030, required ≥ 0.000"], 0.03),
    Case("improves-manual-awaits", m(rouge=0.53), m(rouge=0.50), MANUAL, "await_approval",
         ["promotion mode is manual"], 0.03),
    Case("tie-promotes-with-zero-min-improvement", m(rouge=0.50), m(rouge=0.50), AUTO, "promote",
         ["improvement +0.000, required ≥ 0.000"], 0.0),
    Case("tie-keeps-champion-with-positive-min-improvement", m(rouge=0.50), m(rouge=0.50),
         AUTO_STRICT, "keep_champion",
         ["rouge_l 0.500 vs champion v1 0.500: improvement +0.000, required ≥ 0.010"], 0.0),
    # 0.47 - 0.46 = 0.00999999... in floating point: still "an improvement of 0.01"
    Case("exact-min-improvement-despite-float-noise", m(rouge=0.47), m(rouge=0.46), AUTO_STRICT,
         "promote", [], 0.01),
    Case("small-improvement-below-min", m(rouge=0.505), m(rouge=0.50), AUTO_STRICT,
         "keep_champion", ["improvement +0.005, required ≥ 0.010"]),
    Case("worse-within-tolerance-keeps-champion", m(rouge=0.48), m(rouge=0.50), AUTO,
         "keep_champion", ["improvement -0.020"], -0.02),
    Case("regression-beyond-tolerance-rejects", m(rouge=0.46), m(rouge=0.50), AUTO, "reject",
         ["rouge_l regressed by 0.040 vs champion 0.500 (tolerance 0.030)"]),
    Case("missing-gated-metric-rejects", {"rouge_l": 0.6, "latency_p95_ms": 10.0}, m(), AUTO,
         "reject", ["intent_accuracy is missing from the candidate's metrics"]),
    Case("champion-lacks-primary-awaits", m(rouge=0.6), m(rouge=None), AUTO, "await_approval",
         ["champion v1 has no rouge_l: cannot compare automatically"]),
    Case("champion-lacks-primary-manual-awaits", m(rouge=0.6), m(rouge=None), MANUAL,
         "await_approval", ["cannot compare automatically"]),
    Case("lower-is-better-primary-improves", m(lat=800.0), m(lat=1000.0), LATENCY_PRIMARY,
         "promote", ["improvement +200.000, required ≥ 50.000"], 200.0),
    Case("lower-is-better-primary-worse", m(lat=1100.0), m(lat=1000.0), LATENCY_PRIMARY,
         "keep_champion", ["improvement -100.000"], -100.0),
    Case("manual-mode-still-rejects-failed-gates", m(rouge=0.40), m(), MANUAL, "reject",
         ["rouge_l = 0.400 below minimum 0.450"]),
    Case("manual-mode-still-keeps-a-better-champion", m(rouge=0.49), m(rouge=0.50), MANUAL,
         "keep_champion", ["improvement -0.010"]),
]
# fmt: on


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_decision_table(case: Case) -> None:
    gates = evaluate_gates(case.candidate, case.champion, GATES)
    candidate = CandidateSummary(version="2", metrics=case.candidate)
    champion = None if case.champion is None else CandidateSummary("1", case.champion)
    decision = decide_promotion(candidate, champion, gates, case.policy)
    assert decision.action == case.action, decision.reasons
    for fragment in case.reason_contains:
        assert any(fragment in r for r in decision.reasons), (fragment, decision.reasons)
    assert decision.candidate_version == "2"
    assert decision.champion_version == (None if case.champion is None else "1")
    if case.improvement is not None:
        assert decision.improvement == pytest.approx(case.improvement)


def test_reject_lists_every_failed_gate_and_nothing_else() -> None:
    cand = m(rouge=0.40, acc=0.50, lat=6000.0)
    gates = evaluate_gates(cand, m(), GATES)
    decision = decide_promotion(
        CandidateSummary("2", cand), CandidateSummary("1", m()), gates, AUTO
    )
    assert decision.action == "reject"
    assert decision.reasons == tuple(c.message for c in gates.failures)
    assert len(decision.reasons) == 5


def test_candidate_missing_primary_metric_is_rejected() -> None:
    # The primary metric is not gated here, so only the promotion rule can catch it.
    policy = PromotionPolicy(primary_metric="chrf")
    gates = evaluate_gates(m(), m(), GATES)
    decision = decide_promotion(
        CandidateSummary("2", m()), CandidateSummary("1", {**m(), "chrf": 40.0}), gates, policy
    )
    assert decision.action == "reject"
    assert decision.reasons == ("primary metric chrf is missing from candidate v2",)


def test_ungated_primary_defaults_to_higher_is_better_and_can_be_overridden() -> None:
    policy = PromotionPolicy(primary_metric="cost_per_1k", min_improvement=0.0)
    cand, champ = {**m(), "cost_per_1k": 0.8}, {**m(), "cost_per_1k": 1.0}
    gates = evaluate_gates(cand, champ, GATES)
    args = (CandidateSummary("2", cand), CandidateSummary("1", champ), gates, policy)
    assert decide_promotion(*args).action == "keep_champion"
    assert decide_promotion(*args, higher_is_better=False).action == "promote"


def test_candidate_that_is_already_champion_is_kept() -> None:
    gates = evaluate_gates(m(), m(), GATES)
    decision = decide_promotion(CandidateSummary("3", m()), CandidateSummary("3", m()), gates, AUTO)
    assert decision.action == "keep_champion"
    assert decision.reasons == ("v3 is already the champion",)


def test_summary_names_versions_and_reasons() -> None:
    gates = evaluate_gates(m(rouge=0.55), m(), GATES)
    decision = decide_promotion(
        CandidateSummary("2", m(rouge=0.55)), CandidateSummary("1", m()), gates, AUTO
    )
    assert decision.summary.startswith("promote: v2 (champion v1): all 5 gate checks passed")
