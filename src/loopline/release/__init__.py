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

from typing import TYPE_CHECKING

from loopline.lazy import lazy_getattr

# Exports load on first use (PEP 562): the configuration imports the policy models, and
# should not pay for scipy and the analysis code it does not need.
_EXPORTS: dict[str, str] = {
    "Action": "loopline.release.events",
    "AnalysisResult": "loopline.release.events",
    "ArmArrays": "loopline.release.analysis",
    "ArmMetrics": "loopline.release.analysis",
    "BlueGreenPolicy": "loopline.release.policy",
    "BlueGreenStrategy": "loopline.release.strategy",
    "CanaryAnalysisPolicy": "loopline.release.policy",
    "CanaryArrays": "loopline.release.analysis",
    "CanaryPolicy": "loopline.release.policy",
    "CanaryStrategy": "loopline.release.strategy",
    "CanaryVerdict": "loopline.release.analysis",
    "CandidateReady": "loopline.release.events",
    "CandidateUnhealthy": "loopline.release.events",
    "DeploymentRecord": "loopline.release.records",
    "Event": "loopline.release.events",
    "InvalidTransitionError": "loopline.release.strategy",
    "ManualAbort": "loopline.release.events",
    "MetricAnalysis": "loopline.release.analysis",
    "Mirror": "loopline.release.events",
    "Promote": "loopline.release.events",
    "RecordStep": "loopline.release.events",
    "ReleaseConfig": "loopline.release.policy",
    "ReleaseSpec": "loopline.release.records",
    "ReleaseState": "loopline.release.strategy",
    "Rollback": "loopline.release.events",
    "SetWeights": "loopline.release.events",
    "ShadowPolicy": "loopline.release.policy",
    "ShadowStrategy": "loopline.release.strategy",
    "StartCandidate": "loopline.release.events",
    "Started": "loopline.release.events",
    "StepMetrics": "loopline.release.analysis",
    "StepRecord": "loopline.release.records",
    "StopCandidate": "loopline.release.events",
    "Strategy": "loopline.release.strategy",
    "StrategyName": "loopline.release.policy",
    "Target": "loopline.release.target",
    "TargetFailed": "loopline.release.events",
    "ThresholdPolicy": "loopline.release.policy",
    "ThresholdState": "loopline.release.analysis",
    "Tick": "loopline.release.events",
    "Transition": "loopline.release.strategy",
    "Verdict": "loopline.release.analysis",
    "Warmup": "loopline.release.events",
    "analyze_canary": "loopline.release.analysis",
    "analyze_canary_arrays": "loopline.release.analysis",
    "latency_reference": "loopline.release.analysis",
    "make_strategy": "loopline.release.strategy",
    "perform": "loopline.release.target",
    "perform_all": "loopline.release.target",
    "replay": "loopline.release.strategy",
    "threshold_check_arrays": "loopline.release.analysis",
    "threshold_verdict": "loopline.release.analysis",
}


__getattr__ = lazy_getattr(__name__, _EXPORTS)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
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
