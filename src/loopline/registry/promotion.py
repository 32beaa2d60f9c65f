"""Promotion decision: should a candidate that went through the gates become champion?

Pure: the decision names an action, and a task performs it (moves the alias, writes the audit
entry, asks for an approval).

Rules, in order:

1. The candidate failed any gate: ``reject``; one reason per failed gate (its message).
2. The candidate *is* the champion (same version): ``keep_champion``.
3. There is no champion: the first version that passes its gates becomes champion,
   ``promote`` (``await_approval`` when ``policy.mode == "manual"``).
4. The candidate lacks the primary metric: ``reject`` (nothing to compare).
5. The champion lacks the primary metric: ``await_approval`` (no automatic comparison
   is possible, a human decides).
6. The primary metric improved by at least ``policy.min_improvement`` in the metric's own
   direction: ``promote`` (``await_approval`` in manual mode); otherwise ``keep_champion``
   with the numbers in the reason. "At least" is inclusive: with ``min_improvement = 0`` a
   tie promotes. Differences are compared with a slack of ``EPSILON``.

The primary metric's direction comes from its gate (``GateCheck.higher_is_better``); an
ungated primary metric is taken as higher-is-better unless ``higher_is_better`` is given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from loopline.config import PromotionPolicy
from loopline.evaluation.gates import EPSILON, GateResult, fmt

PromotionAction = Literal["promote", "keep_champion", "await_approval", "reject"]


@dataclass(frozen=True)
class CandidateSummary:
    """A registered model version as the decision sees it: its version and its metrics."""

    version: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    run_id: str | None = None


@dataclass(frozen=True)
class PromotionDecision:
    action: PromotionAction
    reasons: tuple[str, ...]
    candidate_version: str
    champion_version: str | None
    primary_metric: str | None = None
    improvement: float | None = None
    """Direction-aware change of the primary metric (positive = better), when compared."""

    @property
    def summary(self) -> str:
        champ = f"champion v{self.champion_version}" if self.champion_version else "no champion"
        return f"{self.action}: v{self.candidate_version} ({champ}): " + "; ".join(self.reasons)


def _metric(metrics: Mapping[str, float], name: str) -> float | None:
    value = metrics.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def decide_promotion(
    candidate: CandidateSummary,
    champion: CandidateSummary | None,
    gates: GateResult,
    policy: PromotionPolicy,
    *,
    higher_is_better: bool | None = None,
) -> PromotionDecision:
    """Decide what happens to ``candidate``; see the module docstring for the rules."""
    champion_version = champion.version if champion is not None else None
    primary = policy.primary_metric
    manual = policy.mode == "manual"
    manual_reason = "promotion mode is manual: an approval is required"

    def decision(
        action: PromotionAction, reasons: list[str], improvement: float | None = None
    ) -> PromotionDecision:
        return PromotionDecision(
            action=action,
            reasons=tuple(reasons),
            candidate_version=candidate.version,
            champion_version=champion_version,
            primary_metric=primary,
            improvement=improvement,
        )

    if not gates.passed:
        return decision("reject", [c.message for c in gates.failures])

    gates_reason = gates.summary
    if champion is not None and champion.version == candidate.version:
        return decision("keep_champion", [f"v{candidate.version} is already the champion"])

    if champion is None:
        reasons = [gates_reason, "no champion yet: the first version that passes becomes champion"]
        if manual:
            return decision("await_approval", [*reasons, manual_reason])
        return decision("promote", reasons)

    cand_value = _metric(candidate.metrics, primary)
    if cand_value is None:
        return decision(
            "reject", [f"primary metric {primary} is missing from candidate v{candidate.version}"]
        )
    champ_value = _metric(champion.metrics, primary)
    if champ_value is None:
        return decision(
            "await_approval",
            [
                gates_reason,
                f"champion v{champion.version} has no {primary}: cannot compare automatically",
            ],
        )

    direction = higher_is_better
    if direction is None:
        gated = gates.direction(primary)
        direction = True if gated is None else gated
    improvement = cand_value - champ_value if direction else champ_value - cand_value
    comparison = (
        f"{primary} {fmt(cand_value)} vs champion v{champion.version} {fmt(champ_value)}: "
        f"improvement {improvement:+.3f}, required ≥ {fmt(policy.min_improvement)}"
    )
    if improvement + EPSILON >= policy.min_improvement:
        reasons = [gates_reason, comparison]
        if manual:
            return decision("await_approval", [*reasons, manual_reason], improvement)
        return decision("promote", reasons, improvement)
    return decision("keep_champion", [comparison], improvement)
