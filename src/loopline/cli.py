"""The ``loopline`` command line. Every step runs with or without Prefect.

Heavy libraries are imported inside commands so that ``--help`` stays fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from loopline.config import ConfigError, Settings, load_settings

app = typer.Typer(
    name="loopline",
    help="Loopline: train, validate, register and promote LLMs as Prefect flows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ProjectOpt = Annotated[
    Path, typer.Option("--project", "-p", help="Project checkout (configs/, params.yaml).")
]
EnvOpt = Annotated[
    str | None,
    typer.Option("--env", "-e", help="Environment overlay (default: LOOPLINE_ENV or local)."),
]
NoPrefectOpt = Annotated[
    bool, typer.Option("--no-prefect", help="Run the steps directly, without the orchestrator.")
]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a setting, e.g. serving.port=8001")
]
JsonOpt = Annotated[
    Path | None, typer.Option("--json", help="Also write the run summary as JSON to this file.")
]


def _settings(project: Path, env: str | None, set_args: list[str] | None = None) -> Settings:
    try:
        return load_settings(project, env=env, set_args=set_args)
    except ConfigError as exc:
        typer.secho(f"configuration error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def _echo(message: str) -> None:
    typer.echo(f"[loopline] {message}")


def _prefect_env(settings: Settings) -> None:
    """Point Prefect's local backend at the checkout's state before Prefect is imported."""
    home = Path(os.environ.setdefault("PREFECT_HOME", str(settings.state_path / "prefect")))
    home.mkdir(parents=True, exist_ok=True)  # Prefect creates only the last component
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    # The first start on a fresh PREFECT_HOME migrates its database; on a busy 2-core machine
    # that can exceed Prefect's 20 s default.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def _run_flow(
    settings: Settings, flow_name: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run a Prefect flow; the orchestration layer is loaded only here, by name."""
    import importlib

    _prefect_env(settings)
    runner = importlib.import_module("flows.runner")
    result: dict[str, Any] = runner.run_flow(flow_name, settings.root, settings.env, extra)
    return result


def _run_spine(settings: Settings, flow_name: str, no_prefect: bool) -> dict[str, Any]:
    from loopline.data.contracts import DataValidationError
    from loopline.reporting import spine_summary
    from loopline.workflow import run_spine

    try:
        if no_prefect:
            res = run_spine(settings, progress=_echo)
            return spine_summary(res.stage_runs, res.registration, res.review, res.pushed_files)
        summary = _run_flow(settings, flow_name)
        return summary["train"] if flow_name == "pipeline" else summary
    except DataValidationError as exc:
        typer.secho(f"data validation failed, nothing was trained:\n{exc}", fg="red", err=True)
        raise typer.Exit(1) from None


def _report(summary: dict[str, Any], settings: Settings, json_path: Path | None) -> None:
    from loopline.reporting import format_summary

    typer.echo(format_summary(summary))
    typer.echo(
        "\nWhere to look:\n"
        f"  state        {settings.state_path}\n"
        "  status       loopline status\n"
        "  MLflow UI    loopline ui mlflow   (http://127.0.0.1:5000)\n"
        "  Prefect UI   loopline ui prefect  (http://127.0.0.1:4200)"
    )
    if json_path:
        json_path.write_text(json.dumps(summary, indent=2, default=str) + "\n")


def _spine_command(
    flow_name: str, project: Path, env: str | None, no_prefect: bool, json_out: Path | None
) -> None:
    settings = _settings(project, env)
    _echo(f"{flow_name} on {settings.root} (env {settings.env}, state {settings.state_dir}/)")
    summary = _run_spine(settings, flow_name, no_prefect)
    _report(summary, settings, json_out)


@app.command()
def run(
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
    no_prefect: NoPrefectOpt = False,
    json_out: JsonOpt = None,
) -> None:
    """Run the whole pipeline on this checkout (embedded defaults unless --env says otherwise)."""
    _spine_command("pipeline", project, env, no_prefect, json_out)


@app.command()
def demo(
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
    no_prefect: NoPrefectOpt = False,
    keep_serving: Annotated[
        bool, typer.Option(help="Leave the deployment running (stop it: loopline down).")
    ] = False,
    requests: Annotated[int, typer.Option(help="Simulated requests per traffic phase.")] = 150,
) -> None:
    """The whole loop on embedded defaults: the pipeline, then serve the champion, monitor
    ordinary and shifted traffic, remediate the drift (retrain → gates → canary), and run an
    A/B test of the first configured experiment with simulated users and their ratings.
    Runs with the `demo` environment overlay (a shorter canary) unless --env is given."""
    from loopline.demo import run_demo

    settings = _settings(project, env or "demo")
    _echo(f"demo on {settings.root} (env {settings.env}, state {settings.state_dir}/)")
    summary = _run_spine(settings, "pipeline", no_prefect)
    _report(summary, settings, None)

    def monitor() -> dict[str, Any]:
        if not no_prefect:
            return _run_flow(settings, "monitor", {"probes": True, "remediate": "inline"})
        from loopline.monitoring.actions import execute, handle_alerts
        from loopline.monitoring.monitor import run_monitor

        report = run_monitor(settings, progress=_echo)
        recorded = handle_alerts(settings, list(report.findings), now=report.at)
        for rec in recorded:
            if rec.decision.actionable:
                execute(settings, rec, progress=_echo)
        return {"drift": report.drift.status, "findings": [a.name for a in report.findings]}

    def experiment() -> dict[str, Any]:
        if not no_prefect:
            return _run_flow(settings, "experiment", {"apply": True})
        from loopline.experiments.lifecycle import decide, list_records

        results = []
        for record in [r for r in list_records(settings) if r.running]:
            analysis, applied = decide(settings, record.name)
            results.append(
                {**analysis.summary(), "applied": applied.to_dict() if applied else None}
            )
        return {"experiments": results}

    try:
        result = run_demo(
            settings,
            monitor,
            experiment=experiment,
            requests=requests,
            keep_serving=keep_serving,
            progress=_echo,
        )
    except _deploy_errors() as exc:
        typer.secho(f"demo stopped: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(result, indent=2, default=str))
    typer.echo(
        "\nWhat happened is in:\n"
        "  incidents    loopline monitor incidents --all\n"
        "  releases     loopline status\n"
        "  experiments  loopline experiment status\n"
        f"  reports      {settings.path(settings.monitoring.state_dir) / 'runs'}"
    )


@app.command()
def train(
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
    no_prefect: NoPrefectOpt = False,
    json_out: JsonOpt = None,
) -> None:
    """Data stages, validation, training, evaluation, registration and promotion."""
    _spine_command("train", project, env, no_prefect, json_out)


@app.command("validate-data")
def validate_data(
    path: Annotated[
        Path, typer.Argument(help="A dataset file (.jsonl/.csv/.parquet) or a prepared directory.")
    ],
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
) -> None:
    """Validate a dataset against the data contract; exit 1 listing every failed expectation."""
    from loopline.data.contracts import DataValidationError, validate_path

    settings = _settings(project, env)
    try:
        report = validate_path(path, settings)
    except DataValidationError as exc:
        typer.secho(f"INVALID {path}\n{exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"OK {path}: {report.summary()}")


class StageName(StrEnum):
    generate = "generate"
    prepare = "prepare"
    validate = "validate"
    train = "train"
    evaluate = "evaluate"


@app.command(hidden=False)
def stage(
    name: Annotated[StageName, typer.Argument(help="The dvc.yaml stage to execute.")],
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
) -> None:
    """Execute one stage body (what dvc.yaml calls; use `dvc repro` to run only stale ones)."""
    from loopline import stages

    settings = _settings(project, env)
    try:
        message = stages.run(settings, name.value)
    except stages.StageError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from None
    _echo(message)


@app.command()
def status(
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Champion and challenger: versions, metrics, lineage; and the latest audit entries."""
    from loopline.status import collect_status, format_status

    settings = _settings(project, env)
    info = collect_status(settings)
    typer.echo(json.dumps(info, indent=2, default=str) if as_json else format_status(info))


@app.command("config")
def show_config(
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override, e.g. training.max_steps=10")
    ] = None,
) -> None:
    """Print the resolved configuration (after env overlay and overrides)."""
    settings = _settings(project, env, set_)
    typer.echo(json.dumps(settings.model_dump(mode="json"), indent=2))


@app.command()
def serve(  # noqa: PLR0917 - typer options
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Registry alias or version (default: champion)."),
    ] = None,
    model_dir: Annotated[
        Path | None,
        typer.Option(help="Serve this model folder instead of a registry version."),
    ] = None,
    checksum: Annotated[
        str | None,
        typer.Option(help="Expected sha256 of --model-dir (default: MODEL_CHECKSUM beside it)."),
    ] = None,
    version_label: Annotated[
        str | None, typer.Option(help="Version to report for --model-dir.")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default serving.port).")] = None,
    variant: Annotated[
        str, typer.Option(help="Variant label for metrics and the request log.")
    ] = "stable",
    request_log: Annotated[
        Path | None, typer.Option(help="Request log directory (default under serving.)")
    ] = None,
    set_: SetOpt = None,
) -> None:
    """Serve a registered model through an OpenAI-compatible API (verified before loading)."""
    from loopline.serving.model_store import ServingError
    from loopline.serving.server import ServeOptions
    from loopline.serving.server import serve as run_server

    settings = _settings(project, env, set_)
    opts = ServeOptions(
        model=model,
        model_dir=model_dir,
        checksum=checksum,
        version_label=version_label,
        host=host,
        port=port,
        variant=variant,
        request_log=request_log,
    )
    try:
        run_server(settings, opts)
    except ServingError as exc:
        typer.secho(f"cannot serve: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


@app.command()
def package(  # noqa: PLR0917 - typer options
    model: Annotated[str, typer.Option("--model", "-m", help="Alias or version.")] = "champion",
    out: Annotated[Path, typer.Option("--out", "-o", help="Build context directory.")] = Path(
        "build/package"
    ),
    tag: Annotated[str | None, typer.Option(help="Image tag (default name:version).")] = None,
    builder: Annotated[
        str, typer.Option(help="auto | docker-api | podman | buildah | none")
    ] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing context.")] = False,
    vendor_wheels: Annotated[
        bool, typer.Option(help="Put every dependency's wheel in the context (offline build).")
    ] = False,
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
) -> None:
    """Package a registry version: MLflow model + container build context (+ image)."""
    from loopline.packaging import PackagingError, build_package

    settings = _settings(project, env)
    try:
        result = build_package(
            settings,
            model,
            out,
            tag=tag,
            build=builder != "none",
            builder=builder,
            overwrite=overwrite,
            vendor_wheels=vendor_wheels,
        )
    except PackagingError as exc:
        typer.secho(f"cannot package: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    _echo(f"v{result.model_version} (sha256 {result.fingerprint[:12]}) -> {result.context_dir}")
    _echo(result.message)


def _deploy_errors() -> tuple[type[BaseException], ...]:
    from loopline.deploy.stack import DeployError
    from loopline.registry.mlflow_registry import RegistryError
    from loopline.routing.client import RouterError

    return (DeployError, RegistryError, RouterError)


@app.command()
def up(
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Alias or version.")] = "champion",
) -> None:
    """Start the local deployment: the champion behind the traffic router."""
    from loopline.deploy.service import up as start

    settings = _settings(project, env)
    try:
        stack = start(settings, model=model, progress=_echo)
    except _deploy_errors() as exc:
        typer.secho(f"cannot start: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    assert stack.router is not None and stack.stable is not None
    _echo(f"v{stack.stable.version} serving at {stack.router.url}/v1 (OpenAI-compatible)")


class StrategyOpt(StrEnum):
    canary = "canary"
    blue_green = "blue-green"
    shadow = "shadow"


@app.command()
def deploy(  # noqa: PLR0917 - typer options
    strategy: Annotated[StrategyOpt, typer.Option(help="Release strategy.")] = StrategyOpt.canary,
    model: Annotated[
        str, typer.Option("--model", "-m", help="Alias or version to release.")
    ] = "challenger",
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
    set_: SetOpt = None,
    candidate_set: Annotated[
        list[str] | None,
        typer.Option(
            "--candidate-set",
            help="Setting for the candidate server only (e.g. serving.faults.error_rate=0.1).",
        ),
    ] = None,
    poll: Annotated[float, typer.Option(help="Seconds between analyses.")] = 1.0,
) -> None:
    """Release a registry version against the running stable, with automatic rollback."""
    from loopline.deploy.driver import DriverOptions
    from loopline.deploy.service import deploy as run_deploy

    settings = _settings(project, env, set_)
    try:
        record = run_deploy(
            settings,
            strategy.value,
            model=model,
            candidate_set=candidate_set or (),
            progress=_echo,
            options=DriverOptions(poll_s=poll),
        )
    except _deploy_errors() as exc:
        typer.secho(f"cannot deploy: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    for step in record.steps:
        _echo(f"  step {step.step} [{step.kind}] {step.verdict}: {'; '.join(step.reasons)}")
    raise typer.Exit(0 if record.outcome in ("promoted", "passed") else 3)


@app.command()
def rollback(
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "manual rollback",
) -> None:
    """Abort the release in progress, or switch back to the previous champion."""
    from loopline.deploy.service import rollback as run_rollback

    settings = _settings(project, env)
    try:
        result = run_rollback(settings, reason=reason)
    except _deploy_errors() as exc:
        typer.secho(f"cannot roll back: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(result, indent=2, default=str))


@app.command()
def down(project: ProjectOpt = Path("."), env: EnvOpt = None) -> None:
    """Stop the local deployment (router and model servers)."""
    from loopline.deploy.service import down as stop

    settings = _settings(project, env)
    stopped = stop(settings)
    roles = [r for r in ("router", "stable", "candidate", "standby") if getattr(stopped, r)]
    _echo(f"stopped: {', '.join(roles) or 'nothing was running'}")


class UiName(StrEnum):
    mlflow = "mlflow"
    prefect = "prefect"


@app.command()
def ui(
    which: Annotated[UiName, typer.Argument(help="mlflow or prefect")],
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
    port: Annotated[int | None, typer.Option(help="Port (default 5000 / 4200).")] = None,
) -> None:
    """Start the MLflow or Prefect UI on 127.0.0.1 over this checkout's state."""
    settings = _settings(project, env)
    bindir = Path(sys.executable).parent
    environ = dict(os.environ)
    if which is UiName.mlflow:
        environ["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        cmd = [
            str(bindir / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port or 5000),
            "--workers", "1", "--backend-store-uri", settings.tracking_uri,
            "--default-artifact-root", settings.artifact_location,
        ]  # fmt: skip
    else:
        environ["PREFECT_HOME"] = str(settings.state_path.resolve() / "prefect")
        cmd = [
            str(bindir / "prefect"),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port or 4200),
        ]
    _echo(" ".join(cmd))
    raise typer.Exit(subprocess.call(cmd, env=environ))


monitor_app = typer.Typer(
    help="Monitoring and the closed loop: drift, quality, anomalies, incidents, remediation.",
    no_args_is_help=True,
)
app.add_typer(monitor_app, name="monitor")


class RemediateMode(StrEnum):
    inline = "inline"
    events = "events"
    off = "off"


@monitor_app.command("run")
def monitor_run(
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
    no_prefect: NoPrefectOpt = False,
    probes: Annotated[bool, typer.Option(help="Send golden probes to the stable server.")] = True,
    remediate: Annotated[
        RemediateMode,
        typer.Option(help="inline: remediate now; events: leave it to automations; off."),
    ] = RemediateMode.inline,
) -> None:
    """Monitor the latest traffic; record findings as incidents and remediate them."""
    settings = _settings(project, env)
    if not no_prefect:
        extra = {"probes": probes, "remediate": remediate.value}
        typer.echo(json.dumps(_run_flow(settings, "monitor", extra), indent=2, default=str))
        return
    from loopline.monitoring.actions import execute, handle_alerts
    from loopline.monitoring.monitor import run_monitor

    report = run_monitor(settings, probes=probes, progress=_echo)
    _echo(f"drift: {report.drift.status}: {'; '.join(report.drift.reasons)}")
    for check in report.quality:
        _echo(f"quality: {check.reason}")
    if remediate is RemediateMode.off:  # report only (Prometheus alerts on the gauges)
        _echo(f"report: {report.report_dir}")
        return
    recorded = handle_alerts(settings, list(report.findings), now=report.at)
    for rec in recorded:
        _echo(f"{rec.alert.name} {rec.alert.status}: {rec.decision.action} ({rec.decision.reason})")
        if remediate is RemediateMode.inline and rec.decision.actionable:
            execute(settings, rec, progress=_echo)
    _echo(f"report: {report.report_dir}")


@monitor_app.command("serve")
def monitor_serve(
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
    port: Annotated[int | None, typer.Option(help="Port (default monitoring.port).")] = None,
    executor: Annotated[
        str, typer.Option(help="inline | command | none: who performs remediations.")
    ] = "inline",
    command: Annotated[
        str | None,
        typer.Option(help="For --executor command: a command with {incident} and {action}."),
    ] = None,
) -> None:
    """Serve the Alertmanager webhook (POST /alerts) and the monitor's /metrics."""
    from loopline.monitoring.service import serve

    settings = _settings(project, env)
    try:
        serve(settings, executor=executor, command=command, port=port)
    except ValueError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


@monitor_app.command("execute")
def monitor_execute(
    incident: Annotated[str, typer.Option(help="Incident whose claimed action to run.")],
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
) -> None:
    """Perform an incident's claimed action (what a command executor runs)."""
    from loopline.monitoring.actions import claimed, execute

    settings = _settings(project, env)
    try:
        rec = claimed(settings, incident)
    except (KeyError, ValueError) as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    after = execute(settings, rec, progress=_echo)
    if after is None:
        return
    typer.echo(json.dumps(after.to_dict(), indent=2, default=str))
    raise typer.Exit(0 if after.status == "mitigated" else 1)


@monitor_app.command("resolve")
def monitor_resolve(
    incident: Annotated[str, typer.Option(help="Incident to close.")],
    reason: Annotated[str, typer.Option(help="Why (recorded).")],
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
) -> None:
    """Close an incident by hand (e.g. after people handled an escalation)."""
    from loopline.monitoring.actions import resolve

    settings = _settings(project, env)
    try:
        inc = resolve(settings, incident, reason)
    except (KeyError, ValueError) as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{inc.id}: {inc.status}")


@monitor_app.command("incidents")
def monitor_incidents(
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON with timelines.")] = False,
    all_: Annotated[bool, typer.Option("--all", help="Include resolved incidents.")] = False,
) -> None:
    """Incidents and their state (open, remediating, mitigated, escalated, resolved)."""
    from loopline.monitoring.actions import store_for

    settings = _settings(project, env)
    found = [i for i in store_for(settings).incidents().values() if all_ or i.active]
    if as_json:
        typer.echo(json.dumps([i.to_dict() for i in found], indent=2, default=str))
        return
    if not found:
        typer.echo("no incidents")
    for inc in found:
        typer.echo(
            f"{inc.id}  {inc.key:<32} {inc.status:<11} attempts={inc.attempts} "
            f"last={inc.last_action or '-'}:{inc.last_outcome or '-'}"
        )


experiment_app = typer.Typer(
    help="A/B experiments of models, prompts and parameters; feature-flag rollouts.",
    no_args_is_help=True,
)
app.add_typer(experiment_app, name="experiment")


def _experiment_error(exc: Exception) -> typer.Exit:
    typer.secho(f"experiment error: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(2)


@experiment_app.command("create")
def experiment_create(
    name: Annotated[str, typer.Argument(help="Experiment name (configured, or in --file).")],
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="YAML spec instead of the configuration.")
    ] = None,
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
) -> None:
    """Start an experiment: resolve its prompts, start a candidate for a model variant,
    publish the serving plan. Nothing changes if anything is wrong."""
    import yaml
    from pydantic import ValidationError

    from loopline.experiments.lifecycle import ExperimentError, create, definition
    from loopline.experiments.policy import ExperimentSpec

    settings = _settings(project, env)
    try:
        if file is not None:
            data = yaml.safe_load(file.read_text("utf-8")) or {}
            if not isinstance(data, dict):
                raise ExperimentError(f"{file}: expected a mapping")
            spec = ExperimentSpec.model_validate({"name": name, **data})
        else:
            spec = definition(settings, name)
        record = create(settings, spec, progress=_echo)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "spec"
        raise _experiment_error(ValueError(f"{file or name}: {where}: {err['msg']}")) from None
    except (ExperimentError, OSError, yaml.YAMLError) as exc:
        raise _experiment_error(exc) from None
    typer.echo(json.dumps(record.model_dump(mode="json", exclude={"analyses"}), indent=2))


@experiment_app.command("status")
def experiment_status(
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Experiments, their state and their latest analysis."""
    from loopline.experiments.lifecycle import status

    settings = _settings(project, env)
    rows = status(settings)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        typer.echo("no experiments")
    for r in rows:
        last = r["last_analysis"] or {}
        typer.echo(
            f"{r['name']:<24} {r['status']:<11} control={r['control']} "
            f"units={last.get('units', '-')} last={last.get('action', '-')}"
        )
        for v, what in r["variants"].items():
            typer.echo(f"    {v:<16} {what}")


def _print_analysis(summary: dict[str, Any]) -> None:
    d = summary["decision"]
    typer.echo(
        f"{summary['experiment']}: units {summary['units']}, SRM p={summary['srm']['p_value']:.3g}"
    )
    for m in summary["metrics"]:
        lo, hi = m["relative_ci"]
        typer.echo(
            f"  {m['metric']:<12} {m['variant']:<10} {100 * m['relative_difference']:+7.2f} % "
            f"[{100 * lo:+.2f}, {100 * hi:+.2f}] p={m['adjusted_p_value']:.3g} ({m['interval']})"
        )
    typer.echo(f"decision: {d['action']} {d['variant'] or ''}: {'; '.join(d['reasons'])}")
    for alert in d["alerts"]:
        typer.secho(f"alert: {alert}", fg=typer.colors.YELLOW)
    typer.echo(f"report: {summary['report_dir']}/report.html")


@experiment_app.command("analyze")
def experiment_analyze(
    name: Annotated[str, typer.Argument(help="Experiment name.")],
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Analyse from the logs (nothing is changed): report HTML/JSON, MLflow run."""
    from loopline.experiments.lifecycle import ExperimentError, analyze

    settings = _settings(project, env)
    try:
        summary = analyze(settings, name).summary()
    except ExperimentError as exc:
        raise _experiment_error(exc) from None
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
    else:
        _print_analysis(summary)


@experiment_app.command("decide")
def experiment_decide(
    name: Annotated[str, typer.Argument(help="Experiment name.")],
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide but change nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Analyse, decide (ship / keep running / stop for harm / roll back) and act."""
    from loopline.experiments.lifecycle import ExperimentError, decide

    settings = _settings(project, env)
    try:
        analysis, applied = decide(settings, name, apply=not dry_run)
    except ExperimentError as exc:
        raise _experiment_error(exc) from None
    summary = {**analysis.summary(), "applied": applied.to_dict() if applied else None}
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    _print_analysis(summary)
    for change in applied.changes if applied else ():
        _echo(change)


@experiment_app.command("run")
def experiment_run(
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
    no_prefect: NoPrefectOpt = False,
    apply: Annotated[bool, typer.Option(help="Act on the decisions.")] = True,
) -> None:
    """What the scheduled flow does: every running experiment, then flag rollouts."""
    settings = _settings(project, env)
    if not no_prefect:
        out = _run_flow(settings, "experiment", {"apply": apply})
        typer.echo(json.dumps(out, indent=2, default=str))
        return
    from loopline.experiments.lifecycle import advance_rollouts, decide, list_records

    results = []
    for record in [r for r in list_records(settings) if r.running]:
        analysis, applied = decide(settings, record.name, apply=apply)
        results.append({**analysis.summary(), "applied": applied.to_dict() if applied else None})
    out = {"experiments": results, "rollouts": advance_rollouts(settings)}
    typer.echo(json.dumps(out, indent=2, default=str))


@experiment_app.command("stop")
def experiment_stop(
    name: Annotated[str, typer.Argument(help="Experiment name.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit trail).")],
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
) -> None:
    """End an experiment by hand: everyone is served the control again."""
    from loopline.experiments.lifecycle import ExperimentError, stop

    settings = _settings(project, env)
    try:
        record = stop(settings, name, reason)
    except ExperimentError as exc:
        raise _experiment_error(exc) from None
    typer.echo(f"{record.name}: {record.status}")


@experiment_app.command("prompt")
def experiment_prompt(
    name: Annotated[str, typer.Argument(help="Prompt name in the MLflow prompt registry.")],
    template: Annotated[str, typer.Option(help="Template with the variable {{ message }}.")],
    message: Annotated[str, typer.Option(help="Commit message.")] = "",
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
) -> None:
    """Register a prompt version (use it as a variant's prompt_version: name/version)."""
    from loopline.experiments.lifecycle import ExperimentError, register_prompt

    settings = _settings(project, env)
    try:
        typer.echo(register_prompt(settings, name, template, message))
    except ExperimentError as exc:
        raise _experiment_error(exc) from None


@experiment_app.command("rollout")
def experiment_rollout(
    flag: Annotated[str, typer.Argument(help="A configured flag key.")],
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
) -> None:
    """Start a guarded rollout of a flag at the schedule's first step (the experiment flow
    advances it while its guard passes)."""
    from loopline.experiments.lifecycle import ExperimentError, start_rollout

    settings = _settings(project, env)
    try:
        state = start_rollout(settings, flag)
    except ExperimentError as exc:
        raise _experiment_error(exc) from None
    pct = settings.experiments.rollout.steps[state.step]
    typer.echo(f"{flag}: rollout started at {pct:g} %")


@experiment_app.command("plan")
def experiment_plan(project: ProjectOpt = Path("."), env: EnvOpt = None) -> None:
    """Print the serving plan the servers evaluate (running experiments, flags)."""
    from loopline.experiments.lifecycle import read_plan

    plan = read_plan(_settings(project, env))
    typer.echo("no plan published" if plan is None else plan.model_dump_json(indent=2))


cost_app = typer.Typer(
    help="Spend: the ledger, budgets and forecasts, capacity plans, savings recommendations.",
    no_args_is_help=True,
)
app.add_typer(cost_app, name="cost")
DaysOpt = Annotated[int, typer.Option("--days", min=1, max=366, help="Days to cover.")]


def _cost_error(exc: Exception) -> typer.Exit:
    typer.secho(f"cost error: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(2)


@cost_app.command("report")
def cost_report(
    days: DaysOpt = 7,
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Spend of the last N days by scope and day, budgets with alerts before a breach, the
    forecast; writes the HTML/JSON report and logs an MLflow run."""
    from loopline.cost.operations import CostError, report

    settings = _settings(project, env)
    try:
        result = report(settings, days=days)
    except CostError as exc:
        raise _cost_error(exc) from None
    summary = result.to_dict()
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    window = summary["window"]
    typer.echo(
        f"spend {summary['total']} USD from {window['start']} to {window['end']} "
        f"({summary['requests']} requests, {summary['lines']} lines)"
    )
    for kind, amount in summary["by"]["kind"].items():
        typer.echo(f"  {kind:<10} {amount}")
    for b in summary["budgets"]:
        typer.echo(
            f"budget {b['name']}: {b['spent']} of {b['amount']:g} "
            f"({100 * b['fraction_used']:.1f} %) {b['state']}"
        )
        for alert in b["alerts"]:
            color = typer.colors.RED if alert["severity"] == "critical" else typer.colors.YELLOW
            typer.secho(f"  alert {alert['kind']}: {alert['message']}", fg=color)
    typer.echo(f"forecast: {result.forecast.summary_text()}")
    typer.echo(f"report: {summary['report_dir']}/report.html")


@cost_app.command("forecast")
def cost_forecast(
    days: DaysOpt = 7,
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Forecast the spend of the next N days with its prediction interval (writes nothing)."""
    from loopline.cost.operations import CostError, forecast_spend

    settings = _settings(project, env)
    try:
        fc = forecast_spend(settings, days=days)
    except CostError as exc:
        raise _cost_error(exc) from None
    if as_json:
        typer.echo(json.dumps(fc.to_dict(), indent=2, default=str))
    elif fc.available:
        for day in fc.daily():
            typer.echo(
                f"{day['day']}  {day['expected']:>12,.4f}  "
                f"[{day['lower']:,.4f}, {day['upper']:,.4f}]  ({day['hours']} h)"
            )
    typer.echo(fc.summary_text())
    if not fc.available:
        raise typer.Exit(1)


@cost_app.command("plan")
def cost_plan(
    demand: Annotated[
        Path | None,
        typer.Option("--demand", help="CSV with hour,tokens_per_s (default: the request log)."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Directory for the plan files.")] = None,
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Plan the serving fleet for the next week on the price catalog and write the plan with
    its Terraform variables, node pools and HPA (a dry run: nothing is applied)."""
    from loopline.cost.operations import CostError, plan

    settings = _settings(project, env)
    try:
        result = plan(settings, demand_csv=demand, out=out)
    except CostError as exc:
        raise _cost_error(exc) from None
    summary = result.summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
    else:
        typer.echo(result.plan.summary)
        for reason in result.plan.reasons:
            typer.echo(f"  {reason}")
        for reason in (summary["apply"] or {}).get("reasons", []):
            _echo(reason)
        for path in result.files:
            typer.echo(f"wrote {path}")
    if not result.plan.feasible:
        raise typer.Exit(1)


@cost_app.command("recommend")
def cost_recommend(
    project: ProjectOpt = Path("."),
    env: EnvOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Savings recommendations from the logs and the experiments, with monthly estimates."""
    from loopline.cost.operations import CostError, recommend

    settings = _settings(project, env)
    try:
        result = recommend(settings)
    except CostError as exc:
        raise _cost_error(exc) from None
    data = result.to_dict()
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    if not result.items:
        typer.echo("no recommendations")
    for r in result.items:
        typer.echo(f"{r.monthly_savings:>10,.2f} USD/month  {r.kind:<18} {r.title}")
        for reason in r.reasons:
            typer.echo(f"{'':>30}{reason}")
    for note in result.notes:
        typer.echo(f"note: {note}")


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
