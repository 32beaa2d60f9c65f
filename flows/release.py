"""The ``release`` flow: a canary, blue/green or shadow release on the local deployment."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.params import ReleaseParams
from loopline.config import load_settings
from tasks import release as release_tasks

Params = ReleaseParams


@flow(name="release", log_prints=True)
def release(params: ReleaseParams | None = None) -> dict[str, Any]:
    """Start the stack if needed, release ``params.model``; returns the deployment record."""
    params = params or ReleaseParams()
    settings = load_settings(params.project_root, env=params.env)
    release_tasks.ensure_up(settings)
    record = release_tasks.release(
        settings, params.strategy, params.model, params.candidate_set, params.poll_seconds
    )
    return record.to_dict()
