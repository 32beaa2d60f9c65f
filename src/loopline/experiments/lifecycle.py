"""Experiments as operations: create, status, analyze, decide and act, rollouts of flags.

The side-effect layer around the pure package (no Prefect here; ``tasks/experiments.py``
wraps these functions for the flow). State lives under ``<state>/experiments/``:

* ``<name>/record.json``: the experiment (spec, served variants with their resolved prompt
  templates, status, routes, MLflow run, analyses and the outcome);
* ``<name>/analyses/<stamp>/``: ``report.json``, ``report.html`` and ``units.csv`` per
  analysis (also logged to the MLflow experiment ``<tracking.experiment>-experiments``);
* ``rollouts.json``: the step each guarded flag rollout is at; ``default.json``: the prompt
  and parameters a shipped variant made everyone's default;
* the **serving plan** (``serving.experiments_plan``): what the model servers and the router
  evaluate per request (:mod:`loopline.experiments.runtime`), rewritten atomically under a
  lock after every change and validated before it is written, so a bad change leaves the
  running plan untouched.

Every start, ship, stop and roll-back lands in the audit trail.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loopline.config import Settings
from loopline.experiments.policy import (
    DecisionPolicy,
    ExperimentSpec,
    FlagSpec,
    MetricSpec,
    VariantSpec,
)
from loopline.experiments.runtime import (
    ServedExperiment,
    ServedVariant,
    ServingPlan,
    check_template,
)
from loopline.fsutil import read_json, write_json

Status = Literal["running", "shipped", "stopped", "rolled_back"]
ACTOR = "loopline-experiments"
Progress = Callable[[str], None]


class ExperimentError(ValueError):
    """A bad experiment request; the message names the experiment and the field."""


def _quiet(_: str) -> None:
    pass


# --------------------------------------------------------------------------- records


class ExperimentRecord(BaseModel):
    """One experiment's durable state."""

    model_config = ConfigDict(extra="forbid")

    name: str
    spec: ExperimentSpec
    variants: tuple[ServedVariant, ...]
    routes: dict[str, Literal["stable", "candidate"]] = Field(default_factory=dict)
    candidate_version: str | None = None
    status: Status = "running"
    created_at: float
    ended_at: float | None = None
    outcome: dict[str, Any] | None = None
    mlflow_run_id: str | None = None
    analyses: list[dict[str, Any]] = Field(default_factory=list)
    allocations: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.status == "running"

    def served(self) -> ServedExperiment:
        return ServedExperiment(spec=self.spec, variants=self.variants, routes=self.routes)


def experiments_dir(settings: Settings) -> Path:
    return settings.state_path / "experiments"


def plan_path(settings: Settings) -> Path:
    return settings.path(settings.serving.experiments_plan)


def _record_path(settings: Settings, name: str) -> Path:
    return experiments_dir(settings) / name / "record.json"


def load_record(settings: Settings, name: str) -> ExperimentRecord:
    path = _record_path(settings, name)
    if not path.is_file():
        known = ", ".join(r.name for r in list_records(settings)) or "none"
        raise ExperimentError(f"no experiment named {name!r} (known: {known})")
    return ExperimentRecord.model_validate(read_json(path))


def list_records(settings: Settings) -> list[ExperimentRecord]:
    base = experiments_dir(settings)
    out = [
        ExperimentRecord.model_validate(read_json(p))
        for p in sorted(base.glob("*/record.json"))
        if p.is_file()
    ]
    return sorted(out, key=lambda r: r.created_at)


def _save(settings: Settings, record: ExperimentRecord) -> None:
    write_json(record.model_dump(mode="json"), _record_path(settings, record.name))


@contextlib.contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    base = experiments_dir(settings)
    base.mkdir(parents=True, exist_ok=True)
    with (base / ".lock").open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _audit(settings: Settings, action: str, subject: str, details: dict[str, Any]) -> None:
    from loopline.governance.audit import AuditTrail

    AuditTrail.for_settings(settings).append(action, subject, ACTOR, details)


# --------------------------------------------------------------------------- the plan


class Rollout(BaseModel):
    """Where a guarded flag rollout stands (``step`` -1: rolled back)."""

    model_config = ConfigDict(extra="forbid")

    flag: str
    step: int
    since: float
    history: list[dict[str, Any]] = Field(default_factory=list)


def _rollouts(settings: Settings) -> dict[str, Rollout]:
    path = experiments_dir(settings) / "rollouts.json"
    if not path.is_file():
        return {}
    return {k: Rollout.model_validate(v) for k, v in read_json(path).items()}


def _default(settings: Settings) -> ServedVariant | None:
    path = experiments_dir(settings) / "default.json"
    return ServedVariant.model_validate(read_json(path)) if path.is_file() else None


def _flags(settings: Settings, rollouts: Mapping[str, Rollout]) -> tuple[FlagSpec, ...]:
    from loopline.experiments.flags import rollout_percentage, with_rollout

    schedule = settings.experiments.rollout
    out = []
    for flag in settings.experiments.flags:
        state = rollouts.get(flag.key)
        step = None if state is None else rollout_percentage(schedule, state.step)
        out.append(flag if step is None else with_rollout(flag, step))
    return tuple(out)


def compile_plan(
    settings: Settings,
    records: Sequence[ExperimentRecord],
    *,
    rollouts: Mapping[str, Rollout] | None = None,
    default: ServedVariant | None = None,
    generation: int = 0,
) -> ServingPlan:
    """The serving plan of the running ``records``, the configured flags (at their rollout
    steps) and the shipped default; raises :class:`ExperimentError` if they conflict."""
    try:
        return ServingPlan(
            generation=generation,
            layers=settings.experiments.layers,
            experiments=tuple(r.served() for r in records if r.running),
            flags=_flags(settings, rollouts or {}),
            default=default,
        )
    except (ValidationError, ValueError) as exc:
        raise ExperimentError(f"the serving plan would be invalid: {exc}") from None


def read_plan(settings: Settings) -> ServingPlan | None:
    path = plan_path(settings)
    return ServingPlan.model_validate(read_json(path)) if path.is_file() else None


def _write_plan(settings: Settings, plan: ServingPlan) -> ServingPlan:
    current = read_plan(settings)
    plan = plan.model_copy(update={"generation": (current.generation + 1) if current else 1})
    write_json(plan.model_dump(mode="json"), plan_path(settings))
    return plan


def _plan_with(
    settings: Settings,
    records: Sequence[ExperimentRecord] | None = None,
    rollouts: Mapping[str, Rollout] | None = None,
) -> ServingPlan:
    """The plan of the stored state with ``records``/``rollouts`` standing in for the stored
    ones (a change validated before anything is saved); the caller holds the lock."""
    return compile_plan(
        settings,
        list_records(settings) if records is None else records,
        rollouts=_rollouts(settings) if rollouts is None else rollouts,
        default=_default(settings),
    )


def publish_plan(settings: Settings) -> ServingPlan:
    """Recompile the plan from the stored state and write it (servers pick it up)."""
    with _locked(settings):
        return _write_plan(settings, _plan_with(settings))


# --------------------------------------------------------------------------- creation


def resolve_prompt(settings: Settings, ref: str, where: str) -> tuple[str, str]:
    """``(name/version, template)`` of a prompt-registry reference ``name/version`` or
    ``name@alias``; errors name ``where``."""
    from mlflow.exceptions import MlflowException

    from loopline.registry.mlflow_registry import _mlflow_uris

    if "/" not in ref and "@" not in ref:
        raise ExperimentError(f"{where}: expected 'name/version' or 'name@alias', got {ref!r}")
    with _mlflow_uris(settings.tracking_uri, settings.registry_uri):
        import mlflow

        try:
            prompt = mlflow.genai.load_prompt(f"prompts:/{ref}")
        except MlflowException as exc:
            raise ExperimentError(f"{where}: prompt {ref!r} not found: {exc.message}") from None
    try:
        template = check_template(str(prompt.template), where)
    except ValueError as exc:
        raise ExperimentError(str(exc)) from None
    return f"{prompt.name}/{prompt.version}", template


def register_prompt(settings: Settings, name: str, template: str, message: str = "") -> str:
    """Register a prompt template version (``{{ message }}`` wraps the customer message);
    returns ``name/version``."""
    from loopline.registry.mlflow_registry import _mlflow_uris

    try:
        check_template(template, f"prompt {name!r}")
    except ValueError as exc:
        raise ExperimentError(str(exc)) from None
    with _mlflow_uris(settings.tracking_uri, settings.registry_uri):
        import mlflow

        prompt = mlflow.genai.register_prompt(name=name, template=template, commit_message=message)
    return f"{prompt.name}/{prompt.version}"


def _served_variant(settings: Settings, exp: str, v: VariantSpec) -> ServedVariant:
    where = f"experiment {exp!r} variant {v.name!r}"
    prompt_version = template = None
    if v.prompt_version is not None:
        prompt_version, template = resolve_prompt(settings, v.prompt_version, f"{where}.prompt")
    if v.model_version is not None:
        from loopline.registry.mlflow_registry import ModelRegistry

        try:
            ModelRegistry(settings).get_version(v.model_version)
        except Exception as exc:
            raise ExperimentError(
                f"{where}.model_version: version {v.model_version!r} is not in the registry "
                f"({type(exc).__name__})"
            ) from None
    try:
        return ServedVariant(
            name=v.name,
            model_version=v.model_version,
            prompt_version=prompt_version,
            prompt_template=template,
            params=dict(v.params),
        )
    except ValidationError as exc:
        raise ExperimentError(f"{where}: {exc.errors()[0]['msg']}") from None


def _routes(
    settings: Settings, spec: ExperimentSpec, variants: Sequence[ServedVariant]
) -> tuple[dict[str, Literal["stable", "candidate"]], str | None]:
    """Backend roles of model-pinning variants: the stable server's version stays on stable,
    one other version becomes the candidate (started by :func:`create`)."""
    pinned = {v.name: v.model_version for v in variants if v.model_version is not None}
    if not pinned:
        return {}, None
    from loopline.deploy.stack import load_stack

    stack = load_stack(settings)
    if stack.stable is None or stack.router is None:
        raise ExperimentError(
            f"experiment {spec.name!r}: variants {sorted(pinned)} pin model versions, which the "
            "router places; no deployment is running (start one with `loopline deploy`)"
        )
    others = sorted({ver for ver in pinned.values() if ver != stack.stable.version})
    if len(others) > 1:
        raise ExperimentError(
            f"experiment {spec.name!r}: at most one model version besides the stable "
            f"v{stack.stable.version} can be compared at a time, got {others}"
        )
    if others and stack.candidate is not None and stack.candidate.version != others[0]:
        raise ExperimentError(
            f"experiment {spec.name!r}: candidate v{stack.candidate.version} is running "
            "(a release is in progress); finish it first"
        )
    routes: dict[str, Literal["stable", "candidate"]] = {
        name: ("stable" if ver == stack.stable.version else "candidate")
        for name, ver in pinned.items()
    }
    return routes, (others[0] if others else None)


def _start_candidate(settings: Settings, version: str) -> None:
    from dataclasses import replace

    from loopline.deploy.stack import (
        DeployError,
        load_stack,
        save_stack,
        start_server,
        stop_pid,
        wait_ready,
    )

    stack = load_stack(settings)
    if stack.candidate is not None and stack.candidate.version == version:
        return
    from loopline.routing.client import RouterAdmin

    server = start_server(settings, version, "candidate")
    try:
        wait_ready(server)
        assert stack.router is not None and stack.stable is not None
        # the router knows the candidate at weight 0: only the plan's routes send users to it
        with RouterAdmin(stack.router.admin_url) as admin:
            admin.set_backends(stack.stable.url, server.url)
    except (DeployError, RuntimeError) as exc:
        stop_pid(server.pid)
        raise ExperimentError(f"candidate v{version} could not be started: {exc}") from None
    save_stack(settings, replace(load_stack(settings), candidate=server))


def _stop_candidate(settings: Settings, version: str | None) -> bool:
    """Stop the candidate server of ``version`` unless a running experiment still routes to
    it; returns whether it was stopped."""
    from dataclasses import replace

    from loopline.deploy.stack import load_stack, save_stack, stop_pid
    from loopline.routing.client import RouterAdmin

    stack = load_stack(settings)
    if version is None or stack.candidate is None or stack.candidate.version != version:
        return False
    if any(r.running and r.candidate_version == version for r in list_records(settings)):
        return False
    if stack.router is not None and stack.stable is not None:
        with RouterAdmin(stack.router.admin_url) as admin:
            admin.set_backends(stack.stable.url, None)
    stop_pid(stack.candidate.pid)
    save_stack(settings, replace(stack, candidate=None))
    return True


def definition(settings: Settings, name: str) -> ExperimentSpec:
    """The experiment ``name`` as configured under ``experiments.experiments``."""
    for spec in settings.experiments.experiments:
        if spec.name == name:
            return spec
    known = ", ".join(s.name for s in settings.experiments.experiments) or "none"
    raise ExperimentError(f"experiment {name!r} is not configured (configured: {known})")


def create(
    settings: Settings,
    spec: ExperimentSpec,
    *,
    now: float | None = None,
    progress: Progress = _quiet,
) -> ExperimentRecord:
    """Validate, resolve and start ``spec``: prompts from the registry, model versions
    checked, the candidate server started for a model variant, the plan republished. On any
    error nothing is written (and a started candidate is stopped again)."""
    now = time.time() if now is None else now
    if settings.experiments.decision is None:
        raise ExperimentError("experiments.decision is not configured (primary metric, ...)")
    existing = _record_path(settings, spec.name)
    if existing.is_file():
        old = ExperimentRecord.model_validate(read_json(existing))
        raise ExperimentError(
            f"experiment {spec.name!r} already exists ({old.status}); names are never reused "
            "so its history stays readable: pick a new name"
        )
    variants = tuple(_served_variant(settings, spec.name, v) for v in spec.variants)
    routes, candidate = _routes(settings, spec, variants)
    record = ExperimentRecord(
        name=spec.name,
        spec=spec,
        variants=variants,
        routes=routes,
        candidate_version=candidate,
        created_at=now,
    )
    with _locked(settings):
        running = [r for r in list_records(settings) if r.running]
        plan = _plan_with(settings, [*running, record])
        if candidate is not None:
            progress(f"starting candidate v{candidate} for {spec.name}")
            _start_candidate(settings, candidate)
        try:
            record.mlflow_run_id = _start_mlflow_run(settings, record)
            _save(settings, record)
            _write_plan(settings, plan)
        except BaseException:
            path = _record_path(settings, spec.name)
            path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # created by _save; empty again
            if record.mlflow_run_id is not None:
                _discard_run(settings, record.mlflow_run_id)
            _stop_candidate(settings, candidate)
            raise
    _audit(
        settings,
        "experiment_started",
        spec.name,
        {
            "variants": [v.model_dump(exclude={"prompt_template"}) for v in variants],
            "routes": routes,
            "mlflow_run_id": record.mlflow_run_id,
        },
    )
    progress(f"experiment {spec.name} running: {', '.join(spec.variant_names)}")
    return record


# --------------------------------------------------------------------------- MLflow


def _client(settings: Settings) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)


def _mlflow_experiment(settings: Settings, client: Any) -> str:
    name = f"{settings.tracking.experiment}-experiments"
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    return str(client.create_experiment(name, artifact_location=settings.artifact_location))


def _start_mlflow_run(settings: Settings, record: ExperimentRecord) -> str:
    """The experiment's parent run: its spec as params; analyses are child runs."""
    from mlflow.entities import Param, RunTag

    from loopline.registry.mlflow_registry import _mlflow_uris

    with _mlflow_uris(settings.tracking_uri, settings.registry_uri):
        client = _client(settings)
        run = client.create_run(
            _mlflow_experiment(settings, client),
            run_name=record.name,
            tags={"loopline.kind": "experiment"},
        )
        params = [Param("control", record.spec.control_name)]
        for v in record.variants:
            params.append(Param(f"variant.{v.name}", _variant_text(v)))
        params.append(Param("holdout", str(record.spec.holdout)))
        client.log_batch(run.info.run_id, params=params, tags=[RunTag("status", "running")])
    return str(run.info.run_id)


def _discard_run(settings: Settings, run_id: str) -> None:
    """Delete the parent run of an experiment whose creation failed (best effort)."""
    from loopline.registry.mlflow_registry import _mlflow_uris

    with (
        contextlib.suppress(Exception),
        _mlflow_uris(settings.tracking_uri, settings.registry_uri),
    ):
        _client(settings).delete_run(run_id)


def _variant_text(v: ServedVariant) -> str:
    parts = []
    if v.model_version:
        parts.append(f"model=v{v.model_version}")
    if v.prompt_version:
        parts.append(f"prompt={v.prompt_version}")
    parts.extend(f"{k}={val}" for k, val in sorted(v.params.items()))
    return ", ".join(parts) or "default"


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _log_analysis(
    settings: Settings, record: ExperimentRecord, analysis: Analysis, files: Sequence[Path]
) -> str:
    from mlflow.entities import Metric, RunTag

    from loopline.registry.mlflow_registry import _mlflow_uris

    ts = int(analysis.at * 1000)
    metrics: dict[str, float] = {"srm_p_value": analysis.result.srm.p_value}
    for name, n in analysis.result.units.items():
        metrics[f"units.{name}"] = float(n)
    for m in analysis.result.metrics:
        key = f"{m.metric}.{m.variant}"
        for label, value in (
            ("relative_difference", m.relative_difference),
            ("ci_low", m.relative_ci_low),
            ("ci_high", m.relative_ci_high),
            ("p_value", m.p_value),
            ("adjusted_p_value", m.adjusted_p_value),
            ("prob_beat_control", m.prob_beat_control),
        ):
            if _finite(value):
                metrics[f"{key}.{label}"] = float(value)
    with _mlflow_uris(settings.tracking_uri, settings.registry_uri):
        client = _client(settings)
        tags = {
            "loopline.kind": "experiment-analysis",
            "loopline.experiment": record.name,
            "decision": analysis.decision.action,
        }
        if record.mlflow_run_id:
            tags["mlflow.parentRunId"] = record.mlflow_run_id
        run = client.create_run(
            _mlflow_experiment(settings, client), run_name=f"{record.name}-{analysis.stamp}"
        )
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, ts, 0) for k, v in metrics.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        for path in files:
            client.log_artifact(run.info.run_id, str(path))
        client.set_terminated(run.info.run_id)
        if record.mlflow_run_id:  # the parent shows the latest state
            client.log_batch(
                record.mlflow_run_id,
                metrics=[Metric(k, v, ts, len(record.analyses)) for k, v in metrics.items()],
                tags=[RunTag("decision", analysis.decision.action)],
            )
    return str(run.info.run_id)


# --------------------------------------------------------------------------- analysis


@dataclass
class Analysis:
    """One analysis of one experiment and where its report went."""

    record: ExperimentRecord
    at: float
    stamp: str
    units: Any  # loopline.experiments.logs.UnitData
    result: Any  # ExperimentResult
    decision: Any  # Decision
    report_dir: Path | None = None
    run_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        r, d = self.result, self.decision
        return {
            "experiment": self.record.name,
            "status": self.record.status,
            "analysed_at": self.at,
            "units": dict(r.units),
            "requests": self.units.requests,
            "conflicting_units": self.units.conflicting_units,
            "srm": {"p_value": r.srm.p_value, "mismatch": r.srm.mismatch},
            "decision": {
                "action": d.action,
                "variant": d.variant,
                "affected": list(d.affected),
                "reasons": list(d.reasons),
                "alerts": list(d.alerts),
                "valid": d.valid,
                # per treatment, what the cost recommendations read (loopline.cost.operations)
                "verdicts": [
                    {
                        "variant": v.variant,
                        "status": v.status,
                        "primary_improvement": v.primary_improvement,
                        "primary_interval": (
                            list(v.primary_interval) if v.primary_interval is not None else None
                        ),
                        "cost_difference": v.cost_difference,
                        "breached_guardrails": list(v.breached_guardrails),
                        "pending_guardrails": list(v.pending_guardrails),
                    }
                    for v in d.verdicts
                ],
            },
            "metrics": [
                {
                    "metric": m.metric,
                    "variant": m.variant,
                    "control_value": m.control_value,
                    "treatment_value": m.treatment_value,
                    "relative_difference": m.relative_difference,
                    "relative_ci": [m.relative_ci_low, m.relative_ci_high],
                    "p_value": m.p_value,
                    "adjusted_p_value": m.adjusted_p_value,
                    "interval": m.interval,
                    "method": m.method,
                    "prob_beat_control": m.prob_beat_control,
                }
                for m in r.metrics
            ],
            "report_dir": str(self.report_dir) if self.report_dir else None,
            "mlflow_run_id": self.run_id,
        }


def _metrics(settings: Settings) -> tuple[MetricSpec, ...]:
    metrics = settings.experiments.metrics
    if not metrics:
        raise ExperimentError("experiments.metrics is empty: nothing to analyse")
    return metrics


def _policy(settings: Settings) -> DecisionPolicy:
    policy = settings.experiments.decision
    if policy is None:
        raise ExperimentError("experiments.decision is not configured")
    return policy


def load_units(settings: Settings, record: ExperimentRecord, *, arm_of: str | None = None) -> Any:
    """The per-unit table of ``record`` from the request logs and the feedback log."""
    from loopline.experiments.logs import events_frame, unit_table
    from loopline.monitoring.dataset import read_feedback
    from loopline.monitoring.monitor import monitoring_dir
    from loopline.serving.request_log import read_request_logs

    entries = read_request_logs(settings.path(settings.serving.request_log_dir))
    ratings = read_feedback(monitoring_dir(settings) / "feedback")
    exposed, pre = events_frame(
        entries, arm_of or record.name, ratings=ratings, started_at=record.created_at
    )
    return unit_table(exposed, pre)


def _check_columns(frame: Any, metrics: Sequence[MetricSpec]) -> None:
    need = set()
    for m in metrics:
        for col in (m.column, m.numerator, m.denominator, m.covariate):
            if col:
                need.add(col)
    missing = sorted(need - set(frame.columns))
    if missing:
        raise ExperimentError(
            f"experiments.metrics name columns the unit table does not have: {missing} "
            f"(available: {sorted(frame.columns)})"
        )


def analyze(
    settings: Settings,
    name: str,
    *,
    now: float | None = None,
    write: bool = True,
    log_mlflow: bool = True,
) -> Analysis:
    """Analyse experiment ``name`` from the logs; write its report and log it to MLflow."""
    from loopline.experiments.analysis import analyze_experiment
    from loopline.experiments.decision import decide_experiment

    now = time.time() if now is None else now
    record = load_record(settings, name)
    metrics, policy = _metrics(settings), _policy(settings)
    units = load_units(settings, record)
    _check_columns(units.frame, metrics)
    spec = record.spec
    weights = spec.expected_weights
    thompson = spec.allocation == "thompson"
    if thompson:
        reward = settings.experiments.bandit.reward_column
        if reward not in units.frame.columns:
            raise ExperimentError(
                f"experiments.bandit.reward_column {reward!r} is not a unit-table column"
            )
        # the allocation moved with the posteriors: a fixed expected split does not exist
        counts = units.frame["variant"].value_counts()
        total = max(int(counts.sum()), 1)
        weights = {v: max(int(counts.get(v, 0)), 1) / total for v in spec.variant_names}
    result = analyze_experiment(
        units.frame,
        metrics,
        experiment=name,
        control=spec.control_name,
        expected_weights=weights,
        config=settings.experiments.analysis,
    )
    if thompson:
        from loopline.experiments.decision import bandit_state, decide_bandit

        rewarded = units.frame.groupby("variant")[reward].sum().to_dict()
        bandit = bandit_state(spec.variant_names, result.units, rewarded)
        decision = decide_bandit(result, bandit, policy, settings.experiments.bandit)
    else:
        decision = decide_experiment(result, policy)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"-{int(now * 1000) % 1000:03d}"
    analysis = Analysis(record, now, stamp, units, result, decision)
    if write:
        _write_analysis(settings, analysis, metrics, log_mlflow=log_mlflow)
    return analysis


def _write_analysis(
    settings: Settings, analysis: Analysis, metrics: Sequence[MetricSpec], *, log_mlflow: bool
) -> None:
    from loopline.experiments.report import render_report, sequential_timeline

    record, result = analysis.record, analysis.result
    out = experiments_dir(settings) / record.name / "analyses" / analysis.stamp
    out.mkdir(parents=True, exist_ok=True)
    config = settings.experiments.analysis
    primary = _policy(settings).primary_metric
    timelines = []
    if config.sequential is not None:
        for spec in metrics:
            if spec.name != primary or spec.kind == "ratio":
                continue
            for variant in result.treatments:
                timelines.append(
                    sequential_timeline(
                        analysis.units.frame,
                        spec,
                        control=result.control,
                        variant=variant,
                        config=config,
                        order="first_seen",
                    )
                )
    html = render_report(
        result,
        decision=analysis.decision,
        timelines=timelines,
        context={
            "experiment": record.name,
            "status": record.status,
            "variants": "; ".join(f"{v.name}: {_variant_text(v)}" for v in record.variants),
            "analysed at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(analysis.at)),
            "requests": str(analysis.units.requests),
            "units seen in two arms (dropped)": str(analysis.units.conflicting_units),
            "MLflow run": record.mlflow_run_id or "-",
        },
    )
    files = [out / "report.html", out / "report.json", out / "units.csv"]
    from loopline.fsutil import atomic_writer

    with atomic_writer(files[0]) as fh:
        fh.write(html)
    analysis.report_dir = out
    write_json(analysis.summary(), files[1])
    with atomic_writer(files[2]) as fh:
        analysis.units.frame.to_csv(fh, index=False)
    if log_mlflow:
        analysis.run_id = _log_analysis(settings, record, analysis, files)
    write_json(analysis.summary(), files[1])
    with _locked(settings):
        fresh = load_record(settings, record.name)
        fresh.analyses.append(
            {
                "at": analysis.at,
                "dir": str(out),
                "action": analysis.decision.action,
                "units": dict(result.units),
                "mlflow_run_id": analysis.run_id,
            }
        )
        _save(settings, fresh)
        analysis.record = fresh


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Applied:
    """What :func:`apply_decision` changed."""

    action: str
    variant: str | None
    changes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "variant": self.variant, "changes": list(self.changes)}


def _end(
    settings: Settings, record: ExperimentRecord, status: Status, outcome: dict[str, Any]
) -> ExperimentRecord:
    with _locked(settings):
        fresh = load_record(settings, record.name)
        if not fresh.running:
            raise ExperimentError(f"experiment {record.name!r} is already {fresh.status}")
        fresh.status = status
        fresh.ended_at = time.time()
        fresh.outcome = outcome
        _save(settings, fresh)
        others = [r for r in list_records(settings) if r.running]
        plan = _plan_with(settings, others)
        _write_plan(settings, plan)
    if fresh.mlflow_run_id:
        from loopline.registry.mlflow_registry import _mlflow_uris

        with _mlflow_uris(settings.tracking_uri, settings.registry_uri):
            client = _client(settings)
            client.set_tag(fresh.mlflow_run_id, "status", status)
            client.set_terminated(fresh.mlflow_run_id)
    return fresh


def _ship(settings: Settings, record: ExperimentRecord, variant: str) -> list[str]:
    """Make ``variant`` what everyone is served. Order: the default (prompt, parameters) and
    the registry first, the deployment switch last, so a failure leaves the old serving."""
    served = next(v for v in record.variants if v.name == variant)
    changes: list[str] = []
    if served.prompt_template is not None or served.params:
        current = _default(settings)
        merged = ServedVariant(
            name=f"{record.name}:{variant}",
            prompt_version=served.prompt_version or (current.prompt_version if current else None),
            prompt_template=served.prompt_template
            or (current.prompt_template if current else None),
            params={**(current.params if current else {}), **served.params},
        )
        write_json(merged.model_dump(mode="json"), experiments_dir(settings) / "default.json")
        changes.append(f"default is now {_variant_text(merged)}")
        if served.prompt_version is not None:
            _set_prompt_alias(settings, served.prompt_version)
            changes.append(f"prompt alias production -> {served.prompt_version}")
    if served.model_version is not None:
        changes.extend(_ship_model(settings, record, served.model_version))
    return changes


def _set_prompt_alias(settings: Settings, ref: str) -> None:
    from loopline.registry.mlflow_registry import _mlflow_uris

    name, version = ref.split("/", 1)
    with _mlflow_uris(settings.tracking_uri, settings.registry_uri):
        import mlflow

        mlflow.genai.set_prompt_alias(name, alias="production", version=int(version))


def _ship_model(settings: Settings, record: ExperimentRecord, version: str) -> list[str]:
    from loopline.deploy.stack import load_stack
    from loopline.registry.mlflow_registry import ModelRegistry

    registry = ModelRegistry(settings)
    stack = load_stack(settings)
    if stack.stable is not None and stack.stable.version == version:
        previous = registry.promote(version)
        return [f"champion stays v{version}" if previous == version else f"champion -> v{version}"]
    if stack.candidate is None or stack.candidate.version != version or stack.router is None:
        raise ExperimentError(
            f"cannot ship v{version}: no candidate server for it is running (stack changed)"
        )
    from loopline.deploy.local_target import LocalTarget
    from loopline.routing.client import RouterAdmin

    with RouterAdmin(stack.router.admin_url) as admin:
        target = LocalTarget(settings, admin, promote_version=registry.promote)
        target.promote(version)
    return [f"router stable -> v{version}", f"champion -> v{version}"]


def apply_decision(settings: Settings, analysis: Analysis) -> Applied:
    """Perform what the decision names (nothing for ``keep_running``); audited."""
    record, decision = analysis.record, analysis.decision
    action = decision.action
    if action == "keep_running":
        if record.running and record.spec.allocation == "thompson":
            return Applied(action, None, tuple(rebalance(settings, analysis)))
        return Applied(action, None, ())
    if not record.running:
        raise ExperimentError(f"experiment {record.name!r} is already {record.status}")
    outcome = {
        "action": action,
        "variant": decision.variant,
        "affected": list(decision.affected),
        "reasons": list(decision.reasons),
        "analysis": str(analysis.report_dir) if analysis.report_dir else None,
    }
    changes: list[str] = []
    if action == "ship":
        variant = decision.variant
        assert variant is not None
        if variant != record.spec.control_name:
            changes = _ship(settings, record, variant)
        _end(settings, record, "shipped", {**outcome, "changes": changes})
        shipped_model = any("router stable" in c for c in changes)
        if not shipped_model and _stop_candidate(settings, record.candidate_version):
            changes.append(f"candidate v{record.candidate_version} stopped")
        _audit(settings, "experiment_shipped", record.name, {**outcome, "changes": changes})
        return Applied(action, variant, tuple(changes))
    status: Status = "rolled_back" if action == "roll_back" else "stopped"
    _end(settings, record, status, outcome)
    changes.append(f"all traffic back on {record.spec.control_name}")
    if _stop_candidate(settings, record.candidate_version):
        changes.append(f"candidate v{record.candidate_version} stopped")
    _audit(
        settings,
        "experiment_rolled_back" if action == "roll_back" else "experiment_stopped",
        record.name,
        {**outcome, "changes": changes},
    )
    return Applied(action, None, tuple(changes))


def rebalance(settings: Settings, analysis: Analysis) -> list[str]:
    """Thompson sampling: re-weight a running experiment's variants by each one's posterior
    probability of being best on the reward (every arm keeps ``bandit.floor``), then
    republish the plan. Nothing moves before every arm has ``min_units_per_variant`` units.
    Units whose hash bucket crosses a moved boundary change arm; the analysis drops them."""
    from loopline.experiments.decision import bandit_state

    cfg = settings.experiments.bandit
    record, result = analysis.record, analysis.result
    if min(result.units.values(), default=0) < cfg.min_units_per_variant:
        return []
    rewarded = analysis.units.frame.groupby("variant")[cfg.reward_column].sum().to_dict()
    bandit = bandit_state(record.spec.variant_names, result.units, rewarded)
    shares = bandit.allocation(draws=cfg.draws, seed=cfg.seed, floor=cfg.floor)
    variants = tuple(
        v.model_copy(update={"weight": max(round(shares[v.name], 4), 1e-4)})
        for v in record.spec.variants
    )
    with _locked(settings):
        fresh = load_record(settings, record.name)
        if not fresh.running:
            return []
        fresh.spec = fresh.spec.model_copy(update={"variants": variants})
        fresh.allocations.append(
            {"at": analysis.at, "weights": {v.name: v.weight for v in variants}}
        )
        others = [r for r in list_records(settings) if r.running and r.name != fresh.name]
        plan = _plan_with(settings, [*others, fresh])
        _save(settings, fresh)
        _write_plan(settings, plan)
    analysis.record = fresh
    return [f"allocation {', '.join(f'{v.name} {100 * v.weight:.1f} %' for v in variants)}"]


def decide(
    settings: Settings, name: str, *, apply: bool = True, now: float | None = None
) -> tuple[Analysis, Applied | None]:
    """Analyse, decide and (``apply``) act."""
    analysis = analyze(settings, name, now=now)
    if not analysis.record.running:
        return analysis, None
    return analysis, apply_decision(settings, analysis) if apply else None


def stop(settings: Settings, name: str, reason: str) -> ExperimentRecord:
    """End an experiment by hand (everyone back on control); audited."""
    record = load_record(settings, name)
    fresh = _end(settings, record, "stopped", {"action": "stopped_by_hand", "reason": reason})
    _stop_candidate(settings, record.candidate_version)
    _audit(settings, "experiment_stopped", name, {"reason": reason, "by": "hand"})
    return fresh


def status(settings: Settings) -> list[dict[str, Any]]:
    """Every experiment with its latest analysis (no new analysis is run)."""
    out = []
    for r in list_records(settings):
        last = r.analyses[-1] if r.analyses else None
        out.append(
            {
                "name": r.name,
                "status": r.status,
                "created_at": r.created_at,
                "variants": {v.name: _variant_text(v) for v in r.variants},
                "control": r.spec.control_name,
                "last_analysis": last,
                "outcome": r.outcome,
            }
        )
    return out


# --------------------------------------------------------------------------- rollouts


def start_rollout(settings: Settings, key: str, *, now: float | None = None) -> Rollout:
    """Begin the guarded rollout of flag ``key`` at the schedule's first step."""
    if key not in {f.key for f in settings.experiments.flags}:
        known = ", ".join(f.key for f in settings.experiments.flags) or "none"
        raise ExperimentError(f"no flag {key!r} is configured (configured: {known})")
    now = time.time() if now is None else now
    with _locked(settings):
        rollouts = _rollouts(settings)
        state = Rollout(flag=key, step=0, since=now, history=[{"at": now, "step": 0}])
        rollouts[key] = state
        plan = _plan_with(settings, rollouts=rollouts)
        _save_rollouts(settings, rollouts)
        _write_plan(settings, plan)
    _audit(settings, "rollout_started", key, {"percentage": settings.experiments.rollout.steps[0]})
    return state


def _save_rollouts(settings: Settings, rollouts: Mapping[str, Rollout]) -> None:
    write_json(
        {k: v.model_dump(mode="json") for k, v in rollouts.items()},
        experiments_dir(settings) / "rollouts.json",
    )


def rollout_guard(settings: Settings, key: str, since: float) -> tuple[str, str]:
    """``(pass|inconclusive|fail, why)``: units served the flag's on-value against the rest,
    since the step began, judged by the decision policy's guardrails and primary metric."""
    from loopline.experiments.analysis import analyze_experiment
    from loopline.experiments.decision import decide_experiment
    from loopline.experiments.logs import unit_table
    from loopline.monitoring.dataset import read_feedback
    from loopline.monitoring.monitor import monitoring_dir
    from loopline.serving.request_log import read_request_logs

    flag = next(f for f in settings.experiments.flags if f.key == key)
    policy = _policy(settings)
    entries = []
    for e in read_request_logs(settings.path(settings.serving.request_log_dir)):
        flags = e.get("flags") or {}
        if not isinstance(flags, Mapping) or key not in flags or float(e.get("ts") or 0) < since:
            continue
        arm = "on" if flags[key] == flag.on_value else "off"
        entries.append({**e, "experiments": {f"rollout:{key}": arm}})
    from loopline.experiments.logs import events_frame

    exposed, pre = events_frame(
        entries, f"rollout:{key}", ratings=read_feedback(monitoring_dir(settings) / "feedback")
    )
    units = unit_table(exposed, pre).frame
    counts = units["variant"].value_counts().to_dict() if len(units) else {}
    if min(counts.get("on", 0), counts.get("off", 0)) < policy.min_units_per_variant:
        return "inconclusive", f"too few units yet ({counts})"
    metrics = tuple(m.model_copy(update={"covariate": None}) for m in _metrics(settings))
    share = float(counts["on"]) / float(counts["on"] + counts["off"])
    result = analyze_experiment(
        units,
        metrics,
        experiment=f"rollout:{key}",
        control="off",
        expected_weights={"off": 1 - share, "on": share},
        config=settings.experiments.analysis,
    )
    verdict = decide_experiment(result, policy).verdicts[0]
    if verdict.status in ("harmful", "guardrail_breach"):
        return "fail", "; ".join(verdict.reasons)
    if verdict.pending_guardrails:  # not cleared (e.g. undefined): no evidence of no harm
        return "inconclusive", "; ".join(verdict.reasons)
    return "pass", f"no harm detected ({verdict.status}; units {counts})"


def advance_rollouts(settings: Settings, *, now: float | None = None) -> list[dict[str, Any]]:
    """Advance, hold or roll back every active flag rollout by its guard; audited."""
    from loopline.experiments.flags import next_rollout_step

    now = time.time() if now is None else now
    schedule = settings.experiments.rollout
    out = []
    for key, state in _rollouts(settings).items():
        if state.step == -1 or key not in {f.key for f in settings.experiments.flags}:
            continue
        guard, why = rollout_guard(settings, key, state.since)
        move = next_rollout_step(schedule, state.step, now - state.since, guard)  # type: ignore[arg-type]
        out.append({"flag": key, "guard": guard, "why": why, **move.__dict__})
        if move.action in ("advance", "roll_back"):
            with _locked(settings):
                rollouts = _rollouts(settings)
                fresh = rollouts[key]
                fresh.step, fresh.since = move.step, now
                fresh.history.append({"at": now, "step": move.step, "reason": move.reason})
                plan = _plan_with(settings, rollouts=rollouts)
                _save_rollouts(settings, rollouts)
                _write_plan(settings, plan)
            _audit(
                settings,
                "rollout_advanced" if move.action == "advance" else "rollout_rolled_back",
                key,
                {"percentage": move.percentage, "reason": move.reason, "guard": why},
            )
    return out
