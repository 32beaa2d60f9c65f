"""The pure parts of the MLflow adapter: report parsing, batching, requirements, folder checks."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from loopline.registry.mlflow_registry import (
    ModelFolderError,
    _batches,
    _fit_description,
    build_payload,
    check_model_dir,
    loss_curve,
    pip_requirements,
    split_eval_report,
)

METRICS = {"intent_accuracy": 0.9, "rouge_l": 0.8, "n_examples": 300, "note": "x"}
SLICES = {"billing": {"n": 10, "rouge_l": 0.7, "label": "b"}, "bad": "not a mapping"}


@pytest.mark.parametrize(
    "report",
    [
        {"metrics": METRICS, "per_intent": SLICES, "max_new_tokens": 64, "examples": []},
        {"metrics": METRICS, "slices": SLICES},
        {**METRICS, "slices": SLICES},
    ],
    ids=["eval-stage", "nested", "flat"],
)
def test_split_eval_report_shapes(report: dict[str, object]) -> None:
    metrics, slices = split_eval_report(report)
    assert metrics == {"intent_accuracy": 0.9, "rouge_l": 0.8, "n_examples": 300.0}
    assert slices == {"billing": {"n": 10.0, "rouge_l": 0.7}}


@pytest.mark.parametrize(
    ("curve", "expected"),
    [
        ([3.0, 2.0, 1.5], [(0, 3.0), (1, 2.0), (2, 1.5)]),
        ([[10, 3.0], [20, 2.0]], [(10, 3.0), (20, 2.0)]),
        ([{"step": 5, "loss": 3.0}, {"step": 10, "loss": 2.5}], [(5, 3.0), (10, 2.5)]),
        ({"1": 3.0, "2": 2.0}, [(1, 3.0), (2, 2.0)]),
        ([1.0, None, "x", [3, "bad"], 0.5], [(0, 1.0), (4, 0.5)]),
        ("not a curve", []),
    ],
)
def test_loss_curve_shapes(curve: object, expected: list[tuple[int, float]]) -> None:
    assert loss_curve({"loss_curve": curve}) == expected


def test_loss_curve_alternative_key_and_absent() -> None:
    assert loss_curve({"losses": [2.0]}) == [(0, 2.0)]
    assert loss_curve({}) == []


def test_build_payload_sorts_values_into_params_and_metrics() -> None:
    train = {
        "mode": "lora",
        "seed": 42,
        "steps": 600,
        "final_loss": 0.73,
        "loss_curve": [3.0, 2.0],
        "wall_seconds": 91.5,
        "params": {"total": 1_500_000, "trainable": 12_000},
        "base_model": None,
        "checkpoints": ["a", "b"],
    }
    params = {"training": {"max_steps": 600, "lora": {"r": 8}}, "note": "n" * 7000}
    payload = build_payload(train, {"metrics": METRICS, "slices": SLICES}, params)

    assert payload.eval_metrics == {"intent_accuracy": 0.9, "rouge_l": 0.8, "n_examples": 300.0}
    assert payload.other_metrics == {
        "slice.billing.n": 10.0,
        "slice.billing.rouge_l": 0.7,
        "train.steps": 600.0,
        "train.final_loss": 0.73,
        "train.wall_seconds": 91.5,
        "train.params.total": 1_500_000.0,
        "train.params.trainable": 12_000.0,
    }
    assert payload.loss == [(0, 3.0), (1, 2.0)]
    assert payload.params["training.max_steps"] == "600"
    assert payload.params["training.lora.r"] == "8"
    assert payload.params["train.mode"] == "lora"
    assert payload.params["train.seed"] == "42"
    assert payload.params["train.base_model"] == "null"
    assert "train.checkpoints" not in payload.params  # lists stay in the JSON report
    assert len(payload.params["note"]) == 6000 and payload.params["note"].endswith("…")
    assert '"loss_curve"' in payload.train_json and '"slices"' in payload.eval_json


def test_build_payload_needs_metrics() -> None:
    with pytest.raises(ValueError, match="no numeric metrics"):
        build_payload({}, {"slices": {}}, {})


def test_batches_respect_mlflow_limits_and_keep_everything() -> None:
    assert list(_batches(list(range(50)), list(range(30)))) == [(list(range(50)), list(range(30)))]
    metrics, params = list(range(2500)), list(range(150))
    batches = list(_batches(metrics, params))
    assert len(batches) == 3
    for ms, ps in batches:
        assert len(ms) <= 1000 and len(ps) <= 100 and len(ms) + len(ps) <= 1000
    assert [m for ms, _ in batches for m in ms] == metrics
    assert [p for _, ps in batches for p in ps] == params


def test_pip_requirements_are_pinned_without_local_labels() -> None:
    reqs = pip_requirements()
    assert f"mlflow=={importlib.metadata.version('mlflow')}" in reqs
    assert any(r.startswith("torch==") for r in reqs)
    assert all("+" not in r and "==" in r for r in reqs)


def test_check_model_dir(tmp_path: Path) -> None:
    with pytest.raises(ModelFolderError, match="not found"):
        check_model_dir(tmp_path / "missing")
    with pytest.raises(FileNotFoundError):  # ModelFolderError is also a FileNotFoundError
        check_model_dir(tmp_path / "missing")
    (tmp_path / "m").mkdir()
    with pytest.raises(ModelFolderError, match=r"loopline_model\.json is missing"):
        check_model_dir(tmp_path / "m")
    (tmp_path / "m" / "loopline_model.json").write_text("{}")
    assert check_model_dir(tmp_path / "m") == tmp_path / "m"


def test_fit_description() -> None:
    assert _fit_description("short") == "short"
    cut = _fit_description("x" * 6000)
    assert len(cut) == 5000 and cut.endswith("run artifact model_card.md)")
