"""Release tasks: bring the local deployment up, run one release. No retries: a release that
failed or rolled back is a decision, and re-running it is a new release."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from loopline.config import Settings
from loopline.deploy import service
from loopline.deploy.driver import DriverOptions
from loopline.release.records import DeploymentRecord


@task(name="deployment-up", cache_policy=NONE, retries=1, retry_delay_seconds=5)
def ensure_up(settings: Settings) -> str:
    stack = service.up(settings, progress=get_run_logger().info)
    assert stack.stable is not None
    return stack.stable.version


@task(name="release", cache_policy=NONE, retries=0)
def release(
    settings: Settings,
    strategy: str,
    model: str,
    candidate_set: list[str],
    poll_seconds: float,
) -> DeploymentRecord:
    logger = get_run_logger()
    record = service.deploy(
        settings,
        strategy,
        model=model,
        candidate_set=candidate_set,
        requested_by="prefect",
        progress=logger.info,
        options=DriverOptions(poll_s=poll_seconds),
    )
    for step in record.steps:
        logger.info("step %s %s: %s", step.step, step.verdict, "; ".join(step.reasons))
    return record
