"""Helpers for tests that serve real models: a registered project and server processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from loopline.config import Settings, deep_merge, load_settings
from loopline.registry.lineage import collect_lineage
from loopline.registry.mlflow_registry import ModelRegistry, RegisteredVersion
from loopline.routing.process import free_port
from tests.conftest import SMALL, make_project
from tests.model.fixtures import train_tiny

SERVE_BASE: dict[str, Any] = {
    # Small, fast answers; the cache off so that every request reaches the model.
    "serving": {"default_max_tokens": 24, "max_tokens_limit": 64, "cache_size": 0},
}
EVAL_REPORT: dict[str, Any] = {
    "generator": "tiny:model",
    "metrics": {"rouge_l": 0.5, "latency_p95_ms": 100.0},
    "per_intent": {},
    "examples": [],
    "max_new_tokens": 24,
    "batch_size": 8,
}
TRAIN_REPORT: dict[str, Any] = {"mode": "scratch", "steps": 120, "loss_curve": []}


def project_settings(root: Path, **overrides: Any) -> Settings:
    return load_settings(
        root, env="local", overrides=deep_merge(deep_merge(SMALL, SERVE_BASE), overrides)
    )


def register_model(settings: Settings, model_dir: Path, run_name: str) -> RegisteredVersion:
    reg = ModelRegistry(settings)
    lineage = collect_lineage(settings, model_dir, extra={"pipeline_run": run_name})
    return reg.log_and_register(
        model_dir, TRAIN_REPORT, EVAL_REPORT, lineage, {"model.name": reg.name}, run_name=run_name
    )


@dataclass(frozen=True)
class ServingProject:
    root: Path
    settings: Settings
    good: RegisteredVersion  # the champion
    models: dict[str, Path]


def build_serving_project(workdir: Path, *, degraded: bool = False) -> ServingProject:
    """A project whose registry holds a trained tiny model as champion (version 1) and,
    with ``degraded``, an under-trained version 2 (its replies lose the format)."""
    root = make_project(workdir / "project")
    settings = project_settings(root)
    models = {"good": train_tiny(workdir / "good")}
    good = register_model(settings, models["good"], "good")
    ModelRegistry(settings).promote(good.version)
    if degraded:
        models["degraded"] = train_tiny(
            workdir / "degraded", training={"max_steps": 12, "warmup_steps": 2}
        )
        register_model(settings, models["degraded"], "degraded")  # version 2
        models["good2"] = train_tiny(workdir / "good2", training={"seed": 43})
        register_model(settings, models["good2"], "good2")  # version 3: a good candidate
    return ServingProject(root, settings, good, models)


@dataclass
class Server:
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def serve_command(root: Path, args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "loopline.cli", "serve", "--project", str(root), *args]


@contextmanager
def running_server(
    root: Path,
    *args: str,
    port: int | None = None,
    log_dir: Path | None = None,
    ready_timeout: float = 90.0,
) -> Iterator[Server]:
    """``loopline serve`` as a real process on 127.0.0.1; stopped (SIGTERM) on exit."""
    port = port or free_port()
    log_path = (log_dir or root) / f"serve-{port}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            serve_command(root, ["--port", str(port), *args]),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=root,
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", port, proc, log_path)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{server.output()}")
            try:
                if httpx.get(f"{server.url}/readyz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not ready in {ready_timeout} s:\n{server.output()}")
            time.sleep(0.2)
        yield server
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
