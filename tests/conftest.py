"""Shared fixtures. Every test gets telemetry off and an isolated project root."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

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
    for name in ("params.yaml", "dvc.yaml"):
        if (REPO_ROOT / name).exists():
            shutil.copy2(REPO_ROOT / name, dest / name)
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
