"""Performing remediations: record alerts, run the decided action, record its outcome.

``handle_alerts`` records alerts into incidents and returns the decisions (fast; what the
webhook does on receipt). ``execute`` performs one claimed action:

* ``rollback``: :func:`loopline.deploy.service.rollback` (aborts a running release, or
  switches back to ``previous_champion``);
* ``retrain``: fresh labelled tickets → the DVC stages (data validation included) →
  registration → gates → a canary release of the new version (``retrain_and_release``).
  Nothing reaches production without passing the same gates and canary as any release; a
  retrain that fails anywhere leaves the champion serving.

Every step lands in the incident timeline and the audit trail.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from loopline.monitoring.incidents import IncidentStore, Recorded, incident_store
from loopline.monitoring.monitor import monitoring_dir
from loopline.monitoring.remediation import Alert, Incident, action_for

if TYPE_CHECKING:
    from loopline.config import Settings

Progress = Callable[[str], None]
ACTOR = "loopline-monitor"


def store_for(settings: Settings) -> IncidentStore:
    return incident_store(monitoring_dir(settings))


def _audit(settings: Settings, action: str, subject: str, details: dict[str, Any]) -> None:
    from loopline.governance.audit import AuditTrail

    AuditTrail.for_settings(settings).append(action, subject, ACTOR, details)


def handle_alerts(
    settings: Settings, alerts: Sequence[Alert], *, now: float | None = None
) -> list[Recorded]:
    """Record each alert in its incident and decide; actionable decisions come back claimed
    (run them with :func:`execute`). Escalations are audited here."""
    from loopline.registry.mlflow_registry import ModelRegistry

    store = store_for(settings)
    policy = settings.monitoring.remediation
    # Only a retrain alert naming a version needs the champion (the registry is not free).
    needs = any(
        a.status == "firing" and action_for(a, policy) == "retrain" and a.labels.get("version")
        for a in alerts
    )
    found = ModelRegistry(settings).get_by_alias("champion") if needs else None
    champion = found.version if found is not None else None
    out: list[Recorded] = []
    for alert in alerts:
        rec = store.record_alert(alert, policy, now, champion=champion)
        if rec.incident is not None and rec.decision.action in ("rollback", "retrain"):
            _audit(
                settings,
                "remediation_started",
                f"incident/{rec.incident.id}",
                {
                    "alert": alert.name,
                    "action": rec.decision.action,
                    "reason": rec.decision.reason,
                    "attempt": rec.decision.attempt,
                },
            )
        elif rec.incident is not None and rec.decision.action == "escalate":
            _audit(
                settings,
                "incident_escalated",
                f"incident/{rec.incident.id}",
                {"alert": alert.name, "reason": rec.decision.reason},
            )
        out.append(rec)
    return out


@dataclass(frozen=True)
class RetrainOutcome:
    promoted: bool
    reason: str
    version: str | None = None
    fresh_file: str | None = None
    gate_decision: str | None = None
    release_outcome: str | None = None
    release_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def retrain_and_release(
    settings: Settings, *, seed: int, progress: Progress = lambda _: None
) -> RetrainOutcome:
    """Fresh data → stages → register → gates → canary; ``promoted`` only when the canary
    made the new version champion. Failures come back as outcomes, not exceptions."""
    from loopline import versioning, workflow
    from loopline.data.contracts import DataValidationError
    from loopline.deploy import service
    from loopline.monitoring.fresh import write_fresh_tickets

    policy = settings.monitoring.remediation
    fresh = None
    if policy.fresh_tickets:
        fresh = str(write_fresh_tickets(settings, policy.fresh_tickets, seed=seed))
        progress(f"retrain: {policy.fresh_tickets} fresh labelled tickets -> {fresh}")
    try:
        workflow.prepare_workspace(settings)
        for stage in versioning.STAGES:
            run = workflow.run_stage(settings, stage)
            progress(f"retrain: stage {stage} {'ran' if run.ran else 'up to date'}")
        if settings.dvc.push:
            versioning.push(settings)
        candidate = workflow.register_candidate(settings)
        # The data changed: compare with the champion on the same test split.
        review = workflow.review_candidate(
            settings, candidate, champion_metrics=workflow.evaluate_champion(settings)
        )
        workflow.apply_review(settings, review, promote=False)
    except (DataValidationError, versioning.StageError) as exc:
        return RetrainOutcome(False, f"retraining failed: {exc}", fresh_file=fresh)
    decision = review.decision.action
    progress(f"retrain: v{candidate.version} review: {decision}")
    if decision != "promote":
        return RetrainOutcome(
            False,
            f"v{candidate.version} refused by the gates ({decision}: "
            f"{'; '.join(review.decision.reasons)})",
            candidate.version,
            fresh,
            decision,
        )
    record = service.deploy(
        settings,
        policy.release_strategy,
        model=candidate.version,
        requested_by=ACTOR,
        progress=progress,
    )
    promoted = record.outcome == "promoted"
    return RetrainOutcome(
        promoted,
        f"{policy.release_strategy} release of v{candidate.version}: {record.outcome} "
        f"({record.reason})",
        candidate.version,
        fresh,
        decision,
        record.outcome,
        record.release_id,
    )


def execute(
    settings: Settings, recorded: Recorded, *, progress: Progress = lambda _: None
) -> Incident | None:
    """Take and perform the claimed action of ``recorded`` and record its outcome. Returns
    None when another executor already took it. A failed remediation does not raise: the
    failure is the outcome, and it escalates."""
    from loopline.deploy import service

    incident, action, alert = recorded.incident, recorded.decision.action, recorded.alert
    if incident is None or action not in ("rollback", "retrain"):
        raise ValueError(f"nothing to execute: decision {action!r}")
    if not store_for(settings).take(incident.id):
        progress(f"incident {incident.id}: {action} already taken by another executor")
        return None
    details: dict[str, Any]
    try:
        if action == "rollback":
            result = service.rollback(
                settings, reason=f"{alert.name}: {alert.summary}".strip(": "), by=ACTOR
            )
            succeeded, details = True, dict(result)
        else:
            outcome = retrain_and_release(
                settings, seed=int(time.time()) % 100_000, progress=progress
            )
            succeeded, details = outcome.promoted, outcome.to_dict()
    except Exception as exc:  # a failed remediation is an outcome to record and escalate
        succeeded, details = False, {"error": f"{type(exc).__name__}: {exc}"}
    progress(f"incident {incident.id}: {action} {'succeeded' if succeeded else 'failed'}")
    return finish(settings, recorded, succeeded, details)


def finish(
    settings: Settings, recorded: Recorded, succeeded: bool, details: dict[str, Any]
) -> Incident:
    """Record the outcome of an action (incident timeline + audit); escalates a failure
    that used the incident's last attempt."""
    incident, action, alert = recorded.incident, recorded.decision.action, recorded.alert
    assert incident is not None
    after = store_for(settings).finish_action(
        incident.id, action, succeeded, settings.monitoring.remediation, details=details
    )
    _audit(
        settings,
        "remediation_succeeded" if succeeded else "remediation_failed",
        f"incident/{incident.id}",
        {"action": action, "alert": alert.name, **details},
    )
    if after.status == "escalated":
        _audit(
            settings,
            "incident_escalated",
            f"incident/{incident.id}",
            {"alert": alert.name, "reason": f"{action} failed"},
        )
    return after


def claimed(settings: Settings, incident_id: str) -> Recorded:
    """The incident's claimed, unfinished action as a :class:`Recorded` (what a separate
    executor process, e.g. a Prefect deployment run, picks up); ``ValueError`` if none."""
    from loopline.monitoring.remediation import RemediationDecision

    inc = store_for(settings).get(incident_id)
    started = [e for e in inc.timeline if e["event"] == "action_started"]
    if not inc.action_pending:
        raise ValueError(f"incident {incident_id} has no claimed action waiting to run")
    alerts = [e for e in inc.timeline if e["event"] == "alert"]
    a = alerts[-1]["alert"]
    alert = Alert(a["name"], a["status"], a["labels"], a["summary"], a["starts_at"], a["source"])
    last = started[-1]
    return Recorded(alert, inc, RemediationDecision(last["action"], "claimed", last["attempt"]))


def resolve(settings: Settings, incident_id: str, reason: str, by: str | None = None) -> Incident:
    """Close an incident by hand (people handled an escalation); audited."""
    import getpass

    store = store_for(settings)
    inc = store.get(incident_id)
    if not inc.active:
        raise ValueError(f"incident {incident_id} is already resolved")
    if inc.status == "remediating":
        raise ValueError(f"incident {incident_id}: {inc.last_action} is still running")
    after = store.resolve(incident_id, reason)
    from loopline.governance.audit import AuditTrail

    AuditTrail.for_settings(settings).append(
        "incident_resolved", f"incident/{incident_id}", by or getpass.getuser(), {"reason": reason}
    )
    return after


def take_claimed(settings: Settings, incident_id: str) -> Recorded | None:
    """The incident's claimed action, taken for execution by this caller; None when another
    executor already took it (see :meth:`IncidentStore.take`)."""
    rec = claimed(settings, incident_id)
    return rec if store_for(settings).take(incident_id) else None
