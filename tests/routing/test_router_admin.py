"""The admin API and its client against a real router process."""

from __future__ import annotations

import re
import time

import httpx
import numpy as np
import pytest

from loopline.routing.client import RouterAdmin, RouterError, RouterState
from tests.routing.router_harness import Backend, RouterProc, fire

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_state_backends_and_switch(router: RouterProc, backends: tuple[Backend, Backend]) -> None:
    stable, candidate = backends
    admin = router.admin
    assert admin.health()
    start = admin.state()
    assert isinstance(start, RouterState)
    assert (start.stable, start.candidate) == (stable.url, candidate.url)
    assert start.candidate_weight == 0.0 and start.mirror_percent == 0.0

    after = admin.set_weight(30)
    assert after.generation == start.generation + 1

    # blue/green: the old candidate becomes stable in one step, weights reset
    switched = admin.switch(candidate.url, stable.url)
    assert (switched.stable, switched.candidate) == (candidate.url, stable.url)
    assert switched.candidate_weight == 0.0 and switched.generation == after.generation + 1
    assert {r.headers["x-backend"] for r in fire(router.url, 10)} == {"candidate"}

    admin.set_weight(20)
    dropped = admin.set_backends(candidate.url, None)
    assert dropped.candidate is None and dropped.candidate_weight == 0.0
    with pytest.raises(RouterError, match=r"set_weight: HTTP 400: candidate_weight: no candidate"):
        admin.set_weight(5)
    assert admin.set_weight(0).candidate_weight == 0.0


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/weights", {"candidate_weight": 101}, "candidate_weight"),
        ("/weights", {"candidate_weight": -1}, "candidate_weight"),
        ("/weights", {"candidate_weight": "5"}, "candidate_weight"),
        ("/weights", {"weight": 5}, "weight"),
        ("/weights", {}, "candidate_weight"),
        ("/mirror", {"mirror_percent": None}, "mirror_percent"),
        ("/backends", {"stable": "not a url", "candidate": None}, "stable"),
        ("/backends", {"stable": "http://127.0.0.1:1"}, "candidate"),
        ("/switch", {"stable": "http://127.0.0.1:1", "candidate": "ftp://x"}, "candidate"),
        ("/switch", [1, 2], "body"),
    ],
)
def test_bad_values_are_400_naming_the_field(
    router: RouterProc, path: str, body: object, field: str
) -> None:
    before = router.admin.state()
    r = httpx.put(router.admin_url + path, json=body)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["message"].startswith(field) and error["code"] == 400
    assert router.admin.state() == before  # nothing changed


def test_bad_json_and_queries_are_400(router: RouterProc) -> None:
    r = httpx.put(router.admin_url + "/mirror", content=b"{nope")
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("body")
    for query, field in (("since=yesterday", "since"), ("arms=stable,canary", "arms")):
        r = httpx.get(f"{router.admin_url}/stats?{query}")
        assert r.status_code == 400 and r.json()["error"]["message"].startswith(field)


def test_stats_since_filters_by_completion_time(router: RouterProc) -> None:
    fire(router.url, 20, concurrency=2)
    cut = time.time()
    time.sleep(0.05)
    fire(router.url, 30, concurrency=2)
    later = router.admin.stats(cut, arms=("stable",))
    assert list(later) == ["stable"]
    records = later["stable"]
    assert len(records) == 30 and (records.t >= cut).all()
    assert np.all(np.diff(records.t) >= 0)
    assert records.latency_ms.dtype == np.float64 and (records.latency_ms > 0).all()
    assert records.status.tolist() == [200] * 30
    assert len(router.admin.stats(time.time() + 60)["stable"]) == 0


def test_client_errors_name_the_operation() -> None:
    with RouterAdmin("http://127.0.0.1:9", timeout=0.5) as dead:
        assert dead.health() is False
        with pytest.raises(
            RouterError, match=re.escape("state: router at http://127.0.0.1:9 unreachable")
        ):
            dead.state()
