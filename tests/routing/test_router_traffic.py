"""Live traffic through a real router process: split accuracy, live weight changes, headers,
sticky users."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.routing.router_harness import Backend, RouterProc, arm_counts, fire

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.mark.parametrize("weight", [5.0, 25.0, 50.0])
def test_split_is_within_2pp_over_2000_requests(router: RouterProc, weight: float) -> None:
    router.admin.set_weight(weight)
    since = time.time()
    # the cheapest request (the split does not look at it); chat is covered below
    replies = fire(router.url, 2000, concurrency=6, method="GET", path="/v1/models")
    assert all(r.status == 200 for r in replies)
    arms = arm_counts(replies)
    share = 100.0 * arms["candidate"] / len(replies)
    assert abs(share - weight) <= 2.0, arms
    # the deterministic WRR is in fact exact to one request
    assert abs(arms["candidate"] - 20 * weight) <= 1, arms
    stats = router.admin.stats(since, arms=("stable", "candidate"))
    assert len(stats["candidate"]) == arms["candidate"]
    assert len(stats["stable"]) == arms["stable"]
    assert stats["candidate"].ok.all() and (stats["candidate"].status == 200).all()


def test_weight_change_is_live_and_100_sends_all(router: RouterProc) -> None:
    assert set(arm_counts(fire(router.url, 40))) == {"stable"}
    state = router.admin.set_weight(100)
    assert state.candidate_weight == 100.0
    assert set(arm_counts(fire(router.url, 40))) == {"candidate"}
    router.admin.set_weight(50)
    assert arm_counts(fire(router.url, 40, concurrency=1)) == {
        "stable": 20,
        "candidate": 20,
    }
    router.admin.set_weight(0)
    assert set(arm_counts(fire(router.url, 40))) == {"stable"}


def test_headers_are_added_forwarded_and_returned(
    router: RouterProc, backends: tuple[Backend, Backend]
) -> None:
    router.admin.set_weight(100)
    with httpx.Client(base_url=router.url) as client:
        r = client.post("/v1/chat/completions", json={"messages": []})
        rid = r.headers["x-request-id"]
        assert len(rid) == 32 and int(rid, 16) >= 0  # uuid4 hex
        assert r.headers["x-seen-request-id"] == rid  # forwarded to the backend
        assert r.headers["x-loopline-arm"] == "candidate"
        assert r.headers["x-seen-variant"] == "candidate"
        assert r.headers["content-type"] == "application/json"
        assert r.json()["choices"][0]["message"]["content"].startswith("intent: password_reset")

        mine = client.post(
            "/v1/completions",
            json={"prompt": "hi"},
            headers={"x-request-id": "abc-1", "x-loopline-variant": "spoofed"},
        )
        assert mine.headers["x-request-id"] == "abc-1"
        assert mine.headers["x-seen-request-id"] == "abc-1"
        assert mine.headers["x-seen-variant"] == "candidate"
        assert mine.json()["choices"][0]["text"].startswith("intent: password_reset")

        router.admin.set_weight(0)
        models = client.get("/v1/models?x=1")
        assert models.status_code == 200 and models.json()["data"][0]["id"] == "stable"
        assert models.headers["x-seen-variant"] == "stable"
        missing = client.get("/v1/nothing")
        assert missing.status_code == 404 and missing.headers["x-loopline-arm"] == "stable"


def test_sticky_users_always_see_the_same_arm(router: RouterProc) -> None:
    router.admin.set_weight(25)
    users = [f"user-{i}" for i in range(40)]
    first = fire(router.url, 200, headers=lambda i: {"x-loopline-user": users[i % 40]})
    again = fire(router.url, 200, headers=lambda i: {"x-loopline-user": users[i % 40]})
    seen: dict[str, set[str]] = {}
    for i, r in enumerate(first + again):
        seen.setdefault(users[i % 40], set()).add(r.headers["x-loopline-arm"])
    assert all(len(arms) == 1 for arms in seen.values())
    assert {next(iter(a)) for a in seen.values()} == {"stable", "candidate"}
