"""``loopline monitor serve`` as a real process: the Alertmanager webhook and /metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from loopline.config import load_settings
from loopline.fsutil import write_json
from loopline.monitoring.drift import detect_drift
from loopline.monitoring.monitor import findings
from loopline.monitoring.policy import DriftPolicy, QualityPolicy
from loopline.monitoring.quality import check_quality
from loopline.routing.process import free_port
from tests.conftest import make_project

pytestmark = pytest.mark.integration


@contextmanager
def monitor_service(root: Path, *extra: str) -> Iterator[str]:
    port = free_port()
    cmd = [sys.executable, "-m", "loopline", "monitor", "serve", "--project", str(root),
           "--port", str(port), *extra]  # fmt: skip
    log = (root / f"monitor-{port}.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((root / f"monitor-{port}.log").read_text())
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def notification(name: str, remediation: str, status: str = "firing") -> dict[str, Any]:
    labels = {"alertname": name, "remediation": remediation, "severity": "page", "version": "1"}
    return {
        "version": "4",
        "status": status,
        "receiver": "loopline",
        "groupKey": "{}:{}",
        "commonLabels": labels,
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": name},
                "startsAt": "2026-11-27T08:00:00Z",
            }
        ],
    }


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics", timeout=10, trust_env=False).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def test_webhook_records_decides_and_refuses_bad_bodies(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p")
    (root / "configs" / "envs" / "local.yaml").write_text(
        yaml.safe_dump({"monitoring": {"monthly_budget_usd": 250.0}})
    )
    settings = load_settings(root, env="local")
    incidents_file = settings.path(settings.monitoring.state_dir) / "incidents.jsonl"
    # A failing executor command: the claimed action is recorded as failed and escalates.
    with monitor_service(root, "--executor", "command", "--command", "false {incident}") as url:
        r = httpx.post(f"{url}/alerts", json=notification("LooplineHighErrorRate", "rollback"))
        assert r.status_code == 200, r.text
        [d] = r.json()["decisions"]
        assert d["action"] == "rollback" and d["incident"].startswith("inc-")
        r = httpx.post(f"{url}/alerts", json=notification("LooplineNoTraffic", "notify"))
        assert [x["action"] for x in r.json()["decisions"]] == ["notify"]

        before = incidents_file.read_bytes()
        for body, status, message in [
            (b"{not json", 400, "body is not JSON"),
            (json.dumps({"version": "4", "alerts": [{"labels": {}}]}).encode(), 400, "alertname"),
            (json.dumps({"version": "2", "alerts": []}).encode(), 400, "version"),
        ]:
            bad = httpx.post(f"{url}/alerts", content=body)
            assert bad.status_code == status and message in bad.json()["error"]
        assert incidents_file.read_bytes() == before  # nothing recorded for bad bodies

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = {i["key"]: i for i in httpx.get(f"{url}/incidents").json()}
            if found["LooplineHighErrorRate:1"]["status"] == "escalated":
                break
            time.sleep(0.2)
        rollback = found["LooplineHighErrorRate:1"]
        assert rollback["status"] == "escalated" and rollback["last_outcome"] == "failed"
        finished = [e for e in rollback["timeline"] if e["event"] == "action_finished"]
        assert finished[0]["details"]["command"] == f"false {d['incident']}"
        assert found["LooplineNoTraffic:1"]["status"] == "open"

        metrics = scrape(url)
        assert metrics[("loopline_budget_dollars", (("period", "month"),))] == 250.0
        assert metrics[("loopline_incidents_open", ())] == 2.0
        key = ("loopline_remediations_total", (("action", "rollback"), ("outcome", "failed")))
        assert metrics[key] == 1.0


def test_metrics_publish_the_latest_monitor_report(tmp_path: Path) -> None:
    """The gauges Prometheus alerts on carry the values of the report they come from."""
    root = make_project(tmp_path / "p")
    settings = load_settings(root, env="local")
    rng = np.random.default_rng(3)
    cols = {"prompt_chars": "numeric", "reply_intent": "categorical"}

    def frame(shift: float, n: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "prompt_chars": rng.normal(100 + shift, 10, n),
                "reply_intent": rng.choice(["a", "b"], n),
            }
        )

    verdict = detect_drift(
        frame(0, 800), frame(40, 300), DriftPolicy(), inputs=("prompt_chars",),
        outputs=("reply_intent",), kinds=cols,
    )  # fmt: skip
    quality = [check_quality("label_free", "1", [0.61] * 300, 0.9, QualityPolicy(max_drop=0.1))]
    alerts = findings(verdict, quality, {}, "1", 1_800_000_000.0)
    latest = {
        "at": 1_800_000_000.0,
        "champion_version": "1",
        "window": {"requests": 300},
        "drift": verdict.to_dict(),
        "quality": [q.to_dict() for q in quality],
        "anomalies": {"error_rate": {"latest_anomalous": True, "latest_score": 7.5}},
        "findings": [a.to_dict() for a in alerts],
    }
    write_json(latest, settings.path(settings.monitoring.state_dir) / "latest.json")
    with monitor_service(root, "--executor", "none") as url:
        m = scrape(url)
    v1 = ("version", "1")
    assert m[("loopline_drift_detected", (("dataset", "inputs"), v1))] == 1.0
    assert m[("loopline_drift_detected", (("dataset", "outputs"), v1))] == 0.0
    assert m[("loopline_drift_share", (("dataset", "inputs"), v1))] == 1.0
    [col] = verdict.inputs.columns  # type: ignore[union-attr]
    key = ("loopline_drift_column_score",
           (("column", "prompt_chars"), ("dataset", "inputs"), ("method", col.method)))  # fmt: skip
    assert m[key] == pytest.approx(col.statistic)
    assert m[("loopline_quality_score", (("source", "label_free"), v1))] == pytest.approx(0.61)
    assert m[("loopline_quality_baseline", (("source", "label_free"), v1))] == 0.9
    assert m[("loopline_quality_floor", (("source", "label_free"), v1))] == pytest.approx(0.81)
    assert m[("loopline_anomaly", (("series", "error_rate"),))] == 1.0
    assert m[("loopline_anomaly_score", (("series", "error_rate"),))] == 7.5
    assert m[("loopline_champion_info", (("version", "1"),))] == 1.0
    assert m[("loopline_monitor_last_run_timestamp_seconds", ())] == 1_800_000_000.0
    assert {a.name: a.status for a in alerts} == {
        "LooplineInputDrift": "firing",
        "LooplineOutputDrift": "resolved",
        "LooplineQualityDrop": "firing",
    }
