"""Feature flags evaluated locally, and gradual rollout schedules guarded by metrics.

Flags
-----
:func:`evaluate_flag` is a pure function of a :class:`~loopline.experiments.policy.FlagSpec`,
a unit id and the unit's attributes; the server holds the spec in memory, so evaluation needs
no network hop. Percentages use one bucket per (flag salt, unit) in ``[0, n_buckets)``: a
unit is inside ``p`` % when ``bucket < p/100 · n_buckets``. The same bucket serves every
rule and the default rollout, so the set of units inside a percentage only grows when the
percentage grows (a unit switched on at 5 % stays on at 25 %).

Rollouts
--------
:func:`next_rollout_step` moves along a :class:`~loopline.experiments.policy.RolloutSchedule`
(e.g. 1 → 5 → 25 → 50 → 100 %) as a pure function of the current step, the time spent in it
and the guard status computed from metrics:

* guard ``fail`` → ``roll_back`` (to ``rollback_percentage``; terminal, step ``-1``);
* guard ``inconclusive`` → ``hold`` (not enough evidence yet either way);
* guard ``pass`` and at least ``min_step_seconds`` in the step → ``advance`` (or
  ``complete`` at the last step); otherwise ``hold``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from loopline.experiments.hashing import bucket
from loopline.experiments.policy import Condition, FlagSpec, FlagValue, RolloutSchedule

Attributes = Mapping[str, object]
FlagReason = Literal["disabled", "rule", "rollout", "default"]
GuardStatus = Literal["pass", "inconclusive", "fail"]
RolloutAction = Literal["advance", "hold", "roll_back", "complete"]


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _same(a: object, b: object) -> bool:
    # bool is an int subclass: True must not equal 1 in targeting.
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return a == b


def condition_matches(condition: Condition, attributes: Attributes) -> bool:
    """Whether ``attributes`` satisfy ``condition`` (missing attribute: never)."""
    if condition.attribute not in attributes:
        return False
    actual = attributes[condition.attribute]
    op, expected = condition.op, condition.value
    if op == "eq":
        return _same(actual, expected)
    if op == "ne":
        return not _same(actual, expected)
    if op in ("in", "not_in"):
        assert isinstance(expected, tuple)
        member = any(_same(actual, item) for item in expected)
        return member if op == "in" else not member
    left, right = _number(actual), _number(expected)
    if left is None or right is None:
        return False
    if op == "lt":
        return left < right
    if op == "le":
        return left <= right
    if op == "gt":
        return left > right
    return left >= right


def in_percentage(flag_bucket: int, percentage: float, n_buckets: int) -> bool:
    """Whether a bucket lies inside ``percentage`` % of ``n_buckets`` buckets."""
    return flag_bucket < round(percentage / 100.0 * n_buckets)


@dataclass(frozen=True)
class FlagEvaluation:
    """The served value, why (``reason``, the matching ``rule``), and the unit's bucket."""

    key: str
    value: FlagValue
    reason: FlagReason
    rule: str | None
    bucket: int


def evaluate_flag(
    flag: FlagSpec, unit_id: str | int, attributes: Attributes | None = None
) -> FlagEvaluation:
    """Evaluate ``flag`` for one unit; see the module docstring for the order of rules."""
    attrs: Attributes = attributes or {}
    b = bucket(flag.effective_salt, str(unit_id), flag.n_buckets)
    if not flag.enabled:
        return FlagEvaluation(flag.key, flag.off_value, "disabled", None, b)
    for rule in flag.rules:
        if all(condition_matches(c, attrs) for c in rule.conditions) and in_percentage(
            b, rule.percentage, flag.n_buckets
        ):
            value = rule.value if rule.value is not None else flag.on_value
            return FlagEvaluation(flag.key, value, "rule", rule.name, b)
    if in_percentage(b, flag.rollout_percentage, flag.n_buckets):
        return FlagEvaluation(flag.key, flag.on_value, "rollout", None, b)
    return FlagEvaluation(flag.key, flag.off_value, "default", None, b)


def with_rollout(flag: FlagSpec, percentage: float) -> FlagSpec:
    """A copy of ``flag`` whose default rollout is ``percentage`` (validated)."""
    return FlagSpec.model_validate({**flag.model_dump(), "rollout_percentage": percentage})


@dataclass(frozen=True)
class RolloutDecision:
    """What to do with a gradual rollout now: the action, the step to be at afterwards
    (``-1`` after a roll-back), the exposure percentage that step means, and why."""

    action: RolloutAction
    step: int
    percentage: float
    reason: str


def rollout_percentage(schedule: RolloutSchedule, step: int) -> float:
    """Exposure percentage at ``step`` (``-1``: rolled back)."""
    if step == -1:
        return schedule.rollback_percentage
    if not 0 <= step < len(schedule.steps):
        raise ValueError(f"step {step} outside the schedule (0..{len(schedule.steps) - 1})")
    return schedule.steps[step]


def next_rollout_step(
    schedule: RolloutSchedule, step: int, elapsed_seconds: float, guard: GuardStatus
) -> RolloutDecision:
    """Advance, hold or roll back a rollout currently at ``step`` for ``elapsed_seconds``."""
    if elapsed_seconds < 0:
        raise ValueError(f"elapsed_seconds must be >= 0, got {elapsed_seconds}")
    current = rollout_percentage(schedule, step)
    if step == -1:
        return RolloutDecision("hold", -1, current, "rolled back: a new rollout must start over")
    if guard == "fail":
        return RolloutDecision(
            "roll_back",
            -1,
            schedule.rollback_percentage,
            f"guard failed at {current:g} %: roll back to {schedule.rollback_percentage:g} %",
        )
    if guard == "inconclusive":
        return RolloutDecision("hold", step, current, f"guard inconclusive at {current:g} %: hold")
    last = len(schedule.steps) - 1
    if step == last:
        return RolloutDecision("complete", step, current, "guard passed at 100 %: rollout complete")
    if elapsed_seconds < schedule.min_step_seconds:
        wait = schedule.min_step_seconds - elapsed_seconds
        return RolloutDecision(
            "hold", step, current, f"guard passed at {current:g} %; {wait:.0f} s left in the step"
        )
    nxt = schedule.steps[step + 1]
    return RolloutDecision(
        "advance", step + 1, nxt, f"guard passed at {current:g} %: advance to {nxt:g} %"
    )


def scheduled_step(schedule: RolloutSchedule, elapsed_seconds: float) -> int:
    """The step an unguarded rollout reaches after ``elapsed_seconds`` (one step per
    ``min_step_seconds``; the last step once the schedule is exhausted)."""
    if elapsed_seconds < 0:
        raise ValueError(f"elapsed_seconds must be >= 0, got {elapsed_seconds}")
    if schedule.min_step_seconds == 0:
        return len(schedule.steps) - 1
    return min(int(elapsed_seconds // schedule.min_step_seconds), len(schedule.steps) - 1)
