from __future__ import annotations

from pathlib import Path

import pytest

from tests.model.fixtures import train_tiny


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SMALL model trained for the whole session (a few seconds)."""
    return train_tiny(tmp_path_factory.mktemp("tiny"))
