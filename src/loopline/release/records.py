"""What a release is and what it leaves behind: the spec, one record per step, the deployment
record. Frozen, JSON-serialisable (``to_dict``/``from_dict`` round-trip through ``json``).

The deployment record answers *who* released *what* (from/to version) *how* (strategy and its
policy), *when* (requested and finished) and *with which result*, and keeps every step's
verdict with its evidence. Targets append it to an append-only log; ``loopline status``
reads it back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from loopline.release.analysis import CanaryVerdict, Verdict
from loopline.release.policy import StrategyName

StepKind = Literal["start", "canary", "check", "bake", "shadow"]
Outcome = Literal["promoted", "rolled_back", "aborted", "passed"]


@dataclass(frozen=True)
class ReleaseSpec:
    """A requested release: ``candidate_version`` replaces ``stable_version``."""

    release_id: str
    candidate_version: str
    stable_version: str
    requested_by: str

    def __post_init__(self) -> None:
        for name in ("release_id", "candidate_version", "stable_version", "requested_by"):
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")
        if self.candidate_version == self.stable_version:
            raise ValueError(f"candidate and stable are the same version {self.stable_version!r}")


@dataclass(frozen=True)
class StepRecord:
    """How one step of a release ended.

    ``kind``: ``start`` (the candidate did not come up), ``canary`` (an analysed traffic
    step), ``check`` (blue/green checks before the switch), ``bake`` (blue/green after the
    switch), ``shadow`` (mirrored traffic). ``analysis`` is the verdict that decided the step
    when there was one (a failure or an abort has only ``reasons``).
    """

    step: int
    kind: StepKind
    candidate_weight: float
    mirror_percent: float
    started_at: float | None
    decided_at: float
    verdict: Verdict
    reasons: tuple[str, ...]
    analysis: CanaryVerdict | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["reasons"] = list(self.reasons)
        out["analysis"] = None if self.analysis is None else self.analysis.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepRecord:
        fields = dict(data)
        fields["reasons"] = tuple(fields["reasons"])
        analysis = fields.get("analysis")
        fields["analysis"] = None if analysis is None else CanaryVerdict.from_dict(analysis)
        return cls(**fields)


@dataclass(frozen=True)
class DeploymentRecord:
    """The account of one release (in progress while ``outcome`` is ``None``)."""

    release_id: str
    strategy: StrategyName
    from_version: str
    to_version: str
    requested_by: str
    requested_at: float | None
    finished_at: float | None
    phase: str
    outcome: Outcome | None
    reason: str | None
    steps: tuple[StepRecord, ...]
    policy: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "release_id": self.release_id,
            "strategy": self.strategy,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "requested_by": self.requested_by,
            "requested_at": self.requested_at,
            "finished_at": self.finished_at,
            "phase": self.phase,
            "outcome": self.outcome,
            "reason": self.reason,
            "steps": [s.to_dict() for s in self.steps],
            "policy": dict(self.policy),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeploymentRecord:
        fields = dict(data)
        fields["steps"] = tuple(StepRecord.from_dict(s) for s in fields["steps"])
        fields["policy"] = dict(fields.get("policy", {}))
        return cls(**fields)

    def to_json(self) -> str:
        """One line of strict JSON (no NaN/Infinity), keys sorted."""
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, line: str) -> DeploymentRecord:
        return cls.from_dict(json.loads(line))
