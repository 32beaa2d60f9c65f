"""The experiment lifecycle without servers: create, analyze, decide and act, stop, status and
guarded flag rollouts, against a real MLflow (SQLite under the throwaway project) and
synthetic request-log lines in the exact shape the model server writes.

Arms and flag values in the synthetic lines come from :func:`resolve` on the published plan,
so they agree with what a server would have logged. Replies use the trained format
(``intent: ...`` / ``reply: ...``) so the label-free quality score tells good from garbage.
"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

from loopline.config import Settings
from loopline.data.corpus import INTENTS
from loopline.experiments import lifecycle
from loopline.experiments.lifecycle import ExperimentError
from loopline.experiments.policy import ExperimentSpec, VariantSpec
from loopline.experiments.runtime import HOLDOUT, ServingPlan, resolve
from loopline.governance.audit import AuditTrail
from loopline.monitoring.monitor import monitoring_dir
from loopline.serving.quality import reply_quality
from tests.conftest import make_project

Build = Callable[..., Settings]
T0 = 1_700_000_000.0  # when the synthetic experiments start
FLAG = "param.temperature"
# A decision policy and an analysis horizon that fit a few dozen synthetic units per arm.
SMALL_EXPERIMENTS: dict[str, Any] = {
    "analysis": {"sequential": {"planned_units_per_variant": 200, "min_units_per_variant": 20}},
    "decision": {"min_units_per_variant": 20, "max_units_per_variant": None},
    "rollout": {"min_step_seconds": 60},
}
WORDS = ("thanks", "for", "reaching", "out", "we", "have", "sent", "the", "details", "to", "your",
         "inbox", "today")  # fmt: skip


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, initialised MLflow database: creating the schema costs seconds, copying it
    milliseconds, so every test gets a private copy."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    uri = f"sqlite:///{path}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.search_experiments()
    client.search_registered_models()
    return path


@pytest.fixture
def project_root(tmp_path: Path, mlflow_db: Path) -> Path:
    # overrides tests/conftest.py's fixture (small_settings builds on it): same project,
    # plus the pre-initialised MLflow database where settings.tracking_uri points
    root = make_project(tmp_path / "project")
    (root / ".loopline").mkdir()
    shutil.copy2(mlflow_db, root / ".loopline" / "mlflow.db")
    return root


@pytest.fixture
def settings(small_settings: Build) -> Settings:
    s = small_settings(experiments=SMALL_EXPERIMENTS)
    assert s.tracking_uri == f"sqlite:///{(s.state_path / 'mlflow.db').resolve()}"
    return s


# --------------------------------------------------------------------------- helpers


def good_reply(rng: random.Random) -> str:
    words = rng.sample(WORDS, rng.randint(5, 10))
    return f"intent: {rng.choice(INTENTS)}\nreply: {' '.join(words)}"


def short_reply(rng: random.Random) -> str:
    """Well formed but clipped (one to three words): a middling score."""
    return f"intent: {rng.choice(INTENTS)}\nreply: {' '.join(rng.sample(WORDS, rng.randint(1, 3)))}"


def garbage_reply(rng: random.Random) -> str:
    return " ".join(["zzz"] * rng.randint(1, 3))


def log_line(
    plan: ServingPlan,
    unit: str,
    *,
    ts: float,
    reply: str | None,
    request_id: str,
    status: int = 200,
    role: str = "stable",
    latency_ms: float = 100.0,
    tokens: int = 12,
    cost: float = 0.0,
) -> dict[str, Any]:
    """One request-log line as ``ServingEngine.record`` writes it, exposure fields from the
    plan (``Treatment.log_fields``)."""
    treatment = resolve(plan, unit)
    return {
        "request_id": request_id,
        "time": "2023-11-14T22:13:20.000+00:00",
        "ts": ts,
        "model": "loopline-support",
        "model_version": "1",
        "variant": role,
        "endpoint": "chat",
        "status": status,
        "prompt": "where is my parcel",
        "reply": reply if status < 500 else None,
        "prompt_tokens": 9,
        "completion_tokens": tokens if status < 500 else 0,
        "latency_ms": latency_ms,
        "ttft_ms": None,
        "cache_hit": False,
        "batch_size": 1,
        "finish_reason": "stop" if status < 500 else None,
        "cost_usd": cost,
        "stream": False,
        "error": None if status < 500 else "internal error",
        **treatment.log_fields(),
    }


def write_log(settings: Settings, server: str, lines: Iterable[Mapping[str, Any]]) -> None:
    directory = settings.path(settings.serving.request_log_dir) / server
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "requests.jsonl").open("a", encoding="utf-8") as fh:
        for line in lines:
            fh.write(json.dumps(line, separators=(",", ":")) + "\n")


def write_feedback(settings: Settings, ratings: Mapping[str, float]) -> None:
    directory = monitoring_dir(settings) / "feedback"
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "ratings.jsonl").open("a", encoding="utf-8") as fh:
        for request_id, rating in ratings.items():
            fh.write(json.dumps({"request_id": request_id, "rating": rating}) + "\n")


def actions(settings: Settings) -> list[str]:
    return [e.action for e in AuditTrail.for_settings(settings).entries()]


def current_plan(settings: Settings) -> ServingPlan:
    plan = lifecycle.read_plan(settings)
    assert plan is not None
    return plan


def two_arms(name: str, treatment: dict[str, Any], **spec: Any) -> ExperimentSpec:
    return ExperimentSpec(
        name=name,
        variants=(VariantSpec(name="control"), VariantSpec(name="treat", params=treatment)),
        **spec,
    )


def snapshot(settings: Settings) -> tuple[bytes, list[str], list[str], int]:
    """Everything a failed create must leave alone: the plan file byte for byte, the audit
    trail, the experiment directories and the MLflow runs."""
    base = lifecycle.experiments_dir(settings)
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return (
        lifecycle.plan_path(settings).read_bytes(),
        actions(settings),
        sorted(str(p.relative_to(base)) for p in base.rglob("*")),
        len(runs),
    )


# --------------------------------------------------------------------------- create


def test_create_publishes_the_plan_records_runs_and_audits(small_settings: Build) -> None:
    settings = small_settings(experiments={**SMALL_EXPERIMENTS, "layers": [{"name": "replies"}]})
    assert lifecycle.read_plan(settings) is None
    first = lifecycle.create(
        settings,
        two_arms("short", {"max_tokens": 32}, layer="replies", bucket_range=(0, 5000)),
        now=T0,
    )
    plan = current_plan(settings)
    assert plan.generation == 1
    assert [e.name for e in plan.experiments] == ["short"]
    assert plan.experiment("short") == first.served()
    assert [f.key for f in plan.flags] == [FLAG]  # the configured flag, at its 0 % default
    assert plan.flags[0].rollout_percentage == 0

    # another experiment of the same layer (disjoint buckets) may set the same parameter
    second = lifecycle.create(
        settings,
        two_arms("long", {"max_tokens": 96}, layer="replies", bucket_range=(5000, 10000)),
        now=T0 + 1,
    )
    plan = current_plan(settings)
    assert plan.generation == 2
    assert [e.name for e in plan.experiments] == ["short", "long"]
    # a unit is in exactly one experiment of the layer, and served its arm's parameters
    for unit in (f"u{i}" for i in range(50)):
        t = resolve(plan, unit)
        (name,) = t.arms
        arm = t.arms[name]
        expected = {"short": 32, "long": 96}[name] if arm == "treat" else None
        assert t.params.get("max_tokens") == expected
    # and one outside any layer that changes something else
    third = lifecycle.create(settings, two_arms("seeded", {"seed": 7}), now=T0 + 2)
    plan = current_plan(settings)
    assert plan.generation == 3
    assert [e.name for e in plan.experiments] == ["short", "long", "seeded"]

    stored = lifecycle.load_record(settings, "short")
    path = lifecycle.experiments_dir(settings) / "short" / "record.json"
    assert path.is_file() and json.loads(path.read_text())["status"] == "running"
    assert stored == first
    assert stored.created_at == T0 and stored.routes == {} and stored.candidate_version is None
    assert [r.name for r in lifecycle.list_records(settings)] == ["short", "long", "seeded"]

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    for record in (first, second, third):
        assert record.mlflow_run_id is not None
        run = client.get_run(record.mlflow_run_id)
        assert run.info.run_name == record.name
        assert run.data.tags["loopline.kind"] == "experiment"
        assert run.data.tags["status"] == "running"
        assert run.data.params["control"] == "control"
        assert run.data.params["variant.control"] == "default"
        assert run.data.params["holdout"] == "0.0"
    run = client.get_run(first.mlflow_run_id or "")
    assert run.data.params["variant.treat"] == "max_tokens=32"
    assert client.get_run(third.mlflow_run_id or "").data.params["variant.treat"] == "seed=7"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == f"{settings.tracking.experiment}-experiments"

    entries = AuditTrail.for_settings(settings).entries()
    assert [(e.action, e.subject) for e in entries] == [
        ("experiment_started", "short"),
        ("experiment_started", "long"),
        ("experiment_started", "seeded"),
    ]
    assert entries[0].actor == lifecycle.ACTOR
    assert entries[0].details["mlflow_run_id"] == first.mlflow_run_id
    assert entries[0].details["variants"][1]["params"] == {"max_tokens": 32}
    AuditTrail.for_settings(settings).verify()


def test_failed_creates_leave_nothing_written(settings: Settings) -> None:
    lifecycle.create(settings, two_arms("base", {"max_tokens": 32}), now=T0)
    before = snapshot(settings)

    def fails(spec: ExperimentSpec, *fragments: str) -> None:
        with pytest.raises(ExperimentError) as info:
            lifecycle.create(settings, spec, now=T0 + 5)
        for fragment in fragments:
            assert fragment in str(info.value), (fragment, str(info.value))
        assert snapshot(settings) == before  # no new directory either

    fails(two_arms("base", {"seed": 1}), "'base'", "already exists", "running")
    fails(
        ExperimentSpec(
            name="prompted",
            variants=(VariantSpec(name="control"), VariantSpec(name="p", prompt_version="nope/1")),
        ),
        "'prompted'",
        "variant 'p'",
        "nope/1",
        "not found",
    )
    fails(
        ExperimentSpec(
            name="bad-ref",
            variants=(VariantSpec(name="control"), VariantSpec(name="p", prompt_version="nope")),
        ),
        "variant 'p'",
        "'name/version'",
    )
    # ExperimentSpec takes any parameter name; the served variant (lifecycle) rejects it
    topk = two_arms("topk", {"top_k": 5})
    assert topk.variants[1].params == {"top_k": 5}
    fails(topk, "'topk'", "variant 'treat'", "top_k", "allowed: temperature, max_tokens, seed")
    fails(two_arms("range", {"temperature": 3.5}), "variant 'treat'", "temperature", "[0, 2]")
    # two experiments without a layer can share units: both may not set max_tokens
    fails(two_arms("clash", {"max_tokens": 64}), "'base'", "'clash'", "param.max_tokens")

    # model versions: checked against the registry, then placed by the running deployment
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
    client.create_registered_model(settings.model.name)
    client.create_model_version(settings.model.name, source=str(settings.state_path / "m"))
    before = snapshot(settings)
    pinned = ExperimentSpec(
        name="model-ab",
        variants=(VariantSpec(name="control"), VariantSpec(name="pinned", model_version="1")),
    )
    fails(pinned, "'model-ab'", "['pinned']", "no deployment is running")
    missing = ExperimentSpec(
        name="model-missing",
        variants=(VariantSpec(name="control"), VariantSpec(name="ghost", model_version="99")),
    )
    fails(missing, "variant 'ghost'.model_version", "'99'", "not in the registry")

    # prompts: a template must wrap the message (a rejected one is not registered: the
    # first accepted version is 1); a registered one can be served
    with pytest.raises(ExperimentError, match=r"\{\{ message \}\}"):
        lifecycle.register_prompt(settings, "support", "Answer politely.")
    assert snapshot(settings) == before
    template = "You are a support agent.\n{{ message }}"
    assert lifecycle.register_prompt(settings, "support", template) == "support/1"
    record = lifecycle.create(
        settings,
        ExperimentSpec(
            name="prompted",
            variants=(
                VariantSpec(name="control"),
                VariantSpec(name="p", prompt_version="support/1", params={"seed": 3}),
            ),
        ),
        now=T0 + 6,
    )
    assert record.variants[1].prompt_template == template
    assert record.variants[1].prompt_version == "support/1"
    plan = current_plan(settings)
    assert plan.generation == 2 and [e.name for e in plan.experiments] == ["base", "prompted"]
    assert actions(settings) == ["experiment_started", "experiment_started"]


def test_a_failing_plan_write_rolls_create_back(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    lifecycle.create(settings, two_arms("base", {"max_tokens": 32}), now=T0)
    before = snapshot(settings)

    def broken(*_: Any) -> ServingPlan:
        raise OSError("disk full")

    monkeypatch.setattr(lifecycle, "_write_plan", broken)
    with pytest.raises(OSError, match="disk full"):
        lifecycle.create(settings, two_arms("late", {"seed": 4}), now=T0 + 1)
    # no record (nor its directory), the plan and the audit untouched, no live MLflow run
    assert snapshot(settings) == before
    assert not (lifecycle.experiments_dir(settings) / "late").exists()
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    experiment = client.get_experiment_by_name(f"{settings.tracking.experiment}-experiments")
    assert experiment is not None
    (orphan,) = client.search_runs(
        [experiment.experiment_id],
        "attributes.run_name = 'late'",
        run_view_type=ViewType.ALL,
    )
    assert orphan.info.lifecycle_stage == "deleted"
    monkeypatch.undo()
    again = lifecycle.create(settings, two_arms("late", {"seed": 4}), now=T0 + 2)
    assert [r.name for r in lifecycle.list_records(settings)] == ["base", "late"]
    assert again.mlflow_run_id != orphan.info.run_id


# --------------------------------------------------------------------------- analysis


def test_analyze_reads_only_live_exposed_lines_and_decide_stops_harm(
    settings: Settings,
) -> None:
    record = lifecycle.create(settings, two_arms("garbage", {"max_tokens": 8}, holdout=0.2), now=T0)
    plan = current_plan(settings)
    rng = random.Random(7)
    lines: list[dict[str, Any]] = []
    expected: Counter[str] = Counter()
    exposed_requests = 0
    held_out: set[str] = set()
    exposed: list[str] = []
    for i in range(160):
        unit = f"user-{i}"
        arm = resolve(plan, unit).arms["garbage"]
        if arm == HOLDOUT:
            held_out.add(unit)
        else:
            expected[arm] += 1
            exposed_requests += 2
            exposed.append(unit)
        for r in range(2):
            reply = garbage_reply(rng) if arm == "treat" else good_reply(rng)
            lines.append(
                log_line(
                    plan,
                    unit,
                    ts=T0 + 10 + i + r / 2,
                    reply=reply,
                    request_id=f"req-{i}-{r}",
                    latency_ms=100 + rng.random() * 10,
                )
            )
    assert held_out and expected["control"] >= 40 and expected["treat"] >= 40

    # pre-period lines (before the start) of a few units: CUPED's covariate
    pre_replies = {"user-0": ["zzz", good_reply(rng)], "user-1": [good_reply(rng)]}
    pre_lines = [
        log_line(plan, unit, ts=T0 - 100, reply=reply, request_id=f"pre-{unit}-{k}")
        for unit, replies in pre_replies.items()
        for k, reply in enumerate(replies)
    ]
    # not user traffic or not this experiment: shadow copies, probes, another experiment,
    # no unit id; and a unit the plan moved between arms (dropped, counted)
    a, b = exposed[:2]
    ignored = [
        {**log_line(plan, a, ts=T0 + 50, reply="zzz", request_id="s1"), "variant": "shadow"},
        {**log_line(plan, b, ts=T0 + 50, reply="zzz", request_id="p1"), "variant": "probe"},
        {
            **log_line(plan, "other-1", ts=T0 + 50, reply="zzz", request_id="o1"),
            "experiments": {"other": "treat"},
        },
        {**log_line(plan, "anon", ts=T0 + 50, reply="zzz", request_id="a1"), "unit": None},
        *(
            {
                **log_line(plan, "mover", ts=T0 + 60 + k, reply="zzz", request_id=f"m{k}"),
                "experiments": {"garbage": arm},
            }
            for k, arm in enumerate(["control", "treat"])
        ),
    ]
    write_log(settings, "stable", [*pre_lines, *lines[: len(lines) // 2]])
    write_log(settings, "candidate-123", [*lines[len(lines) // 2 :], *ignored])
    rated = [e for e in lines if e["experiments"]["garbage"] == "control"][:5]
    write_feedback(settings, {e["request_id"]: 1.0 for e in rated} | {"s1": 1.0})

    analysis = lifecycle.analyze(settings, "garbage", now=T0 + 1000)
    assert dict(analysis.result.units) == dict(expected)
    assert analysis.units.requests == exposed_requests + 2  # the mover's lines were read
    assert analysis.units.conflicting_units == 1
    frame = analysis.units.frame.set_index("unit")
    assert set(frame.index) == {f"user-{i}" for i in range(160)} - held_out
    assert (frame["requests"] == 2).all()  # not the shadow copy nor the probe
    assert frame.loc[a, "quality"] == pytest.approx(
        sum(reply_quality(e["reply"]) for e in lines if e["unit"] == a) / 2
    )
    assert frame["thumbs_up"].sum() == len({e["unit"] for e in rated})
    pre_means = {u: sum(map(reply_quality, rs)) / len(rs) for u, rs in pre_replies.items()}
    for unit, mean in pre_means.items():
        if unit in frame.index:
            assert frame.loc[unit, "pre_quality"] == pytest.approx(mean)
            assert frame.loc[unit, "pre_requests"] == len(pre_replies[unit])
    fill = sum(pre_means.values()) / len(pre_means)
    others = frame.drop(index=[u for u in pre_replies if u in frame.index])
    assert others["pre_quality"].to_numpy() == pytest.approx(fill)
    assert (others["pre_requests"] == 0).all()

    assert analysis.decision.action == "stop_for_harm"
    assert analysis.decision.affected == ("treat",)
    quality = analysis.result.metric("quality", "treat")
    assert quality is not None and quality.relative_ci_high < 0

    out = lifecycle.experiments_dir(settings) / "garbage" / "analyses" / analysis.stamp
    assert analysis.report_dir == out
    assert {p.name for p in out.iterdir()} == {"report.html", "report.json", "units.csv"}
    report = json.loads((out / "report.json").read_text())
    assert report["decision"]["action"] == "stop_for_harm"
    # the per-treatment verdicts the cost recommendations read (loopline.cost.operations)
    [verdict] = report["decision"]["verdicts"]
    assert verdict["variant"] == "treat" and verdict["status"] == "harmful"
    assert verdict["primary_interval"][1] < 0
    assert report["units"] == dict(expected) and report["mlflow_run_id"] == analysis.run_id
    assert "garbage" in (out / "report.html").read_text()
    assert len((out / "units.csv").read_text().splitlines()) == 1 + sum(expected.values())

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    assert analysis.run_id is not None
    child = client.get_run(analysis.run_id)
    assert child.data.tags["mlflow.parentRunId"] == record.mlflow_run_id
    assert child.data.tags["decision"] == "stop_for_harm"
    assert child.data.tags["loopline.experiment"] == "garbage"
    assert "quality.treat.relative_difference" in child.data.metrics
    assert child.data.metrics["units.control"] == expected["control"]
    assert {a.path for a in client.list_artifacts(analysis.run_id)} == {
        "report.html",
        "report.json",
        "units.csv",
    }
    stored = lifecycle.load_record(settings, "garbage")
    assert stored.running and len(stored.analyses) == 1
    assert stored.analyses[0]["action"] == "stop_for_harm"
    assert stored.analyses[0]["mlflow_run_id"] == analysis.run_id

    again, applied = lifecycle.decide(settings, "garbage", apply=True, now=T0 + 2000)
    assert again.decision.action == "stop_for_harm"
    assert applied is not None and applied.action == "stop_for_harm"
    assert applied.variant is None
    assert applied.changes == ("all traffic back on control",)
    stopped = lifecycle.load_record(settings, "garbage")
    assert stopped.status == "stopped" and stopped.ended_at is not None
    assert stopped.outcome is not None and stopped.outcome["affected"] == ["treat"]
    assert len(stopped.analyses) == 2
    plan = current_plan(settings)
    assert plan.generation == 2 and plan.experiments == ()
    assert resolve(plan, "user-0").arms == {}
    assert actions(settings) == ["experiment_started", "experiment_stopped"]
    parent = client.get_run(record.mlflow_run_id or "")
    assert parent.data.tags["status"] == "stopped" and parent.info.status == "FINISHED"
    assert parent.data.tags["decision"] == "stop_for_harm"

    # a stopped experiment can still be analysed, but nothing is applied any more
    late, nothing = lifecycle.decide(settings, "garbage", apply=True, now=T0 + 3000)
    assert nothing is None and late.record.status == "stopped"
    assert current_plan(settings).generation == 2
    assert actions(settings) == ["experiment_started", "experiment_stopped"]
    with pytest.raises(ExperimentError, match="already stopped"):
        lifecycle.apply_decision(settings, late)


def test_a_better_parameter_variant_ships_as_the_default(settings: Settings) -> None:
    lifecycle.create(settings, two_arms("warm", {"temperature": 0.2}), now=T0)
    plan = current_plan(settings)
    rng = random.Random(11)
    lines = []
    for i in range(120):
        unit = f"user-{i}"
        arm = resolve(plan, unit).arms["warm"]
        for r in range(2):
            reply = good_reply(rng) if arm == "treat" else short_reply(rng)
            lines.append(
                log_line(
                    plan,
                    unit,
                    ts=T0 + 10 + i,
                    reply=reply,
                    request_id=f"r-{i}-{r}",
                    latency_ms=100 + rng.random() * 5,
                )
            )
    write_log(settings, "stable", lines)

    analysis, applied = lifecycle.decide(settings, "warm", now=T0 + 1000)
    assert analysis.decision.action == "ship", analysis.decision.reasons
    assert applied is not None and applied.variant == "treat"
    assert applied.changes == ("default is now temperature=0.2",)
    record = lifecycle.load_record(settings, "warm")
    assert record.status == "shipped"
    assert record.outcome is not None and record.outcome["variant"] == "treat"

    plan = current_plan(settings)
    assert plan.experiments == () and plan.default is not None
    assert plan.default.name == "warm:treat" and plan.default.params == {"temperature": 0.2}
    assert dict(resolve(plan, "any-unit").params) == {"temperature": 0.2}
    assert resolve(plan, "any-unit").arms == {}
    assert actions(settings) == ["experiment_started", "experiment_shipped"]
    assert AuditTrail.for_settings(settings).entries()[-1].details["variant"] == "treat"

    # the default survives later plan changes; experiments run on top of it
    lifecycle.create(settings, two_arms("seeded", {"seed": 5}), now=T0 + 2000)
    plan = current_plan(settings)
    assert plan.default is not None and plan.default.params == {"temperature": 0.2}
    in_treat = next(f"u{i}" for i in range(100) if resolve(plan, f"u{i}").arms["seeded"] == "treat")
    assert dict(resolve(plan, in_treat).params) == {"temperature": 0.2, "seed": 5}


# --------------------------------------------------------------------------- stop, status


def test_stop_by_hand_and_status(settings: Settings) -> None:
    assert lifecycle.status(settings) == []
    lifecycle.create(settings, two_arms("a", {"seed": 1}), now=T0)
    lifecycle.create(settings, two_arms("b", {"max_tokens": 40}), now=T0 + 1)
    plan = current_plan(settings)
    write_log(
        settings,
        "stable",
        [
            log_line(
                plan, f"u{i}", ts=T0 + 10, reply=good_reply(random.Random(i)), request_id=f"{i}"
            )
            for i in range(30)
        ],
    )
    analysis = lifecycle.analyze(settings, "a", now=T0 + 100)
    assert analysis.decision.action == "keep_running"  # too few units per arm

    stopped = lifecycle.stop(settings, "b", "wrong budget")
    assert stopped.status == "stopped"
    assert stopped.outcome == {"action": "stopped_by_hand", "reason": "wrong budget"}
    plan = current_plan(settings)
    assert plan.generation == 3 and [e.name for e in plan.experiments] == ["a"]
    entry = AuditTrail.for_settings(settings).entries()[-1]
    assert (entry.action, entry.subject) == ("experiment_stopped", "b")
    assert entry.details == {"reason": "wrong budget", "by": "hand"}
    with pytest.raises(ExperimentError, match="already stopped"):
        lifecycle.stop(settings, "b", "again")
    with pytest.raises(ExperimentError, match=r"no experiment named 'c' \(known: a, b\)"):
        lifecycle.stop(settings, "c", "typo")

    rows = {row["name"]: row for row in lifecycle.status(settings)}
    assert list(rows) == ["a", "b"]
    assert rows["a"]["status"] == "running" and rows["a"]["control"] == "control"
    assert rows["a"]["variants"] == {"control": "default", "treat": "seed=1"}
    last = rows["a"]["last_analysis"]
    assert last is not None and last["action"] == "keep_running"
    assert last["dir"] == str(analysis.report_dir) and last["units"] == dict(analysis.result.units)
    assert rows["a"]["outcome"] is None
    assert rows["b"]["status"] == "stopped" and rows["b"]["last_analysis"] is None
    assert rows["b"]["outcome"]["reason"] == "wrong budget"


# --------------------------------------------------------------------------- rollouts


def flag_units(plan: ServingPlan, n_on: int, n_off: int) -> tuple[list[str], list[str]]:
    """``n_on`` units the plan's flag is on for and ``n_off`` it is off for."""
    flag = next(f for f in plan.flags if f.key == FLAG)
    on: list[str] = []
    off: list[str] = []
    i = 0
    while len(on) < n_on or len(off) < n_off:
        unit = f"unit-{i}"
        i += 1
        value = resolve(plan, unit).flags[FLAG]
        if value == flag.on_value and len(on) < n_on:
            on.append(unit)
        elif value == flag.off_value and len(off) < n_off:
            off.append(unit)
    return on, off


def rollout_lines(
    plan: ServingPlan,
    units: Iterable[str],
    since: float,
    *,
    failing: Callable[[int, int], bool] = lambda _unit, _request: False,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Four requests per unit from ``since`` on, mostly good replies, some clipped ones (a
    realistic spread of quality); request ``r`` of the ``k``-th unit fails with a 500 when
    ``failing(k, r)``."""
    rng = random.Random(seed)
    return [
        log_line(
            plan,
            unit,
            ts=since + 5 + r,
            reply=good_reply(rng) if rng.random() < 0.7 else short_reply(rng),
            request_id=f"{unit}-{r}",
            status=500 if failing(k, r) else 200,
            latency_ms=100 + rng.random() * 5,
        )
        for k, unit in enumerate(units)
        for r in range(4)
    ]


def test_start_rollout_rejects_unknown_flags(settings: Settings) -> None:
    with pytest.raises(ExperimentError, match=r"no flag 'param\.nope'.*configured: param\.temp"):
        lifecycle.start_rollout(settings, "param.nope")
    assert lifecycle.read_plan(settings) is None and actions(settings) == []


def test_a_harmless_rollout_advances_after_its_step_time(settings: Settings) -> None:
    since = T0
    state = lifecycle.start_rollout(settings, FLAG, now=since)
    assert (state.flag, state.step, state.since) == (FLAG, 0, since)
    plan = current_plan(settings)
    steps = settings.experiments.rollout.steps
    assert plan.generation == 1 and plan.flags[0].rollout_percentage == steps[0]
    on, off = flag_units(plan, 25, 25)
    assert all(resolve(plan, u).params == {"temperature": 0.3} for u in on)
    assert all(resolve(plan, u).params == {} for u in off)
    write_log(settings, "stable", rollout_lines(plan, [*on, *off], since))

    wait = settings.experiments.rollout.min_step_seconds
    early = lifecycle.advance_rollouts(settings, now=since + wait / 2)
    assert [(m["guard"], m["action"], m["step"]) for m in early] == [("pass", "hold", 0)]
    assert current_plan(settings).generation == 1

    (move,) = lifecycle.advance_rollouts(settings, now=since + wait + 1)
    assert (move["flag"], move["guard"], move["action"]) == (FLAG, "pass", "advance")
    assert move["step"] == 1 and move["percentage"] == steps[1]
    plan = current_plan(settings)
    assert plan.generation == 2 and plan.flags[0].rollout_percentage == steps[1]
    assert all(resolve(plan, u).flags[FLAG] == 0.3 for u in on)  # percentages only grow
    entry = AuditTrail.for_settings(settings).entries()[-1]
    assert (entry.action, entry.subject) == ("rollout_advanced", FLAG)
    assert entry.details["percentage"] == steps[1]
    assert actions(settings) == ["rollout_started", "rollout_advanced"]


def test_a_rollout_whose_units_fail_rolls_back(settings: Settings) -> None:
    since = T0
    lifecycle.start_rollout(settings, FLAG, now=since)
    plan = current_plan(settings)
    on, off = flag_units(plan, 25, 25)
    write_log(settings, "stable", rollout_lines(plan, off, since))
    # every other request of a flag-on unit is answered with a 500
    write_log(
        settings, "candidate", rollout_lines(plan, on, since, failing=lambda k, r: r % 2 == 0)
    )

    (move,) = lifecycle.advance_rollouts(settings, now=since + 5)  # failing: no need to wait
    assert (move["guard"], move["action"], move["step"]) == ("fail", "roll_back", -1)
    assert "on: quality" in move["why"] and "confidently worse" in move["why"]
    rollback = settings.experiments.rollout.rollback_percentage
    plan = current_plan(settings)
    assert plan.generation == 2 and plan.flags[0].rollout_percentage == rollback
    assert all(resolve(plan, u).flags[FLAG] == 0.0 for u in on)
    entry = AuditTrail.for_settings(settings).entries()[-1]
    assert (entry.action, entry.subject) == ("rollout_rolled_back", FLAG)
    assert entry.details["percentage"] == rollback
    # a rolled-back rollout is left alone afterwards
    assert lifecycle.advance_rollouts(settings, now=since + 10_000) == []
    assert current_plan(settings).generation == 2


def test_a_total_outage_of_flag_on_units_never_advances(settings: Settings) -> None:
    """Every flag-on request fails: quality is exactly 0 for every on-unit (a degenerate arm
    whose delta-method relative variance vanishes). The rollout is rolled back."""
    since = T0
    lifecycle.start_rollout(settings, FLAG, now=since)
    plan = current_plan(settings)
    on, off = flag_units(plan, 25, 25)
    write_log(settings, "stable", rollout_lines(plan, off, since))
    write_log(settings, "candidate", rollout_lines(plan, on, since, failing=lambda k, r: True))

    wait = settings.experiments.rollout.min_step_seconds
    (move,) = lifecycle.advance_rollouts(settings, now=since + wait + 1)
    assert (move["guard"], move["action"]) == ("fail", "roll_back"), move
    assert actions(settings) == ["rollout_started", "rollout_rolled_back"]
    percentage = current_plan(settings).flags[0].rollout_percentage
    assert percentage == settings.experiments.rollout.rollback_percentage


def test_a_rollout_with_an_undecided_guardrail_holds(settings: Settings) -> None:
    """A few 5xx for flag-on units against none for the rest: the error-rate guardrail's
    relative change from a zero control does not exist and 5 of 160 requests cannot be told
    from noise yet (pending); quality cannot tell either. Pending is no evidence of no harm:
    the rollout must not advance."""
    since = T0
    lifecycle.start_rollout(settings, FLAG, now=since)
    plan = current_plan(settings)
    on, off = flag_units(plan, 40, 40)
    write_log(settings, "stable", rollout_lines(plan, off, since, seed=1))
    lines = rollout_lines(plan, on, since, failing=lambda k, r: k % 8 == 0 and r == 0, seed=2)
    assert sum(e["status"] == 500 for e in lines) == 5
    write_log(settings, "stable-2", lines)

    wait = settings.experiments.rollout.min_step_seconds
    (move,) = lifecycle.advance_rollouts(settings, now=since + wait + 1)
    assert (move["guard"], move["action"], move["step"]) == ("inconclusive", "hold", 0)
    assert "error_rate: 0.03125 against none in control, not yet distinguishable" in move["why"]
    assert (
        current_plan(settings).flags[0].rollout_percentage == settings.experiments.rollout.steps[0]
    )
    assert actions(settings) == ["rollout_started"]


def test_a_rollout_with_too_few_units_holds(settings: Settings) -> None:
    since = T0
    lifecycle.start_rollout(settings, FLAG, now=since)
    plan = current_plan(settings)
    on, off = flag_units(plan, 3, 30)
    write_log(settings, "stable", rollout_lines(plan, [*on, *off], since))
    # lines from before the step began do not count
    write_log(settings, "old", rollout_lines(plan, flag_units(plan, 30, 0)[0], since - 1000))

    (move,) = lifecycle.advance_rollouts(settings, now=since + 10_000)
    assert (move["guard"], move["action"], move["step"]) == ("inconclusive", "hold", 0)
    assert "too few units" in move["why"]
    assert current_plan(settings).generation == 1
    assert actions(settings) == ["rollout_started"]


# --------------------------------------------------------------------------- Thompson sampling


def test_a_thompson_experiment_moves_traffic_to_the_rewarded_prompt_and_ships_it(
    small_settings: Build,
) -> None:
    """Three prompt-parameter arms under Thompson sampling; users rate arm ``b`` up far more
    often. Each round the flow re-weights by P(best) (every arm keeps the floor), the plan
    follows, and once ``b`` is best with 95 % it ships."""
    settings = small_settings(
        experiments={
            **SMALL_EXPERIMENTS,
            "bandit": {"min_units_per_variant": 10, "floor": 0.05, "ship_probability": 0.95},
        }
    )
    spec = ExperimentSpec(
        name="prompts",
        allocation="thompson",
        variants=(
            VariantSpec(name="a", params={"seed": 1}),
            VariantSpec(name="b", params={"seed": 2}),
            VariantSpec(name="c", params={"seed": 3}),
        ),
    )
    lifecycle.create(settings, spec, now=T0)
    rates = {"a": 0.3, "b": 0.55, "c": 0.35}
    rng = random.Random(5)
    shares: list[dict[str, float]] = []
    decisions: list[str] = []
    start = 0
    for round_ in range(12):
        plan = current_plan(settings)
        lines, ratings = [], {}
        for i in range(start, start + 40):  # new users each round
            unit = f"user-{i}"
            arm = resolve(plan, unit).arms["prompts"]
            rid = f"r-{i}"
            lines.append(
                log_line(plan, unit, ts=T0 + 10 + i, reply=good_reply(rng), request_id=rid)
            )
            ratings[rid] = 1.0 if rng.random() < rates[arm] else 0.0
        start += 40
        write_log(settings, "stable", lines)
        write_feedback(settings, ratings)
        analysis, applied = lifecycle.decide(settings, "prompts", now=T0 + 1000 * (round_ + 1))
        decisions.append(analysis.decision.action)
        record = lifecycle.load_record(settings, "prompts")
        if record.allocations:
            shares.append(record.allocations[-1]["weights"])
        if analysis.decision.action == "ship":
            assert applied is not None and applied.variant == "b"
            break
    assert decisions[-1] == "ship", decisions
    assert len(record.allocations) >= 2  # re-weighted while it ran, then shipped
    assert shares[-1]["b"] > 0.5 > max(shares[-1]["a"], shares[-1]["c"])
    assert all(min(w.values()) >= 0.05 * 0.99 for w in shares)  # the floor holds
    # while it ran, the plan served the re-weighted split
    assert all(abs(sum(w.values()) - 1) < 1e-3 for w in shares)
    assert record.status == "shipped" and current_plan(settings).default is not None
    assert dict(current_plan(settings).default.params) == {"seed": 2}  # type: ignore[union-attr]
    report = json.loads((Path(record.analyses[-1]["dir"]) / "report.json").read_text())
    assert not report["srm"]["mismatch"]  # adaptive allocation: no fixed split to test
