"""Releases on the local target with real processes: servers behind the router, real models,
real traffic. Canary promotes a good candidate and rolls back bad ones (injected errors,
degraded quality, a killed process); blue/green switches and switches back; shadow never
returns the candidate's replies."""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from loopline.config import Settings, load_settings
from loopline.deploy.driver import DriverOptions
from loopline.deploy.local_target import read_records
from loopline.deploy.service import deploy, down, rollback, up
from loopline.deploy.stack import load_stack, stop_pid
from loopline.governance.audit import AuditTrail
from loopline.registry.mlflow_registry import ModelRegistry
from loopline.serving.request_log import read_request_logs
from tests.serving.support import ServingProject

pytestmark = pytest.mark.timeout(600)

ANALYSIS = {
    "error_rate_margin": 0.1,
    "latency_tail_margin": 0.3,
    "quality_margin": 0.15,
    "min_samples": 30,
    "rollback_horizon": 60,
    "promotion_horizon": 200,
}
OVERLAY: dict[str, Any] = {
    "serving": {"default_max_tokens": 24, "max_tokens_limit": 64, "cache_size": 0},
    "release": {
        "canary": {
            "steps": [20, 50, 100],
            "min_requests_per_step": 40,
            "min_step_seconds": 1,
            "max_step_seconds": 90,
            "analysis": ANALYSIS,
        },
        "blue_green": {"warmup_requests": 12, "bake_seconds": 3},
        "shadow": {
            "mirror_percent": 100,
            "min_requests_per_step": 40,
            "min_step_seconds": 1,
            "max_step_seconds": 90,
            "analysis": ANALYSIS,
        },
    },
}
FAST = DriverOptions(poll_s=0.5)


@pytest.fixture
def project(serving_project: ServingProject, tmp_path: Path) -> Iterator[Settings]:
    """A private copy of the serving project (registry included) with test release policy."""
    root = tmp_path / "p"
    shutil.copytree(
        serving_project.root, root, ignore=shutil.ignore_patterns("deploy", "serving", "*.log")
    )
    (root / "configs" / "envs" / "local.yaml").write_text(yaml.safe_dump(OVERLAY))
    settings = load_settings(root, env="local")
    yield settings
    down(settings)


@dataclass
class Traffic:
    """Clients sending chat completions through the router until stopped."""

    url: str
    model: str
    concurrency: int = 4
    results: list[tuple[float, int, str, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _client(self, worker: int) -> None:
        prompts = ["my parcel never arrived", "I was charged twice", "reset my password",
                   "cancel my subscription please", "where is my invoice"]  # fmt: skip
        with httpx.Client(base_url=self.url, timeout=60, trust_env=False) as http:
            i = worker
            while not self._stop.is_set():
                message = {"role": "user", "content": f"{prompts[i % 5]} (#{i})"}
                body = {"model": self.model, "max_tokens": 24, "messages": [message]}
                try:
                    r = http.post("/v1/chat/completions", json=body)
                    status, arm = r.status_code, r.headers.get("x-loopline-arm", "")
                    version = r.headers.get("x-loopline-model-version", "")
                except httpx.HTTPError as exc:
                    status, arm, version = 0, type(exc).__name__, ""
                self.results.append((time.time(), status, arm, version))
                i += self.concurrency

    def __enter__(self) -> Traffic:
        for w in range(self.concurrency):
            t = threading.Thread(target=self._client, args=(w,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)


def router_url(settings: Settings) -> str:
    stack = load_stack(settings)
    assert stack.router is not None
    return stack.router.url


def test_canary_promotes_a_good_candidate(project: Settings) -> None:
    up(project, progress=lambda _m: None)
    with Traffic(router_url(project), project.model.name) as traffic:
        record = deploy(project, "canary", model="3", progress=print, options=FAST)
    assert record.outcome == "promoted", record.reason
    assert [s.candidate_weight for s in record.steps] == [20, 50]
    assert all(s.verdict == "promote_step" and s.analysis is not None for s in record.steps)
    analysis = record.steps[0].analysis
    assert analysis is not None and analysis.method and analysis.metrics
    assert {m.metric for m in analysis.metrics} == {"error_rate", "latency_p99", "quality"}
    registry = ModelRegistry(project)
    assert registry.get_by_alias("champion").version == "3"  # type: ignore[union-attr]
    assert registry.get_by_alias("previous_champion").version == "1"  # type: ignore[union-attr]
    stack = load_stack(project)
    assert stack.stable is not None and stack.stable.version == "3" and stack.candidate is None
    assert all(status == 200 for _, status, _, _ in traffic.results), Counter(
        s for _, s, _, _ in traffic.results
    )
    served = Counter(v for _, s, _, v in traffic.results)
    assert served["1"] > 0 and served["3"] > 0
    assert [r["type"] for r in read_records(project)][-1] == "release"
    # Every request the clients got an answer to is in the servers' request logs once.
    logs = read_request_logs(project.path(project.serving.request_log_dir))
    logged = Counter(e["request_id"] for e in logs if e["variant"] in ("stable", "candidate"))
    assert sum(logged.values()) == len(traffic.results) and set(logged.values()) == {1}
    actions = [e.action for e in AuditTrail.for_settings(project).entries()]
    assert actions[-3:] == ["deployment_started", "promotion", "deployment_promoted"]


def test_canary_rolls_back_a_candidate_with_injected_errors(project: Settings) -> None:
    up(project, progress=lambda _m: None)
    with Traffic(router_url(project), project.model.name) as traffic:
        record = deploy(
            project,
            "canary",
            model="3",
            candidate_set=["serving.faults.error_rate=0.3"],
            progress=print,
            options=FAST,
        )
    assert record.outcome == "rolled_back"
    last = record.steps[-1]
    assert last.verdict == "rollback" and last.analysis is not None
    assert any("error_rate" in r for r in last.reasons)
    assert last.analysis.metric("error_rate").status == "degraded"
    assert ModelRegistry(project).get_by_alias("champion").version == "1"  # type: ignore[union-attr]
    failures = [arm for _, status, arm, _ in traffic.results if status != 200]
    assert failures and set(failures) == {"candidate"}  # only the candidate's share failed
    assert load_stack(project).candidate is None


def with_golden_set(settings: Settings, n: int = 40) -> Settings:
    """``settings`` plus a golden set of generated tickets with their reference replies."""
    import json

    from loopline.data.corpus import generate_tickets

    tickets = generate_tickets(settings.data.model_copy(update={"n_tickets": 50, "seed": 99}))
    lines = [
        json.dumps({"prompt": row.prompt, "reference": row.reply})
        for row in tickets.head(n).itertuples()
    ]
    (Path(settings.root) / "golden.jsonl").write_text("\n".join(lines) + "\n")
    overlay = {**OVERLAY, "release": {**OVERLAY["release"], "golden": {"path": "golden.jsonl"}}}
    (Path(settings.root) / "configs" / "envs" / "local.yaml").write_text(yaml.safe_dump(overlay))
    return load_settings(settings.root, env="local")


def test_canary_rolls_back_a_candidate_of_degraded_quality(project: Settings) -> None:
    project = with_golden_set(project)
    up(project, progress=lambda _m: None)
    with Traffic(router_url(project), project.model.name):
        record = deploy(project, "canary", model="2", progress=print, options=FAST)
    assert record.outcome == "rolled_back", record.reason
    last = record.steps[-1]
    assert last.analysis is not None
    quality = last.analysis.metric("quality")
    assert quality.status == "degraded"
    # Golden probes were scored on top of the live replies' descriptors.
    assert quality.n_candidate > last.analysis.metric("error_rate").n_candidate
    assert ModelRegistry(project).get_by_alias("champion").version == "1"  # type: ignore[union-attr]


def test_a_malformed_golden_set_refuses_the_release_before_anything_starts(
    project: Settings,
) -> None:
    from loopline.deploy.stack import DeployError, Stack

    project = with_golden_set(project)
    (Path(project.root) / "golden.jsonl").write_text('{"prompt": "hi"}\n')
    with pytest.raises(DeployError, match=r"golden.jsonl:1: expected a JSON object"):
        deploy(project, "canary", model="3", progress=print, options=FAST)
    assert load_stack(project) == Stack()  # nothing was started
    assert read_records(project) == []
    assert ModelRegistry(project).get_by_alias("champion").version == "1"  # type: ignore[union-attr]


def test_killing_the_candidate_mid_canary_rolls_back_without_failed_requests(
    project: Settings,
) -> None:
    up(project, progress=lambda _m: None)
    killed: list[int] = []

    def kill_when_live(message: str) -> None:
        print(message)
        stack = load_stack(project)
        if "analysing step 0" in message and stack.candidate is not None and not killed:
            killed.append(stack.candidate.pid)
            threading.Timer(1.5, stop_pid, args=(stack.candidate.pid, 0.1)).start()

    with Traffic(router_url(project), project.model.name) as traffic:
        record = deploy(project, "canary", model="3", progress=kill_when_live, options=FAST)
    assert killed
    assert record.outcome == "rolled_back"
    assert "candidate unhealthy" in (record.reason or "") or "error_rate" in str(record.steps)
    statuses = Counter(status for _, status, _, _ in traffic.results)
    assert statuses[200] > 50 and set(statuses) == {200}, statuses  # the router failed over
    assert ModelRegistry(project).get_by_alias("champion").version == "1"  # type: ignore[union-attr]


def test_blue_green_switches_and_rollback_switches_back_instantly(project: Settings) -> None:
    up(project, progress=lambda _m: None)
    with Traffic(router_url(project), project.model.name) as traffic:
        record = deploy(project, "blue-green", model="3", progress=print, options=FAST)
        assert record.outcome == "promoted", record.reason
        assert [s.kind for s in record.steps] == ["check", "bake"]
        stack = load_stack(project)
        assert stack.stable is not None and stack.stable.version == "3"
        assert stack.standby is not None and stack.standby.version == "1"  # blue kept warm
        t0 = time.monotonic()
        result = rollback(project, reason="drill")
        switch_s = time.monotonic() - t0
        time.sleep(1.0)
    assert result["instant"] is True and result["to_version"] == "1"
    assert switch_s < 5.0
    assert all(status == 200 for _, status, _, _ in traffic.results)
    last = [v for _, _, _, v in traffic.results][-3:]
    assert last == ["1", "1", "1"]
    registry = ModelRegistry(project)
    assert registry.get_by_alias("champion").version == "1"  # type: ignore[union-attr]
    assert [r["type"] for r in read_records(project)][-2:] == ["release", "rollback"]


def test_shadow_mirrors_without_returning_candidate_replies(project: Settings) -> None:
    up(project, progress=lambda _m: None)
    with Traffic(router_url(project), project.model.name) as traffic:
        record = deploy(project, "shadow", model="2", progress=print, options=FAST)
    # The degraded candidate fails the comparison; users never saw it.
    assert record.outcome == "rolled_back"
    assert {v for _, _, _, v in traffic.results} == {"1"}
    logs = list(read_request_logs(project.path(project.serving.request_log_dir)))
    shadow = [e for e in logs if e["variant"] == "shadow"]
    assert shadow and all(e["model_version"] == "2" for e in shadow)
    assert ModelRegistry(project).get_by_alias("champion").version == "1"  # type: ignore[union-attr]


def test_split_accuracy_over_2000_requests_to_real_servers(project: Settings) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from loopline.deploy.stack import start_server, wait_ready
    from loopline.routing.client import RouterAdmin

    up(project, progress=lambda _m: None)
    stack = load_stack(project)
    assert stack.router is not None and stack.stable is not None
    candidate = start_server(project, "3", "candidate")
    router = stack.router.url
    try:
        wait_ready(candidate)
        with RouterAdmin(stack.router.admin_url) as admin:
            admin.set_backends(stack.stable.url, candidate.url)
            admin.set_weight(25)

        def served_by(n: int) -> list[str]:
            with httpx.Client(base_url=router, timeout=30, trust_env=False) as http:
                return [str(http.get("/v1/models").json()["data"][1]["id"]) for _ in range(n)]

        with ThreadPoolExecutor(4) as pool:
            versions = Counter(v for chunk in pool.map(served_by, [500] * 4) for v in chunk)
    finally:
        stop_pid(candidate.pid)
    name = project.model.name
    share = versions[f"{name}:3"] / 2000
    assert versions[f"{name}:1"] + versions[f"{name}:3"] == 2000
    assert abs(share - 0.25) <= 0.02, versions
