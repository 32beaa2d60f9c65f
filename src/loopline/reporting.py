"""Plain summaries of a spine run and of the registry state, for the CLI and flow results."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from loopline.versioning import StageRun
from loopline.workflow import Registration, Review

SHOWN_METRICS = (
    "intent_accuracy",
    "rouge_l",
    "chrf",
    "semantic_similarity",
    "latency_p95_ms",
    "tokens_per_s",
)


def spine_summary(
    runs: Iterable[StageRun], candidate: Registration, review: Review, pushed: int
) -> dict[str, Any]:
    """A JSON-serialisable account of one spine run."""
    return {
        "stages": {r.stage: {"ran": r.ran, "seconds": round(r.seconds, 3)} for r in runs},
        "pushed_files": pushed,
        "model": candidate.name,
        "version": candidate.version,
        "run_id": candidate.run_id,
        "reused_version": candidate.reused,
        "metrics": {k: candidate.metrics[k] for k in SHOWN_METRICS if k in candidate.metrics},
        "gates_passed": review.gates.passed,
        "gates": [
            {"gate": c.name, "passed": c.passed, "message": c.message} for c in review.gates.checks
        ],
        "decision": review.decision.action,
        "reasons": list(review.decision.reasons),
        "champion_before": review.champion_version,
    }


def format_metrics(metrics: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={metrics[k]:.3f}" for k in SHOWN_METRICS if k in metrics)


def format_summary(summary: Mapping[str, Any]) -> str:
    lines = ["", "Loopline spine"]
    for stage, info in summary["stages"].items():
        state = "ran" if info["ran"] else "up to date"
        lines.append(f"  stage {stage:<9} {state:<11} {info['seconds']:7.1f}s")
    verb = "reused" if summary["reused_version"] else "registered"
    lines.append(f"  model     {summary['model']} version {summary['version']} ({verb})")
    lines.append(f"  metrics   {format_metrics(summary['metrics'])}")
    for gate in summary["gates"]:
        lines.append(f"  gate      {'pass' if gate['passed'] else 'FAIL'}  {gate['message']}")
    reasons = "; ".join(summary["reasons"])
    lines.append(f"  decision  {summary['decision']}: {reasons}")
    return "\n".join(lines)
