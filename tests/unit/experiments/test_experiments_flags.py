"""Feature flags (targeting, percentages) and guarded gradual rollouts."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import stats

from loopline.experiments.flags import (
    condition_matches,
    evaluate_flag,
    next_rollout_step,
    rollout_percentage,
    scheduled_step,
    with_rollout,
)
from loopline.experiments.policy import Condition, FlagSpec, RolloutSchedule, TargetingRule

UNITS = [f"u{i}" for i in range(20_000)]


@pytest.mark.parametrize(
    ("op", "value", "attrs", "expected"),
    [
        ("eq", "pro", {"plan": "pro"}, True),
        ("eq", "pro", {"plan": "free"}, False),
        ("eq", 1, {"plan": True}, False),  # booleans are not numbers
        ("eq", True, {"plan": True}, True),
        ("ne", "pro", {"plan": "free"}, True),
        ("ne", "pro", {}, False),  # missing attribute never matches
        ("in", ("de", "fr"), {"plan": "fr"}, True),
        ("in", ("de", "fr"), {"plan": "en"}, False),
        ("not_in", ("de", "fr"), {"plan": "en"}, True),
        ("in", (1, 2), {"plan": True}, False),
        ("lt", 10, {"plan": 9.5}, True),
        ("lt", 10, {"plan": 10}, False),
        ("le", 10, {"plan": 10}, True),
        ("gt", 10, {"plan": 10.5}, True),
        ("ge", 10, {"plan": 9}, False),
        ("gt", 10, {"plan": "11"}, False),  # strings are not compared numerically
        ("gt", 0, {"plan": True}, False),
        ("ge", 0, {"plan": float("nan")}, False),
    ],
)
def test_conditions(op: str, value: object, attrs: dict[str, object], expected: bool) -> None:
    cond = Condition(attribute="plan", op=op, value=value)
    assert condition_matches(cond, attrs) is expected


@pytest.mark.parametrize(
    ("op", "value"),
    [("in", "x"), ("lt", "x"), ("gt", True), ("eq", ("a", "b")), ("lt", float("inf"))],
)
def test_invalid_conditions(op: str, value: object) -> None:
    with pytest.raises(ValidationError):
        Condition(attribute="a", op=op, value=value)


FLAG = FlagSpec(
    key="new-prompt",
    rules=(
        TargetingRule(
            name="internal",
            conditions=(Condition(attribute="email_domain", op="eq", value="acme.io"),),
        ),
        TargetingRule(
            name="eu-pro-half",
            conditions=(
                Condition(attribute="region", op="in", value=("de", "fr")),
                Condition(attribute="seats", op="ge", value=10),
            ),
            percentage=50,
            value="variant-b",
        ),
    ),
    rollout_percentage=10,
    on_value="variant-a",
    off_value="control",
)


def test_flag_rules_in_order() -> None:
    internal = evaluate_flag(FLAG, "u1", {"email_domain": "acme.io", "region": "de", "seats": 50})
    assert (internal.value, internal.reason, internal.rule) == ("variant-a", "rule", "internal")
    eu = [evaluate_flag(FLAG, u, {"region": "fr", "seats": 12}) for u in UNITS[:4000]]
    assert {e.value for e in eu} == {"variant-b", "control"}
    for e in eu:
        if e.bucket < 5000:
            assert (e.value, e.rule) == ("variant-b", "eu-pro-half")
        else:
            # Falls through the 50 % rule; the 10 % default rollout (buckets < 1000) is nested
            # inside the 50 % (one bucket per unit and flag), so nobody left gets variant-a.
            assert (e.value, e.reason) == ("control", "default")
    small = [evaluate_flag(FLAG, u, {"region": "fr", "seats": 3}) for u in UNITS[:2000]]
    assert {e.rule for e in small} == {None}
    assert {e.reason for e in small} == {"rollout", "default"}
    for e in small:
        assert e.value == ("variant-a" if e.bucket < 1000 else "control")


def test_disabled_flag_serves_off_value() -> None:
    off = FLAG.model_copy(update={"enabled": False})
    e = evaluate_flag(off, "u1", {"email_domain": "acme.io"})
    assert (e.value, e.reason) == ("control", "disabled")


def test_percentage_rollout_share_and_nesting() -> None:
    shares = []
    previous: set[str] = set()
    for pct in (1, 5, 25, 50, 100):
        flag = with_rollout(FlagSpec(key="f"), pct)
        on = {u for u in UNITS if evaluate_flag(flag, u).value is True}
        assert previous <= on  # raising the percentage only ever adds units
        previous = on
        shares.append(len(on))
        if pct < 100:
            assert stats.binomtest(len(on), len(UNITS), pct / 100).pvalue > 0.001
    assert shares[-1] == len(UNITS)
    assert evaluate_flag(FlagSpec(key="f"), "x").value is False
    with pytest.raises(ValidationError):
        with_rollout(FlagSpec(key="f"), 101)


def test_flags_with_different_keys_roll_out_to_different_units() -> None:
    a = {u for u in UNITS if evaluate_flag(FlagSpec(key="a", rollout_percentage=50), u).value}
    b = {u for u in UNITS if evaluate_flag(FlagSpec(key="b", rollout_percentage=50), u).value}
    both = len(a & b)
    assert stats.binomtest(both, len(UNITS), 0.25).pvalue > 0.001


SCHEDULE = RolloutSchedule(steps=(1, 5, 25, 50, 100), min_step_seconds=3600)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ((0, 0, "pass"), ("hold", 0, 1)),
        ((0, 3599, "pass"), ("hold", 0, 1)),
        ((0, 3600, "pass"), ("advance", 1, 5)),
        ((1, 7200, "pass"), ("advance", 2, 25)),
        ((3, 3600, "pass"), ("advance", 4, 100)),
        ((4, 0, "pass"), ("complete", 4, 100)),
        ((2, 99999, "inconclusive"), ("hold", 2, 25)),
        ((2, 10, "fail"), ("roll_back", -1, 0)),
        ((4, 10, "fail"), ("roll_back", -1, 0)),
        ((-1, 99999, "pass"), ("hold", -1, 0)),
    ],
)
def test_rollout_schedule(state: tuple[int, float, str], expected: tuple[str, int, float]) -> None:
    step, elapsed, guard = state
    d = next_rollout_step(SCHEDULE, step, elapsed, guard)  # type: ignore[arg-type]
    assert (d.action, d.step, d.percentage) == expected
    assert d.reason


def test_full_guarded_rollout_walk() -> None:
    step, trail = 0, []
    guards = ["inconclusive", "pass", "pass", "pass", "pass", "pass"]
    for guard in guards:
        d = next_rollout_step(SCHEDULE, step, 3600, guard)  # type: ignore[arg-type]
        trail.append(d.percentage)
        step = d.step
    assert trail == [1, 5, 25, 50, 100, 100]


def test_unguarded_schedule_and_validation() -> None:
    assert [scheduled_step(SCHEDULE, t * 1800) for t in range(12)] == [
        0,
        0,
        1,
        1,
        2,
        2,
        3,
        3,
        4,
        4,
        4,
        4,
    ]
    assert rollout_percentage(SCHEDULE, -1) == 0
    with pytest.raises(ValueError):
        rollout_percentage(SCHEDULE, 5)
    with pytest.raises(ValueError):
        next_rollout_step(SCHEDULE, 0, -1, "pass")
    for steps in ((5, 1, 100), (1, 5, 50), (), (0, 100)):
        with pytest.raises(ValidationError):
            RolloutSchedule(steps=steps)
    assert np.isclose(RolloutSchedule(min_step_seconds=0).steps[-1], 100)
    assert scheduled_step(RolloutSchedule(min_step_seconds=0), 0) == 4
