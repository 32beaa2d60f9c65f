"""`loopline run` as a user runs it: a subprocess on a fresh checkout with no state yet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import LENIENT_GATES, SMALL, make_dvc_project
from tests.flows.conftest import git_init

pytestmark = pytest.mark.slow


def _loopline(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return subprocess.run(
        [str(Path(sys.executable).parent / "loopline"), *args, "--project", str(root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_run_on_a_fresh_checkout_then_rerun_without_prefect(tmp_path: Path) -> None:
    root = make_dvc_project(tmp_path / "fresh", SMALL, LENIENT_GATES)
    git_init(root)
    assert not (root / ".loopline").exists()

    first = _loopline(root, "run", "--json", str(tmp_path / "first.json"))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    summary = json.loads((tmp_path / "first.json").read_text())
    assert summary["decision"] == "promote" and summary["version"] == "1"
    assert "Where to look" in first.stdout and "loopline ui mlflow" in first.stdout
    # The local Prefect backend kept its records in the checkout (what `loopline ui prefect` shows).
    assert any((root / ".loopline" / "prefect").glob("*.db"))

    second = _loopline(root, "run", "--no-prefect", "--json", str(tmp_path / "second.json"))
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    again = json.loads((tmp_path / "second.json").read_text())
    assert not any(stage["ran"] for stage in again["stages"].values())
    assert again["reused_version"] and again["decision"] == "keep_champion"

    status = _loopline(root, "status")
    assert status.returncode == 0 and "champion   version 1" in status.stdout
