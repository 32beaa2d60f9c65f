"""The ``monitor`` flow: drift, quality and anomalies of the served traffic → incidents →
events, and (``remediate="inline"``) the remediation itself."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.params import MonitorParams, RemediateParams
from flows.remediate import remediate
from loopline.config import load_settings
from tasks import monitoring

Params = MonitorParams


@flow(name="monitor", log_prints=True)
def monitor(params: MonitorParams | None = None) -> dict[str, Any]:
    params = params or MonitorParams()
    settings = load_settings(params.project_root, env=params.env)
    report = monitoring.monitor(settings, params.probes)
    if params.remediate == "off":  # report only: Prometheus alerts on the exported gauges
        return {
            "run_id": report.run_id,
            "drift": report.drift.status,
            "findings": [f"{a.name}:{a.status}" for a in report.findings],
            "report": str(report.report_dir),
        }
    recorded = monitoring.record_findings(settings, report)
    monitoring.emit_events(settings, report, recorded)
    outcomes = []
    if params.remediate == "inline":  # the embedded default; "events" leaves it to automations
        for rec in recorded:
            if rec.decision.actionable and rec.incident is not None:
                outcomes.append(
                    remediate(
                        RemediateParams(
                            project_root=params.project_root,
                            env=params.env,
                            push_data=params.push_data,
                            incident_id=rec.incident.id,
                        )
                    )
                )
    return {
        "run_id": report.run_id,
        "drift": report.drift.status,
        "findings": [f"{a.name}:{a.status}" for a in report.findings],
        "decisions": [
            {
                "alert": r.alert.name,
                "action": r.decision.action,
                "reason": r.decision.reason,
                "incident": r.incident.id if r.incident else None,
            }
            for r in recorded
        ],
        "remediations": outcomes,
        "report": str(report.report_dir),
    }
