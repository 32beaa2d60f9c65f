"""The ``train`` flow: data stages → validation → training → evaluation → registry."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.params import ProjectParams
from loopline import versioning
from loopline.config import load_settings
from loopline.reporting import spine_summary
from tasks import data, registry


@flow(name="train", log_prints=True)
def train(params: ProjectParams | None = None) -> dict[str, Any]:
    """Bring data and model up to date, register the model and apply the promotion policy."""
    params = params or ProjectParams()
    settings = load_settings(params.project_root, env=params.env)
    data.prepare_workspace(settings)
    runs = [data.reproduce_stage(settings, stage) for stage in versioning.STAGES]
    pushed = data.push_data(settings) if params.push_data and settings.dvc.push else 0
    candidate = registry.register_candidate(settings)
    review = registry.review_candidate(settings, candidate)
    registry.apply_review(settings, review)
    return spine_summary(runs, candidate, review, pushed)
