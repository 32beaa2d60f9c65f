"""The ``pipeline`` flow: every lifecycle built so far, in order (today: the train spine)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.params import ProjectParams
from flows.train import train


@flow(name="pipeline", log_prints=True)
def pipeline(params: ProjectParams | None = None) -> dict[str, Any]:
    params = params or ProjectParams()
    return {"train": train(params)}
