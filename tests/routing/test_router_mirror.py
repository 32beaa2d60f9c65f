"""Shadow traffic through a real router: clients get stable's reply, the candidate's reply is
recorded (arm ``shadow``, with quality) and never returned."""

from __future__ import annotations

import time

import pytest

from loopline.routing.client import RouterError
from tests.routing.router_harness import Backend, RouterProc, arm_counts, fire

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _wait_for_shadows(router: RouterProc, since: float, n: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if len(router.admin.stats(since, arms=("shadow",))["shadow"]) >= n:
            return
        time.sleep(0.05)


def test_mirror_records_shadow_replies_and_returns_stable(
    router: RouterProc, backends: tuple[Backend, Backend]
) -> None:
    seen_before = backends[1].seen().get("shadow", 0)
    state = router.admin.set_mirror(25)
    assert state.mirror_percent == 25.0 and state.candidate_weight == 0.0
    since = time.time()
    replies = fire(router.url, 200, concurrency=4)
    assert arm_counts(replies) == {"stable": 200}
    assert all(
        r.json()["choices"][0]["message"]["content"].startswith("intent: billing_refund")
        for r in replies
    )
    _wait_for_shadows(router, since, 50)
    stats = router.admin.stats(since)
    shadow = stats["shadow"]
    assert len(shadow) == 50  # exactly 25 % of 200, deterministic
    assert shadow.ok.all() and (shadow.status == 200).all()
    assert (shadow.quality == 1.0).all()  # the candidate's reply was scored
    assert len(stats["stable"]) == 200 and len(stats["candidate"]) == 0
    assert backends[1].seen().get("shadow", 0) - seen_before == 50
    raw = router.admin.stats_raw(since)
    assert raw["dropped_mirrors"] == 0 and raw["total"] >= 250


def test_mirror_and_weight_are_exclusive_and_failures_are_recorded(
    router: RouterProc, backends: tuple[Backend, Backend]
) -> None:
    router.admin.set_weight(10)
    with pytest.raises(RouterError, match="mirror_percent"):
        router.admin.set_mirror(10)
    router.admin.set_weight(0)
    router.admin.set_mirror(100)
    backends[1].control(status=500)
    since = time.time()
    replies = fire(router.url, 20, concurrency=2)
    assert {r.status for r in replies} == {200}
    _wait_for_shadows(router, since, 20)
    shadow = router.admin.stats(since)["shadow"]
    assert (shadow.status == 500).all() and not shadow.ok.any()
