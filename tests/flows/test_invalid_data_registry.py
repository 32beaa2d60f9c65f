"""Each broken dataset is refused by the pipeline's validate stage and changes nothing.

The stage runs as in the pipeline (DVC runs `loopline stage validate` in a subprocess; the
orchestrator reads the report back), next to a registry that already has a champion. After
every refusal the registry (versions, aliases, runs) and the audit trail are as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loopline import workflow
from loopline.config import Settings, load_settings
from loopline.data.contracts import DataValidationError
from loopline.registry.mlflow_registry import ModelRegistry
from tests.conftest import SMALL, make_dvc_project
from tests.data.test_broken_datasets import CASES, good_frames, write_dir
from tests.flows.conftest import git_init
from tests.integration.test_mlflow_registry import make_model, register

pytestmark = pytest.mark.slow

# The kinds of breakage the issue names; the data tests cover these and more in-process.
ISSUE_CASES = [
    "missing column",
    "wrong type (one value)",
    "nulls",
    "duplicates across splits",
    "unknown label",
    "PII left in",
    "over-long prompt",
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = make_dvc_project(tmp_path_factory.mktemp("invalid"), SMALL)
    git_init(root)
    settings = load_settings(root, env="local")
    workflow.prepare_workspace(settings)
    for stage in ("generate", "prepare", "validate"):
        workflow.run_stage(settings, stage)
    registry = ModelRegistry(settings)
    version = register(registry, settings, make_model(root / "champion-model"))
    registry.promote(version.version)
    workflow.audit_trail(settings).append("promote", f"m/{version.version}", "test", {})
    return settings


def snapshot(settings: Settings) -> dict[str, Any]:
    registry = ModelRegistry(settings)
    versions = registry.list_versions()
    with registry._uris():
        runs = registry.client.search_runs([registry.experiment_id()])
    return {
        "versions": sorted((v.version, tuple(sorted(v.aliases))) for v in versions),
        "runs": sorted(r.info.run_id for r in runs),
        "audit": [e.hash for e in workflow.audit_trail(settings).entries()],
    }


def _refused(settings: Settings) -> str:
    with pytest.raises(DataValidationError) as err:
        workflow.run_stage(settings, "validate")
    return str(err.value)


@pytest.mark.parametrize("case", ISSUE_CASES)
def test_broken_dataset_is_refused_and_changes_nothing(project: Settings, case: str) -> None:
    before = snapshot(project)
    prepared = project.path(project.data.prepared_dir)
    frames = good_frames(project)
    CASES[case].breaks(frames)
    write_dir(frames, prepared)
    message = _refused(project)
    for expected in CASES[case].expected:
        assert expected in message, message
    assert snapshot(project) == before


def test_empty_file_is_refused_and_changes_nothing(project: Settings) -> None:
    before = snapshot(project)
    prepared = project.path(project.data.prepared_dir)
    write_dir(good_frames(project), prepared)
    (prepared / "val.jsonl").write_text("")
    message = _refused(project)
    assert "val.jsonl" in message and "empty" in message
    assert snapshot(project) == before


def test_model_dir_untouched_by_refusals(project: Settings) -> None:
    assert not project.path("artifacts/model").exists()
    assert Path(project.path("artifacts/reports/data_validation.json")).exists()
