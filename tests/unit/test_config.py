from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from loopline.config import ConfigError, load_settings, parse_override


def _write(path: Path, data: object) -> None:
    path.write_text(yaml.safe_dump(data))


def test_repository_config_loads_for_every_environment(project_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://u@db/mlflow")
    for env in ("local", "staging", "prod"):
        s = load_settings(project_root, env=env)
        assert s.env == env
        assert {g.metric for g in s.gates} >= {"intent_accuracy", "rouge_l"}
    prod = load_settings(project_root, env="prod")
    assert prod.tracking_uri == "postgresql://u@db/mlflow"
    assert prod.promotion.mode == "manual"
    assert prod.artifact_location.startswith("s3://")


def test_local_defaults_live_under_state_dir(project_root: Path) -> None:
    s = load_settings(project_root, env="local")
    state = (project_root / ".loopline").resolve()
    assert s.tracking_uri == f"sqlite:///{state / 'mlflow.db'}"
    assert s.artifact_location == (state / "mlartifacts").as_uri()
    assert s.dvc_remote_url == str(state / "dvc-remote")


def test_unknown_key_names_key_and_file(project_root: Path) -> None:
    params = yaml.safe_load((project_root / "params.yaml").read_text())
    params["training"]["max_stepz"] = 3
    _write(project_root / "params.yaml", params)
    with pytest.raises(ConfigError) as err:
        load_settings(project_root, env="local")
    assert "params.yaml" in str(err.value)
    assert "unknown key 'training.max_stepz'" in str(err.value)


def test_mistyped_value_in_env_overlay_names_file(project_root: Path) -> None:
    _write(project_root / "configs/envs/local.yaml", {"data": {"n_tickets": "many"}})
    with pytest.raises(ConfigError) as err:
        load_settings(project_root, env="local")
    assert "configs/envs/local.yaml" in str(err.value)
    assert "data.n_tickets" in str(err.value)


def test_unknown_top_level_section_in_base(project_root: Path) -> None:
    base = yaml.safe_load((project_root / "configs/loopline.yaml").read_text())
    base["gatez"] = []
    _write(project_root / "configs/loopline.yaml", base)
    with pytest.raises(ConfigError, match=r"configs/loopline.yaml: unknown key 'gatez'"):
        load_settings(project_root, env="local")


def test_missing_env_variable_is_named(project_root: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(
        ConfigError, match=r"staging.yaml: tracking.tracking_uri uses \$\{MLFLOW_TRACKING_URI\}"
    ):
        load_settings(project_root, env="staging")


def test_unknown_environment_lists_known(project_root: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown environment 'qa'.*local"):
        load_settings(project_root, env="qa")


def test_section_in_two_files_is_refused(project_root: Path) -> None:
    base = yaml.safe_load((project_root / "configs/loopline.yaml").read_text())
    base["training"] = {"max_steps": 1}
    _write(project_root / "configs/loopline.yaml", base)
    with pytest.raises(ConfigError, match="appear in both"):
        load_settings(project_root, env="local")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"data": {"splits": {"train": 0.9, "val": 0.1, "test": 0.1}}}, "sum to 1"),
        ({"training": {"mode": "lora"}}, "needs training.base_model"),
        ({"model": {"tiny": {"hidden_size": 100, "num_heads": 3}}}, "divisible"),
        ({"gates": [{"metric": "rouge_l"}]}, "sets none of min, max, max_regression"),
        ({"gates": [{"metric": "x", "min": 1}, {"metric": "x", "max": 2}]}, "gated twice"),
        ({"model": {"name": "bad name!"}}, "model name"),
    ],
)
def test_semantic_validation(project_root: Path, override: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(project_root, env="local", overrides=override)


def test_settings_are_frozen(project_root: Path) -> None:
    s = load_settings(project_root, env="local")
    with pytest.raises(Exception, match="frozen"):
        s.training.max_steps = 1  # type: ignore[misc]


def test_overrides_parse_yaml_values() -> None:
    assert parse_override("training.max_steps=10") == {"training": {"max_steps": 10}}
    assert parse_override("promotion.mode=manual") == {"promotion": {"mode": "manual"}}
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        parse_override("training.max_steps")
    s_args = ["training.max_steps=12", "data.seed=3"]
    assert parse_override(s_args[1]) == {"data": {"seed": 3}}


def test_invalid_yaml_is_reported_with_file(project_root: Path) -> None:
    (project_root / "params.yaml").write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match=r"params\.yaml: not valid YAML"):
        load_settings(project_root, env="local")
