"""The registry adapter against a real MLflow on SQLite (one database for the whole session).

Most tests register small fake model folders, so predictions go through a stub
``loopline.models.base`` (it checks it was handed the restored HF folder).
``test_a_trained_model_predicts_the_same_through_the_registry`` registers a really trained
tiny model and predicts through the real ``load_generator``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import types
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.entities import LoggedModelStatus

from loopline.config import Settings
from loopline.registry.lineage import Lineage, collect_lineage, model_fingerprint
from loopline.registry.mlflow_registry import (
    DESCRIPTION_LIMIT,
    ModelFolderError,
    ModelRegistry,
    RegistryError,
    pip_requirements,
)
from loopline.registry.model_card import render_model_card

pytestmark = pytest.mark.integration

METRICS: dict[str, float] = {
    "intent_accuracy": 0.91,
    "rouge_l": 0.87,
    "chrf": 70.5,
    "semantic_similarity": 0.93,
    "latency_p50_ms": 80.0,
    "latency_p95_ms": 140.0,
    "tokens_per_s": 612.0,
    "n_examples": 300,
}
SLICES: dict[str, dict[str, float]] = {
    "billing": {
        "n": 80,
        "intent_accuracy": 0.95,
        "rouge_l": 0.9,
        "chrf": 72.0,
        "semantic_similarity": 0.94,
    },
    "refund": {
        "n": 40,
        "intent_accuracy": 0.85,
        "rouge_l": 0.8,
        "chrf": 66.0,
        "semantic_similarity": 0.9,
    },
}
# The shape of the evaluation stage's report (loopline.evaluation.metrics.EvalReport).
EVAL: dict[str, Any] = {
    "generator": "tiny:artifacts/model",
    "metrics": METRICS,
    "per_intent": SLICES,
    "examples": [{"prompt": "p", "prediction": "x", "rouge_l": 0.5}],
    "max_new_tokens": 32,
    "batch_size": 24,
}
# The shape of the training stage's report (loopline.training.trainer.TrainReport).
TRAIN: dict[str, Any] = {
    "mode": "scratch",
    "steps": 40,
    "final_loss": 1.25,
    "val_loss": None,
    "loss_curve": [[10, 3.5], [20, 2.4], [30, 1.7], [40, 1.25]],
    "train_examples": 320,
    "wall_seconds": 12.5,
    "tokens_per_s": 9000.0,
    "parameters": 1_500_000,
    "trainable_parameters": 1_500_000,
    "seed": 42,
    "base_model": None,
    "torch_version": "2.13.0+cpu",
}


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A migrated SQLite tracking/registry database shared by every test in the session."""
    from mlflow import MlflowClient

    cwd = Path.cwd()
    before = {p for p in ("mlruns", "mlflow.db") if (cwd / p).exists()}
    base = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{base / 'mlflow.db'}"
    start = time.perf_counter()
    MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments()  # runs migrations
    print(f"\nMLflow SQLite migration: {time.perf_counter() - start:.2f} s")
    yield {"tracking_uri": uri, "artifact_location": (base / "artifacts").as_uri()}
    after = {p for p in ("mlruns", "mlflow.db") if (cwd / p).exists()}
    assert after == before, f"MLflow wrote {after - before} into the cwd"


class StubGenerator:
    name = "stub"

    def __init__(self, path: str) -> None:
        assert (Path(path) / "config.json").is_file(), "not handed the HF folder"
        assert (Path(path) / "tokenizer.json").is_file()
        self.path = path

    def generate(self, prompts: list[str], *, max_new_tokens: int, **_: Any) -> list[str]:
        return [f"intent: billing\nreply: [{max_new_tokens}] {p[::-1]}" for p in prompts]


@pytest.fixture
def stub_models_base(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    loaded: list[str] = []
    module = types.ModuleType("loopline.models.base")

    def load_generator(path: str) -> StubGenerator:
        loaded.append(path)
        return StubGenerator(path)

    module.load_generator = load_generator  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "loopline.models.base", module)
    return loaded


def make_model(folder: Path, weights: bytes = b"\x00\x01" * 512) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE"}}))
    (folder / "tokenizer_config.json").write_text("{}")
    (folder / "loopline_model.json").write_text(json.dumps({"kind": "tiny", "version": 1}))
    return folder


@pytest.fixture
def make_registry(
    mlflow_store: dict[str, str], small_settings: Callable[..., Settings]
) -> Callable[[], tuple[ModelRegistry, Settings]]:
    def build() -> tuple[ModelRegistry, Settings]:
        settings = small_settings(
            tracking={**mlflow_store, "experiment": "loopline-it"},
            model={"name": f"it-{uuid.uuid4().hex[:10]}"},
        )
        return ModelRegistry(settings), settings

    return build


@pytest.fixture
def registry(
    make_registry: Callable[[], tuple[ModelRegistry, Settings]],
) -> tuple[ModelRegistry, Settings]:
    return make_registry()


def lineage_for(settings: Settings, model_dir: Path) -> Lineage:
    return collect_lineage(settings, model_dir, extra={"pipeline_run": "it"})


def register(
    reg: ModelRegistry, settings: Settings, model_dir: Path, **eval_overrides: float
) -> Any:
    report = {**EVAL, "metrics": {**METRICS, **eval_overrides}}
    params = {"training": settings.training.model_dump(mode="json"), "model.name": reg.name}
    return reg.log_and_register(model_dir, TRAIN, report, lineage_for(settings, model_dir), params)


def runs_of(reg: ModelRegistry) -> list[Any]:
    with reg._uris():
        return list(
            reg.client.search_runs(
                [reg.experiment_id()], f"tags.`loopline.model_name` = '{reg.name}'"
            )
        )


def test_log_and_register_creates_a_complete_first_version(
    registry: tuple[ModelRegistry, Settings], tmp_path: Path, stub_models_base: list[str]
) -> None:
    import mlflow

    reg, settings = registry
    model_dir = make_model(tmp_path / "model")
    start = time.perf_counter()
    v1 = register(reg, settings, model_dir)
    print(f"\nlog_and_register: {time.perf_counter() - start:.2f} s")
    assert stub_models_base == []  # registering never loads the generator

    assert (v1.name, v1.version, v1.aliases) == (reg.name, "1", ("challenger",))
    assert v1.model_uri == f"models:/{reg.name}/1"
    # version tags = lineage tags
    assert v1.tags["loopline.model_fingerprint"] == model_fingerprint(model_dir)
    assert v1.tags["loopline.config_hash"] == lineage_for(settings, model_dir).config_hash
    assert v1.tags["loopline.pipeline_run"] == "it"
    assert v1.lineage.model_fingerprint == model_fingerprint(model_dir)
    # metrics: evaluation, slices, train
    assert v1.eval_metrics["rouge_l"] == pytest.approx(0.87)
    assert v1.eval_metrics["n_examples"] == 300
    assert v1.metrics["slice.refund.rouge_l"] == pytest.approx(0.8)
    assert v1.metrics["slice.billing.n"] == 80
    assert v1.metrics["train.final_loss"] == pytest.approx(1.25)
    assert v1.metrics["train.parameters"] == 1_500_000
    assert "train.seed" not in v1.metrics and "train.loss_curve" not in v1.metrics

    client = reg.client
    with reg._uris():
        run = client.get_run(v1.run_id)
        history = client.get_metric_history(v1.run_id, "train.loss")
        artifacts = {a.path for a in client.list_artifacts(v1.run_id, "reports")}
        mv = client.get_model_version(reg.name, "1")
        model_id = str(mv.source).removeprefix("models:/")
        logged = client.get_logged_model(model_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["loopline.git_commit"] == v1.tags["loopline.git_commit"]
    assert run.data.params["train.mode"] == "scratch"
    assert run.data.params["train.seed"] == "42"
    assert run.data.params["train.torch_version"] == "2.13.0+cpu"
    assert run.data.params["training.max_steps"] == "40"
    assert run.data.params["model.name"] == reg.name
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (10, 3.5),
        (20, 2.4),
        (30, 1.7),
        (40, 1.25),
    ]
    assert artifacts == {"reports/eval_report.json", "reports/train_report.json"}
    assert logged.status == LoggedModelStatus.READY
    assert logged.source_run_id == v1.run_id
    assert {m.key for m in logged.metrics or []} >= {"rouge_l", "intent_accuracy"}
    eval_back = json.loads(reg.read_run_artifact(1, "reports/eval_report.json"))
    assert eval_back == EVAL

    # the pyfunc model: signature, explicit requirements, HF folder inside, predict
    with reg._uris():
        info = mlflow.models.get_model_info(v1.model_uri)
        reqs = mlflow.artifacts.load_text(f"{v1.model_uri}/requirements.txt").split()
        loaded = mlflow.pyfunc.load_model(f"models:/{reg.name}@challenger")
    assert info.signature.inputs.input_names() == ["prompt"]
    assert info.signature.inputs.to_dict() == [
        {"type": "string", "name": "prompt", "required": True}
    ]
    assert info.signature.outputs.to_dict() == [{"type": "string", "required": True}]
    assert reqs == pip_requirements()
    assert "mlflow==3.17.2" in reqs and not any(r.startswith("prefect") for r in reqs)

    import pandas as pd

    out = loaded.predict(pd.DataFrame({"prompt": ["abc", "hello"]}), params={"max_new_tokens": 8})
    assert list(out) == ["intent: billing\nreply: [8] cba", "intent: billing\nreply: [8] olleh"]
    assert stub_models_base and Path(stub_models_base[-1]).name == "model"


def test_second_version_moves_challenger_and_promotion_moves_champion(
    registry: tuple[ModelRegistry, Settings], tmp_path: Path, stub_models_base: list[str]
) -> None:
    reg, settings = registry
    assert reg.status()["champion"] is None and reg.status()["registered"] is False
    v1 = register(reg, settings, make_model(tmp_path / "m1"))
    assert reg.promote(v1.version) is None
    v2 = register(reg, settings, make_model(tmp_path / "m2", b"\x07" * 1024), rouge_l=0.9)
    assert v2.version == "2"

    champion = reg.get_by_alias("champion")
    challenger = reg.get_by_alias("challenger")
    assert champion is not None and challenger is not None
    assert (champion.version, challenger.version) == ("1", "2")
    assert challenger.eval_metrics["rouge_l"] == pytest.approx(0.9)
    assert champion.eval_metrics["rouge_l"] == pytest.approx(0.87)

    status = reg.status()
    assert status["model"] == reg.name and status["registered"] is True
    assert status["aliases"] == {"champion": "1", "challenger": "2"}
    assert status["champion"]["version"] == "1"
    assert status["challenger"]["metrics"]["rouge_l"] == pytest.approx(0.9)
    assert (
        status["challenger"]["lineage"]["loopline.model_fingerprint"]
        == v2.tags["loopline.model_fingerprint"]
    )
    assert status["challenger"]["tags"] == dict(v2.tags)
    assert set(status["champion"]) >= {"version", "run_id", "model_uri", "aliases", "metrics"}
    json.dumps(status)  # plain data

    assert reg.promote("2") == "1"
    assert reg.status()["aliases"] == {"champion": "2", "previous_champion": "1"}
    assert reg.promote(2) == "2"  # already champion: nothing moves

    reg.set_alias("canary", 1)
    assert reg.get_by_alias("canary").version == "1"  # type: ignore[union-attr]
    reg.delete_alias("canary")
    assert reg.get_by_alias("canary") is None
    with pytest.raises(ValueError, match="invalid alias"):
        reg.set_alias("bad alias", 1)
    with pytest.raises(Exception, match="9"):
        reg.set_alias("canary", 9)
    assert [v.version for v in reg.list_versions()] == ["1", "2"]


def test_find_by_fingerprint(
    make_registry: Callable[[], tuple[ModelRegistry, Settings]],
    tmp_path: Path,
    stub_models_base: list[str],
) -> None:
    reg, settings = make_registry()
    model_dir = make_model(tmp_path / "m")
    fp = model_fingerprint(model_dir)
    assert reg.find_by_fingerprint(fp) is None  # no registered model yet
    v1 = register(reg, settings, model_dir)
    found = reg.find_by_fingerprint(fp)
    assert found is not None and found.version == v1.version
    assert found.eval_metrics == v1.eval_metrics
    assert reg.find_by_fingerprint("0" * 64) is None
    with pytest.raises(ValueError):
        reg.find_by_fingerprint("not-a-hash' or '1'='1")
    # another registered model in the same store does not see it
    other, _ = make_registry()
    assert other.find_by_fingerprint(fp) is None


def test_model_card_artifact_and_description(
    registry: tuple[ModelRegistry, Settings], tmp_path: Path, stub_models_base: list[str]
) -> None:
    reg, settings = registry
    v1 = register(reg, settings, make_model(tmp_path / "m"))
    card = render_model_card(settings=settings, version=v1, train_report=TRAIN, eval_report=EVAL)
    assert f"# Model card: {reg.name} v1" in card and "| refund | 40 |" in card
    uri = reg.log_model_card(v1.version, card)
    assert uri.endswith("/model_card.md")
    assert reg.read_run_artifact(v1.version, "model_card.md") == card
    assert reg.get_version(v1.version).description == card

    long_card = card + "\n" + ("x" * 80 + "\n") * 100
    reg.log_model_card(v1.version, long_card)
    assert reg.read_run_artifact(v1.version, "model_card.md") == long_card
    description = reg.get_version(v1.version).description
    assert len(description) <= DESCRIPTION_LIMIT
    assert description.endswith("the full card is the run artifact model_card.md)")

    reg.set_description(v1.version, "short")
    assert reg.get_version(v1.version).description == "short"


def test_download_model_round_trip(
    registry: tuple[ModelRegistry, Settings], tmp_path: Path, stub_models_base: list[str]
) -> None:
    reg, settings = registry
    model_dir = make_model(tmp_path / "m")
    register(reg, settings, model_dir)

    by_alias = reg.download_model("challenger", tmp_path / "out" / "by-alias")
    by_version = reg.download_model(1, tmp_path / "out" / "by-version")
    for got in (by_alias, by_version):
        assert sorted(p.name for p in got.iterdir()) == sorted(p.name for p in model_dir.iterdir())
        assert model_fingerprint(got) == model_fingerprint(model_dir)
        assert (got / "model.safetensors").read_bytes() == (
            model_dir / "model.safetensors"
        ).read_bytes()
    # nothing but the two folders: the temporary download dirs are gone
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["by-alias", "by-version"]

    with pytest.raises(FileExistsError):
        reg.download_model(1, by_alias)
    with pytest.raises(RegistryError, match="no alias 'champion'"):
        reg.download_model("champion", tmp_path / "nope")


def test_missing_model_dir_fails_before_touching_mlflow(
    registry: tuple[ModelRegistry, Settings], tmp_path: Path
) -> None:
    reg, _ = registry
    lineage = Lineage("unknown", None, {}, "c" * 64, "f" * 64)
    runs_before = len(runs_of(reg))
    with pytest.raises(ModelFolderError, match="model folder not found"):
        reg.log_and_register(tmp_path / "missing", TRAIN, EVAL, lineage, {})
    not_a_model = tmp_path / "plain"
    not_a_model.mkdir()
    (not_a_model / "config.json").write_text("{}")
    with pytest.raises(ModelFolderError, match=r"loopline_model\.json is missing"):
        reg.log_and_register(not_a_model, TRAIN, EVAL, lineage, {})
    model_dir = make_model(tmp_path / "m")
    with pytest.raises(ValueError, match="no numeric metrics"):
        reg.log_and_register(model_dir, TRAIN, {"slices": {}}, lineage, {})
    with pytest.raises(ValueError, match="does not match the content"):
        reg.log_and_register(model_dir, TRAIN, EVAL, lineage, {})  # lineage of another folder
    assert len(runs_of(reg)) == runs_before
    assert reg.list_versions() == []


def test_failure_while_logging_the_model_registers_nothing(
    registry: tuple[ModelRegistry, Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stub_models_base: list[str],
) -> None:
    import mlflow.pyfunc

    reg, settings = registry

    def broken(**kwargs: Any) -> None:
        raise OSError("disk full while uploading model.safetensors")

    monkeypatch.setattr(mlflow.pyfunc, "log_model", broken)
    with pytest.raises(OSError, match="disk full") as err:
        register(reg, settings, make_model(tmp_path / "m"))
    assert any("marked FAILED, nothing registered" in n for n in err.value.__notes__)

    assert reg.list_versions() == []
    assert reg.status()["registered"] is False
    runs = runs_of(reg)
    assert [r.info.status for r in runs] == ["FAILED"]
    with reg._uris():
        models = reg.client.search_logged_models([reg.experiment_id()])
    mine = [m for m in models if m.source_run_id == runs[0].info.run_id]
    assert [m.status for m in mine] == [LoggedModelStatus.FAILED]


def test_failure_after_the_version_was_created_rolls_it_back(
    registry: tuple[ModelRegistry, Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stub_models_base: list[str],
) -> None:
    reg, settings = registry
    v1 = register(reg, settings, make_model(tmp_path / "m1"))

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("registry refused the alias")

    monkeypatch.setattr(reg.client, "set_registered_model_alias", refuse)
    with pytest.raises(RuntimeError, match="refused the alias"):
        register(reg, settings, make_model(tmp_path / "m2", b"\x09" * 64))
    monkeypatch.undo()

    # version 2 was created, then deleted; version 1 and its alias are untouched
    assert [v.version for v in reg.list_versions()] == ["1"]
    assert reg.get_by_alias("challenger").version == v1.version  # type: ignore[union-attr]
    statuses = sorted(r.info.status for r in runs_of(reg))
    assert statuses == ["FAILED", "FINISHED"]
    assert "RUNNING" not in statuses


def test_rollback_of_a_first_registration_removes_the_registered_model(
    registry: tuple[ModelRegistry, Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stub_models_base: list[str],
) -> None:
    reg, settings = registry

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(reg.client, "set_registered_model_alias", refuse)
    with pytest.raises(RuntimeError):
        register(reg, settings, make_model(tmp_path / "m"))
    monkeypatch.undo()
    assert reg.status()["registered"] is False
    assert [r.info.status for r in runs_of(reg)] == ["FAILED"]


def test_an_active_caller_run_is_left_alone(
    registry: tuple[ModelRegistry, Settings], tmp_path: Path, stub_models_base: list[str]
) -> None:
    import mlflow

    reg, settings = registry
    with reg._uris():
        outer = mlflow.start_run(experiment_id=reg.experiment_id(), run_name="caller")
    try:
        v1 = register(reg, settings, make_model(tmp_path / "m"))
    finally:
        with reg._uris():
            mlflow.end_run()
    assert v1.run_id != outer.info.run_id
    with reg._uris():
        caller = reg.client.get_run(outer.info.run_id)
        ours = reg.client.get_run(v1.run_id)
    assert not (caller.outputs and caller.outputs.model_outputs)
    assert ours.outputs is not None and len(ours.outputs.model_outputs) == 1


def test_queries_on_an_empty_registry(registry: tuple[ModelRegistry, Settings]) -> None:
    reg, _ = registry
    assert reg.get_by_alias("champion") is None
    assert reg.list_versions() == []
    reg.delete_alias("champion")  # no-op
    with pytest.raises(RegistryError, match="no version 3"):
        reg.get_version(3)
    status = reg.status()
    assert status["champion"] is None and status["challenger"] is None


def test_process_wide_mlflow_uris_are_restored(
    registry: tuple[ModelRegistry, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    reg, _ = registry
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "sqlite:////nonexistent/other.db")
    before = (tracking_utils._tracking_uri, mlflow.get_registry_uri())
    reg.status()
    reg.get_by_alias("champion")
    assert (tracking_utils._tracking_uri, mlflow.get_registry_uri()) == before
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert os.environ["MLFLOW_REGISTRY_URI"] == "sqlite:////nonexistent/other.db"


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A really trained (two steps: the content does not matter, the format does) tiny model."""
    from tests.model.fixtures import train_tiny

    return train_tiny(
        tmp_path_factory.mktemp("tiny"), n_tickets=80, training={"max_steps": 2, "warmup_steps": 0}
    )


def test_a_trained_model_predicts_the_same_through_the_registry(
    registry: tuple[ModelRegistry, Settings], trained_tiny: Path, tmp_path: Path
) -> None:
    import mlflow
    import pandas as pd

    from loopline.models.base import load_generator

    reg, settings = registry
    version = register(reg, settings, trained_tiny)
    prompts = ["I was charged twice for my plan", "How do I reset my password?"]
    with reg._uris():
        loaded = mlflow.pyfunc.load_model(f"models:/{reg.name}@challenger")
    served = loaded.predict(pd.DataFrame({"prompt": prompts}), params={"max_new_tokens": 8})
    direct = load_generator(str(trained_tiny)).generate(prompts, max_new_tokens=8)
    assert list(served) == [g.text for g in direct]  # greedy: identical to the original folder
    assert all(isinstance(t, str) for t in served)

    restored = reg.download_model(version.version, tmp_path / "restored")
    assert model_fingerprint(restored) == model_fingerprint(trained_tiny)
    assert (restored / "tokenizer.json").is_file()
