"""The spine as plain steps: reproduce stages → register → review (gates, decision) → apply.

Each step is an ordinary function of ``Settings``; ``tasks/`` wraps them for Prefect and
``run_spine`` chains them without an orchestrator (``loopline run --no-prefect``). Deciding and
acting are separate: ``review_candidate`` only reads and computes, ``apply_review`` performs
what the decision names.
"""

from __future__ import annotations

import functools
import getpass
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopline import stages, versioning
from loopline.config import Settings
from loopline.evaluation.gates import GateResult, evaluate_gates
from loopline.fsutil import read_json
from loopline.governance.audit import AuditTrail
from loopline.registry.promotion import CandidateSummary, PromotionDecision, decide_promotion

Progress = Callable[[str], None]

CHAMPION = "champion"
CHALLENGER = "challenger"


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class Registration:
    name: str
    version: str
    run_id: str
    metrics: dict[str, float]
    reused: bool


@dataclass(frozen=True)
class Review:
    candidate: Registration
    champion_version: str | None
    gates: GateResult
    decision: PromotionDecision


@dataclass(frozen=True)
class SpineResult:
    stage_runs: tuple[versioning.StageRun, ...]
    registration: Registration
    review: Review
    pushed_files: int
    seconds: float
    step_seconds: dict[str, float] = field(default_factory=dict)


def audit_trail(settings: Settings) -> AuditTrail:
    return AuditTrail(settings.state_path / "audit.jsonl")


def actor() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user database entry (some containers)
        return "unknown"


def prepare_workspace(settings: Settings) -> None:
    """Create the state directory and make sure DVC is initialised with its remote."""
    settings.state_path.mkdir(parents=True, exist_ok=True)
    # The generate stage depends on the fresh-tickets folder, so it must exist (even empty).
    settings.path(settings.data.fresh_dir).mkdir(parents=True, exist_ok=True)
    versioning.ensure_repo(settings)


def run_stage(settings: Settings, stage: str) -> versioning.StageRun:
    """Bring one DVC stage up to date; a failed data validation raises the full report."""
    try:
        return versioning.reproduce(settings, stage)
    except versioning.StageError:
        if stage == "validate":
            from loopline.data.contracts import DataValidationError, ValidationReport

            report_path = settings.path(stages.VALIDATION_REPORT)
            if report_path.exists():
                report = ValidationReport.model_validate(read_json(report_path))
                if not report.success:
                    raise DataValidationError(report) from None
        raise


def register_candidate(settings: Settings) -> Registration:
    """Log the trained model with its lineage and register it, unless already registered.

    A model folder whose content fingerprint matches a registered version is that version:
    re-running the pipeline with nothing changed does not create a duplicate.
    """
    from loopline.registry.lineage import collect_lineage
    from loopline.registry.mlflow_registry import ModelRegistry

    model_dir = settings.path(stages.MODEL_DIR)
    registry = ModelRegistry(settings)
    lineage = collect_lineage(settings, model_dir)
    existing = registry.find_by_fingerprint(lineage.model_fingerprint)
    if existing is not None:
        return Registration(
            existing.name, existing.version, existing.run_id, dict(existing.metrics), True
        )
    train_report = read_json(settings.path(stages.TRAIN_REPORT))
    eval_report = read_json(settings.path(stages.EVAL_REPORT))
    params = {
        **{f"model.{k}": v for k, v in settings.model.tiny.model_dump().items()},
        **{
            f"training.{k}": v
            for k, v in settings.training.model_dump().items()
            if not isinstance(v, dict)
        },
        **{f"data.{k}": v for k, v in settings.data.model_dump().items() if k != "splits"},
        **{f"evaluation.{k}": v for k, v in settings.evaluation.model_dump().items()},
    }
    version = registry.log_and_register(
        model_dir=model_dir,
        train_report=train_report,
        eval_report=eval_report,
        lineage=lineage,
        params=params,
    )
    audit_trail(settings).append(
        action="register",
        subject=f"{version.name}/{version.version}",
        actor=actor(),
        details={"run_id": version.run_id, **lineage.as_tags()},
    )
    return Registration(version.name, version.version, version.run_id, dict(version.metrics), False)


def evaluate_champion(settings: Settings) -> dict[str, float] | None:
    """The champion's metrics on the checkout's current test split (None without one).

    The registry holds each version's metrics on the data it was trained with; after the
    data changed (fresh tickets), a candidate and the champion are only comparable on the
    same held-out split, so the champion is evaluated again on it.
    """
    from loopline.data.io import read_prepared
    from loopline.evaluation.metrics import evaluate_generator
    from loopline.models.base import load_generator
    from loopline.serving.model_store import ServingError, from_registry

    try:
        served = from_registry(settings, CHAMPION)
    except ServingError:
        return None
    cfg = settings.evaluation
    generator = load_generator(
        str(served.path), max_batch_size=cfg.batch_size, num_threads=cfg.num_threads or None
    )
    frames = read_prepared(settings.path(settings.data.prepared_dir))
    return dict(evaluate_generator(generator, frames["test"], cfg).metrics)


def review_candidate(
    settings: Settings,
    candidate: Registration,
    *,
    champion_metrics: dict[str, float] | None = None,
) -> Review:
    """Gates against thresholds and the current champion, then the promotion decision.

    ``champion_metrics`` replaces the champion's registered metrics (see
    :func:`evaluate_champion`)."""
    from loopline.registry.mlflow_registry import ModelRegistry

    champion = ModelRegistry(settings).get_by_alias(CHAMPION)
    champion_summary = (
        CandidateSummary(
            version=champion.version,
            metrics=dict(champion.metrics) if champion_metrics is None else champion_metrics,
        )
        if champion is not None
        else None
    )
    same = champion_summary is not None and champion_summary.version == candidate.version
    gates = evaluate_gates(
        candidate.metrics,
        None if same or champion_summary is None else champion_summary.metrics,
        settings.gates,
    )
    decision = decide_promotion(
        CandidateSummary(version=candidate.version, metrics=candidate.metrics),
        champion_summary,
        gates,
        settings.promotion,
    )
    return Review(
        candidate, champion_summary.version if champion_summary else None, gates, decision
    )


def apply_review(settings: Settings, review: Review, *, promote: bool = True) -> None:
    """Write the model card and perform what the decision names (alias moves + audit).

    ``promote=False`` (retraining by the monitor): a candidate the gates would promote is
    only approved for release (audit ``release_approved``); it becomes champion through a
    canary release, never straight from the review.
    """
    from loopline.registry.mlflow_registry import ModelRegistry
    from loopline.registry.model_card import render_model_card

    registry = ModelRegistry(settings)
    version = review.candidate.version
    if not review.candidate.reused:
        eval_report = read_json(settings.path(stages.EVAL_REPORT))
        train_report = read_json(settings.path(stages.TRAIN_REPORT))
        registered = registry.get_version(version)
        card = render_model_card(
            settings=settings,
            version=registered,
            train_report=train_report,
            eval_report=eval_report,
            gates=review.gates,
            decision=review.decision,
        )
        registry.log_model_card(version, card)
    action: str = review.decision.action
    if action == "promote" and not promote:
        action = "release_approved"
    if action == "promote":
        # Moves the old champion to `previous_champion` (the rollback target) first.
        registry.promote(version)
    # A reused version was already judged: record only what changed (a new promotion).
    if action in ("promote", "release_approved") or not review.candidate.reused:
        audit_trail(settings).append(
            action=action,
            subject=f"{review.candidate.name}/{version}",
            actor=actor(),
            details={
                "from_version": review.champion_version,
                "reasons": list(review.decision.reasons),
                "gates_passed": review.gates.passed,
            },
        )


def run_spine(settings: Settings, progress: Progress = _quiet) -> SpineResult:
    """The whole spine without an orchestrator, in the same order as the ``train`` flow."""
    start = time.perf_counter()
    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:  # records each step's wall time
        t0 = time.perf_counter()
        out = fn()
        timings[name] = time.perf_counter() - t0
        return out

    progress("preparing workspace")
    timed("prepare_workspace", lambda: prepare_workspace(settings))
    runs = []
    for stage in versioning.STAGES:
        run = timed(stage, functools.partial(run_stage, settings, stage))
        progress(f"stage {stage}: {'ran' if run.ran else 'up to date'} ({run.seconds:.1f}s)")
        runs.append(run)
    pushed = 0
    if settings.dvc.push:
        pushed = timed("push", lambda: versioning.push(settings))
        progress(f"pushed {pushed} file(s) to the DVC remote")
    registration = timed("register", lambda: register_candidate(settings))
    progress(
        f"{'reused' if registration.reused else 'registered'} "
        f"{registration.name} version {registration.version}"
    )
    review = timed("review", lambda: review_candidate(settings, registration))
    timed("apply", lambda: apply_review(settings, review))
    progress(f"decision: {review.decision.action}")
    return SpineResult(
        stage_runs=tuple(runs),
        registration=registration,
        review=review,
        pushed_files=pushed,
        seconds=time.perf_counter() - start,
        step_seconds=timings,
    )


def model_dir(settings: Settings) -> Path:
    return settings.path(stages.MODEL_DIR)
