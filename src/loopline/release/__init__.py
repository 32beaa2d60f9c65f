"""Safe releases: deployment strategies as pure state machines, and the canary analysis.

Pure and typed; no I/O, no clocks, no Prefect. A strategy (:mod:`.strategy`: canary,
blue/green, shadow) turns events (:mod:`.events`) into actions that a target performs
(:mod:`.target` defines the protocol every target implements). Canary verdicts come from a
sequential analysis with a controlled false-rollback rate (:mod:`.analysis`, which also holds
a fixed-threshold baseline for comparison); :mod:`.simulation` measures both on simulated
traffic. Deployment records (:mod:`.records`) are JSON-serialisable. Configuration models
are in :mod:`.policy`.
"""

from __future__ import annotations

from loopline.release.analysis import (
    ArmArrays,
    ArmMetrics,
    CanaryArrays,
    CanaryVerdict,
    MetricAnalysis,
    StepMetrics,
    ThresholdState,
    Verdict,
    analyze_canary,
    analyze_canary_arrays,
    latency_reference,
    threshold_check_arrays,
    threshold_verdict,
)
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
    CanaryAnalysisPolicy,
    CanaryPolicy,
    ReleaseConfig,
    ShadowPolicy,
    StrategyName,
    ThresholdPolicy,
)
from loopline.release.records import DeploymentRecord, ReleaseSpec, StepRecord
from loopline.release.strategy import (
    BlueGreenStrategy,
    CanaryStrategy,
    InvalidTransitionError,
    ReleaseState,
    ShadowStrategy,
    Strategy,
    Transition,
    make_strategy,
    replay,
)
from loopline.release.target import Target, perform, perform_all

__all__ = [
    "Action",
    "AnalysisResult",
    "ArmArrays",
    "ArmMetrics",
    "BlueGreenPolicy",
    "BlueGreenStrategy",
    "CanaryAnalysisPolicy",
    "CanaryArrays",
    "CanaryPolicy",
    "CanaryStrategy",
    "CanaryVerdict",
    "CandidateReady",
    "CandidateUnhealthy",
    "DeploymentRecord",
    "Event",
    "InvalidTransitionError",
    "ManualAbort",
    "MetricAnalysis",
    "Mirror",
    "Promote",
    "RecordStep",
    "ReleaseConfig",
    "ReleaseSpec",
    "ReleaseState",
    "Rollback",
    "SetWeights",
    "ShadowPolicy",
    "ShadowStrategy",
    "StartCandidate",
    "Started",
    "StepMetrics",
    "StepRecord",
    "StopCandidate",
    "Strategy",
    "StrategyName",
    "Target",
    "TargetFailed",
    "ThresholdPolicy",
    "ThresholdState",
    "Tick",
    "Transition",
    "Verdict",
    "Warmup",
    "analyze_canary",
    "analyze_canary_arrays",
    "latency_reference",
    "make_strategy",
    "perform",
    "perform_all",
    "replay",
    "threshold_check_arrays",
    "threshold_verdict",
]
