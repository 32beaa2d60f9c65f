"""Registration, review (gates + promotion decision) and applying the decision."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from loopline import workflow
from loopline.config import Settings


@task(name="register-candidate", cache_policy=NONE, retries=2, retry_delay_seconds=3)
def register_candidate(settings: Settings) -> workflow.Registration:
    # Safe to retry: a model already registered is found by its fingerprint and reused.
    reg = workflow.register_candidate(settings)
    get_run_logger().info(
        "%s %s version %s", "reused" if reg.reused else "registered", reg.name, reg.version
    )
    return reg


@task(name="evaluate-champion", cache_policy=NONE, retries=1, retry_delay_seconds=3)
def evaluate_champion(settings: Settings) -> dict[str, float] | None:
    metrics = workflow.evaluate_champion(settings)
    if metrics is not None:
        get_run_logger().info(
            "champion on this data: %s", ", ".join(f"{k}={v:.3f}" for k, v in metrics.items())
        )
    return metrics


@task(name="review-candidate", cache_policy=NONE, retries=2, retry_delay_seconds=3)
def review_candidate(
    settings: Settings,
    candidate: workflow.Registration,
    champion_metrics: dict[str, float] | None = None,
) -> workflow.Review:
    review = workflow.review_candidate(settings, candidate, champion_metrics=champion_metrics)
    logger = get_run_logger()
    for check in review.gates.checks:
        logger.info("gate %s: %s", "pass" if check.passed else "FAIL", check.message)
    logger.info("decision: %s (%s)", review.decision.action, "; ".join(review.decision.reasons))
    return review


@task(name="apply-decision", cache_policy=NONE, retries=2, retry_delay_seconds=3)
def apply_review(settings: Settings, review: workflow.Review) -> None:
    workflow.apply_review(settings, review)
