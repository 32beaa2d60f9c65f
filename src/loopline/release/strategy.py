"""Deployment strategies as pure state machines: ``step(state, event) -> (state, actions)``.

A strategy never performs anything and never reads a clock: the driver feeds it events
(with their times) and hands the returned actions to a target
(:mod:`loopline.release.target`), which is why the same strategy code runs on the local
target and on Kubernetes. States are immutable; :func:`replay` folds a list of events.

Strategies
----------
**canary** (:class:`CanaryStrategy`)::

    pending --Started--> starting [StartCandidate]
    starting --CandidateReady--> analysing step 0 [SetWeights(100−w₀, w₀)]
    analysing --AnalysisResult(continue)--> same step
    analysing --AnalysisResult(promote_step)--> next step [RecordStep, SetWeights]
                                     or, after the last step below 100 %,
                                     promoted [RecordStep, SetWeights(0, 100), Promote]
    analysing --AnalysisResult(rollback) | CandidateUnhealthy | TargetFailed-->
                          rolled_back [SetWeights(100, 0), StopCandidate, RecordStep, Rollback]

**blue/green** (:class:`BlueGreenStrategy`)::

    pending --Started--> starting [StartCandidate]
    starting --CandidateReady--> checking [Warmup]
    checking --AnalysisResult(promote_step)--> switched [RecordStep, SetWeights(0, 100)]
                                     (promoted at once [.., Promote] when bake_seconds = 0)
    checking --AnalysisResult(rollback)--> rolled_back (stable never lost traffic)
    switched --Tick(at ≥ switch + bake_seconds)--> promoted [RecordStep, Promote]
    switched --AnalysisResult(rollback) | failure | ManualAbort--> switch back
                          [SetWeights(100, 0), StopCandidate, RecordStep, Rollback]

**shadow** (:class:`ShadowStrategy`)::

    pending --Started--> starting [StartCandidate]
    starting --CandidateReady--> shadowing [Mirror(p)]
    shadowing --AnalysisResult(promote_step)--> passed [RecordStep, Mirror(0), StopCandidate]
        (on_pass=promote: promoted [RecordStep, Mirror(0), SetWeights(0, 100), Promote])
    shadowing --AnalysisResult(rollback) | failure--> rolled_back [Mirror(0), StopCandidate, ..]

In every live phase ``ManualAbort`` ends the release as ``aborted`` (with the same actions as
a rollback), ``CandidateUnhealthy`` and ``TargetFailed`` roll back, and ``Tick`` is accepted.
Anything else raises :class:`InvalidTransitionError` naming the phase and the accepted events;
so do events after the end, events older than the last one, and verdicts for another step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple, Protocol

from loopline.release.analysis import CanaryVerdict
from loopline.release.events import (
    Action,
    AnalysisResult,
    CandidateReady,
    CandidateUnhealthy,
    Event,
    ManualAbort,
    Mirror,
    Promote,
    RecordStep,
    Rollback,
    SetWeights,
    StartCandidate,
    Started,
    StopCandidate,
    TargetFailed,
    Tick,
    Warmup,
)
from loopline.release.policy import (
    BlueGreenPolicy,
    CanaryPolicy,
    ReleaseConfig,
    ShadowPolicy,
    StrategyName,
)
from loopline.release.records import DeploymentRecord, Outcome, ReleaseSpec, StepKind, StepRecord

Phase = Literal[
    "pending",
    "starting",
    "analysing",
    "checking",
    "switched",
    "shadowing",
    "promoted",
    "rolled_back",
    "aborted",
    "passed",
]
TERMINAL: frozenset[str] = frozenset({"promoted", "rolled_back", "aborted", "passed"})


class InvalidTransitionError(ValueError):
    """An event the strategy cannot accept in the release's current state."""


@dataclass(frozen=True)
class ReleaseState:
    """Where a release stands. ``step`` indexes the strategy's steps; weights are the live
    traffic split in percent; ``history`` holds the records of finished steps."""

    spec: ReleaseSpec
    strategy: StrategyName
    phase: Phase = "pending"
    step: int = 0
    stable_weight: float = 100.0
    candidate_weight: float = 0.0
    mirror_percent: float = 0.0
    started_at: float | None = None
    step_started_at: float | None = None
    updated_at: float | None = None
    finished_at: float | None = None
    reason: str | None = None
    history: tuple[StepRecord, ...] = ()

    @property
    def finished(self) -> bool:
        return self.phase in TERMINAL

    @property
    def outcome(self) -> Outcome | None:
        if self.phase == "promoted":
            return "promoted"
        if self.phase == "rolled_back":
            return "rolled_back"
        if self.phase == "aborted":
            return "aborted"
        if self.phase == "passed":
            return "passed"
        return None


class Transition(NamedTuple):
    """The result of one event: the new state and the actions to perform, in order."""

    state: ReleaseState
    actions: tuple[Action, ...]


class Strategy(Protocol):
    """A deployment strategy: a pure state machine over :class:`ReleaseState`."""

    @property
    def name(self) -> StrategyName: ...

    def initial(self, spec: ReleaseSpec) -> ReleaseState: ...

    def step(self, state: ReleaseState, event: Event) -> Transition: ...

    def expected(self, state: ReleaseState) -> tuple[str, ...]: ...

    def record(self, state: ReleaseState) -> DeploymentRecord: ...


Handler = Callable[[ReleaseState, Event], Transition]


class _Machine:
    """Table-driven transitions shared by the strategies: ``_table[phase][event type]``."""

    name: StrategyName
    policy: CanaryPolicy | BlueGreenPolicy | ShadowPolicy
    _table: dict[str, dict[type, Handler]]

    def initial(self, spec: ReleaseSpec) -> ReleaseState:
        return ReleaseState(spec=spec, strategy=self.name)

    def expected(self, state: ReleaseState) -> tuple[str, ...]:
        """Names of the events accepted in ``state`` (empty once the release has ended)."""
        return tuple(t.__name__ for t in self._table.get(state.phase, {}))

    def step(self, state: ReleaseState, event: Event) -> Transition:
        where = f"{self.name} release {state.spec.release_id!r}"
        if state.strategy != self.name:
            raise InvalidTransitionError(
                f"{where}: the state belongs to a {state.strategy} release"
            )
        kind = type(event).__name__
        if state.finished:
            raise InvalidTransitionError(
                f"{where} has already ended ({state.phase}): {kind} is not accepted"
            )
        if state.updated_at is not None and event.at < state.updated_at:
            raise InvalidTransitionError(
                f"{where}: {kind} at {event.at} is older than the last event ({state.updated_at})"
            )
        handler = self._table.get(state.phase, {}).get(type(event))
        if handler is None:
            accepted = ", ".join(self.expected(state))
            raise InvalidTransitionError(
                f"{where}: {kind} is not valid in phase {state.phase!r}; expected one of: "
                f"{accepted}"
            )
        return handler(state, event)

    def record(self, state: ReleaseState) -> DeploymentRecord:
        """The deployment record of ``state`` (who, when, from/to, strategy, every step)."""
        return DeploymentRecord(
            release_id=state.spec.release_id,
            strategy=self.name,
            from_version=state.spec.stable_version,
            to_version=state.spec.candidate_version,
            requested_by=state.spec.requested_by,
            requested_at=state.started_at,
            finished_at=state.finished_at,
            phase=state.phase,
            outcome=state.outcome,
            reason=state.reason,
            steps=state.history,
            policy=self.policy.model_dump(mode="json"),
        )

    # ------------------------------------------------------------------ shared handlers

    def _kind(self, state: ReleaseState) -> StepKind:
        raise NotImplementedError

    def _step_record(
        self,
        state: ReleaseState,
        at: float,
        *,
        verdict: Literal["continue", "promote_step", "rollback"],
        reasons: Iterable[str],
        analysis: CanaryVerdict | None = None,
        kind: StepKind | None = None,
    ) -> StepRecord:
        return StepRecord(
            step=state.step,
            kind=kind or ("start" if state.phase in ("pending", "starting") else self._kind(state)),
            candidate_weight=state.candidate_weight,
            mirror_percent=state.mirror_percent,
            started_at=state.step_started_at,
            decided_at=at,
            verdict=verdict,
            reasons=tuple(reasons),
            analysis=analysis,
        )

    def _end_badly(
        self,
        state: ReleaseState,
        at: float,
        reason: str,
        *,
        outcome: Literal["rolled_back", "aborted"],
        reasons: Iterable[str] = (),
        analysis: CanaryVerdict | None = None,
    ) -> Transition:
        """Back to stable: traffic first, then the candidate's instances, then the records."""
        actions: list[Action] = []
        if state.candidate_weight > 0:
            actions.append(SetWeights(stable=100.0, candidate=0.0))
        if state.mirror_percent > 0:
            actions.append(Mirror(0.0))
        if state.phase != "pending":
            actions.append(StopCandidate(state.spec.candidate_version))
        record = self._step_record(
            state, at, verdict="rollback", reasons=[reason, *reasons], analysis=analysis
        )
        actions += [RecordStep(state.spec.release_id, record), Rollback(reason)]
        new = replace(
            state,
            phase=outcome,
            stable_weight=100.0,
            candidate_weight=0.0,
            mirror_percent=0.0,
            updated_at=at,
            finished_at=at,
            reason=reason,
            history=(*state.history, record),
        )
        return Transition(new, tuple(actions))

    def _failed(self, state: ReleaseState, event: Event) -> Transition:
        assert isinstance(event, TargetFailed | CandidateUnhealthy)
        what = "target failed" if isinstance(event, TargetFailed) else "candidate unhealthy"
        return self._end_badly(state, event.at, f"{what}: {event.reason}", outcome="rolled_back")

    def _abort(self, state: ReleaseState, event: Event) -> Transition:
        assert isinstance(event, ManualAbort)
        reason = f"manual abort by {event.by}: {event.reason}"
        return self._end_badly(state, event.at, reason, outcome="aborted")

    def _tick(self, state: ReleaseState, event: Event) -> Transition:
        return Transition(replace(state, updated_at=event.at), ())

    def _start(self, state: ReleaseState, event: Event) -> Transition:
        new = replace(state, phase="starting", started_at=event.at, updated_at=event.at)
        return Transition(new, (StartCandidate(state.spec.candidate_version),))

    def _verdict(self, state: ReleaseState, event: Event) -> CanaryVerdict:
        assert isinstance(event, AnalysisResult)
        v = event.verdict
        if v.step != state.step:
            raise InvalidTransitionError(
                f"{self.name} release {state.spec.release_id!r}: verdict for step {v.step} "
                f"but the release is at step {state.step} (stale or misrouted analysis)"
            )
        return v

    def _rollback_on(self, state: ReleaseState, at: float, v: CanaryVerdict) -> Transition:
        reason = f"analysis of step {v.step} failed" if v.reasons else "analysis failed"
        return self._end_badly(
            state, at, reason, outcome="rolled_back", reasons=v.reasons, analysis=v
        )

    def _live(self, handlers: dict[type, Handler]) -> dict[type, Handler]:
        """``handlers`` plus the events every live phase accepts (``handlers`` win)."""
        shared: dict[type, Handler] = {
            CandidateUnhealthy: self._failed,
            TargetFailed: self._failed,
            ManualAbort: self._abort,
            Tick: self._tick,
        }
        return handlers | {k: v for k, v in shared.items() if k not in handlers}


class CanaryStrategy(_Machine):
    """The candidate's traffic share grows along ``policy.steps``; each step below 100 %
    ends on an analysis verdict (see the module docstring)."""

    name: StrategyName = "canary"
    policy: CanaryPolicy

    def __init__(self, policy: CanaryPolicy) -> None:
        self.policy = policy
        self.weights = policy.analysed_weights
        self._table = {
            "pending": {Started: self._start, ManualAbort: self._abort},
            "starting": self._live({CandidateReady: self._ready}),
            "analysing": self._live({AnalysisResult: self._analysis}),
        }

    def _kind(self, state: ReleaseState) -> StepKind:
        return "canary"

    def _ready(self, state: ReleaseState, event: Event) -> Transition:
        w = self.weights[0]
        new = replace(
            state,
            phase="analysing",
            step=0,
            stable_weight=100.0 - w,
            candidate_weight=w,
            step_started_at=event.at,
            updated_at=event.at,
        )
        return Transition(new, (SetWeights(stable=100.0 - w, candidate=w),))

    def _analysis(self, state: ReleaseState, event: Event) -> Transition:
        v = self._verdict(state, event)
        at = event.at
        if v.verdict == "continue":
            return Transition(replace(state, updated_at=at), ())
        if v.verdict == "rollback":
            return self._rollback_on(state, at, v)
        record = self._step_record(state, at, verdict="promote_step", reasons=v.reasons, analysis=v)
        history = (*state.history, record)
        rec = RecordStep(state.spec.release_id, record)
        nxt = state.step + 1
        if nxt < len(self.weights):
            w = self.weights[nxt]
            new = replace(
                state,
                step=nxt,
                stable_weight=100.0 - w,
                candidate_weight=w,
                step_started_at=at,
                updated_at=at,
                history=history,
            )
            return Transition(new, (rec, SetWeights(stable=100.0 - w, candidate=w)))
        return _promoted(state, at, history, (rec,))


def _promoted(
    state: ReleaseState,
    at: float,
    history: tuple[StepRecord, ...],
    before: tuple[Action, ...],
    *,
    switch: bool = True,
) -> Transition:
    actions: tuple[Action, ...] = before
    if switch:
        actions += (SetWeights(stable=0.0, candidate=100.0),)
    actions += (Promote(state.spec.candidate_version),)
    new = replace(
        state,
        phase="promoted",
        stable_weight=0.0,
        candidate_weight=100.0,
        mirror_percent=0.0,
        updated_at=at,
        finished_at=at,
        reason=f"v{state.spec.candidate_version} promoted",
        history=history,
    )
    return Transition(new, actions)


class BlueGreenStrategy(_Machine):
    """Warm and check the candidate, switch all traffic atomically, keep the stable running
    for ``policy.bake_seconds`` so that switching back is instant."""

    name: StrategyName = "blue_green"
    policy: BlueGreenPolicy

    def __init__(self, policy: BlueGreenPolicy) -> None:
        self.policy = policy
        self._table = {
            "pending": {Started: self._start, ManualAbort: self._abort},
            "starting": self._live({CandidateReady: self._ready}),
            "checking": self._live({AnalysisResult: self._checked}),
            "switched": self._live({AnalysisResult: self._baking, Tick: self._bake_tick}),
        }

    def _kind(self, state: ReleaseState) -> StepKind:
        return "bake" if state.phase == "switched" else "check"

    def _ready(self, state: ReleaseState, event: Event) -> Transition:
        new = replace(
            state, phase="checking", step=0, step_started_at=event.at, updated_at=event.at
        )
        warm = Warmup(state.spec.candidate_version, self.policy.warmup_requests)
        return Transition(new, (warm,))

    def _checked(self, state: ReleaseState, event: Event) -> Transition:
        v = self._verdict(state, event)
        at = event.at
        if v.verdict == "continue":
            return Transition(replace(state, updated_at=at), ())
        if v.verdict == "rollback":
            return self._rollback_on(state, at, v)
        record = self._step_record(state, at, verdict="promote_step", reasons=v.reasons, analysis=v)
        history = (*state.history, record)
        rec = RecordStep(state.spec.release_id, record)
        if self.policy.bake_seconds == 0:
            return _promoted(state, at, history, (rec,))
        new = replace(
            state,
            phase="switched",
            step=1,
            stable_weight=0.0,
            candidate_weight=100.0,
            step_started_at=at,
            updated_at=at,
            history=history,
        )
        return Transition(new, (rec, SetWeights(stable=0.0, candidate=100.0)))

    def _baking(self, state: ReleaseState, event: Event) -> Transition:
        v = self._verdict(state, event)
        if v.verdict == "rollback":
            return self._rollback_on(state, event.at, v)
        # A passing verdict does not shorten the bake: blue stays ready until it ends.
        return Transition(replace(state, updated_at=event.at), ())

    def _bake_tick(self, state: ReleaseState, event: Event) -> Transition:
        assert state.step_started_at is not None
        baked = event.at - state.step_started_at
        if baked < self.policy.bake_seconds:
            return Transition(replace(state, updated_at=event.at), ())
        reason = f"bake of {self.policy.bake_seconds:g} s passed without a switch back"
        record = self._step_record(state, event.at, verdict="promote_step", reasons=[reason])
        rec = RecordStep(state.spec.release_id, record)
        return _promoted(state, event.at, (*state.history, record), (rec,), switch=False)


class ShadowStrategy(_Machine):
    """Mirror ``policy.mirror_percent`` of live requests to the candidate; its replies are
    compared with stable's and never returned. The candidate never gets live traffic unless
    ``policy.on_pass == "promote"`` and the comparison passed."""

    name: StrategyName = "shadow"
    policy: ShadowPolicy

    def __init__(self, policy: ShadowPolicy) -> None:
        self.policy = policy
        self._table = {
            "pending": {Started: self._start, ManualAbort: self._abort},
            "starting": self._live({CandidateReady: self._ready}),
            "shadowing": self._live({AnalysisResult: self._analysis}),
        }

    def _kind(self, state: ReleaseState) -> StepKind:
        return "shadow"

    def _ready(self, state: ReleaseState, event: Event) -> Transition:
        p = self.policy.mirror_percent
        new = replace(
            state,
            phase="shadowing",
            step=0,
            mirror_percent=p,
            step_started_at=event.at,
            updated_at=event.at,
        )
        return Transition(new, (Mirror(p),))

    def _analysis(self, state: ReleaseState, event: Event) -> Transition:
        v = self._verdict(state, event)
        at = event.at
        if v.verdict == "continue":
            return Transition(replace(state, updated_at=at), ())
        if v.verdict == "rollback":
            return self._rollback_on(state, at, v)
        record = self._step_record(state, at, verdict="promote_step", reasons=v.reasons, analysis=v)
        history = (*state.history, record)
        rec = RecordStep(state.spec.release_id, record)
        if self.policy.on_pass == "promote":
            return _promoted(state, at, history, (rec, Mirror(0.0)))
        new = replace(
            state,
            phase="passed",
            mirror_percent=0.0,
            updated_at=at,
            finished_at=at,
            reason="shadow comparison passed; stable keeps serving",
            history=history,
        )
        return Transition(new, (rec, Mirror(0.0), StopCandidate(state.spec.candidate_version)))


def make_strategy(
    name: StrategyName, config: ReleaseConfig
) -> CanaryStrategy | BlueGreenStrategy | ShadowStrategy:
    """The strategy ``name`` configured from ``config``."""
    if name == "canary":
        return CanaryStrategy(config.canary)
    if name == "blue_green":
        return BlueGreenStrategy(config.blue_green)
    if name == "shadow":
        return ShadowStrategy(config.shadow)
    raise ValueError(f"unknown strategy {name!r}")


def replay(
    strategy: Strategy, spec: ReleaseSpec, events: Iterable[Event]
) -> tuple[ReleaseState, tuple[Action, ...]]:
    """Fold ``events`` from the initial state; the final state and every action, in order."""
    state = strategy.initial(spec)
    actions: list[Action] = []
    for event in events:
        state, done = strategy.step(state, event)
        actions.extend(done)
    return state, tuple(actions)
