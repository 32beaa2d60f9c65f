"""Canary analysis: verdict contents, gating, the threshold baseline, and Monte Carlo error
rates of the sequential tests (seeded, vectorised through loopline.release.simulation).

Monte Carlo tolerances: a rate estimated from K runs is compared with its bound, and
assertions on rates near a bound leave at least three binomial standard errors of room.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from loopline.release import (
    ArmMetrics,
    CanaryAnalysisPolicy,
    CanaryPolicy,
    CanaryVerdict,
    ShadowPolicy,
    StepMetrics,
    ThresholdPolicy,
    ThresholdState,
    analyze_canary,
    latency_reference,
    threshold_verdict,
)
from loopline.release.analysis import event_share_log_evalue, metric_alpha
from loopline.release.simulation import TrafficModel, simulate_sequential, simulate_threshold

POLICY = CanaryPolicy(steps=(5.0, 25.0, 50.0, 100.0), min_requests_per_step=200)


def arm(
    n: int, err: float = 0.02, slow: float = 0.01, q: float = 0.80, sd: float = 0.15
) -> ArmMetrics:
    return ArmMetrics(
        requests=n,
        errors=round(n * err),
        slow=round(n * slow),
        quality_count=n,
        quality_mean=q,
        quality_var=sd**2,
    )


def step(n_c: int, *, weight: float = 5.0, elapsed: float = 600.0, **cand: float) -> StepMetrics:
    n_s = round(n_c * (100 - weight) / weight)
    return StepMetrics(
        step=0,
        candidate_weight=weight,
        stable=arm(n_s),
        candidate=arm(n_c, **cand),
        elapsed_s=elapsed,
        latency_reference_ms=850.0,
    )


# --------------------------------------------------------------------------- verdict contents


def test_degraded_error_rate_rolls_back_with_values_thresholds_and_test() -> None:
    v = analyze_canary(step(1000, err=0.07), POLICY)
    assert v.verdict == "rollback" and not v.inconclusive
    e = v.metric("error_rate")
    assert e.status == "degraded"
    assert (e.stable_value, e.candidate_value) == pytest.approx((0.02, 0.07))
    assert e.degradation == pytest.approx(0.05) and e.margin == 0.01
    assert e.alpha == pytest.approx(0.01 / 9)  # 3 metrics x 3 analysed steps
    assert e.p_value is not None and e.alpha is not None and e.p_value <= e.alpha
    assert e.ci_low is not None and e.ci_high is not None and 0 < e.ci_low < 0.05 < e.ci_high
    assert "event-share" in e.test
    assert v.reasons == (f"error_rate: {e.message}",)
    assert "error rate 7.00 % vs stable 2.00 % (+5.00 pp)" in e.message
    assert f"≤ α {e.alpha:.3g}" in e.message
    # The other metrics are reported (not degraded) with their own evidence.
    assert v.metric("latency_p99").status == "undecided"
    assert "above the 850 ms reference" in v.metric("latency_p99").message
    assert (v.candidate_requests, v.stable_requests, v.alpha) == (1000, 19000, 0.01)


def test_identical_candidate_with_enough_data_promotes_the_step() -> None:
    v = analyze_canary(step(6000), POLICY)
    assert v.verdict == "promote_step"
    assert (
        v.reasons[0] == "all 3 metrics within their margins after 6000 candidate requests in 600 s"
    )
    for m in v.metrics:
        assert m.status == "within_margin"
        assert m.promotion_alpha == 0.05
        assert m.p_value_margin is not None and m.p_value_margin <= m.promotion_alpha
        assert m.ci_high is not None and m.ci_high < m.margin


def test_latency_tail_and_quality_regressions_are_caught() -> None:
    slow = analyze_canary(step(2000, slow=0.05), POLICY)
    assert slow.verdict == "rollback" and slow.metric("latency_p99").status == "degraded"
    worse = analyze_canary(step(400, q=0.70), POLICY)
    q = worse.metric("quality")
    assert worse.verdict == "rollback" and q.status == "degraded"
    assert q.degradation == pytest.approx(0.125) and "quality 0.700 vs stable 0.800" in q.message


def test_step_minimums_gate_promotion_but_not_rollback() -> None:
    early = analyze_canary(step(6000, elapsed=30.0), POLICY)
    assert early.verdict == "continue"
    assert early.reasons[0] == "step needs at least 60 s (has 30 s)"
    # A candidate failing every request is rolled back long before any minimum.
    broken = StepMetrics(0, 5.0, arm(380), ArmMetrics(requests=20, errors=20), elapsed_s=2.0)
    v = analyze_canary(broken, POLICY)
    assert v.verdict == "rollback" and v.metric("error_rate").status == "degraded"
    assert v.metric("quality").status == "insufficient_data"


@pytest.mark.parametrize(
    ("action", "verdict"), [("rollback", "rollback"), ("promote_step", "promote_step")]
)
def test_step_limit_without_a_decision_is_inconclusive(action: str, verdict: str) -> None:
    policy = CanaryPolicy.model_validate({"max_requests_per_step": 300, "on_inconclusive": action})
    v = analyze_canary(step(300), policy)
    assert v.verdict == verdict and v.inconclusive
    assert v.reasons[0].startswith("step limit reached after 300 candidate requests")
    assert f"{action} (on_inconclusive)" in v.reasons[0]


def test_missing_quality_scores_block_promotion_until_disabled() -> None:
    def no_scores(n: int) -> ArmMetrics:
        return ArmMetrics(requests=n, errors=round(0.02 * n), slow=round(0.01 * n))

    sm = StepMetrics(0, 5.0, no_scores(114_000), no_scores(6000), elapsed_s=600.0)
    v = analyze_canary(sm, POLICY)
    assert v.verdict == "continue" and v.metric("quality").status == "insufficient_data"
    unscored = CanaryPolicy(analysis=CanaryAnalysisPolicy(quality_margin=None))
    v2 = analyze_canary(sm, unscored)
    assert v2.verdict == "promote_step" and [m.metric for m in v2.metrics] == [
        "error_rate",
        "latency_p99",
    ]
    assert v2.metric("error_rate").alpha == pytest.approx(0.01 / 6)


def test_bonferroni_split_follows_metrics_and_steps() -> None:
    assert metric_alpha(POLICY) == pytest.approx(0.01 / 9)
    two_steps = CanaryPolicy(steps=(10.0, 50.0), analysis=CanaryAnalysisPolicy(alpha=0.04))
    assert metric_alpha(two_steps) == pytest.approx(0.04 / 6)
    assert metric_alpha(ShadowPolicy()) == pytest.approx(0.01 / 3)


def test_shadow_comparison_of_mirrored_replies() -> None:
    sm = StepMetrics(0, 100.0, arm(3000), arm(3000, err=0.06), elapsed_s=600.0, mirrored=True)
    v = analyze_canary(sm, ShadowPolicy())
    assert v.verdict == "rollback" and v.metric("error_rate").alpha == pytest.approx(0.01 / 3)
    with pytest.raises(ValueError, match="candidate_weight must lie in"):
        StepMetrics(0, 100.0, arm(10), arm(10))


def test_verdict_json_round_trip_is_strict() -> None:
    v = analyze_canary(step(150, elapsed=5.0), POLICY)  # some statistics are unavailable
    text = json.dumps(v.to_dict(), allow_nan=False)
    assert CanaryVerdict.from_dict(json.loads(text)) == v


def test_arm_metrics_from_requests_and_reference_latency() -> None:
    rng = np.random.default_rng(0)
    stable_lat = rng.lognormal(6.0, 0.4, 5000)
    ref = latency_reference(stable_lat)
    assert ref == pytest.approx(np.quantile(stable_lat, 0.99))
    lat = rng.lognormal(6.3, 0.4, 400)
    failed = np.zeros(400, dtype=bool)
    failed[:9] = True
    scores = rng.uniform(0.5, 1.0, 150)
    a = ArmMetrics.from_requests(
        failed=failed, latency_ms=lat, latency_reference_ms=ref, quality=scores
    )
    assert (a.requests, a.errors, a.slow) == (400, 9, int(np.sum(lat > ref)))
    assert a.quality_count == 150 and a.quality_mean == pytest.approx(scores.mean())
    assert a.quality_var == pytest.approx(scores.var(ddof=1))
    assert a.latency_p99_ms == pytest.approx(np.quantile(lat, 0.99))
    with pytest.raises(ValueError, match="errors must lie in"):
        ArmMetrics(requests=5, errors=6)


def test_event_share_evalue_matches_its_definition() -> None:
    ratios = (1.5, 2.0, 3.0)
    # 12 of 30 events from a candidate with 10 % of the requests.
    log_e = float(event_share_log_evalue(18, 9000, 12, 1000, ratios))
    pi = 0.1
    direct = np.mean([r**12 / (1 + pi * (r - 1)) ** 30 for r in ratios])
    assert log_e == pytest.approx(math.log(direct))
    # No events: no evidence. A candidate share at or below π: evidence against rollback.
    assert float(event_share_log_evalue(0, 9000, 0, 1000, ratios)) == pytest.approx(0.0)
    assert float(event_share_log_evalue(27, 9000, 3, 1000, ratios)) < 0.0


# --------------------------------------------------------------------------- threshold baseline


def test_threshold_baseline_counts_failed_checks_across_steps() -> None:
    policy = ThresholdPolicy(max_failed_checks=3)
    bad = StepMetrics(0, 5.0, arm(1900), arm(100, err=0.06))
    good = StepMetrics(0, 5.0, arm(1900), arm(100))
    state = ThresholdState()
    seen = []
    for interval in (bad, good, bad, bad):
        state, v = threshold_verdict(state, interval, policy)
        seen.append(v.verdict)
    assert seen == ["continue", "promote_step", "continue", "rollback"]
    assert state == ThresholdState(checks=4, failed_checks=3)
    assert v.reasons[0] == "3 failed checks reached the limit of 3"
    e = v.metric("error_rate")
    assert e.status == "degraded" and e.limit == pytest.approx(0.03)
    assert "error rate 6.00 % > limit 3.00 % (stable 2.00 %" in e.message
    assert v.method.startswith("fixed thresholds")


def test_threshold_baseline_fails_intervals_without_data() -> None:
    empty = StepMetrics(0, 5.0, arm(1900), ArmMetrics(requests=0))
    state, v = threshold_verdict(ThresholdState(), empty, ThresholdPolicy())
    assert v.verdict == "continue" and state.failed_checks == 1
    assert all(m.status == "insufficient_data" for m in v.metrics)


def test_threshold_simulation_rolls_back_a_broken_candidate_after_exactly_n_checks() -> None:
    broken = TrafficModel(error_rate=1.0)
    res = simulate_threshold(
        TrafficModel(),
        broken,
        (5.0, 50.0),
        ThresholdPolicy(),
        runs=50,
        rng=np.random.default_rng(1),
        interval_requests=2000,
    )
    assert res.rolled_back.all() and (res.step == 0).all()
    assert (res.candidate_requests == 5 * 100).all() and (res.total_requests == 5 * 2000).all()


# --------------------------------------------------------------------------- Monte Carlo


def _errors_only(alpha: float, weight: float, horizon: int) -> CanaryPolicy:
    """One analysed step that can only end by rollback before ``horizon`` candidate requests
    (promotion waits for the horizon): the rollback test is monitored over the whole step."""
    return CanaryPolicy(
        steps=(weight, 100.0),
        min_requests_per_step=horizon,
        min_step_seconds=0.0,
        max_requests_per_step=horizon,
        max_step_seconds=None,
        on_inconclusive="promote_step",
        analysis=CanaryAnalysisPolicy(alpha=alpha, latency_tail_margin=None, quality_margin=None),
    )


@pytest.mark.parametrize(
    ("base_rate", "weight", "random_routing"),
    [(0.002, 5.0, False), (0.02, 5.0, True), (0.02, 50.0, False)],
)
def test_rare_event_rollback_test_keeps_its_false_rollback_rate_under_continuous_looks(
    base_rate: float, weight: float, random_routing: bool
) -> None:
    """A/A with a look every 25 candidate requests for 6,000 requests: the exact event-share
    test must stay below α even with few events (a Gaussian test does not)."""
    alpha, runs = 0.05, 1500
    same = TrafficModel(error_rate=base_rate)
    res = simulate_sequential(
        same,
        same,
        _errors_only(alpha, weight, 6000),
        runs=runs,
        rng=np.random.default_rng(7),
        random_routing=random_routing,
    )
    assert res.rollback_rate <= alpha


def test_identical_candidates_false_rollback_rate_over_full_releases() -> None:
    """All metrics, all steps, default margins; the release-wide bound α = 5 %."""
    policy = CanaryPolicy(max_step_seconds=None, analysis=CanaryAnalysisPolicy(alpha=0.05))
    base = TrafficModel()
    res = simulate_sequential(base, base, policy, runs=1500, rng=np.random.default_rng(11))
    assert res.rollback_rate <= 0.05
    assert not res.inconclusive.any()
    assert res.promotion_rate >= 0.95


@pytest.mark.parametrize(
    "candidate",
    [
        TrafficModel().degraded(errors_pp=0.05),
        TrafficModel().degraded(quality_rel=0.10),
        TrafficModel().degraded(slow_pp=0.02),
    ],
    ids=["errors+5pp", "quality-10pct", "slow+2pp"],
)
def test_degraded_candidates_are_rolled_back_early(candidate: TrafficModel) -> None:
    res = simulate_sequential(
        TrafficModel(),
        candidate,
        POLICY.model_copy(update={"max_step_seconds": None}),
        runs=400,
        rng=np.random.default_rng(3),
    )
    assert res.rollback_rate >= 0.99
    assert (res.step[res.rolled_back] == 0).mean() >= 0.95  # caught at the 5 % step
    assert res.median_requests_to_rollback() <= 1000


def test_candidate_degraded_by_the_margin_is_rarely_promoted() -> None:
    """False promotion (a step promoted although the candidate is as bad as the margin) is
    bounded by promotion_alpha."""
    policy = CanaryPolicy(steps=(5.0, 100.0), max_step_seconds=None)
    res = simulate_sequential(
        TrafficModel(),
        TrafficModel().degraded(quality_rel=0.03),
        policy,
        runs=600,
        rng=np.random.default_rng(5),
    )
    assert res.promotion_rate <= 0.05


def test_sequential_rolls_back_sooner_than_the_threshold_baseline() -> None:
    rng = np.random.default_rng(9)
    bad = TrafficModel().degraded(errors_pp=0.05)
    policy = POLICY.model_copy(update={"max_step_seconds": None})
    seq = simulate_sequential(TrafficModel(), bad, policy, runs=300, rng=rng)
    thr = simulate_threshold(
        TrafficModel(),
        bad,
        policy.analysed_weights,
        ThresholdPolicy(),
        runs=300,
        rng=rng,
        interval_requests=3000,
    )
    assert seq.median_requests_to_rollback() <= 0.5 * thr.median_requests_to_rollback()


def test_constant_equal_quality_scores_are_not_a_degradation() -> None:
    # Every reply scored the same on both versions (a coarse score): the floating-point
    # residue of 1 - q_c / q_s must not read as a significant drop.
    policy = CanaryPolicy()
    arm = ArmMetrics(requests=400, quality_count=400, quality_mean=0.65, quality_var=1e-33)
    worse = ArmMetrics(requests=400, quality_count=400, quality_mean=0.35, quality_var=0.0)
    same = StepMetrics(step=0, candidate_weight=20, stable=arm, candidate=arm, elapsed_s=600)
    assert analyze_canary(same, policy).metric("quality").status != "degraded"
    drop = StepMetrics(step=0, candidate_weight=20, stable=arm, candidate=worse, elapsed_s=600)
    assert analyze_canary(drop, policy).metric("quality").status == "degraded"
