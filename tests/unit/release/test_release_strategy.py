"""Release strategies as pure state machines: transitions, actions, invalid events, records."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field

import pytest

from loopline.release import (
    Action,
    AnalysisResult,
    BlueGreenPolicy,
    BlueGreenStrategy,
    CanaryPolicy,
    CanaryStrategy,
    CanaryVerdict,
    CandidateReady,
    CandidateUnhealthy,
    DeploymentRecord,
    Event,
    InvalidTransitionError,
    ManualAbort,
    Mirror,
    Promote,
    RecordStep,
    ReleaseConfig,
    ReleaseSpec,
    Rollback,
    SetWeights,
    ShadowPolicy,
    ShadowStrategy,
    StartCandidate,
    Started,
    StepRecord,
    StopCandidate,
    Target,
    TargetFailed,
    Tick,
    Warmup,
    make_strategy,
    perform,
    perform_all,
    replay,
)
from loopline.release.analysis import StepMetrics

SPEC = ReleaseSpec(release_id="r1", candidate_version="8", stable_version="7", requested_by="ana")
CANARY = CanaryStrategy(CanaryPolicy(steps=(5.0, 25.0, 50.0, 100.0)))


def verdict(step: int, kind: str, reason: str = "analysis says so") -> AnalysisResult:
    v = CanaryVerdict(
        verdict=kind,  # type: ignore[arg-type]
        step=step,
        candidate_weight=0.0,
        method="test",
        reasons=(reason,),
    )
    return AnalysisResult(v, at=100.0 + 10 * step + (5 if kind != "continue" else 1))


def passed(step: int) -> AnalysisResult:
    return verdict(step, "promote_step")


def failed(step: int) -> AnalysisResult:
    return verdict(step, "rollback", "error rate degraded")


START: list[Event] = [Started(at=1.0), CandidateReady(at=2.0)]
BACK = [SetWeights(stable=100.0, candidate=0.0), StopCandidate("8")]


def kinds(actions: tuple[Action, ...]) -> list[object]:
    """Actions with step records reduced to (step, kind, verdict) for comparison."""
    out: list[object] = []
    for a in actions:
        if isinstance(a, RecordStep):
            out.append(("record", a.record.step, a.record.kind, a.record.verdict))
        elif isinstance(a, Rollback):
            out.append("rollback")
        else:
            out.append(a)
    return out


# --------------------------------------------------------------------------- canary


@dataclass
class Case:
    id: str
    events: list[Event]
    phase: str
    actions: list[object]
    reason: str | None = None
    history: list[tuple[int, str, str]] = field(default_factory=list)


# fmt: off
CANARY_CASES = [
    Case("happy-path", [*START, passed(0), passed(1), passed(2)], "promoted",
         [StartCandidate("8"), SetWeights(95.0, 5.0),
          ("record", 0, "canary", "promote_step"), SetWeights(75.0, 25.0),
          ("record", 1, "canary", "promote_step"), SetWeights(50.0, 50.0),
          ("record", 2, "canary", "promote_step"), SetWeights(0.0, 100.0), Promote("8")],
         "v8 promoted",
         [(0, "canary", "promote_step"), (1, "canary", "promote_step"),
          (2, "canary", "promote_step")]),
    Case("continue-keeps-step", [*START, verdict(0, "continue"), verdict(0, "continue")],
         "analysing", [StartCandidate("8"), SetWeights(95.0, 5.0)]),
    *[
        Case(f"rollback-at-step-{k}", [*START, *[passed(i) for i in range(k)], failed(k)],
             "rolled_back",
             [StartCandidate("8"), SetWeights(95.0, 5.0),
              *itertools.chain.from_iterable(
                  [("record", i, "canary", "promote_step"), SetWeights(*w)]
                  for i, w in enumerate([(75.0, 25.0), (50.0, 50.0)][:k])),
              *BACK, ("record", k, "canary", "rollback"), "rollback"],
             f"analysis of step {k} failed",
             [*[(i, "canary", "promote_step") for i in range(k)], (k, "canary", "rollback")])
        for k in range(3)
    ],
    *[
        Case(f"candidate-dies-at-step-{k}",
             [*START, *[passed(i) for i in range(k)],
              CandidateUnhealthy("process exited with -9", at=150.0)],
             "rolled_back",
             [StartCandidate("8"), SetWeights(95.0, 5.0),
              *itertools.chain.from_iterable(
                  [("record", i, "canary", "promote_step"), SetWeights(*w)]
                  for i, w in enumerate([(75.0, 25.0), (50.0, 50.0)][:k])),
              *BACK, ("record", k, "canary", "rollback"), "rollback"],
             "candidate unhealthy: process exited with -9")
        for k in range(3)
    ],
    Case("router-fails", [*START, TargetFailed("haproxy reload failed", at=9.0)],
         "rolled_back", [StartCandidate("8"), SetWeights(95.0, 5.0), *BACK,
                         ("record", 0, "canary", "rollback"), "rollback"],
         "target failed: haproxy reload failed"),
    Case("candidate-never-starts", [Started(at=1.0), CandidateUnhealthy("port in use", at=3.0)],
         "rolled_back", [StartCandidate("8"), StopCandidate("8"),
                         ("record", 0, "start", "rollback"), "rollback"],
         "candidate unhealthy: port in use", [(0, "start", "rollback")]),
    Case("manual-abort-before-start", [ManualAbort("wrong version", by="bo", at=1.0)],
         "aborted", [("record", 0, "start", "rollback"), "rollback"],
         "manual abort by bo: wrong version"),
    Case("manual-abort-mid-canary", [*START, passed(0), ManualAbort("pager", by="bo", at=120.0)],
         "aborted",
         [StartCandidate("8"), SetWeights(95.0, 5.0), ("record", 0, "canary", "promote_step"),
          SetWeights(75.0, 25.0), *BACK, ("record", 1, "canary", "rollback"), "rollback"],
         "manual abort by bo: pager"),
    Case("ticks-change-nothing", [*START, Tick(at=50.0), Tick(at=60.0)], "analysing",
         [StartCandidate("8"), SetWeights(95.0, 5.0)]),
]
# fmt: on


@pytest.mark.parametrize("case", CANARY_CASES, ids=lambda c: c.id)
def test_canary_transitions(case: Case) -> None:
    state, actions = replay(CANARY, SPEC, case.events)
    assert state.phase == case.phase
    assert kinds(actions) == case.actions
    if case.reason is not None:
        assert state.reason is not None and case.reason in state.reason
        rollbacks = [a for a in actions if isinstance(a, Rollback)]
        assert all(case.reason in r.reason for r in rollbacks)
    if case.history:
        assert [(r.step, r.kind, r.verdict) for r in state.history] == case.history
    if state.finished:
        assert state.finished_at == case.events[-1].at
        # Traffic always ends entirely on one version.
        assert (state.stable_weight, state.candidate_weight) in ((100.0, 0.0), (0.0, 100.0))


def test_canary_weights_follow_the_steps_and_skip_the_final_100() -> None:
    strategy = CanaryStrategy(CanaryPolicy(steps=(10.0, 60.0)))
    state, actions = replay(strategy, SPEC, [*START, passed(0), passed(1)])
    weights = [a for a in actions if isinstance(a, SetWeights)]
    assert weights == [SetWeights(90.0, 10.0), SetWeights(40.0, 60.0), SetWeights(0.0, 100.0)]
    assert state.phase == "promoted" and len(state.history) == 2


def test_rollback_routes_traffic_away_before_stopping_the_candidate() -> None:
    _, actions = replay(CANARY, SPEC, [*START, passed(0), failed(1)])
    tail = actions[-4:]
    assert isinstance(tail[0], SetWeights) and tail[0].candidate == 0.0
    assert isinstance(tail[1], StopCandidate)
    assert isinstance(tail[2], RecordStep) and isinstance(tail[3], Rollback)
    record = tail[2].record
    assert record.verdict == "rollback" and record.candidate_weight == 25.0
    assert record.analysis is not None and record.analysis.reasons == ("error rate degraded",)
    assert record.started_at == passed(0).at and record.decided_at == failed(1).at


# --------------------------------------------------------------------------- invalid events


@dataclass
class Bad:
    id: str
    prefix: list[Event]
    event: Event
    message: str


# fmt: off
INVALID = [
    Bad("verdict-before-start", [], passed(0),
        "AnalysisResult is not valid in phase 'pending'; expected one of: Started, ManualAbort"),
    Bad("ready-before-start", [], CandidateReady(at=1.0),
        "CandidateReady is not valid in phase 'pending'"),
    Bad("started-twice", [Started(at=1.0)], Started(at=2.0),
        "Started is not valid in phase 'starting'; expected one of: CandidateReady"),
    Bad("verdict-while-starting", [Started(at=1.0)], passed(0),
        "AnalysisResult is not valid in phase 'starting'"),
    Bad("ready-twice", START, CandidateReady(at=3.0),
        "CandidateReady is not valid in phase 'analysing'; expected one of: AnalysisResult"),
    Bad("stale-verdict", [*START, passed(0)], verdict(0, "rollback"),
        "verdict for step 0 but the release is at step 1"),
    Bad("time-goes-backwards", START, Tick(at=0.5),
        "Tick at 0.5 is older than the last event (2.0)"),
    Bad("after-promotion", [*START, passed(0), passed(1), passed(2)],
        ManualAbort("too late", by="bo", at=999.0), "has already ended (promoted)"),
    Bad("after-rollback", [*START, failed(0)], CandidateUnhealthy("dead", at=999.0),
        "has already ended (rolled_back)"),
]
# fmt: on


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_events_are_rejected_with_clear_errors(case: Bad) -> None:
    state, _ = replay(CANARY, SPEC, case.prefix)
    with pytest.raises(InvalidTransitionError, match="canary release 'r1'") as err:
        CANARY.step(state, case.event)
    assert case.message in str(err.value)


def test_a_state_of_another_strategy_is_rejected() -> None:
    state = ShadowStrategy(ShadowPolicy()).initial(SPEC)
    with pytest.raises(InvalidTransitionError, match="belongs to a shadow release"):
        CANARY.step(state, Started(at=1.0))


def test_expected_lists_accepted_events_and_nothing_after_the_end() -> None:
    state, _ = replay(CANARY, SPEC, START)
    assert CANARY.expected(state) == (
        "AnalysisResult",
        "CandidateUnhealthy",
        "TargetFailed",
        "ManualAbort",
        "Tick",
    )
    done, _ = replay(CANARY, SPEC, [*START, failed(0)])
    assert CANARY.expected(done) == ()


# --------------------------------------------------------------------------- blue/green

BG = BlueGreenStrategy(BlueGreenPolicy(warmup_requests=30, bake_seconds=300.0))
CHECKED = [*START, passed(0)]  # switch happens at passed(0).at == 105.0


def test_blue_green_happy_path_warms_checks_switches_then_promotes_after_the_bake() -> None:
    state, actions = replay(BG, SPEC, [*CHECKED, Tick(at=300.0)])
    assert state.phase == "switched"
    assert kinds(actions) == [
        StartCandidate("8"),
        Warmup("8", 30),
        ("record", 0, "check", "promote_step"),
        SetWeights(0.0, 100.0),
    ]
    state, more = BG.step(state, Tick(at=405.0))
    assert state.phase == "promoted"
    assert kinds(more) == [("record", 1, "bake", "promote_step"), Promote("8")]
    assert "bake of 300 s passed" in state.history[-1].reasons[0]


def test_blue_green_passing_verdict_during_bake_does_not_cut_it_short() -> None:
    state, actions = replay(BG, SPEC, [*CHECKED, passed(1)])
    assert state.phase == "switched" and not any(isinstance(a, Promote) for a in actions)


@pytest.mark.parametrize(
    ("event", "phase", "reason"),
    [
        (ManualAbort("latency alarm", by="bo", at=200.0), "aborted", "manual abort by bo"),
        (CandidateUnhealthy("OOM killed", at=200.0), "rolled_back", "candidate unhealthy"),
        (failed(1), "rolled_back", "analysis of step 1 failed"),
        (TargetFailed("router down", at=200.0), "rolled_back", "target failed"),
    ],
)
def test_blue_green_switches_back_instantly(event: Event, phase: str, reason: str) -> None:
    state, _ = replay(BG, SPEC, CHECKED)
    state, actions = BG.step(state, event)
    assert state.phase == phase and reason in (state.reason or "")
    # The very first action puts all traffic back on blue, which never stopped.
    assert actions[0] == SetWeights(stable=100.0, candidate=0.0)
    assert kinds(actions)[1:] == [StopCandidate("8"), ("record", 1, "bake", "rollback"), "rollback"]


def test_blue_green_failed_check_never_touches_traffic() -> None:
    state, actions = replay(BG, SPEC, [*START, failed(0)])
    assert state.phase == "rolled_back"
    assert not any(isinstance(a, SetWeights) for a in actions)
    assert kinds(actions)[-3:] == [
        StopCandidate("8"),
        ("record", 0, "check", "rollback"),
        "rollback",
    ]


def test_blue_green_without_bake_promotes_at_the_switch() -> None:
    strategy = BlueGreenStrategy(BlueGreenPolicy(bake_seconds=0.0))
    state, actions = replay(strategy, SPEC, CHECKED)
    assert state.phase == "promoted"
    assert kinds(actions)[-3:] == [
        ("record", 0, "check", "promote_step"),
        SetWeights(0.0, 100.0),
        Promote("8"),
    ]


def test_blue_green_checks_can_come_from_plain_pass_fail_results() -> None:
    check = CanaryVerdict.from_checks(0, False, ["probe 3 returned 500"])
    state, _ = replay(BG, SPEC, [*START, AnalysisResult(check, at=10.0)])
    assert state.phase == "rolled_back"
    assert state.history[-1].reasons[-1] == "probe 3 returned 500"
    assert state.history[-1].analysis == check and check.method == "checks"


# --------------------------------------------------------------------------- shadow


def test_shadow_mirrors_compares_and_never_serves_the_candidate() -> None:
    strategy = ShadowStrategy(ShadowPolicy(mirror_percent=20.0))
    state, actions = replay(strategy, SPEC, [*START, verdict(0, "continue"), passed(0)])
    assert state.phase == "passed" and state.outcome == "passed"
    assert kinds(actions) == [
        StartCandidate("8"),
        Mirror(20.0),
        ("record", 0, "shadow", "promote_step"),
        Mirror(0.0),
        StopCandidate("8"),
    ]
    assert state.history[0].mirror_percent == 20.0 and state.history[0].candidate_weight == 0.0


def test_shadow_failure_stops_mirroring_first() -> None:
    strategy = ShadowStrategy(ShadowPolicy())
    state, actions = replay(strategy, SPEC, [*START, failed(0)])
    assert state.phase == "rolled_back"
    assert kinds(actions)[1:] == [
        Mirror(100.0),
        Mirror(0.0),
        StopCandidate("8"),
        ("record", 0, "shadow", "rollback"),
        "rollback",
    ]


def test_shadow_on_pass_promote_switches_traffic() -> None:
    strategy = ShadowStrategy(ShadowPolicy(on_pass="promote"))
    state, actions = replay(strategy, SPEC, [*START, passed(0)])
    assert state.phase == "promoted"
    assert actions[-3:] == (Mirror(0.0), SetWeights(0.0, 100.0), Promote("8"))


def _reachable_actions(strategy: ShadowStrategy, depth: int) -> list[Action]:
    """Every action of every event sequence up to ``depth`` events (invalid ones pruned)."""
    templates: list[Event] = [
        Started(at=0),
        CandidateReady(at=0),
        verdict(0, "continue"),
        passed(0),
        failed(0),
        CandidateUnhealthy("x", at=0),
        TargetFailed("x", at=0),
        ManualAbort("x", by="y", at=0),
        Tick(at=0),
    ]
    seen: list[Action] = []
    frontier = [strategy.initial(SPEC)]
    for level in range(depth):
        nxt = []
        for state in frontier:
            for template in templates:
                event = type(template)(**{**template.__dict__, "at": float(level)})
                try:
                    new, actions = strategy.step(state, event)
                except InvalidTransitionError:
                    continue
                seen.extend(actions)
                nxt.append(new)
        frontier = nxt
    return seen


def test_shadow_never_routes_live_traffic_to_the_candidate_on_any_path() -> None:
    actions = _reachable_actions(ShadowStrategy(ShadowPolicy()), depth=5)
    assert any(isinstance(a, Mirror) and a.percent > 0 for a in actions)
    assert not any(isinstance(a, SetWeights) and a.candidate > 0 for a in actions)
    assert not any(isinstance(a, Promote) for a in actions)


# --------------------------------------------------------------------------- records, targets


def test_deployment_record_is_json_and_round_trips() -> None:
    check = CanaryVerdict.from_checks(0, True, [])
    events: list[Event] = [*START, AnalysisResult(check, at=50.0), passed(1), failed(2)]
    state, _ = replay(CANARY, SPEC, events)
    record = CANARY.record(state)
    assert (record.requested_by, record.requested_at, record.finished_at) == ("ana", 1.0, 125.0)
    assert (record.from_version, record.to_version, record.strategy) == ("7", "8", "canary")
    assert record.outcome == "rolled_back"
    assert [s.verdict for s in record.steps] == ["promote_step", "promote_step", "rollback"]
    assert record.policy["steps"] == [5.0, 25.0, 50.0, 100.0]
    line = record.to_json()
    assert "\n" not in line and json.loads(line)["steps"][2]["analysis"]["verdict"] == "rollback"
    assert DeploymentRecord.from_json(line) == record


def test_in_progress_record_has_no_outcome() -> None:
    state, _ = replay(CANARY, SPEC, START)
    record = CANARY.record(state)
    assert record.outcome is None and record.phase == "analysing" and record.steps == ()


class RecordingTarget:
    """A target that records calls (the protocol's shape, not a local-target stand-in)."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def start_candidate(self, version: str) -> None:
        self.calls.append(("start", version))

    def warmup(self, version: str, requests: int) -> None:
        self.calls.append(("warmup", version, requests))

    def set_weights(self, stable: float, candidate: float) -> None:
        self.calls.append(("weights", stable, candidate))

    def mirror(self, percent: float) -> None:
        self.calls.append(("mirror", percent))

    def stop_candidate(self, version: str) -> None:
        self.calls.append(("stop", version))

    def promote(self, version: str) -> None:
        self.calls.append(("promote", version))

    def rollback(self, reason: str) -> None:
        self.calls.append(("rollback", reason))

    def record_step(self, release_id: str, record: StepRecord) -> None:
        self.calls.append(("record", release_id, record.step, record.verdict))

    def candidate_health(self) -> str | None:
        return None

    def step_metrics(self, step: int, since: float) -> StepMetrics:
        raise NotImplementedError


def test_any_target_performs_any_strategy_through_the_protocol() -> None:
    target = RecordingTarget()
    assert isinstance(target, Target)
    _, actions = replay(CANARY, SPEC, [*START, passed(0), CandidateUnhealthy("gone", at=200.0)])
    perform_all(target, actions)
    assert target.calls == [
        ("start", "8"),
        ("weights", 95.0, 5.0),
        ("record", "r1", 0, "promote_step"),
        ("weights", 75.0, 25.0),
        ("weights", 100.0, 0.0),
        ("stop", "8"),
        ("record", "r1", 1, "rollback"),
        ("rollback", "candidate unhealthy: gone"),
    ]
    with pytest.raises(TypeError, match="not a release action"):
        perform(target, "promote")  # type: ignore[arg-type]


def test_make_strategy_and_action_validation() -> None:
    config = ReleaseConfig(blue_green=BlueGreenPolicy(bake_seconds=5.0))
    assert isinstance(make_strategy("canary", config), CanaryStrategy)
    bg = make_strategy("blue_green", config)
    assert isinstance(bg, BlueGreenStrategy) and bg.policy.bake_seconds == 5.0
    assert isinstance(make_strategy("shadow", config), ShadowStrategy)
    with pytest.raises(ValueError, match="sum to 100"):
        SetWeights(stable=90.0, candidate=5.0)
    with pytest.raises(ValueError, match="mirror percent"):
        Mirror(120.0)
    with pytest.raises(ValueError, match="same version"):
        ReleaseSpec("r", "7", "7", "ana")
    with pytest.raises(ValueError, match="requested_by must not be empty"):
        ReleaseSpec("r", "8", "7", "")
