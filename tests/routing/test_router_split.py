"""The pure core: smooth weighted round robin, percent splits, sticky hashing, the stats ring
and state validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from loopline.routing.split import (
    SCALE,
    PercentSplitter,
    SmoothWRR,
    percent_weights,
    smooth_wrr_sequence,
    sticky_bucket,
    sticky_choice,
)
from loopline.routing.state import InvalidValueError, RouterState, check_url
from loopline.routing.stats import StatsRing, columns_to_json

pytestmark = pytest.mark.timeout(30)


def test_nginx_example_sequence() -> None:
    # nginx's documented example: weights a=5, b=1, c=1 give a a b a c a a
    assert smooth_wrr_sequence([5, 1, 1], 7) == [0, 0, 1, 0, 2, 0, 0]


@pytest.mark.parametrize("weights", [(19, 1), (3, 1), (1, 1), (7, 3, 2), (9500, 500), (0, 4)])
def test_every_window_of_one_period_has_exact_counts(weights: tuple[int, ...]) -> None:
    period = sum(weights)
    seq = np.array(smooth_wrr_sequence(weights, 3 * period))
    for start in range(0, 2 * period, max(1, period // 50)):
        counts = np.bincount(seq[start : start + period], minlength=len(weights))
        assert counts.tolist() == list(weights)


@pytest.mark.parametrize("percent", [5.0, 25.0, 50.0, 12.5, 1.0, 33.33])
def test_two_arm_split_is_within_one_request_of_exact_in_every_prefix(percent: float) -> None:
    splitter = PercentSplitter(percent)
    picks = np.array([splitter.next() for _ in range(5000)])
    expected = np.arange(1, 5001) * percent / 100.0
    assert np.max(np.abs(np.cumsum(picks) - expected)) < 1.0 + 1e-9


def test_percent_weights_are_reduced() -> None:
    assert percent_weights(25) == (3, 1)
    assert percent_weights(5) == (19, 1)
    assert percent_weights(0) == (1, 0)
    assert percent_weights(100) == (0, 1)
    assert sum(percent_weights(12.34)) * 12.34 / 100 == pytest.approx(percent_weights(12.34)[1])
    for bad in (-1.0, 100.5, math.nan, math.inf):
        with pytest.raises(ValueError, match="percent"):
            percent_weights(bad)


def test_zero_and_full_shares() -> None:
    never, always = PercentSplitter(0), PercentSplitter(100)
    assert not any(never.next() for _ in range(100))
    assert all(always.next() for _ in range(100))


def test_bad_weights_are_refused() -> None:
    for bad in ([], [0, 0], [-1, 2], [1.5, 1], [True, 1]):
        with pytest.raises(ValueError, match="weight"):
            SmoothWRR(bad)  # type: ignore[arg-type]


def test_sticky_is_stable_monotone_and_about_right() -> None:
    users = [f"user-{i}" for i in range(20_000)]
    assert sticky_bucket("alice") == sticky_bucket("alice")
    assert all(0 <= sticky_bucket(u) < SCALE for u in users[:100])
    in_5 = {u for u in users if sticky_choice(u, 5)}
    in_25 = {u for u in users if sticky_choice(u, 25)}
    assert in_5 <= in_25  # raising the weight keeps users already on the candidate
    assert abs(len(in_25) / len(users) - 0.25) < 0.015
    assert not any(sticky_choice(u, 0) for u in users[:100])
    assert all(sticky_choice(u, 100) for u in users[:100])


def test_stats_ring_keeps_the_newest_records_in_order() -> None:
    ring = StatsRing(capacity=5)
    for i in range(8):
        arm = "candidate" if i % 2 else "stable"
        quality = None if i == 7 else i / 10
        ring.add(
            100.0 + i, arm, ok=i != 3, status=500 if i == 3 else 200, latency_ms=i, quality=quality
        )
    assert ring.total == 8 and len(ring) == 5
    cols = ring.query(since=0.0)
    assert cols["stable"]["t"].tolist() == [104.0, 106.0]
    assert cols["candidate"]["t"].tolist() == [103.0, 105.0, 107.0]
    assert cols["candidate"]["ok"].tolist() == [False, True, True]
    assert cols["candidate"]["status"].tolist() == [500, 200, 200]
    assert len(cols["shadow"]["t"]) == 0
    assert columns_to_json(cols["candidate"])["quality"] == [0.3, 0.5, None]
    since = ring.query(since=105.0, arms=["candidate"])
    assert list(since) == ["candidate"] and since["candidate"]["t"].tolist() == [105.0, 107.0]


def test_state_validation_names_the_field() -> None:
    ok = RouterState("http://127.0.0.1:1", "http://127.0.0.1:2", candidate_weight=5)
    assert ok.changed(candidate_weight=10).generation == 1
    cases = [
        ({"stable": "127.0.0.1:1"}, "stable"),
        ({"stable": "http://127.0.0.1:1", "candidate_weight": 5}, "candidate_weight"),
        ({"stable": "http://127.0.0.1:1", "mirror_percent": 5}, "mirror_percent"),
        (
            {
                "stable": "http://a",
                "candidate": "http://b",
                "candidate_weight": 1,
                "mirror_percent": 1,
            },
            "mirror_percent",
        ),
        (
            {"stable": "http://a", "candidate": "http://b", "candidate_weight": 101},
            "candidate_weight",
        ),
    ]
    for kwargs, field in cases:
        with pytest.raises(InvalidValueError, match=field):
            RouterState(**kwargs)  # type: ignore[arg-type]
    for bad in ("", "ftp://x", "http://", "http://h:99999", "http://h/?q=1", 5):
        with pytest.raises(InvalidValueError, match="candidate"):
            check_url("candidate", bad)
