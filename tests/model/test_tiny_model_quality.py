"""The default-shaped tiny model, trained briefly, really learns the task."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopline.config import EvaluationConfig, load_settings
from loopline.evaluation.metrics import evaluate_generator
from loopline.models.base import load_generator
from loopline.training.trainer import train_model
from tests.conftest import make_project
from tests.model.tickets import INTENTS, read_frame, write_prepared

pytestmark = pytest.mark.slow

# About 25 s of training on two idle cores; enough to be far from chance, not to be good.
STEPS = 100


def test_default_shape_learns_intents_well_above_chance(tmp_path: Path) -> None:
    prepared = write_prepared(tmp_path / "prepared", 1200, seed=4)
    root = make_project(tmp_path / "project")  # params.yaml as shipped: the default shape
    training = {"max_steps": STEPS, "learning_rate": 0.008, "warmup_steps": 10, "seed": 1}
    settings = load_settings(root, env="local", overrides={"training": training})
    report = train_model(settings, prepared, tmp_path / "model")
    assert report.parameters > 900_000  # the default shape, not a test-sized one
    assert report.final_loss < 0.5 * report.loss_curve[0][1]

    generator = load_generator(str(tmp_path / "model"))
    cfg = EvaluationConfig(max_examples=64, max_new_tokens=48, batch_size=32)
    result = evaluate_generator(generator, read_frame(prepared, "test"), cfg)
    chance = 1 / len(INTENTS)
    assert result.metrics["intent_accuracy"] >= 5 * chance, result.metrics  # ~0.89 measured
    assert result.metrics["rouge_l"] > 0.6, result.metrics  # ~0.87 measured
