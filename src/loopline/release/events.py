"""The vocabulary between strategies and targets: events in, actions out.

**Events** tell a strategy what happened; each carries its time ``at`` (seconds on the
driver's clock) because strategies have no clock of their own. **Actions** are data objects
a target performs, in order (:func:`loopline.release.target.perform`). Both are frozen
dataclasses, so transitions can be compared, logged and replayed.
"""

from __future__ import annotations

from dataclasses import dataclass

from loopline.release.analysis import CanaryVerdict
from loopline.release.records import StepRecord

# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Started:
    """The release was requested: start the candidate."""

    at: float


@dataclass(frozen=True)
class CandidateReady:
    """The candidate's instances are up and pass their health check."""

    at: float


@dataclass(frozen=True)
class AnalysisResult:
    """A verdict on the current step (sequential analysis, threshold baseline or checks)."""

    verdict: CanaryVerdict
    at: float


@dataclass(frozen=True)
class TargetFailed:
    """The target could not perform an action (router, process manager, cluster API)."""

    reason: str
    at: float


@dataclass(frozen=True)
class CandidateUnhealthy:
    """The candidate died or fails its health checks."""

    reason: str
    at: float


@dataclass(frozen=True)
class ManualAbort:
    """An operator stops the release (``loopline rollback``); traffic returns to stable."""

    reason: str
    by: str
    at: float


@dataclass(frozen=True)
class Tick:
    """Time passed (drives time-based transitions such as the end of a blue/green bake)."""

    at: float


Event = (
    Started
    | CandidateReady
    | AnalysisResult
    | TargetFailed
    | CandidateUnhealthy
    | ManualAbort
    | Tick
)

# --------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class StartCandidate:
    """Start the candidate's instances without live traffic; report ``CandidateReady`` (or
    ``CandidateUnhealthy`` / ``TargetFailed``)."""

    version: str


@dataclass(frozen=True)
class Warmup:
    """Send ``requests`` probe requests to the candidate (not live traffic) to warm it."""

    version: str
    requests: int


@dataclass(frozen=True)
class SetWeights:
    """Route live traffic: percent to stable and candidate, switched atomically."""

    stable: float
    candidate: float

    def __post_init__(self) -> None:
        if min(self.stable, self.candidate) < 0 or abs(self.stable + self.candidate - 100) > 1e-9:
            raise ValueError(
                f"weights must be non-negative and sum to 100, got {self.stable}/{self.candidate}"
            )


@dataclass(frozen=True)
class Mirror:
    """Copy ``percent`` of live requests to the candidate; record and compare its replies,
    never return them. ``Mirror(0)`` stops mirroring."""

    percent: float

    def __post_init__(self) -> None:
        if not 0 <= self.percent <= 100:
            raise ValueError(f"mirror percent must lie in [0, 100], got {self.percent}")


@dataclass(frozen=True)
class StopCandidate:
    """Stop the candidate's instances (after traffic has left them)."""

    version: str


@dataclass(frozen=True)
class Promote:
    """The candidate becomes the stable version: move the ``champion`` alias, label its
    instances stable and retire the old stable's instances."""

    version: str


@dataclass(frozen=True)
class Rollback:
    """The release failed: mark it rolled back (traffic and instances were already restored
    by the preceding actions)."""

    reason: str


@dataclass(frozen=True)
class RecordStep:
    """Append the record of a finished step to the release's deployment record."""

    release_id: str
    record: StepRecord


Action = (
    StartCandidate | Warmup | SetWeights | Mirror | StopCandidate | Promote | Rollback | RecordStep
)
