"""Helpers shared by the model, training and generator tests: small settings and tiny models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loopline.config import Settings, deep_merge, load_settings
from tests.conftest import SMALL, make_project
from tests.model.tickets import write_prepared

# SMALL shape, a few more steps so the model learns to stop (EOS) and answers differ in length.
# Every training knob is pinned here so that tuning the demo in params.yaml cannot change it.
TINY_TRAINING: dict[str, Any] = {
    "training": {"max_steps": 120, "learning_rate": 0.006, "warmup_steps": 30, "weight_decay": 0.01}
}


def settings_for(root: Path, **overrides: Any) -> Settings:
    """SMALL settings for a throwaway project at ``root`` plus ``overrides``."""
    project = make_project(root) if not (root / "configs").exists() else root
    return load_settings(project, env="local", overrides=deep_merge(SMALL, overrides))


def train_tiny(workdir: Path, n_tickets: int = 400, **overrides: Any) -> Path:
    """Train a SMALL-shaped model on generated tickets; returns the model folder."""
    from loopline.training.trainer import train_model

    prepared = write_prepared(workdir / "prepared", n_tickets, seed=3)
    settings = settings_for(workdir / "project", **deep_merge(TINY_TRAINING, overrides))
    out = workdir / "model"
    train_model(settings, prepared, out)
    return out
