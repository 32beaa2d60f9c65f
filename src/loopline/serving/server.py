"""Start a model server: resolve and verify the model, load it, serve it with uvicorn."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from loopline.config import Settings
from loopline.serving.engine import ServingEngine
from loopline.serving.model_store import ServedModel, ServingError, from_folder, from_registry
from loopline.serving.request_log import open_server_log

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    model: str | None = None  # alias or version in the registry (default: champion)
    model_dir: Path | None = None  # a folder instead of the registry (containers)
    checksum: str | None = None
    version_label: str | None = None  # the version a --model-dir folder is reported as
    host: str | None = None
    port: int | None = None
    variant: str = "stable"
    request_log: Path | None = None


def resolve(settings: Settings, opts: ServeOptions) -> ServedModel:
    if opts.model_dir is not None:
        if opts.model is not None:
            raise ServingError("give either --model (registry) or --model-dir (folder), not both")
        return from_folder(
            opts.model_dir, opts.checksum, name=settings.model.name, version=opts.version_label
        )
    if opts.checksum is not None:
        raise ServingError("--checksum applies to --model-dir; registry versions carry theirs")
    return from_registry(settings, opts.model or "champion")


def build_engine(settings: Settings, opts: ServeOptions) -> ServingEngine:
    """Verify and load the model and open the request log (nothing is served yet)."""
    from loopline.models.base import Generator, ModelSpecError, load_generator

    served = resolve(settings, opts)
    cfg = settings.serving
    generator: Generator
    try:
        if cfg.model_process:
            from loopline.serving.model_process import ProcessGenerator

            generator = ProcessGenerator(
                str(served.path), max_batch_size=cfg.max_batch_size, num_threads=cfg.num_threads
            )
        else:
            generator = load_generator(
                str(served.path), max_batch_size=cfg.max_batch_size, num_threads=cfg.num_threads
            )
    except (ModelSpecError, ValueError, RuntimeError) as exc:
        raise ServingError(str(exc)) from exc
    if opts.request_log is not None:
        from loopline.serving.request_log import RequestLog

        request_log = RequestLog(opts.request_log, max_bytes=cfg.request_log_max_bytes)
    else:
        request_log = open_server_log(
            settings.path(cfg.request_log_dir),
            f"{served.name}-v{served.version}",
            max_bytes=cfg.request_log_max_bytes,
        )
    from loopline.serving.plan import PlanWatcher

    plan = PlanWatcher(settings.path(cfg.experiments_plan), cfg.plan_check_s)
    return ServingEngine(cfg, served, generator, request_log, variant=opts.variant, plan=plan)


def serve(settings: Settings, opts: ServeOptions) -> None:
    """Run the server in the foreground until interrupted (SIGINT/SIGTERM)."""
    import uvicorn

    from loopline.serving.app import create_app

    engine = build_engine(settings, opts)
    host = opts.host or settings.serving.host
    port = settings.serving.port if opts.port is None else opts.port
    app = create_app(engine)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=30,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    print(
        f"serving {engine.model.name} v{engine.model.version} "
        f"(sha256 {engine.model.fingerprint[:12]}) as {opts.variant} on http://{host}:{port}",
        flush=True,
    )
    server.run()
