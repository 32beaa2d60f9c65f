"""The serving plan and what a unit is served (pure), the plan watcher the servers use, and
the request log -> unit table step of the analysis."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from loopline.experiments.logs import events_frame, unit_table
from loopline.experiments.policy import (
    Condition,
    ExperimentSpec,
    FlagSpec,
    LayerSpec,
    TargetingRule,
)
from loopline.experiments.runtime import (
    DEFAULT,
    HOLDOUT,
    ServedExperiment,
    ServedVariant,
    ServingPlan,
    attributes_of,
    render_prompt,
    resolve,
    route,
    unit_of,
)
from loopline.serving.plan import PlanWatcher
from loopline.serving.quality import reply_quality

GOOD = "intent: order_status\nreply: your parcel is on its way and arrives tomorrow morning"


def served(
    name: str, *variants: ServedVariant, layer: str | None = None, **kw: object
) -> ServedExperiment:
    spec = ExperimentSpec.model_validate(
        {"name": name, "variants": [{"name": v.name} for v in variants], "layer": layer, **kw}
    )
    return ServedExperiment(spec=spec, variants=variants)


def test_units_split_by_weight_sticky_and_independent_of_other_experiments() -> None:
    a = served("a", ServedVariant(name="c"), ServedVariant(name="t", params={"max_tokens": 9}))
    b = served(
        "b",
        ServedVariant(name="c"),
        ServedVariant(name="t", prompt_version="p/2", prompt_template="Q: {{ message }}"),
    )
    plan = ServingPlan(experiments=(a, b))
    units = [f"user-{i}" for i in range(4000)]
    got = [resolve(plan, u) for u in units]
    assert got == [resolve(plan, u) for u in units]  # sticky
    share = np.mean([t.arms["a"] == "t" for t in got])
    assert abs(share - 0.5) < 4 * np.sqrt(0.25 / len(units))
    pairs = Counter((t.arms["a"], t.arms["b"]) for t in got)
    assert all(abs(n / len(units) - 0.25) < 0.03 for n in pairs.values())  # independent
    for t in got:
        assert (t.params == {"max_tokens": 9}) == (t.arms["a"] == "t")
        assert (t.prompt_template == "Q: {{ message }}") == (t.arms["b"] == "t")
        assert (t.prompt_version == "p/2") == (t.arms["b"] == "t")
        assert t.log_fields()["experiments"] == dict(t.arms)
    assert resolve(plan, None) is DEFAULT and resolve(plan, "") is DEFAULT


def test_layers_keep_experiments_apart_and_holdouts_are_exposed_but_not_compared() -> None:
    layer = LayerSpec(name="replies")
    x = served(
        "x",
        ServedVariant(name="c"),
        ServedVariant(name="t", params={"max_tokens": 8}),
        layer="replies",
        bucket_range=(0, 5000),
        holdout=0.2,
    )
    y = served(
        "y",
        ServedVariant(name="c"),
        ServedVariant(name="t", params={"max_tokens": 30}),
        layer="replies",
        bucket_range=(5000, 10000),
    )
    plan = ServingPlan(layers=(layer,), experiments=(x, y))
    got = [resolve(plan, f"u{i}") for i in range(3000)]
    assert all(len(t.arms) == 1 for t in got)  # one experiment of the layer per unit
    in_x = [t for t in got if "x" in t.arms]
    assert 0.45 < len(in_x) / len(got) < 0.55
    held = [t for t in in_x if t.arms["x"] == HOLDOUT]
    assert 0.15 < len(held) / len(in_x) < 0.25
    assert all(t.params == {} for t in held)


def test_plans_that_could_serve_one_unit_two_answers_are_rejected() -> None:
    a = served("a", ServedVariant(name="c"), ServedVariant(name="t", params={"max_tokens": 9}))
    b = served("b", ServedVariant(name="c"), ServedVariant(name="t", params={"max_tokens": 20}))
    with pytest.raises(ValidationError, match=r"'a' and 'b' can share units.*param.max_tokens"):
        ServingPlan(experiments=(a, b))
    with pytest.raises(ValidationError, match="unknown generation parameter 'top_k'"):
        ServedVariant(name="t", params={"top_k": 3})
    with pytest.raises(ValidationError, match="temperature: must be within"):
        ServedVariant(name="t", params={"temperature": 9})
    with pytest.raises(ValidationError, match=r"exactly the variable \{\{ message \}\}"):
        ServedVariant(name="t", prompt_version="p/1", prompt_template="Q: {{ text }}")
    with pytest.raises(ValidationError, match="routes name unknown variants"):
        ServedExperiment(spec=a.spec, variants=a.variants, routes={"nope": "candidate"})
    flag = FlagSpec(key="param.temperature", on_value="hot")
    with pytest.raises(ValidationError, match="temperature: expected a number"):
        ServingPlan(flags=(flag,))


def test_parameter_flags_change_only_units_they_are_on_for_and_variants_win() -> None:
    flag = FlagSpec(
        key="param.temperature",
        rollout_percentage=30,
        on_value=0.7,
        off_value=0.0,
        rules=(
            TargetingRule(
                name="beta", conditions=(Condition(attribute="tier", op="eq", value="beta"),)
            ),
        ),
    )
    plan = ServingPlan(flags=(flag,))
    got = [resolve(plan, f"u{i}") for i in range(2000)]
    on = [t for t in got if "temperature" in t.params]
    assert 0.26 < len(on) / len(got) < 0.34
    assert all(t.params == {"temperature": 0.7} and t.flags[flag.key] == 0.7 for t in on)
    off = [t for t in got if "temperature" not in t.params]
    assert all(t.flags[flag.key] == 0.0 for t in off)  # logged, not applied
    beta = [resolve(plan, f"u{i}", {"tier": "beta"}) for i in range(200)]
    assert all(t.params == {"temperature": 0.7} for t in beta)
    exp = served("e", ServedVariant(name="c", params={"temperature": 0.0}), ServedVariant(name="t"))
    both = ServingPlan(flags=(flag,), experiments=(exp,))
    for i in range(300):
        t = resolve(both, f"u{i}", {"tier": "beta"})
        assert t.params.get("temperature") == (0.0 if t.arms["e"] == "c" else 0.7)


def test_the_shipped_default_applies_to_everyone_with_an_id() -> None:
    default = ServedVariant(
        name="shipped",
        prompt_version="p/3",
        prompt_template="{{message}} thanks",
        params={"max_tokens": 40},
    )
    plan = ServingPlan(default=default)
    t = resolve(plan, "anyone")
    assert t.params == {"max_tokens": 40} and t.prompt_version == "p/3" and t.arms == {}
    assert render_prompt(t.prompt_template, "hello") == "hello thanks"
    assert render_prompt(None, "hello") == "hello"
    assert render_prompt("A {{ message }} B {{message}}", "x") == "A x B x"


def test_router_sends_only_units_of_candidate_variants_to_the_candidate() -> None:
    spec = ExperimentSpec.model_validate(
        {"name": "m", "variants": [{"name": "v1"}, {"name": "v2"}], "holdout": 0.1}
    )
    exp = ServedExperiment(
        spec=spec,
        variants=(
            ServedVariant(name="v1", model_version="1"),
            ServedVariant(name="v2", model_version="2"),
        ),
        routes={"v1": "stable", "v2": "candidate"},
    )
    plan = ServingPlan(experiments=(exp,))
    assert plan.routed == (exp,)
    for i in range(500):
        t = resolve(plan, f"u{i}")
        expected = "candidate" if t.arms["m"] == "v2" else "stable"
        assert route(plan, f"u{i}") == expected
        assert t.model_version == {"v1": "1", "v2": "2"}.get(t.arms["m"])
    assert route(plan, None) == "stable"
    assert route(ServingPlan(), "u1") == "stable"


def test_request_identity_and_targeting_attributes() -> None:
    assert unit_of("h", {"user": "b"}) == "h"
    assert unit_of(None, {"user": "b"}) == "b"
    assert unit_of("", {"user": ""}) is None
    assert unit_of(None, {"user": 7}) is None
    assert attributes_of({"metadata": {"tier": "beta", "age": 3, "x": [1], 4: "y"}}) == {
        "tier": "beta",
        "age": 3,
    }
    assert attributes_of({"metadata": "nope"}) == {} and attributes_of(None) == {}


def test_plan_watcher_reloads_changes_and_keeps_the_last_good_plan(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    watcher = PlanWatcher(path, check_s=0.0)
    assert watcher.current().experiments == ()
    exp = served("a", ServedVariant(name="c"), ServedVariant(name="t", params={"max_tokens": 9}))
    path.write_text(ServingPlan(generation=1, experiments=(exp,)).model_dump_json())
    assert watcher.current().generation == 1
    path.write_text('{"format": 1, "generation": 2, "experiments": [{"bad": true}]}')
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert watcher.current().generation == 1 and watcher.errors == 1
    path.unlink()
    assert watcher.current().generation == 0  # removed: nothing runs
    slow = PlanWatcher(path, check_s=3600)
    path.write_text(ServingPlan(generation=5).model_dump_json())
    assert slow.current().generation == 0  # looks at the file at most every check_s
    assert slow.refresh().generation == 5


def _line(unit: str, arm: str | None, ts: float, **kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "request_id": f"{unit}-{ts}",
        "ts": ts,
        "variant": "stable",
        "status": 200,
        "reply": GOOD,
        "latency_ms": 10.0,
        "cost_usd": 0.001,
        "completion_tokens": 12,
        "unit": unit,
        "experiments": {} if arm is None else {"exp": arm},
    }
    return {**base, **kw}


def test_unit_table_keeps_live_exposures_and_reads_the_pre_period() -> None:
    lines = [
        _line("u1", None, 5.0, reply="zzz"),  # pre-period of u1: a poor reply
        _line("u1", "c", 11.0),
        _line("u1", "c", 12.0, status=500, reply=None, latency_ms=30.0),
        _line("u2", "t", 13.0, cost_usd=0.004),
        _line("u2", "t", 14.0, variant="shadow"),  # the router's copy: not a user request
        _line("u3", "t", 15.0, variant="probe"),  # the monitor's probe
        _line("u4", HOLDOUT, 16.0),  # held out: not compared
        _line("u5", "c", 17.0, experiments={"other": "c"}),  # another experiment
        _line("u6", "c", 18.0),
        _line("u6", "t", 19.0),  # seen in two arms: dropped
        {"ts": 20.0, "variant": "stable", "status": 200, "reply": GOOD},  # no unit
    ]
    exposed, pre = events_frame(lines, "exp", ratings={"u2-13.0": 1.0}, started_at=10.0)
    assert sorted(exposed["unit"]) == ["u1", "u1", "u2", "u6", "u6"]
    data = unit_table(exposed, pre)
    assert data.conflicting_units == 1 and data.requests == 5
    rows = data.frame.set_index("unit")
    assert list(rows.index) == ["u1", "u2"]  # ordered by first exposure
    assert rows.loc["u1", "requests"] == 2 and rows.loc["u1", "errors"] == 1
    assert rows.loc["u1", "latency_ms"] == 20.0
    assert rows.loc["u1", "quality"] == pytest.approx(rows.loc["u2", "quality"] / 2)
    pre_q = reply_quality("zzz")
    assert pre_q < rows.loc["u2", "quality"]
    assert rows.loc["u1", "pre_requests"] == 1 and rows.loc["u1", "pre_quality"] == pre_q
    assert rows.loc["u2", "pre_requests"] == 0
    assert rows.loc["u2", "pre_quality"] == pre_q  # the mean of units with a pre-period
    assert rows.loc["u2", "thumbs_up"] == 1.0 and rows.loc["u1", "thumbs_up"] == 0.0
    assert rows.loc["u2", "cost"] == pytest.approx(0.004)
    empty = unit_table(*events_frame([], "exp"))
    assert empty.frame.empty and "quality" in empty.frame.columns


def test_plan_round_trips_through_json() -> None:
    exp = served(
        "a",
        ServedVariant(name="c"),
        ServedVariant(name="t", prompt_version="p/1", prompt_template="{{ message }}!"),
    )
    plan = ServingPlan(generation=3, experiments=(exp,), flags=(FlagSpec(key="f"),))
    again = ServingPlan.model_validate(json.loads(plan.model_dump_json()))
    assert again == plan
    assert [resolve(again, f"u{i}") for i in range(50)] == [
        resolve(plan, f"u{i}") for i in range(50)
    ]
