"""Real Prometheus and Alertmanager processes for tests, built from the committed configs.

Every process runs on 127.0.0.1 on a free port with its state in a temporary directory, and is
stopped when its context exits. The configs are the real files under ``infra/`` with only the
addresses (and, for alert rules, the ``for:`` durations) rewritten:

    with running_prometheus(tmp, prometheus_config(...), rules) as prom:
        prom.wait_for(lambda: prom.vector("up == 1"), "a target up")
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from loopline.routing.process import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA = REPO_ROOT / "infra"
PROMETHEUS_YML = INFRA / "prometheus" / "prometheus.yml"
RULES_DIR = INFRA / "prometheus" / "rules"
RULE_TESTS_DIR = INFRA / "prometheus" / "tests"
ALERTMANAGER_YML = INFRA / "alertmanager" / "alertmanager.yml"
DASHBOARDS_DIR = INFRA / "grafana" / "dashboards"

BINARIES = {
    "prometheus": ("prometheus",),
    "promtool": ("promtool",),
    "alertmanager": ("prometheus-alertmanager", "alertmanager"),
    "amtool": ("amtool",),
}

T = TypeVar("T")


def binary(name: str) -> str | None:
    """The path of a Prometheus tool (Debian names first), or None when not installed."""
    for candidate in BINARIES[name]:
        found = shutil.which(candidate) or (
            f"/usr/bin/{candidate}" if os.access(f"/usr/bin/{candidate}", os.X_OK) else None
        )
        if found:
            return found
    return None


def require(*names: str) -> dict[str, str]:
    """The tools' paths; skips the test (naming the package to install) if one is missing."""
    found = {name: binary(name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not installed "
            "(apt-get install prometheus prometheus-alertmanager; .ci/run does this)"
        )
    return {name: path for name, path in found.items() if path is not None}


def wait_until(
    check: Callable[[], T | None], what: str, *, timeout: float = 30.0, interval: float = 0.25
) -> T:
    """Poll ``check`` until it returns something truthy; its last value on success."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# -- configs ---------------------------------------------------------------------------------------
def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def prometheus_config(
    *,
    serving_targets_dir: Path,
    monitor_target: str,
    alertmanager: str | None,
    rule_files: Sequence[str],
    interval: str = "1s",
) -> dict[str, Any]:
    """The committed prometheus.yml with test addresses: file_sd reads ``serving_targets_dir``,
    the monitor job scrapes ``monitor_target``, alerts go to ``alertmanager`` (host:port) and
    every scrape and evaluation runs each ``interval``."""
    config = copy.deepcopy(load_yaml(PROMETHEUS_YML))
    config["global"]["scrape_interval"] = interval
    config["global"]["evaluation_interval"] = interval
    config["rule_files"] = list(rule_files)
    if alertmanager is None:
        config.pop("alerting", None)
    else:
        config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    serving, monitor = jobs["loopline-serving"], jobs["loopline-monitor"]
    serving["scrape_interval"] = interval
    for sd in serving["file_sd_configs"]:
        sd["files"] = [str(serving_targets_dir / Path(f).name) for f in sd["files"]]
        sd["refresh_interval"] = interval
    monitor["static_configs"] = [{"targets": [monitor_target]}]
    monitor["scrape_interval"] = interval
    return config


def shorten_for(rules: Mapping[str, Any], duration: str = "1s") -> dict[str, Any]:
    """A copy of a rule file with every alert's ``for:`` set to ``duration`` (nothing else
    changes: the expressions, labels and annotations stay the committed ones)."""
    out = copy.deepcopy(dict(rules))
    for group in out["groups"]:
        for rule in group["rules"]:
            if "alert" in rule and "for" in rule:
                rule["for"] = duration
    return out


def alertmanager_config(webhook_url: str) -> dict[str, Any]:
    """The committed alertmanager.yml with every webhook pointed at ``webhook_url``."""
    config = copy.deepcopy(load_yaml(ALERTMANAGER_YML))
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = webhook_url
    return config


def write_serving_targets(
    directory: Path, targets: Sequence[str], labels: Mapping[str, str] | None = None
) -> Path:
    """A file_sd file (``serving.json``) listing model servers, as a deployment writes it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "serving.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([{"targets": list(targets), "labels": dict(labels or {})}]))
    tmp.replace(path)
    return path


# -- processes -------------------------------------------------------------------------------------
@dataclass
class Service:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path
    log_path: Path
    # One client for every API call (a new httpx client per call costs ~0.1 s of TLS setup).
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10.0))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.output()}"
                )
            try:
                return self.http.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(ready, f"{self.name} ready on {self.url}", timeout=timeout, interval=0.1)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.output()}") from None


@dataclass
class Prometheus(Service):
    def api(self, path: str, **params: str) -> dict[str, Any]:
        """A Prometheus HTTP API answer (``status`` success or error), never raising on it."""
        response = self.http.get(f"{self.url}/api/v1/{path}", params=params)
        body: dict[str, Any] = response.json()
        return body

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)

    def vector(self, expr: str) -> list[dict[str, Any]]:
        """The result of an instant query; raises with Prometheus' message on an error."""
        body = self.query(expr)
        if body.get("status") != "success":
            raise AssertionError(f"{expr!r}: {body.get('errorType')}: {body.get('error')}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.api("alerts")["data"]["alerts"]
        return alerts

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self.api("targets")["data"]["activeTargets"]
        return active

    def rule_health(self) -> list[tuple[str, str, str]]:
        """(rule name, health, last error) of every loaded rule."""
        groups = self.api("rules")["data"]["groups"]
        return [
            (rule["name"], rule["health"], rule.get("lastError", ""))
            for group in groups
            for rule in group["rules"]
        ]


def _spawn(cmd: Sequence[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as out:
        return subprocess.Popen(
            list(cmd),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=log_path.parent,
        )


@contextmanager
def running_prometheus(
    workdir: Path,
    config: Mapping[str, Any],
    rules: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    ready_timeout: float = 30.0,
) -> Iterator[Prometheus]:
    """Prometheus with ``config`` (and rule files ``rules``: name -> document, written beside
    it, so ``config['rule_files']`` may name them relatively)."""
    paths = require("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    for name, doc in (rules or {}).items():
        (workdir / name).write_text(yaml.safe_dump(dict(doc), sort_keys=False))
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    port = free_port()
    log_path = workdir / "prometheus.log"
    proc = _spawn(
        [
            paths["prometheus"],
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ],
        log_path,
    )
    prom = Prometheus("prometheus", port, proc, workdir, log_path)
    try:
        prom.wait_ready(ready_timeout)
        yield prom
    finally:
        prom.stop()


@contextmanager
def running_alertmanager(
    workdir: Path, config: Mapping[str, Any], *, ready_timeout: float = 30.0
) -> Iterator[Service]:
    """Alertmanager with ``config``, clustering off (``--cluster.listen-address=``)."""
    paths = require("alertmanager")
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    port = free_port()
    log_path = workdir / "alertmanager.log"
    proc = _spawn(
        [
            paths["alertmanager"],
            f"--config.file={config_path}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        log_path,
    )
    am = Service("alertmanager", port, proc, workdir, log_path)
    try:
        am.wait_ready(ready_timeout)
        yield am
    finally:
        am.stop()


# -- a webhook receiver ----------------------------------------------------------------------------
@dataclass
class WebhookSink:
    """An HTTP server collecting the JSON bodies POSTed to it (an Alertmanager receiver)."""

    port: int
    payloads: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.payloads)


@contextmanager
def webhook_sink() -> Iterator[WebhookSink]:
    sink = WebhookSink(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            with sink.lock:
                sink.payloads.append(body)
                sink.paths.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, name="webhook-sink", daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
