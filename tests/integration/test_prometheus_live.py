"""A real Prometheus scraping a real `loopline serve` that injects server errors: the metrics
arrive, the recording rules and the real LooplineHighErrorRate expression fire, Alertmanager
(the real routing config) delivers the alert to a webhook in its JSON format, and every
dashboard expression evaluates.

Only the alerts' ``for:`` durations are shortened (promtool's unit tests cover them) and the
addresses rewritten; the expressions are the committed ones.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loopline.monitoring import dashboards as dash
from loopline.registry.lineage import model_fingerprint
from loopline.routing.process import free_port
from tests.monitoring.promstack import (
    RULES_DIR,
    Prometheus,
    WebhookSink,
    alertmanager_config,
    load_yaml,
    prometheus_config,
    require,
    running_alertmanager,
    running_prometheus,
    shorten_for,
    wait_until,
    webhook_sink,
    write_serving_targets,
)
from tests.serving.support import ServingProject, running_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

FAULT_ERROR_RATE = 0.5  # half the completions fail: far above the alert's threshold
ALERT = "LooplineHighErrorRate"
PROMPTS = ("my parcel never arrived", "reset my password", "I was charged twice")
GRAFANA_VALUES = {"__rate_interval": "1m", "__range": "5m", "__interval": "1s"}


def _completion(client: httpx.Client, url: str, model: str, prompt: str) -> tuple[int, str]:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 8,
        "temperature": 0,  # deterministic: a repeated prompt can come from the cache
    }
    response = client.post(f"{url}/v1/chat/completions", json=body, timeout=60)
    return response.status_code, response.headers.get("x-loopline-model-version", "")


def _firing(prom: Prometheus, name: str) -> list[dict[str, Any]]:
    return [a for a in prom.alerts() if a["labels"]["alertname"] == name and a["state"] == "firing"]


def _delivered(sink: WebhookSink, name: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [
        (payload, alert)
        for payload in sink.received()
        for alert in payload.get("alerts", [])
        if alert["labels"].get("alertname") == name and alert["status"] == "firing"
    ]


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bloopline_[a-z0-9_]+", expr))


def _is_monitor_panel(panel: dict[str, Any]) -> bool:
    """A panel over the monitor's gauges (no monitor runs here), as opposed to serving ones."""
    return any(_metric_names(t["expr"]) & dash.MONITOR_METRICS for t in panel.get("targets", []))


def test_prometheus_alertmanager_and_dashboards_against_a_faulty_server(
    serving_project: ServingProject, tmp_path: Path
) -> None:
    require("prometheus", "alertmanager")
    rules = {
        "recording.yml": load_yaml(RULES_DIR / "recording.yml"),
        "alerts.yml": shorten_for(load_yaml(RULES_DIR / "alerts.yml"), "1s"),
    }
    targets_dir = tmp_path / "prometheus" / "targets"
    model_dir = serving_project.models["good"]
    serve_args = [
        # a verified folder, as deployments start servers (no registry import: faster)
        "--model-dir", str(model_dir),
        "--checksum", model_fingerprint(model_dir),
        "--version-label", serving_project.good.version,
        "--request-log", str(tmp_path / "requests"),
        "--set", f"serving.faults.error_rate={FAULT_ERROR_RATE}",
        "--set", "serving.cache_size=64",
    ]  # fmt: skip
    statuses: Counter[int] = Counter()
    versions: set[str] = set()
    counted = threading.Lock()
    with (
        webhook_sink() as sink,
        running_alertmanager(tmp_path / "alertmanager", alertmanager_config(sink.url)) as am,
        running_server(serving_project.root, *serve_args, log_dir=tmp_path) as server,
    ):
        write_serving_targets(targets_dir, [f"127.0.0.1:{server.port}"], {"role": "stable"})
        config = prometheus_config(
            serving_targets_dir=targets_dir,
            # nothing listens there: the monitor is not part of this test
            monitor_target=f"127.0.0.1:{free_port()}",
            alertmanager=am.address,
            rule_files=["recording.yml", "alerts.yml"],
        )
        with running_prometheus(tmp_path / "prometheus", config, rules) as prom:
            wait_until(
                lambda: prom.vector('up{job="loopline-serving"} == 1'),
                "Prometheus to scrape the model server",
            )

            # Traffic until the alert fires: a few concurrent clients, repeated prompts.
            model = serving_project.settings.model.name
            stop = threading.Event()

            def client_loop(worker: int) -> None:
                with httpx.Client() as client:
                    i = worker
                    while not stop.is_set():
                        status, version = _completion(
                            client, server.url, model, PROMPTS[i % len(PROMPTS)]
                        )
                        with counted:
                            statuses[status] += 1
                            if version:  # answered requests name the version
                                versions.add(version)
                        i += 1
                        stop.wait(0.02)  # leave Prometheus some CPU

            started = time.monotonic()
            with ThreadPoolExecutor(3) as pool:
                loops = [pool.submit(client_loop, w) for w in range(3)]
                try:
                    firing = wait_until(
                        lambda: _firing(prom, ALERT), f"{ALERT} to fire", timeout=60
                    )
                finally:
                    stop.set()
                for loop in loops:
                    loop.result()
            fired_after = time.monotonic() - started
            # Client errors: counted as 4xx, not as server errors.
            for _ in range(2):
                bad = httpx.post(
                    f"{server.url}/v1/chat/completions",
                    json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**6},
                    timeout=30,
                )
                assert bad.status_code == 400
                statuses[400] += 1

            (version,) = versions
            assert version == serving_project.good.version
            assert statuses[200] and statuses[500]

            # The alert Prometheus fires names the failing version and asks for a rollback.
            (alert,) = firing
            assert alert["labels"] == {
                "alertname": ALERT,
                "severity": "page",
                "remediation": "rollback",
                "variant": "stable",
                "version": version,
            }
            assert dash.ERROR_RATIO_MAX < float(alert["value"]) < 1
            assert f"v{version} (stable)" in alert["annotations"]["summary"]

            # Prometheus holds what the server counted: compare after one more scrape.
            def scraped_equals_served() -> dict[str, float] | None:
                text = prom.http.get(f"{server.url}/metrics").text
                served = {
                    s.labels["status"]: s.value
                    for family in text_string_to_metric_families(text)
                    if family.name == "loopline_requests"
                    for s in family.samples
                    if s.name == "loopline_requests_total"
                }
                result = prom.vector(
                    'sum by (status) (loopline_requests_total{job="loopline-serving"})'
                )
                seen = {r["metric"]["status"]: float(r["value"][1]) for r in result}
                return seen if seen == served else None

            seen = wait_until(scraped_equals_served, "Prometheus to catch up with /metrics")
            assert seen == {str(s): float(n) for s, n in statuses.items()}

            # The recording rule the alert reads agrees with the alert's value.
            (recorded,) = prom.vector(
                f'variant_version:loopline_requests_5xx:ratio_rate5m{{version="{version}"}}'
            )
            assert recorded["metric"]["variant"] == "stable"
            assert float(recorded["value"][1]) > dash.ERROR_RATIO_MAX

            # Alertmanager delivers it to the webhook, in its format (version 4).
            delivered = wait_until(
                lambda: _delivered(sink, ALERT), f"{ALERT} at the webhook", timeout=30
            )
            payload, sent = delivered[0]
            assert payload["version"] == "4"
            assert payload["receiver"] == "loopline"
            assert payload["status"] == "firing"
            assert payload["groupLabels"] == {"alertname": ALERT, "version": version}
            assert sent["labels"]["remediation"] == "rollback"
            assert sent["labels"]["severity"] == "page"
            assert sent["labels"]["version"] == version
            assert sent["annotations"]["runbook"].startswith("docs/observability.md#")
            assert sent["startsAt"] and sent["fingerprint"]
            assert set(sink.paths) == {"/alerts"}

            # No rule fails to evaluate against real data.
            broken = [r for r in prom.rule_health() if r[1] == "err"]
            assert broken == []

            _check_dashboards(prom)
    print(f"{ALERT} fired {fired_after:.1f} s after the traffic started; {dict(statuses)}")


def _check_dashboards(prom: Prometheus) -> None:
    """Every dashboard expression evaluates; serving panels return data."""
    empty: list[str] = []
    evaluated = 0
    for name, board in dash.build_dashboards().items():
        values = dict(GRAFANA_VALUES)
        for var in board["templating"]["list"]:
            values[var["name"]] = var.get("allValue") or ".*"
            if var["type"] == "query":
                # label_values(metric, label): the values Grafana would offer
                query = re.fullmatch(r"label_values\((\w+), (\w+)\)", var["query"])
                assert query, var["query"]
                metric, label = query.groups()
                offered = prom.api(f"label/{label}/values", **{"match[]": metric})
                assert offered["status"] == "success" and offered["data"], var["query"]
        for panel in dash.iter_panels(board):
            results = []
            for target in panel["targets"]:
                expr = dash.expand_expr(target["expr"], values)
                body = prom.query(expr)
                assert body["status"] == "success", f"{name} / {panel['title']}: {expr}: {body}"
                results.append(body["data"]["result"])
                evaluated += 1
            if not _is_monitor_panel(panel) and not any(results):
                empty.append(f"{name} / {panel['title']}")
        for ann in board["annotations"]["list"]:
            if "expr" in ann:
                body = prom.query(dash.expand_expr(ann["expr"], values))
                assert body["status"] == "success", f"{name} annotation {ann['name']}: {body}"
                evaluated += 1
    assert evaluated > 50
    assert empty == [], "serving panels without data"
