"""Failures through a real router: a killed candidate, candidate 5xx, stable down, timeouts,
and the process itself (state file, SIGTERM)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from loopline.routing.process import stop_router
from tests.routing.router_harness import (
    CANDIDATE_REPLY,
    STABLE_REPLY,
    Backend,
    RouterProc,
    arm_counts,
    fire,
    launch_router,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_killed_candidate_loses_no_client_request(
    router: RouterProc,
    backends: tuple[Backend, Backend],
    backend_factory: Callable[[str, str], Backend],
) -> None:
    doomed = backend_factory("doomed", CANDIDATE_REPLY)
    router.admin.set_backends(backends[0].url, doomed.url)
    router.admin.set_weight(50)
    since = time.time()
    killer = threading.Timer(0.4, doomed.kill)
    killer.start()
    replies = fire(router.url, 600, concurrency=8)
    killer.join()
    assert doomed.proc.poll() is not None
    assert [r.status for r in replies if r.status != 200] == []
    arms = arm_counts(replies)
    assert arms["candidate"] > 0 and arms["stable"] > arms["candidate"]
    stats = router.admin.stats(since)
    cand = stats["candidate"]
    failed = int((cand.status == 0).sum())
    assert failed > 0 and not cand.ok[cand.status == 0].any()
    assert int(cand.ok.sum()) == arms["candidate"]
    # the split picked the candidate for 50 %; each failed pick was answered by stable
    # (two records for that request: a failed candidate one and a stable one)
    assert abs(arms["candidate"] + failed - 300) <= 1
    assert len(stats["stable"]) == arms["stable"] and stats["stable"].ok.all()


def test_candidate_5xx_is_returned_and_counted(
    router: RouterProc, backends: tuple[Backend, Backend]
) -> None:
    backends[1].control(status=503)
    router.admin.set_weight(50)
    since = time.time()
    replies = fire(router.url, 100, concurrency=4)
    statuses = {r.headers["x-loopline-arm"]: r.status for r in replies}
    assert statuses == {"stable": 200, "candidate": 503}
    failing = next(r for r in replies if r.status == 503)
    assert failing.json()["error"]["message"] == "candidate failing on purpose"
    stats = router.admin.stats(since)
    assert len(stats["candidate"]) == 50 and not stats["candidate"].ok.any()
    assert (stats["candidate"].status == 503).all()
    assert stats["candidate"].quality.tolist() == pytest.approx([float("nan")] * 50, nan_ok=True)
    assert stats["stable"].ok.all() and len(stats["stable"]) == 50


def test_stable_down_is_502_and_slow_stable_is_504(
    routing_tmp: Path, backend_factory: Callable[[str, str], Backend]
) -> None:
    stable = backend_factory("slow", STABLE_REPLY)
    proc = launch_router(routing_tmp, stable.url, None, ("--timeout", "0.5"))
    try:
        state = json.loads(proc.state_file.read_text())
        assert state["stable"] == stable.url and state["generation"] == 0
        assert state["admin_port"] == int(proc.admin_url.rsplit(":", 1)[1])

        stable.control(delay=2.0)
        r = httpx.post(f"{proc.url}/v1/chat/completions", json={}, timeout=10)
        assert r.status_code == 504
        assert r.json()["error"]["type"] == "upstream_timeout"
        assert r.headers["x-loopline-arm"] == "stable"

        stable.kill()
        r = httpx.post(f"{proc.url}/v1/chat/completions", json={}, timeout=10)
        assert r.status_code == 502
        error = r.json()["error"]
        assert error["type"] == "upstream_unavailable" and error["code"] == 502
        assert "stable" in error["message"]
        stats = proc.admin.stats(0)
        assert stats["stable"].status.tolist() == [0, 0]
        assert not stats["stable"].ok.any()

        # every change is written to the state file atomically
        proc.admin.set_backends(stable.url, "http://127.0.0.1:9")
        proc.admin.set_weight(12.5)
        state = json.loads(proc.state_file.read_text())
        assert state["candidate"] == "http://127.0.0.1:9"
        assert state["candidate_weight"] == 12.5 and state["generation"] == 2
        assert list(proc.state_file.parent.glob(f".{proc.state_file.name}.*")) == []
    finally:
        proc.admin.close()
        assert stop_router(proc.proc, timeout=10) == 0  # SIGTERM is a clean exit
    assert "Traceback" not in proc.log_path.read_text()
