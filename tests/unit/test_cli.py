"""The command line: exit codes and messages, without training anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loopline.cli import app
from loopline.config import load_settings
from loopline.data.io import write_jsonl
from loopline.data.prepare import build_prepared, build_raw
from tests.conftest import SMALL

runner = CliRunner()


@pytest.fixture
def prepared(project_root: Path) -> Path:
    settings = load_settings(project_root, env="local", overrides={"data": SMALL["data"]})
    raw, _ = build_raw(settings.data)
    frames, _ = build_prepared(raw, settings.data)
    out = project_root / "prepared"
    out.mkdir()
    for split, frame in frames.items():
        write_jsonl(frame, out / f"{split}.jsonl")
    return out


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "train", "validate-data", "status", "stage", "config", "ui"):
        assert command in result.output
    for command in ("run", "validate-data", "status"):
        sub = runner.invoke(app, [command, "--help"])
        assert sub.exit_code == 0 and "--project" in sub.output


def test_validate_data_accepts_a_good_directory(project_root: Path, prepared: Path) -> None:
    result = runner.invoke(app, ["validate-data", str(prepared), "--project", str(project_root)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK ")
    assert "data contract passed" in result.output


def test_validate_data_lists_each_failure_and_exits_1(project_root: Path, prepared: Path) -> None:
    test_file = prepared / "test.jsonl"
    rows = [json.loads(line) for line in test_file.read_text().splitlines()]
    rows[0]["intent"] = "lost_parcel"
    rows[1]["prompt"] = "Reach me at jane.doe@example.com please"
    test_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = runner.invoke(app, ["validate-data", str(test_file), "--project", str(project_root)])
    assert result.exit_code == 1
    assert "INVALID" in result.output
    assert "lost_parcel" in result.output
    assert "email" in result.output.lower()
    assert "jane.doe@example.com" not in result.output  # PII is never echoed


def test_validate_data_missing_file_is_a_clear_error(project_root: Path) -> None:
    missing = project_root / "nope.jsonl"
    result = runner.invoke(app, ["validate-data", str(missing), "--project", str(project_root)])
    assert result.exit_code == 1
    assert "nope.jsonl" in result.output and "not found" in result.output


def test_status_before_any_run_says_what_to_do(project_root: Path) -> None:
    result = runner.invoke(app, ["status", "--project", str(project_root)])
    assert result.exit_code == 0, result.output
    assert "loopline run" in result.output
    assert not (project_root / ".loopline" / "mlflow.db").exists()


def test_config_shows_overrides_and_rejects_unknown_keys(project_root: Path) -> None:
    ok = runner.invoke(
        app, ["config", "--project", str(project_root), "--set", "training.max_steps=7"]
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["training"]["max_steps"] == 7
    bad = runner.invoke(
        app, ["config", "--project", str(project_root), "--set", "training.max_stepz=7"]
    )
    assert bad.exit_code == 2
    assert "unknown key 'training.max_stepz'" in bad.output


def test_unknown_stage_is_refused(project_root: Path) -> None:
    result = runner.invoke(app, ["stage", "deploy", "--project", str(project_root)])
    assert result.exit_code != 0
    assert "deploy" in result.output
