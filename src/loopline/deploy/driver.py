"""The release driver: feeds a strategy events read off a target, performs its actions.

It is target-agnostic (the local target and a Kubernetes target both implement
:class:`~loopline.release.target.Target`) and clock-agnostic (``clock`` and ``sleep`` are
injected). One loop iteration: a manual abort if one was requested, else the candidate's
health, else the phase's evidence — readiness while starting, the sequential analysis of the
current canary/shadow step, the warm-up checks of blue/green, the bake clock after a switch.
A target method that raises becomes a ``TargetFailed`` event: the strategy rolls back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from loopline.release.analysis import CanaryVerdict, StepMetrics, analyze_canary
from loopline.release.events import (
    Action,
    AnalysisResult,
    CandidateReady,
    CandidateUnhealthy,
    Event,
    ManualAbort,
    Started,
    TargetFailed,
    Tick,
)
from loopline.release.policy import CanaryPolicy, ReleaseConfig, ShadowPolicy
from loopline.release.records import DeploymentRecord, ReleaseSpec
from loopline.release.strategy import ReleaseState, make_strategy
from loopline.release.target import Target, perform


class ReleaseTarget(Target, Protocol):
    """What the driver needs beyond :class:`Target`: start-up state and blue/green checks."""

    def candidate_starting(self) -> bool:
        """True while the candidate is launched and not yet ready (and not dead)."""

    def warmup_checks(self, step: int) -> CanaryVerdict:
        """The verdict of the warm-up probes (blue/green ``check`` step)."""

    def bake_checks(self, step: int, since: float) -> CanaryVerdict | None:
        """A rollback verdict when the switched candidate misbehaves, else ``None``."""


@dataclass(frozen=True)
class DriverOptions:
    poll_s: float = 1.0
    start_timeout_s: float = 180.0


StepReporter = Callable[[ReleaseState, tuple[Action, ...]], None]


def run_release(
    config: ReleaseConfig,
    strategy_name: str,
    spec: ReleaseSpec,
    target: ReleaseTarget,
    *,
    options: DriverOptions = DriverOptions(),
    abort_requested: Callable[[], tuple[str, str] | None] = lambda: None,
    report: StepReporter = lambda _s, _a: None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> DeploymentRecord:
    """Run a release to its end and return its deployment record."""
    strategy = make_strategy(strategy_name, config)  # type: ignore[arg-type]
    state = strategy.initial(spec)

    def feed(event: Event) -> None:
        nonlocal state
        state, actions = strategy.step(state, event)
        report(state, actions)
        for action in actions:
            try:
                perform(target, action)
            except Exception as exc:  # the target failed: let the strategy roll back
                if state.finished:
                    raise
                feed(TargetFailed(f"{type(action).__name__}: {exc}", clock()))
                return

    feed(Started(clock()))
    started = clock()
    while not state.finished:
        sleep(options.poll_s)
        now = clock()
        abort = abort_requested()
        if abort is not None:
            feed(ManualAbort(abort[0], abort[1], now))
            continue
        problem = target.candidate_health()
        if state.phase == "starting":
            if problem is None:
                feed(CandidateReady(now))
            elif not target.candidate_starting() or now - started > options.start_timeout_s:
                feed(CandidateUnhealthy(problem, now))
            continue
        if problem is not None:
            feed(CandidateUnhealthy(problem, now))
            continue
        evidence = _evidence(config, state, target, now)
        feed(evidence if evidence is not None else Tick(now))
    return strategy.record(state)


def _evidence(
    config: ReleaseConfig, state: ReleaseState, target: ReleaseTarget, now: float
) -> Event | None:
    assert state.step_started_at is not None
    if state.phase == "checking":
        return AnalysisResult(target.warmup_checks(state.step), now)
    if state.phase == "switched":
        verdict = target.bake_checks(state.step, state.step_started_at)
        return None if verdict is None else AnalysisResult(verdict, now)
    policy: CanaryPolicy | ShadowPolicy = (
        config.shadow if state.phase == "shadowing" else config.canary
    )
    metrics: StepMetrics = target.step_metrics(state.step, state.step_started_at)
    return AnalysisResult(analyze_canary(metrics, policy), now)
