"""The train/pipeline flows end to end under a real Prefect backend, DVC and MLflow."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml

from flows.params import ProjectParams
from loopline.config import load_settings
from tests.conftest import LENIENT_GATES, SMALL, make_dvc_project
from tests.flows.conftest import git_init

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> dict:
    """Run the pipeline flow twice on one small project and keep both summaries."""
    from flows.pipeline import pipeline

    root = make_dvc_project(tmp_path_factory.mktemp("flowproj"), SMALL, LENIENT_GATES)
    git_init(root)
    params = ProjectParams(project_root=str(root), env="local")
    first = pipeline(params)["train"]
    second = pipeline(params)["train"]
    # A parameter change retrains: a second version is reviewed against champion v1.
    settings_file = root / "params.yaml"
    changed = yaml.safe_load(settings_file.read_text())
    changed["training"]["seed"] += 1
    settings_file.write_text(yaml.safe_dump(changed, sort_keys=False))
    third = pipeline(params)["train"]
    return {"root": root, "first": first, "second": second, "third": third}


def test_first_run_registers_and_promotes_version_1(trained_project: dict) -> None:
    first = trained_project["first"]
    assert [s for s, info in first["stages"].items() if info["ran"]] == [
        "generate", "prepare", "validate", "train", "evaluate",
    ]  # fmt: skip
    assert first["version"] == "1" and not first["reused_version"]
    assert first["gates_passed"], first["gates"]
    assert first["decision"] == "promote"
    assert first["champion_before"] is None


def test_registry_has_aliases_card_and_lineage(trained_project: dict) -> None:
    from mlflow import MlflowClient

    settings = load_settings(trained_project["root"], env="local")
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
    name = settings.model.name
    # Version 1 as the first run left it (the retrain test checks how aliases moved later).
    champion = client.get_model_version(name, "1")
    assert trained_project["first"]["decision"] == "promote"
    # Model card: version description and an artifact of the run.
    assert "Intended use" in champion.description
    assert "intent_accuracy" in champion.description
    artifacts = [a.path for a in client.list_artifacts(champion.run_id)]
    assert any("model_card" in p for p in artifacts), artifacts
    # Lineage tags: git commit, data version from dvc.lock, model fingerprint, config hash.
    tags = champion.tags
    lock = yaml.safe_load((trained_project["root"] / "dvc.lock").read_text())
    prepared_md5 = next(
        o["md5"] for o in lock["stages"]["prepare"]["outs"] if o["path"] == "data/prepared"
    )
    assert prepared_md5 in tags.values()
    assert len(tags["loopline.git_commit"]) == 40
    assert tags["loopline.git_dirty"] in {"true", "false"}
    assert tags["loopline.model_fingerprint"]
    # Run logged params, metrics and the evaluation report.
    run = client.get_run(champion.run_id)
    assert run.data.params["training.max_steps"] == str(SMALL["training"]["max_steps"])
    assert 0.0 <= run.data.metrics["rouge_l"] <= 1.0
    assert run.data.metrics["intent_accuracy"] >= 0.0


def test_second_run_reruns_nothing_and_registers_nothing(trained_project: dict) -> None:
    second = trained_project["second"]
    assert not any(info["ran"] for info in second["stages"].values()), second["stages"]
    assert second["version"] == "1" and second["reused_version"]
    assert second["decision"] == "keep_champion"
    settings = load_settings(trained_project["root"], env="local")
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
    versions = client.search_model_versions(f"name='{settings.model.name}'")
    assert sorted(str(v.version) for v in versions) == ["1", "2"]  # 2 is the later retrain


def test_retrain_is_reviewed_against_the_champion(trained_project: dict) -> None:
    third = trained_project["third"]
    ran = [stage for stage, info in third["stages"].items() if info["ran"]]
    assert ran == ["train", "evaluate"]  # the data stages did not change
    assert third["version"] == "2" and not third["reused_version"]
    assert third["champion_before"] == "1"
    regression = [g for g in third["gates"] if g["gate"].endswith("no_regression")]
    assert regression and all("skipped" not in g["message"] for g in regression)
    assert third["decision"] in {"promote", "keep_champion"}
    from mlflow import MlflowClient

    settings = load_settings(trained_project["root"], env="local")
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
    aliases = {
        k: str(v) for k, v in client.get_registered_model(settings.model.name).aliases.items()
    }
    if third["decision"] == "promote":
        assert aliases["champion"] == "2" and aliases["previous_champion"] == "1"
    else:
        assert aliases["champion"] == "1" and aliases["challenger"] == "2"


def test_audit_trail_records_registration_and_promotion(trained_project: dict) -> None:
    from loopline.governance.audit import AuditTrail

    trail = AuditTrail(trained_project["root"] / ".loopline" / "audit.jsonl")
    trail.verify()
    actions = [e.action for e in trail.entries()]
    assert actions[:2] == ["register", "promote"]
    assert actions.count("register") == 2  # v1, then v2 after the retrain; none on the rerun


def test_dvc_remote_holds_the_data(trained_project: dict) -> None:
    remote = trained_project["root"] / ".loopline" / "dvc-remote"
    assert sum(1 for p in remote.rglob("*") if p.is_file()) > 0


def _version_count(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return int(conn.execute("select count(*) from model_versions").fetchone()[0])


def test_invalid_data_stops_the_flow_before_training(tmp_path: Path, prefect_harness: None) -> None:
    """A generate stage that emits broken tickets: validation fails, nothing is trained or
    registered, and the error lists each failed expectation."""
    from flows.train import train
    from loopline.data.contracts import DataValidationError
    from loopline.data.io import write_jsonl
    from loopline.data.prepare import build_raw

    root = make_dvc_project(tmp_path / "broken", SMALL)
    raw, _ = build_raw(load_settings(root, env="local").data)
    raw.loc[raw.index[:7], "intent"] = "lost_parcel"  # a label outside the contract
    raw.loc[raw.index[7:10], "prompt"] = "x" * 5000  # longer than data.max_prompt_chars
    bad = write_jsonl(raw, tmp_path / "bad_tickets.jsonl")
    dvc = yaml.safe_load((root / "dvc.yaml").read_text())
    dvc["stages"]["generate"]["cmd"] = f"mkdir -p data/raw && cp {bad} data/raw/tickets.jsonl"
    (root / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False))
    with pytest.raises(DataValidationError) as err:
        train(ProjectParams(project_root=str(root), env="local"))
    message = str(err.value)
    assert "lost_parcel" in message
    assert "prompt" in message
    assert not (root / "artifacts" / "model").exists()
    assert _version_count(root / ".loopline" / "mlflow.db") == 0


def test_status_shows_champion_metrics_lineage_and_audit(trained_project: dict) -> None:
    from typer.testing import CliRunner

    from loopline.cli import app

    result = CliRunner().invoke(app, ["status", "--project", str(trained_project["root"])])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    expected = "2" if trained_project["third"]["decision"] == "promote" else "1"
    champion_line = f"champion   version {expected}"
    assert any(line.strip().startswith(champion_line) for line in lines), result.output
    assert "rouge_l=" in result.output
    assert "loopline.git_commit" in result.output
    assert "loopline.data.prepared_md5" in result.output
    assert "promote loopline-support/1" in result.output
    as_json = CliRunner().invoke(
        app, ["status", "--json", "--project", str(trained_project["root"])]
    )
    info = json.loads(as_json.output)
    assert info["registry"]["champion"]["version"] == expected
