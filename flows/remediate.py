"""The ``remediate`` flow: perform the action an incident claimed (rollback, or retrain →
gates → canary) and record the outcome. Started by the monitor flow, or by an automation on
the monitor's events (prefect.yaml: ``retrain-on-drift``, ``rollback-on-alert``)."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow

from flows.params import RemediateParams
from loopline import versioning
from loopline.config import load_settings
from loopline.data.contracts import DataValidationError
from tasks import data, monitoring, registry
from tasks import release as release_tasks

Params = RemediateParams


@flow(name="remediate", log_prints=True)
def remediate(params: RemediateParams) -> dict[str, Any]:
    settings = load_settings(params.project_root, env=params.env)
    rec = monitoring.take(settings, params.incident_id)
    if rec is None:
        return {"incident": params.incident_id, "skipped": "action already taken or finished"}
    action = rec.decision.action
    details: dict[str, Any]
    succeeded = False
    try:
        if action == "rollback":
            details = monitoring.rollback(settings, f"{rec.alert.name}: {rec.alert.summary}")
            succeeded = True
        else:
            details = _retrain(settings, params)
            succeeded = bool(details.get("promoted"))
    except (DataValidationError, versioning.StageError) as exc:
        details = {"error": f"retraining failed: {exc}"}
    except Exception as exc:  # any failure is the outcome; it escalates instead of looping
        details = {"error": f"{type(exc).__name__}: {exc}"}
    incident = monitoring.finish(settings, rec, succeeded, details)
    return {
        "incident": incident.id,
        "action": action,
        "succeeded": succeeded,
        "status": incident.status,
        **details,
    }


def _retrain(settings: Any, params: RemediateParams) -> dict[str, Any]:
    """Fresh data → stages → register → gates → canary (the train flow's tasks, without the
    promotion: a retrained model reaches production only through the release)."""
    policy = settings.monitoring.remediation
    fresh = monitoring.fresh_tickets(settings, int(time.time()) % 100_000)
    data.prepare_workspace(settings)
    for stage in versioning.STAGES:
        data.reproduce_stage(settings, stage)
    if params.push_data and settings.dvc.push:
        data.push_data(settings)
    candidate = registry.register_candidate(settings)
    # The data changed: the champion is compared on the same test split, not its old one.
    review = registry.review_candidate(settings, candidate, registry.evaluate_champion(settings))
    monitoring.approve(settings, review)
    out: dict[str, Any] = {
        "version": candidate.version,
        "fresh_file": fresh,
        "gate_decision": review.decision.action,
        "promoted": False,
    }
    if review.decision.action != "promote":
        out["reason"] = "refused by the gates: " + "; ".join(review.decision.reasons)
        return out
    record = release_tasks.release(settings, policy.release_strategy, candidate.version, [], 1.0)
    out.update(
        release_outcome=record.outcome,
        release_id=record.release_id,
        reason=record.reason,
        promoted=record.outcome == "promoted",
    )
    return out
