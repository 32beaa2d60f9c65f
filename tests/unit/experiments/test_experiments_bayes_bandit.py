"""Bayesian chance-to-beat / expected loss, and the Thompson-sampling bandit."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from loopline.experiments.analysis import ExperimentResult, analyze_experiment
from loopline.experiments.bandit import BetaBernoulliBandit, thompson_choose
from loopline.experiments.bayes import (
    beta_binomial,
    beta_expected_shortfall,
    beta_prob_greater,
    normal_posterior,
)
from loopline.experiments.decision import bandit_state, decide_bandit
from loopline.experiments.policy import (
    AnalysisConfig,
    BanditPolicy,
    DecisionPolicy,
    GuardrailSpec,
    MetricSpec,
    SequentialConfig,
)


def exact_prob_greater(a_t: int, b_t: int, a_c: int, b_c: int) -> float:
    """P(θ_T > θ_C) by Evan Miller's closed form (integer a_t), an independent reference:
    Σ_{i<a_t} B(a_c+i, b_c+b_t) / ((b_t+i) B(1+i, b_t) B(a_c, b_c))."""
    i = np.arange(a_t)
    logs = (
        special.betaln(a_c + i, b_c + b_t)
        - np.log(b_t + i)
        - special.betaln(1 + i, b_t)
        - special.betaln(a_c, b_c)
    )
    return float(np.exp(logs).sum())


def exact_shortfall(a_t: int, b_t: int, a_c: int, b_c: int) -> float:
    """E[max(θ_C − θ_T, 0)] = E[θ_C]·P(C⁺ > T) − E[θ_T]·P(C > T⁺) with size-biased
    posteriors C⁺ ~ Beta(a_c+1, b_c), T⁺ ~ Beta(a_t+1, b_t)."""
    c_gt_t = exact_prob_greater(a_c + 1, b_c, a_t, b_t)
    c_gt_t_plus = exact_prob_greater(a_c, b_c, a_t + 1, b_t)
    return a_c / (a_c + b_c) * c_gt_t - a_t / (a_t + b_t) * c_gt_t_plus


@pytest.mark.parametrize(
    "counts",
    [
        (1 + 12, 1 + 88, 1 + 10, 1 + 90),
        (1 + 520, 1 + 4480, 1 + 500, 1 + 4500),
        (1 + 3, 1 + 7, 1 + 6, 1 + 4),
        (1 + 2100, 1 + 17900, 1 + 2000, 1 + 18000),
        (1 + 40, 1 + 60, 1 + 90, 1 + 10),  # far apart
        (1 + 0, 1 + 50, 1 + 1, 1 + 49),
    ],
)
def test_beta_quantities_match_closed_forms(counts: tuple[int, int, int, int]) -> None:
    a_t, b_t, a_c, b_c = counts
    assert (
        abs(beta_prob_greater(a_t, b_t, a_c, b_c) - exact_prob_greater(a_t, b_t, a_c, b_c)) < 1e-8
    )
    assert (
        abs(beta_expected_shortfall(a_t, b_t, a_c, b_c) - exact_shortfall(a_t, b_t, a_c, b_c))
        < 1e-9
    )


def test_beta_binomial_summaries() -> None:
    res = beta_binomial([500, 560, 470], [5000, 5000, 5000], ["a", "b", "c"], draws=200_000, seed=1)
    a, b, c = (res.variant(n) for n in "abc")
    assert (a.prob_beat_control, a.expected_loss_vs_control) == (0.5, 0.0)
    assert b.prob_beat_control > 0.95
    assert c.prob_beat_control < 0.2
    assert math.isclose(b.prob_beat_control, exact_prob_greater(561, 4441, 501, 4501), abs_tol=1e-8)
    assert math.isclose(sum(v.prob_best for v in res.variants), 1.0)
    assert b.prob_best > 0.9 and b.expected_loss < a.expected_loss < c.expected_loss
    assert math.isclose(b.mean, 561 / 5002)
    assert b.credible_low < b.mean < b.credible_high
    assert math.isclose(stats.beta.cdf(b.credible_low, 561, 4441), 0.025, rel_tol=1e-9)
    # Monte Carlo "vs best" agrees with the two-arm closed forms when there are two arms.
    two = beta_binomial([500, 520], [5000, 5000], ["a", "b"], draws=400_000, seed=2)
    exact = exact_prob_greater(521, 4481, 501, 4501)
    assert abs(two.variant("b").prob_best - exact) < 4 * math.sqrt(exact * (1 - exact) / 400_000)
    assert math.isclose(
        two.variant("a").expected_loss, exact_shortfall(501, 4501, 521, 4481), rel_tol=0.03
    )
    # Lower is better (error rates): the direction flips.
    low = beta_binomial([500, 440], [5000, 5000], ["a", "b"], higher_is_better=False)
    assert low.variant("b").prob_beat_control > 0.97
    assert math.isclose(
        low.variant("b").expected_loss_vs_control,
        exact_shortfall(501, 4501, 441, 4561),  # E[max(θ_b − θ_a, 0)]
        abs_tol=1e-9,
    )
    with pytest.raises(ValueError):
        beta_binomial([5, 6], [4, 10], ["a", "b"])


def test_normal_posterior_closed_forms_match_simulation() -> None:
    res = normal_posterior([10.0, 10.3, 9.9], [0.04, 0.05, 0.04], ["a", "b", "c"], draws=400_000)
    b = res.variant("b")
    d, s = 0.3, math.sqrt(0.09)
    assert math.isclose(b.prob_beat_control, stats.norm.cdf(d / s), rel_tol=1e-12)
    rng = np.random.default_rng(0)
    diff = rng.normal(10.3, math.sqrt(0.05), 1_000_000) - rng.normal(10.0, 0.2, 1_000_000)
    assert abs(b.expected_loss_vs_control - np.maximum(-diff, 0).mean()) < 2e-4
    assert math.isclose(sum(v.prob_best for v in res.variants), 1.0)
    lat = normal_posterior([200.0, 190.0], [4.0, 4.0], ["a", "b"], higher_is_better=False)
    assert lat.variant("b").prob_beat_control > 0.99
    assert lat.variant("b").credible_low < 190 < lat.variant("b").credible_high
    tie = normal_posterior([1.0, 1.0], [0.0, 0.0], ["a", "b"])
    assert tie.variant("b").prob_beat_control == 0.5


def test_bandit_state_is_immutable_and_validated() -> None:
    bandit = BetaBernoulliBandit.new(["p1", "p2"])
    updated = bandit.update("p2", successes=3, failures=1)
    assert bandit.alpha == (1.0, 1.0) and updated.alpha == (1.0, 4.0) and updated.beta == (1.0, 2.0)
    assert updated.means["p2"] == pytest.approx(4 / 6)
    with pytest.raises(KeyError):
        bandit.update("p3", 1)
    with pytest.raises(ValueError):
        BetaBernoulliBandit(("a",), (1.0,), (1.0,))
    shares = updated.update("p2", 300, 100).update("p1", 100, 300).allocation(floor=0.05)
    assert math.isclose(sum(shares.values()), 1.0)
    assert shares["p1"] == pytest.approx(0.05, abs=1e-3) and shares["p2"] > 0.94
    rng = np.random.default_rng(0)
    assert {bandit.choose(rng) for _ in range(200)} == {"p1", "p2"}


def test_thompson_sampling_concentrates_on_the_best_prompt() -> None:
    # 400 independent bandits, 3 prompt variants, 2000 users each (vectorised over bandits).
    rates = np.array([0.10, 0.12, 0.15])
    k, horizon = 400, 2000
    rng = np.random.default_rng(42)
    alpha = np.ones((k, 3))
    beta = np.ones((k, 3))
    pulls = np.zeros((k, 3))
    late = np.zeros((k, 3))
    rows = np.arange(k)
    for step in range(horizon):
        arm = thompson_choose(alpha, beta, rng)
        reward = rng.random(k) < rates[arm]
        alpha[rows, arm] += reward
        beta[rows, arm] += ~reward
        pulls[rows, arm] += 1
        if step >= horizon - 500:
            late[rows, arm] += 1
    share_best_late = late[:, 2].sum() / late.sum()
    assert share_best_late > 0.75
    regret = (pulls * (rates.max() - rates)).sum(axis=1).mean()
    uniform_regret = horizon * (rates.max() - rates).mean()
    assert regret < 0.5 * uniform_regret  # measured ≈ 0.41
    # Deterministic for a seed.
    again = thompson_choose(np.ones((5, 3)), np.ones((5, 3)), np.random.default_rng(1))
    assert np.array_equal(
        again, thompson_choose(np.ones((5, 3)), np.ones((5, 3)), np.random.default_rng(1))
    )


def _bandit_result(
    rates: dict[str, float], n: int, errors: dict[str, float] | None = None
) -> tuple[ExperimentResult, BetaBernoulliBandit]:
    """A per-unit table with exactly ``rate · n`` rewarded units per arm, analysed as the lifecycle
    does for a Thompson experiment (expected weights = observed shares)."""
    rows: list[tuple[str, float, float]] = []
    for arm, rate in rates.items():
        err = (errors or {}).get(arm, 0.0)
        wins, fails = round(rate * n), round(err * n)
        rows.extend((arm, float(i < wins), float(i >= n - fails)) for i in range(n))
    units = pd.DataFrame(rows, columns=["variant", "thumbs_up", "errors"])
    units["requests"] = 1.0
    metrics = (
        MetricSpec(name="thumbs_up", kind="binary", column="thumbs_up"),
        MetricSpec(
            name="error_rate",
            kind="ratio",
            numerator="errors",
            denominator="requests",
            higher_is_better=False,
        ),
    )
    names = tuple(rates)
    result = analyze_experiment(
        units,
        metrics,
        experiment="prompts",
        control=names[0],
        expected_weights={a: 1 / len(names) for a in names},
        config=AnalysisConfig(sequential=SequentialConfig(planned_units_per_variant=n)),
    )
    rewarded = units.groupby("variant")["thumbs_up"].sum().to_dict()
    return result, bandit_state(names, result.units, rewarded)


POLICY = DecisionPolicy(
    primary_metric="thumbs_up",
    cost_metric=None,
    guardrails=(GuardrailSpec(metric="error_rate", max_relative_degradation=0.5),),
)


def test_bandit_decision_ships_the_likely_best_arm_and_waits_otherwise() -> None:
    cfg = BanditPolicy(min_units_per_variant=50)
    result, bandit = _bandit_result({"a": 0.30, "b": 0.30, "c": 0.55}, 400)
    decision = decide_bandit(result, bandit, POLICY, cfg)
    assert decision.action == "ship" and decision.variant == "c"
    assert "best with probability" in decision.reasons[0]
    result, bandit = _bandit_result({"a": 0.30, "b": 0.31, "c": 0.30}, 400)
    assert decide_bandit(result, bandit, POLICY, cfg).action == "keep_running"
    result, bandit = _bandit_result({"a": 0.30, "b": 0.80}, 20)
    early = decide_bandit(result, bandit, POLICY, cfg)
    assert early.action == "keep_running" and "20 units" in early.reasons[0]
    # a guardrail breach wins over a likely-best arm
    result, bandit = _bandit_result({"a": 0.3, "b": 0.6}, 1000, errors={"a": 0.1, "b": 0.4})
    unsafe = decide_bandit(result, bandit, POLICY, cfg)
    assert unsafe.action == "roll_back" and unsafe.affected == ("b",)


def test_bandit_state_counts_rewards_per_arm() -> None:
    bandit = bandit_state(("a", "b"), {"a": 10, "b": 4}, {"a": 7.0})
    assert bandit.alpha == (8.0, 1.0) and bandit.beta == (4.0, 5.0)
    shares = bandit.allocation(floor=0.1)
    assert shares["a"] > shares["b"] >= 0.1 and sum(shares.values()) == pytest.approx(1)
