"""Monitoring and remediation tasks: thin wrappers over ``loopline.monitoring``, plus the
Prefect events the closed loop emits (the only Prefect-specific part of it)."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from prefect.events import emit_event

from loopline.config import Settings
from loopline.monitoring import actions
from loopline.monitoring.fresh import write_fresh_tickets
from loopline.monitoring.incidents import Recorded
from loopline.monitoring.monitor import MonitorReport, run_monitor
from loopline.monitoring.remediation import Incident

# Event names automations match on (prefect.yaml triggers).
EVENTS: dict[tuple[str, str], str] = {
    ("LooplineInputDrift", "retrain"): "loopline.drift.detected",
    ("LooplineQualityDrop", "retrain"): "loopline.quality.dropped",
}


@task(name="monitor", cache_policy=NONE, retries=1, retry_delay_seconds=5)
def monitor(settings: Settings, probes: bool) -> MonitorReport:
    logger = get_run_logger()
    report = run_monitor(settings, probes=probes, progress=logger.info)
    for reason in report.drift.reasons:
        logger.info("drift %s: %s", report.drift.status, reason)
    for check in report.quality:
        logger.info("quality: %s", check.reason)
    return report


@task(name="record-findings", cache_policy=NONE)
def record_findings(settings: Settings, report: MonitorReport) -> list[Recorded]:
    recorded = actions.handle_alerts(settings, list(report.findings), now=report.at)
    logger = get_run_logger()
    for rec in recorded:
        logger.info(
            "%s %s: %s (%s)",
            rec.alert.name,
            rec.alert.status,
            rec.decision.action,
            rec.decision.reason,
        )
    return recorded


def _model_resource(settings: Settings) -> dict[str, str]:
    return {
        "prefect.resource.id": f"loopline.model.{settings.model.name}",
        "prefect.resource.name": settings.model.name,
    }


@task(name="emit-events", cache_policy=NONE)
def emit_events(settings: Settings, report: MonitorReport, recorded: list[Recorded]) -> int:
    """One event per firing finding, and one per decision an automation can act on."""
    sent = 0
    for alert in report.findings:
        if alert.status == "firing":
            emit_event(
                f"loopline.alert.{alert.name}",
                _model_resource(settings),
                payload={"run_id": report.run_id, **alert.to_dict()},
            )
            sent += 1
    for rec in recorded:
        if rec.incident is None or rec.decision.action in ("none", "notify"):
            continue
        name = EVENTS.get(
            (rec.alert.name, rec.decision.action), f"loopline.remediation.{rec.decision.action}"
        )
        emit_event(
            name,
            {
                "prefect.resource.id": f"loopline.incident.{rec.incident.id}",
                "loopline.action": rec.decision.action,
            },
            related=[{**_model_resource(settings), "prefect.resource.role": "model"}],
            payload={
                "incident_id": rec.incident.id,
                "alert": rec.alert.to_dict(),
                "reason": rec.decision.reason,
            },
        )
        sent += 1
    return sent


@task(name="take-action", cache_policy=NONE)
def take(settings: Settings, incident_id: str) -> Recorded | None:
    return actions.take_claimed(settings, incident_id)


@task(name="rollback", cache_policy=NONE, retries=0)
def rollback(settings: Settings, reason: str) -> dict[str, Any]:
    from loopline.deploy import service

    return service.rollback(settings, reason=reason, by=actions.ACTOR)


@task(name="fresh-tickets", cache_policy=NONE)
def fresh_tickets(settings: Settings, seed: int) -> str | None:
    n = settings.monitoring.remediation.fresh_tickets
    return str(write_fresh_tickets(settings, n, seed=seed)) if n else None


@task(name="approve-for-release", cache_policy=NONE)
def approve(settings: Settings, review: Any) -> None:
    from loopline import workflow

    workflow.apply_review(settings, review, promote=False)


@task(name="finish-action", cache_policy=NONE, retries=2, retry_delay_seconds=2)
def finish(settings: Settings, rec: Recorded, succeeded: bool, details: dict[str, Any]) -> Incident:
    inc = actions.finish(settings, rec, succeeded, details)
    get_run_logger().info(
        "incident %s: %s %s -> %s",
        inc.id,
        rec.decision.action,
        "succeeded" if succeeded else "failed",
        inc.status,
    )
    return inc
