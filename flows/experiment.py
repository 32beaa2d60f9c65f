"""The ``experiment`` flow: analyse every running A/B test, act on its decision (ship, stop
for harm, roll back, keep running) and advance guarded flag rollouts."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.params import ExperimentParams
from loopline.config import load_settings
from tasks import experiments

Params = ExperimentParams


@flow(name="experiment", log_prints=True)
def experiment(params: ExperimentParams | None = None) -> dict[str, Any]:
    params = params or ExperimentParams()
    settings = load_settings(params.project_root, env=params.env)
    results = []
    for name in experiments.running(settings, params.experiments):
        analysis = experiments.analyze(settings, name)
        applied = experiments.apply_decision(settings, analysis) if params.apply else None
        results.append({**analysis.summary(), "applied": applied})
    moves = experiments.advance_rollouts(settings) if params.rollouts else []
    return {"experiments": results, "rollouts": moves}
