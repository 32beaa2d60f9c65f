"""Shared fixtures. Every test gets telemetry off and an isolated project root."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from loopline.config import Settings, load_settings
from loopline.runtime import configure_environment

configure_environment()
REPO_ROOT = Path(__file__).resolve().parents[1]

# A configuration small enough for tests: a few hundred tickets, a few dozen steps.
SMALL: dict[str, Any] = {
    "data": {"n_tickets": 400},
    "model": {
        "tiny": {
            "vocab_size": 512,
            "hidden_size": 64,
            "num_layers": 2,
            "num_heads": 4,
            "intermediate_size": 128,
        }
    },
    "training": {"max_steps": 40, "batch_size": 16, "max_seq_len": 128},
    "evaluation": {"max_examples": 24, "max_new_tokens": 32, "batch_size": 24},
}


def make_project(dest: Path) -> Path:
    """Copy the project's configuration files into ``dest`` (a throwaway project root)."""
    shutil.copytree(REPO_ROOT / "configs", dest / "configs")
    for name in ("params.yaml", "dvc.yaml", ".dvcignore"):
        if (REPO_ROOT / name).exists():
            shutil.copy2(REPO_ROOT / name, dest / name)
    return dest


# Gates a few-dozen-step test model can pass; the production gates live in configs/.
LENIENT_GATES: dict[str, Any] = {
    "gates": [
        {"metric": "rouge_l", "min": 0.05, "max_regression": 0.5},
        {"metric": "latency_p95_ms", "higher_is_better": False, "max": 60000.0},
    ]
}


def make_dvc_project(
    dest: Path, params: dict[str, Any] | None = None, overlay: dict[str, Any] | None = None
) -> Path:
    """A throwaway project DVC can run in: configs, dvc.yaml, params.yaml merged with
    ``params`` (DVC stages read params.yaml, so overrides must be written there) and a copy of
    the source tree the stages declare as dependencies; ``overlay`` becomes the local
    environment overlay."""
    from loopline.config import deep_merge

    make_project(dest)
    shutil.copytree(
        REPO_ROOT / "src" / "loopline",
        dest / "src" / "loopline",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    merged = deep_merge(yaml.safe_load((dest / "params.yaml").read_text()), params or {})
    (dest / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    # Non-DVC sections (gates, promotion, ...) go into the local environment overlay.
    (dest / "configs" / "envs" / "local.yaml").write_text(yaml.safe_dump(overlay or {}))
    return dest


@pytest.fixture
def project_root(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")


@pytest.fixture
def small_settings(project_root: Path) -> Callable[..., Settings]:
    """Build Settings for an isolated project root with the SMALL overrides (plus yours)."""
    from loopline.config import deep_merge

    def build(**overrides: Any) -> Settings:
        return load_settings(project_root, env="local", overrides=deep_merge(SMALL, overrides))

    return build


@pytest.fixture(autouse=True)
def _no_stray_mlruns(monkeypatch: pytest.MonkeyPatch) -> None:
    # MLflow writes ./mlruns relative to the cwd when no URI is set: never let a test do that.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    os.environ.setdefault("LOOPLINE_ENV", "local")


@pytest.fixture(scope="session")
def serving_project(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A project whose registry holds a trained tiny champion (v1) and an under-trained v2
    (shared by the serving, packaging and release tests; see tests/serving/support.py)."""
    from tests.serving.support import build_serving_project

    return build_serving_project(tmp_path_factory.mktemp("serving"), degraded=True)


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One temporary Prefect backend for the whole session (it costs ~10 s to start)."""
    import os

    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with (
        prefect_test_harness(server_startup_timeout=90),
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield
