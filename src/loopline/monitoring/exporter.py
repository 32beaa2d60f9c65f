"""The monitor's Prometheus metrics, rendered from its state files on every scrape.

Sources: ``latest.json`` (the last monitor report), the incident timeline, the deployment
records and the configured budget. Nothing is kept in memory between scrapes, so the
service can restart at any time and every process sees the same numbers.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from loopline.monitoring.incidents import IncidentStore

if TYPE_CHECKING:
    from loopline.config import Settings


def _latest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def render_metrics(
    latest: dict[str, Any] | None,
    store: IncidentStore,
    deployments: list[dict[str, Any]],
    monthly_budget_usd: float,
) -> bytes:
    """Prometheus text exposition of the monitor's gauges (names in docs/observability.md)."""
    r = CollectorRegistry(auto_describe=True)

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, list(labels), registry=r)

    gauge("loopline_budget_dollars", "Configured serving budget.", ("period",)).labels("month").set(
        monthly_budget_usd
    )
    incidents = store.incidents()
    gauge("loopline_incidents_open", "Incidents not resolved.").set(
        sum(1 for i in incidents.values() if i.active)
    )
    outcomes: Counter[tuple[str, str]] = Counter()
    for inc in incidents.values():
        for e in inc.timeline:
            if e["event"] == "action_finished":
                outcomes[(e["action"], "succeeded" if e["succeeded"] else "failed")] += 1
            elif e["event"] == "escalated":
                outcomes[("escalate", "escalated")] += 1
    rem = gauge(
        "loopline_remediations_total",
        "Remediation actions finished, by action and outcome (a count from the incident log).",
        ("action", "outcome"),
    )
    for (action, outcome), n in outcomes.items():
        rem.labels(action, outcome).set(n)
    dep = gauge(
        "loopline_deployments_total",
        "Releases and rollbacks recorded by the local target.",
        ("strategy", "outcome"),
    )
    counts: Counter[tuple[str, str]] = Counter()
    for rec in deployments:
        if rec.get("type") == "release":
            body = rec.get("record", {})
            counts[(str(body.get("strategy")), str(body.get("outcome")))] += 1
        elif rec.get("type") == "rollback":
            counts[("rollback", "switched_back")] += 1
    for (strategy, outcome), n in counts.items():
        dep.labels(strategy, outcome).set(n)

    if latest is not None:
        gauge(
            "loopline_monitor_last_run_timestamp_seconds", "When the last monitor run ended."
        ).set(float(latest.get("at", 0.0)))
        gauge("loopline_monitor_window_requests", "Requests in the last monitor window.").set(
            float(latest.get("window", {}).get("requests", 0))
        )
        version = latest.get("champion_version")
        if version:
            gauge("loopline_champion_info", "The champion version (value 1).", ("version",)).labels(
                str(version)
            ).set(1)
        # Verdict gauges carry the champion version, so alerts on them name the version
        # like the monitor's own findings do (one incident per alert and version).
        v = str(version or "")
        drift = latest.get("drift") or {}
        detected = gauge(
            "loopline_drift_detected", "1 when the dataset drifted.", ("dataset", "version")
        )
        share = gauge("loopline_drift_share", "Share of drifted columns.", ("dataset", "version"))
        col = gauge(
            "loopline_drift_column_score",
            "Per-column drift statistic (p-value or distance; see method).",
            ("dataset", "column", "method"),
        )
        for name in ("inputs", "outputs"):
            part = drift.get(name)
            if not part:
                continue
            flag = part["drifted"] or (name == "inputs" and bool(drift.get("input_drift")))
            detected.labels(name, v).set(1 if flag else 0)
            share.labels(name, v).set(float(part["share"]))
            for c in part["columns"]:
                col.labels(name, c["column"], c["method"]).set(float(c["statistic"]))
        emb = drift.get("embedding")
        if emb:
            auc = "Prompt-embedding classifier ROC AUC."
            gauge("loopline_embedding_drift_score", auc, ("version",)).labels(v).set(emb["auc"])
            limit = "AUC above which prompts drift."
            gauge("loopline_embedding_drift_threshold", limit, ("version",)).labels(v).set(
                emb["threshold"]
            )
        labels = ("source", "version")
        qs = gauge("loopline_quality_score", "Mean quality score.", labels)
        qb = gauge("loopline_quality_baseline", "Baseline of the quality score.", labels)
        qf = gauge(
            "loopline_quality_floor",
            "Score under which quality has dropped (baseline x (1 - max_drop)).",
            labels,
        )
        for q in latest.get("quality", []):
            for metric, key in ((qs, "score"), (qb, "baseline"), (qf, "floor")):
                if q.get(key) is not None:
                    metric.labels(q["source"], v).set(float(q[key]))
        an = gauge("loopline_anomaly", "1 when the latest bucket is anomalous.", ("series",))
        az = gauge("loopline_anomaly_score", "Robust z-score of the latest bucket.", ("series",))
        for series, res in (latest.get("anomalies") or {}).items():
            an.labels(series).set(1 if res.get("latest_anomalous") else 0)
            score = res.get("latest_score")
            if score is not None and not math.isnan(score):  # NaN: the bucket had no data
                az.labels(series).set(float(score))
    return generate_latest(r)


def settings_metrics(settings: Settings) -> bytes:
    from loopline.deploy.local_target import read_records
    from loopline.monitoring.monitor import monitoring_dir

    state = monitoring_dir(settings)
    return render_metrics(
        _latest(state / "latest.json"),
        IncidentStore(state / "incidents.jsonl"),
        read_records(settings),
        settings.monitoring.monthly_budget_usd,
    )
