"""What a target must implement to run any strategy, and how actions reach it.

A *target* is where versions actually run: the local target (server processes behind a
traffic splitter) or Kubernetes (Deployments and weighted routing). Strategies only emit
actions (:mod:`loopline.release.events`); :func:`perform` maps each action to one
:class:`Target` method, so a new target implements this protocol and reuses every strategy
unchanged. A driver loop (the release flow) feeds the strategy events from the target:
``CandidateReady``/``CandidateUnhealthy`` from :meth:`Target.candidate_health`, verdicts from
:func:`~loopline.release.analysis.analyze_canary` over :meth:`Target.step_metrics`, and
``TargetFailed`` when a method raises.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from loopline.release.analysis import StepMetrics
from loopline.release.events import (
    Action,
    Mirror,
    Promote,
    RecordStep,
    Rollback,
    SetWeights,
    StartCandidate,
    StopCandidate,
    Warmup,
)
from loopline.release.records import StepRecord


@runtime_checkable
class Target(Protocol):
    """The operations a deployment target provides. Methods either complete or raise."""

    def start_candidate(self, version: str) -> None:
        """Start the candidate's instances with no live traffic (returns once launched;
        readiness is reported through :meth:`candidate_health`)."""

    def warmup(self, version: str, requests: int) -> None:
        """Send ``requests`` probe requests to the candidate."""

    def set_weights(self, stable: float, candidate: float) -> None:
        """Route live traffic in these percentages; the switch must be atomic."""

    def mirror(self, percent: float) -> None:
        """Mirror ``percent`` of live requests to the candidate (0 stops); mirrored replies
        are recorded and never returned to clients."""

    def stop_candidate(self, version: str) -> None:
        """Stop the candidate's instances."""

    def promote(self, version: str) -> None:
        """Make ``version`` the stable version (``champion`` alias) and retire the old one."""

    def rollback(self, reason: str) -> None:
        """Mark the release rolled back (traffic and instances are already restored)."""

    def record_step(self, release_id: str, record: StepRecord) -> None:
        """Append a finished step to the release's deployment record."""

    def candidate_health(self) -> str | None:
        """``None`` when the candidate is up and healthy, else the reason it is not."""

    def step_metrics(self, step: int, since: float) -> StepMetrics:
        """Counts of both versions since ``since`` (the step's start) for step ``step``."""


def perform(target: Target, action: Action) -> None:
    """Perform one action on ``target``."""
    match action:
        case StartCandidate(version=version):
            target.start_candidate(version)
        case Warmup(version=version, requests=requests):
            target.warmup(version, requests)
        case SetWeights(stable=stable, candidate=candidate):
            target.set_weights(stable, candidate)
        case Mirror(percent=percent):
            target.mirror(percent)
        case StopCandidate(version=version):
            target.stop_candidate(version)
        case Promote(version=version):
            target.promote(version)
        case Rollback(reason=reason):
            target.rollback(reason)
        case RecordStep(release_id=release_id, record=record):
            target.record_step(release_id, record)
        case _:
            raise TypeError(f"not a release action: {action!r}")


def perform_all(target: Target, actions: Iterable[Action]) -> None:
    """Perform ``actions`` in order; the first failure propagates (the driver turns it into
    a ``TargetFailed`` event)."""
    for action in actions:
        perform(target, action)
