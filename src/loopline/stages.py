"""The bodies of the DVC stages (``loopline stage <name>``): file in, file out.

Each stage reads its inputs from the project tree, writes its outputs atomically and knows
nothing of DVC, MLflow or Prefect. Registration is not a stage: it changes the registry,
which is not a file DVC can track.
"""

from __future__ import annotations

from loopline.config import Settings
from loopline.fsutil import write_json

MODEL_DIR = "artifacts/model"
REPORTS_DIR = "artifacts/reports"
VALIDATION_REPORT = f"{REPORTS_DIR}/data_validation.json"
TRAIN_REPORT = f"{REPORTS_DIR}/train.json"
EVAL_REPORT = f"{REPORTS_DIR}/eval.json"


class StageError(RuntimeError):
    """A stage could not produce its outputs; the message says why."""


def _generate(settings: Settings) -> str:
    from loopline.data.prepare import generate_raw

    path = generate_raw(settings)
    return f"raw corpus written to {path}"


def _prepare(settings: Settings) -> str:
    from loopline.data.prepare import prepare

    paths = prepare(settings)
    return "prepared splits: " + ", ".join(f"{k}={v}" for k, v in sorted(paths.items()))


def _validate(settings: Settings) -> str:
    from loopline.data.contracts import DataValidationError, validate_path

    prepared = settings.path(settings.data.prepared_dir)
    out = settings.path(VALIDATION_REPORT)
    try:
        report = validate_path(prepared, settings)
    except DataValidationError as exc:
        # The report is written before failing so the orchestrator can show every failure.
        write_json(exc.report.model_dump(mode="json"), out)
        raise StageError(f"data validation failed:\n{exc}") from None
    write_json(report.model_dump(mode="json"), out)
    return f"data valid: {report.summary()}"


def _train(settings: Settings) -> str:
    from loopline.training.trainer import train_model

    report = train_model(
        settings, settings.path(settings.data.prepared_dir), settings.path(MODEL_DIR)
    )
    write_json(report.model_dump(mode="json"), settings.path(TRAIN_REPORT))
    return f"trained {settings.training.mode} model in {MODEL_DIR}"


def _evaluate(settings: Settings) -> str:
    from loopline.data.io import read_prepared
    from loopline.evaluation.metrics import evaluate_generator
    from loopline.models.base import load_generator

    frames = read_prepared(settings.path(settings.data.prepared_dir))
    cfg = settings.evaluation
    generator = load_generator(
        str(settings.path(MODEL_DIR)),
        max_batch_size=cfg.batch_size,
        num_threads=cfg.num_threads or None,
    )
    report = evaluate_generator(generator, frames["test"], cfg)
    write_json(report.model_dump(mode="json"), settings.path(EVAL_REPORT))
    return "evaluated: " + ", ".join(f"{k}={v:.3f}" for k, v in sorted(report.metrics.items()))


_STAGES = {
    "generate": _generate,
    "prepare": _prepare,
    "validate": _validate,
    "train": _train,
    "evaluate": _evaluate,
}


def run(settings: Settings, name: str) -> str:
    """Execute one stage body and return a one-line account of what it produced."""
    try:
        body = _STAGES[name]
    except KeyError:
        raise StageError(f"unknown stage {name!r}; stages are {', '.join(_STAGES)}") from None
    return body(settings)
