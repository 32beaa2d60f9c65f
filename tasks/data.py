"""Data and training stages: DVC reproduces them, skipping what is up to date."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from loopline import versioning, workflow
from loopline.config import Settings


@task(name="prepare-workspace", cache_policy=NONE, retries=2, retry_delay_seconds=2)
def prepare_workspace(settings: Settings) -> None:
    workflow.prepare_workspace(settings)


@task(name="stage", task_run_name="stage-{stage}", cache_policy=NONE)
def reproduce_stage(settings: Settings, stage: str) -> versioning.StageRun:
    run = workflow.run_stage(settings, stage)
    get_run_logger().info(
        "stage %s: %s (%.1fs)", stage, "ran" if run.ran else "up to date", run.seconds
    )
    return run


@task(name="push-data", cache_policy=NONE, retries=3, retry_delay_seconds=[2, 5, 10])
def push_data(settings: Settings) -> int:
    pushed = versioning.push(settings)
    get_run_logger().info("pushed %d file(s) to DVC remote %r", pushed, settings.dvc.remote_name)
    return pushed
