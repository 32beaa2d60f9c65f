"""One monitor run: request log → monitoring dataset → drift, quality, anomalies → findings.

``run_monitor`` reads, computes and writes (the report folder, ``latest.json`` for the
exporter, an MLflow run); every verdict inside comes from a pure function
(``detect_drift``, ``check_quality``, the anomaly detector) and ``findings`` (pure) turns
the verdicts into alerts in the same shape as Alertmanager's, so the remediation handles
both sources the same way.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopline.fsutil import write_json
from loopline.monitoring.drift import DriftVerdict
from loopline.monitoring.quality import PROBE_VARIANT, QualityCheck
from loopline.monitoring.remediation import Alert

if TYPE_CHECKING:
    from loopline.config import Settings

Progress = Callable[[str], None]

# The monitor's own alerts: name → (remediation, severity). They mirror the Prometheus
# rules of the same names (infra/prometheus/rules/alerts.yml), which fire on the gauges
# the exporter publishes from the same report.
MONITOR_ALERTS: Mapping[str, tuple[str, str]] = {
    "LooplineInputDrift": ("retrain", "ticket"),
    "LooplineOutputDrift": ("notify", "ticket"),
    "LooplineQualityDrop": ("retrain", "page"),
    "LooplineAnomaly": ("notify", "ticket"),
}


def monitoring_dir(settings: Settings) -> Path:
    return settings.path(settings.monitoring.state_dir)


@dataclass(frozen=True)
class MonitorReport:
    run_id: str
    at: float
    champion_version: str | None
    window: Mapping[str, Any]
    drift: DriftVerdict
    quality: tuple[QualityCheck, ...]
    anomalies: Mapping[str, Mapping[str, Any]]
    findings: tuple[Alert, ...]
    report_dir: Path
    html: Path | None
    reference: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "at": self.at,
            "champion_version": self.champion_version,
            "window": dict(self.window),
            "reference": dict(self.reference),
            "drift": self.drift.to_dict(),
            "quality": [q.to_dict() for q in self.quality],
            "anomalies": {k: dict(v) for k, v in self.anomalies.items()},
            "findings": [a.to_dict() for a in self.findings],
            "report_dir": str(self.report_dir),
            "html": str(self.html) if self.html else None,
        }


def findings(
    drift: DriftVerdict,
    quality: Sequence[QualityCheck],
    anomalies: Mapping[str, Mapping[str, Any]],
    version: str | None,
    now: float,
) -> list[Alert]:
    """The monitor's alerts, firing or resolved, from its verdicts (pure).

    A check that could not conclude (too little data) yields neither: an incident is not
    resolved by silence.
    """
    base = {"version": version} if version else {}
    out: list[Alert] = []

    def emit(name: str, status: bool | None, summary: str, **extra: str) -> None:
        if status is None:
            return
        remediation, severity = MONITOR_ALERTS[name]
        labels = {
            "alertname": name,
            "remediation": remediation,
            "severity": severity,
            **base,
            **extra,
        }
        out.append(Alert(name, "firing" if status else "resolved", labels, summary, now, "monitor"))

    concluded = drift.status != "insufficient_data"
    emit(
        "LooplineInputDrift",
        drift.input_drift if concluded else None,
        "; ".join(drift.reasons),
    )
    emit(
        "LooplineOutputDrift",
        drift.output_drift if concluded else None,
        "; ".join(drift.reasons),
    )
    judged = [q for q in quality if q.score is not None and q.baseline is not None]
    if judged:
        dropped = [q for q in judged if q.dropped]
        emit(
            "LooplineQualityDrop",
            bool(dropped),
            "; ".join(q.reason for q in (dropped or judged)),
        )
    if anomalies:
        flagged = sorted(s for s, r in anomalies.items() if r.get("latest_anomalous"))
        emit(
            "LooplineAnomaly",
            bool(flagged),
            f"anomalous: {', '.join(flagged)}" if flagged else "no anomalous series",
        )
    return out


def _champion_version(settings: Settings) -> str | None:
    from loopline.registry.mlflow_registry import ModelRegistry

    found = ModelRegistry(settings).get_by_alias("champion")
    return found.version if found is not None else None


def _anomalies(settings: Settings, records: Sequence[Mapping[str, Any]], now: float) -> dict:
    import pandas as pd

    from loopline.monitoring.anomaly import AnomalyPolicy, detect_all, metric_series

    cfg = settings.monitoring.anomaly
    start = now - cfg.history_buckets * cfg.bucket_seconds
    rows = [
        {
            "ts": float(r.get("ts") or 0.0),
            "status": int(r.get("status") or 0),
            "latency_ms": float(r.get("latency_ms") or 0.0),
            "cost_usd": float(r.get("cost_usd") or 0.0),
        }
        for r in records
        if float(r.get("ts") or 0.0) >= start
    ]
    if not rows:
        return {}
    series = metric_series(
        pd.DataFrame(rows), bucket_seconds=cfg.bucket_seconds, start=start, end=now
    )
    policy = AnomalyPolicy(
        threshold=cfg.threshold,
        persistence=cfg.persistence,
        min_requests=cfg.min_requests,
        season_length=86_400 // cfg.bucket_seconds,
    )
    return {name: result.to_dict() for name, result in detect_all(series, policy).items()}


def _stable_url(settings: Settings) -> str | None:
    from loopline.deploy.stack import load_stack, server_ready

    stack = load_stack(settings)
    if stack.stable is None or server_ready(stack.stable) is not None:
        return None
    return stack.stable.url


def _log_to_mlflow(settings: Settings, report: MonitorReport, files: Sequence[Path]) -> str:
    """One MLflow run per monitor run in ``<experiment>-monitoring``; returns its id."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    from loopline.registry.mlflow_registry import _mlflow_uris

    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
    name = f"{settings.tracking.experiment}-monitoring"
    with _mlflow_uris(settings.tracking_uri, settings.registry_uri):
        exp = client.get_experiment_by_name(name)
        exp_id = (
            exp.experiment_id
            if exp is not None
            else client.create_experiment(name, artifact_location=settings.artifact_location)
        )
        run = client.create_run(exp_id, run_name=report.run_id)
        ts = int(report.at * 1000)
        metrics: dict[str, float] = {"window_requests": float(report.window["requests"])}
        d = report.drift
        for part in (d.inputs, d.outputs):
            if part is not None:
                metrics[f"drift_share_{part.dataset}"] = part.share
                for c in part.columns:
                    metrics[f"drift.{part.dataset}.{c.column}"] = c.statistic
        if d.embedding is not None:
            metrics["embedding_auc"] = d.embedding.auc
        for q in report.quality:
            if q.score is not None:
                metrics[f"quality_{q.source}"] = q.score
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, float(v), ts, 0) for k, v in metrics.items()],
            params=[
                Param("champion_version", str(report.champion_version)),
                Param("window_minutes", str(settings.monitoring.window_minutes)),
                Param("drift_status", d.status),
            ],
            tags=[
                RunTag("loopline.kind", "monitor"),
                RunTag(
                    "loopline.findings",
                    ",".join(a.name for a in report.findings if a.status == "firing") or "none",
                ),
            ],
        )
        for path in files:
            client.log_artifact(run.info.run_id, str(path))
        client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def run_monitor(
    settings: Settings,
    *,
    now: float | None = None,
    probes: bool = True,
    embeddings: bool = True,
    log_to_mlflow: bool = True,
    progress: Progress = lambda _: None,
) -> MonitorReport:
    """Monitor the last ``monitoring.window_minutes`` of traffic (see the module docstring)."""
    from loopline.monitoring.dataset import (
        embed_prompts,
        read_feedback,
        reference_frame,
        requests_frame,
        select_window,
        training_split,
    )
    from loopline.monitoring.drift import detect_drift, evidently_report
    from loopline.monitoring.quality import Baselines, check_quality, probe_scores
    from loopline.serving.request_log import read_request_logs

    cfg = settings.monitoring
    now = time.time() if now is None else now
    run_id = f"mon-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}-{uuid.uuid4().hex[:6]}"
    state = monitoring_dir(settings)
    out_dir = state / "runs" / run_id
    champion = _champion_version(settings)

    records = [
        r
        for r in read_request_logs(settings.path(settings.serving.request_log_dir))
        if r.get("variant") != PROBE_VARIANT
    ]
    window = select_window(records, now=now, minutes=cfg.window_minutes, max_rows=cfg.max_rows)
    current = requests_frame(window, read_feedback(state / "feedback"))
    train = training_split(settings)
    reference = reference_frame(train, cfg.reference_rows)
    progress(f"monitor {run_id}: {len(current)} requests vs {len(reference)} reference rows")

    emb = None
    if embeddings and len(current) >= cfg.drift.min_rows:
        from loopline.evaluation.metrics import load_embedder

        encoder = load_embedder(settings.evaluation.embedding_model)
        emb = embed_prompts(
            reference,
            current,
            encoder.encode,
            max_rows=cfg.drift.embedding_max_rows,
            cache_dir=state / "cache",
        )
    verdict = detect_drift(
        reference,
        current,
        cfg.drift,
        embeddings=(emb.reference, emb.current) if emb is not None else None,
    )

    baselines = Baselines(state / "baselines.json")
    version = champion or "unknown"

    def judge(source: str, scores: list[float]) -> QualityCheck:
        # The first judged measurement of a version becomes its baseline.
        base: float | None
        if len(scores) >= cfg.quality.min_samples:
            base = baselines.set_if_missing(version, source, sum(scores) / len(scores))
        else:
            base = baselines.get(version, source)
        return check_quality(source, version, scores, base, cfg.quality)

    ok = current[current["status"] == 200]
    checks = [judge("label_free", [float(x) for x in ok["reply_quality"]])]
    url = _stable_url(settings) if probes and cfg.quality.probes else None
    if url is not None and settings.release.golden is not None:
        from loopline.deploy.local_target import load_golden_set

        golden = load_golden_set(settings)
        checks.append(
            judge("probes", probe_scores(url, golden, settings.model.name, cfg.quality.probes))
        )

    anomalies = _anomalies(settings, records, now)
    found = findings(verdict, checks, anomalies, champion, now)

    html = None
    if cfg.evidently_report and verdict.status != "insufficient_data":
        html = evidently_report(reference, current, out_dir / "drift.html")
    report = MonitorReport(
        run_id=run_id,
        at=now,
        champion_version=champion,
        window={
            "minutes": cfg.window_minutes,
            "requests": len(current),
            "start": float(current["ts"].min()) if len(current) else None,
            "end": float(current["ts"].max()) if len(current) else None,
            "versions": sorted(set(current["model_version"])) if len(current) else [],
        },
        drift=verdict,
        quality=tuple(checks),
        anomalies=anomalies,
        findings=tuple(found),
        report_dir=out_dir,
        html=html,
        reference={"rows": len(reference), "source": str(settings.data.prepared_dir)},
    )
    report_path = write_json(report.to_dict(), out_dir / "report.json")
    if log_to_mlflow:
        files = [report_path] + ([html] if html is not None else [])
        _log_to_mlflow(settings, report, files)
    write_json(report.to_dict(), state / "latest.json")
    return report
