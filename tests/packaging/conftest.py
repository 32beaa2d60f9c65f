"""Fixtures of the packaging tests: a project with a champion, a fake registered folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loopline.config import Settings
from loopline.registry.mlflow_registry import ModelRegistry, RegisteredVersion


def register_fake(settings: Settings, folder: Path) -> RegisteredVersion:
    """Register a small fake model folder (not loadable, fine for packaging errors)."""
    from tests.integration.test_mlflow_registry import make_model, register

    reg = ModelRegistry(settings)
    return register(reg, settings, make_model(folder))


@pytest.fixture(scope="session")
def champion_project(serving_project: Any) -> Any:
    """The shared serving project: a trained tiny model registered as ``champion``."""
    return serving_project
