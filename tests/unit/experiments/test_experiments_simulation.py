"""Monte Carlo properties: A/A false-positive rates (with and without peeking), planned power,
SRM detection, CUPED, delta-method ratio metrics and bootstrap coverage.

Simulated experiments are rows of matrices. For normal data the per-batch sufficient
statistics are drawn directly (batch sum ~ N(mμ, mσ²), within-batch sum of squares
~ σ²χ²_{m−1}, independent), which has exactly the distribution of the statistics of raw
normal observations; Bernoulli batches are binomial counts. Tolerances are binomial: a rate
estimated from K experiments is allowed 3.5 standard errors (two-sided miss chance ≈ 5e-4).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from loopline.experiments import power as pw
from loopline.experiments.metrics import ArmStats, ratio_delta_variance
from loopline.experiments.policy import SequentialConfig
from loopline.experiments.sequential import (
    mixing_sd_for_horizon,
    optimal_mixing_ratio,
    sequential_look,
    sequential_path,
)
from loopline.experiments.stats import (
    bootstrap_difference,
    cuped,
    srm_check,
    srm_power,
    srm_sample_size,
    two_proportion_arrays,
    welch_arrays,
    z_arrays,
)

ALPHA = 0.05


def tolerance(rate: float, k: int) -> float:
    return 3.5 * math.sqrt(rate * (1 - rate) / k)


def normal_paths(
    rng: np.random.Generator, k: int, batch: int, looks: int, *, mu: float = 0.0, sd: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (mean, variance, n) after each batch, shaped (k, looks)."""
    sums = mu * batch + sd * math.sqrt(batch) * rng.standard_normal((k, looks))
    squares = sd**2 * rng.chisquare(batch - 1, (k, looks)) + sums**2 / batch
    n = batch * np.arange(1, looks + 1, dtype=float)
    mean = np.cumsum(sums, axis=1) / n
    var = (np.cumsum(squares, axis=1) - n * mean**2) / (n - 1)
    return mean, var, np.broadcast_to(n, (k, looks))


def bernoulli_paths(
    rng: np.random.Generator, k: int, batch: int, looks: int, p: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = batch * np.arange(1, looks + 1, dtype=float)
    mean = np.cumsum(rng.binomial(batch, p, (k, looks)), axis=1) / n
    return mean, mean * (1 - mean) * n / (n - 1), np.broadcast_to(n, (k, looks))


def test_fixed_horizon_aa_false_positive_rate_is_nominal() -> None:
    rng = np.random.default_rng(101)
    k = 8000
    (mc, vc, nc), (mt, vt, nt) = normal_paths(rng, k, 2000, 1), normal_paths(rng, k, 2000, 1)
    welch = welch_arrays(mean_c=mc, var_c=vc, n_c=nc, mean_t=mt, var_t=vt, n_t=nt, alpha=ALPHA)
    fpr_t = float(np.mean(welch.p_value < ALPHA))
    x_c, x_t = rng.binomial(2000, 0.1, k), rng.binomial(2000, 0.1, k)
    fpr_z = float(np.mean(two_proportion_arrays(x_c, 2000, x_t, 2000).p_value < ALPHA))
    for fpr in (fpr_t, fpr_z):
        assert abs(fpr - ALPHA) <= tolerance(ALPHA, k)
    # Interval and test agree: 0 lies outside the interval exactly when p < α.
    outside = (welch.ci_low > 0) | (welch.ci_high < 0)
    assert np.array_equal(outside, welch.p_value < ALPHA)


@pytest.mark.parametrize("data", ["normal", "bernoulli"])
def test_peeking_inflates_fixed_tests_but_not_the_msprt(data: str) -> None:
    # 2000 A/A experiments, a look after every 20 units per arm, up to 5000 per arm
    # (250 looks), stopping at the first "significant" look.
    rng = np.random.default_rng(202 if data == "normal" else 303)
    k, batch, looks = 2000, 20, 250
    if data == "normal":
        c, t = normal_paths(rng, k, batch, looks), normal_paths(rng, k, batch, looks)
        fixed = welch_arrays(
            mean_c=c[0], var_c=c[1], n_c=c[2], mean_t=t[0], var_t=t[1], n_t=t[2]
        ).p_value
    else:
        c, t = (
            bernoulli_paths(rng, k, batch, looks, 0.1),
            bernoulli_paths(rng, k, batch, looks, 0.1),
        )
        fixed = two_proportion_arrays(c[0] * c[2], c[2], t[0] * t[2], t[2]).p_value
    monitored = c[2][0] >= 100  # the same looks the sequential test acts on
    peeking_fpr = float(np.mean(np.any(fixed[:, monitored] < ALPHA, axis=1)))
    final_fpr = float(np.mean(fixed[:, -1] < ALPHA))
    path = sequential_path(
        mean_c=c[0], var_c=c[1], n_c=c[2], mean_t=t[0], var_t=t[1], n_t=t[2],
        alpha=ALPHA, mixing_sd=mixing_sd_for_horizon(ALPHA, 5000), min_units_per_variant=100,
    )  # fmt: skip
    sequential_fpr = float(np.mean(path.rejected[:, -1]))
    tol = tolerance(ALPHA, k)
    assert abs(final_fpr - ALPHA) <= tol  # one look: nominal
    assert peeking_fpr > ALPHA + tol  # continuous peeking: far above α
    assert peeking_fpr > 0.2
    assert sequential_fpr <= ALPHA + tol  # always valid under the same peeking
    # The always-valid p-value never increases, and the confidence sequence contains 0 at
    # every look exactly when the test never rejected.
    assert np.all(np.diff(path.p_value, axis=1) <= 0)
    covered = np.all(np.abs(path.difference) <= path.half_width, axis=1)
    assert np.mean(covered) >= 1 - ALPHA - tol


def test_msprt_has_power_and_time_uniform_coverage_under_an_effect() -> None:
    rng = np.random.default_rng(404)
    k, batch, looks, effect = 2000, 20, 250, 0.1
    c, t = normal_paths(rng, k, batch, looks), normal_paths(rng, k, batch, looks, mu=effect)
    path = sequential_path(
        mean_c=c[0], var_c=c[1], n_c=c[2], mean_t=t[0], var_t=t[1], n_t=t[2],
        alpha=ALPHA, mixing_sd=mixing_sd_for_horizon(ALPHA, 5000),
    )  # fmt: skip
    # d = 0.1 needs 1571 units per arm for 80 % fixed-horizon power; with 5000 the
    # sequential test (tuned to 5000) finds the effect almost always, and earlier on average.
    assert np.mean(path.rejected[:, -1]) > 0.95
    first = np.argmax(path.rejected, axis=1)[path.rejected[:, -1]]
    assert np.median((first + 1) * batch) < 5000
    monitored = c[2][0] >= 100
    lo = path.difference - path.half_width
    hi = path.difference + path.half_width
    covers = np.all((lo <= effect) & (effect <= hi) | ~monitored, axis=1)
    assert np.mean(covers) >= 1 - ALPHA - tolerance(ALPHA, k)


def test_relative_confidence_sequence_covers_uniformly_over_time() -> None:
    # Decisions read relative intervals: check their time-uniform coverage on a positive
    # metric (mean 5, sd 2) with a +4 % effect, 250 looks.
    rng = np.random.default_rng(456)
    k, batch, looks = 2000, 20, 250
    c = normal_paths(rng, k, batch, looks, mu=5.0, sd=2.0)
    t = normal_paths(rng, k, batch, looks, mu=5.2, sd=2.0)
    path = sequential_path(
        mean_c=c[0], var_c=c[1], n_c=c[2], mean_t=t[0], var_t=t[1], n_t=t[2],
        alpha=ALPHA, mixing_sd=mixing_sd_for_horizon(ALPHA, 5000),
    )  # fmt: skip
    err = np.abs(path.relative_difference - 0.04)
    covers = np.all(err <= path.relative_half_width, axis=1)
    assert np.mean(covers) >= 1 - ALPHA - tolerance(ALPHA, k)
    assert np.all(np.isinf(path.relative_half_width[:, :4]))  # before 100 units per arm


def test_sequential_look_matches_the_vectorised_path_and_accumulates() -> None:
    rng = np.random.default_rng(5)
    c, t = normal_paths(rng, 1, 50, 40), normal_paths(rng, 1, 50, 40, mu=0.15)
    config = SequentialConfig(planned_units_per_variant=2000, min_units_per_variant=100)
    phi = mixing_sd_for_horizon(ALPHA, 2000)
    path = sequential_path(
        mean_c=c[0], var_c=c[1], n_c=c[2], mean_t=t[0], var_t=t[1], n_t=t[2],
        alpha=ALPHA, mixing_sd=phi, min_units_per_variant=100,
    )  # fmt: skip
    look = None
    for j in range(40):
        arm_c = ArmStats(int(c[2][0, j]), float(c[0][0, j]), float(c[1][0, j]))
        arm_t = ArmStats(int(t[2][0, j]), float(t[0][0, j]), float(t[1][0, j]))
        look = sequential_look(arm_c, arm_t, config, ALPHA, look)
        assert math.isclose(look.p_value, float(path.p_value[0, j]), rel_tol=1e-12, abs_tol=1e-15)
        assert look.monitoring == (arm_c.n >= 100)
        if look.monitoring:
            assert look.ci_low >= float(path.difference[0, j] - path.half_width[0, j]) - 1e-12
            assert look.ci_high <= float(path.difference[0, j] + path.half_width[0, j]) + 1e-12
    assert look is not None and look.look == 40 and look.mixing_sd == phi
    # The sequence is narrowest (relative to the fixed-horizon SE) at the planned size.
    u = optimal_mixing_ratio(ALPHA)
    assert math.isclose(u, -2 * math.log(ALPHA) + math.log1p(u), rel_tol=1e-12)
    width = [
        math.sqrt((1 + 1 / x) * (-2 * math.log(ALPHA) + math.log1p(x))) for x in (u / 2, u, 2 * u)
    ]
    assert width[1] < width[0] and width[1] < width[2]


def test_power_simulation_hits_planned_power() -> None:
    rng = np.random.default_rng(505)
    k = 6000
    plan = pw.sample_size_means(0.5, 5.0, power=0.8)  # d = 0.1
    n = plan.n_control
    (mc, vc, _), (mt, vt, _) = (
        normal_paths(rng, k, n, 1),
        normal_paths(rng, k, n, 1, mu=0.5, sd=5.0),
    )
    vc = vc * 25.0  # control with sd 5 as well (the generator drew sd 1)
    mc = mc * 5.0
    achieved_t = float(np.mean(
        welch_arrays(mean_c=mc, var_c=vc, n_c=n, mean_t=mt, var_t=vt, n_t=n).p_value < ALPHA
    ))  # fmt: skip
    prop_plan = pw.sample_size_proportions(0.10, 0.12, power=0.8)
    m = prop_plan.n_control
    x_c, x_t = rng.binomial(m, 0.10, k), rng.binomial(m, 0.12, k)
    achieved_z = float(np.mean(two_proportion_arrays(x_c, m, x_t, m).p_value < ALPHA))
    for achieved in (achieved_t, achieved_z):
        assert abs(achieved - 0.8) <= tolerance(0.8, k) + 0.005  # + planning-approximation slack
    # Half the planned sample falls clearly short.
    half = pw.power_proportions(0.10, 0.12, m / 2)
    assert half < 0.55


def test_srm_detected_on_a_50_5_to_49_5_split_at_the_computed_sample_size() -> None:
    expected, actual = [0.5, 0.5], [0.505, 0.495]
    n = srm_sample_size(expected, actual, threshold=0.001, power=0.9)
    # Noncentral chi-square: λ = N·Σ(a−w)²/w = N·1e-4; λ ≈ (z_{0.9995} + z_{0.9})² ≈ 20.9.
    assert 200_000 < n < 215_000
    assert srm_power(n, expected, actual) >= 0.9 > srm_power(n - 1000, expected, actual)
    exact = srm_check([round(0.505 * n), n - round(0.505 * n)], expected)
    assert exact.mismatch and exact.p_value < 1e-4
    rng = np.random.default_rng(606)
    k = 4000
    treated = rng.binomial(n, 0.505, k)
    detected = np.mean([srm_check([x, n - x], expected).mismatch for x in treated[:1000]])
    assert abs(detected - 0.9) <= tolerance(0.9, 1000)
    # A correct 50/50 split at the same size raises the alarm at the nominal 0.1 % rate.
    fair = rng.binomial(n, 0.5, k)
    false_alarms = sum(srm_check([x, n - x], expected).mismatch for x in fair)
    assert false_alarms <= 12  # binomial(4000, 0.001): P(X > 12) < 1e-4
    # Below ~108,000 units even an exact 50.5/49.5 split is not yet significant at 0.001.
    assert not srm_check([50_500, 49_500], expected).mismatch
    assert srm_check([55_550, 54_450], expected).mismatch


def test_cuped_keeps_the_error_rate_and_reduces_variance_by_rho_squared() -> None:
    rng = np.random.default_rng(707)
    k, n, rho = 1500, 400, 0.7
    rejections, reductions = 0, []
    for _ in range(k):
        x = rng.standard_normal((2, n))
        y = 10 + rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((2, n))
        res = cuped(y[0], x[0], y[1], x[1])
        rejections += res.adjusted.p_value < ALPHA
        reductions.append(res.variance_reduction)
    assert abs(rejections / k - ALPHA) <= tolerance(ALPHA, k)
    assert abs(np.mean(reductions) - rho**2) < 0.02


def test_delta_method_ratio_keeps_alpha_where_the_naive_request_level_test_does_not() -> None:
    # Error rate per request, randomised by user: a user's requests share an error propensity.
    rng = np.random.default_rng(808)
    k, users = 3000, 400
    requests = 1 + rng.poisson(6, (2, k, users))
    propensity = rng.beta(0.5, 4.5, (2, k, users))  # mean 0.1, strongly heterogeneous
    errors = rng.binomial(requests, propensity)
    num, den = errors.astype(float), requests.astype(float)
    mean_n, mean_d = num.mean(-1), den.mean(-1)
    dn, dd = num - mean_n[..., None], den - mean_d[..., None]
    var = ratio_delta_variance(
        mean_num=mean_n, mean_den=mean_d, var_num=(dn * dn).sum(-1) / (users - 1),
        var_den=(dd * dd).sum(-1) / (users - 1), cov=(dn * dd).sum(-1) / (users - 1), n=users,
    )  # fmt: skip
    ratio = mean_n / mean_d
    delta = z_arrays(
        mean_c=ratio[0], var_mean_c=var[0], n_c=users, mean_t=ratio[1], var_mean_t=var[1], n_t=users
    )  # fmt: skip
    naive = two_proportion_arrays(num[0].sum(-1), den[0].sum(-1), num[1].sum(-1), den[1].sum(-1))
    delta_fpr = float(np.mean(delta.p_value < ALPHA))
    naive_fpr = float(np.mean(naive.p_value < ALPHA))
    tol = tolerance(ALPHA, k)
    assert abs(delta_fpr - ALPHA) <= tol
    assert naive_fpr > 2 * ALPHA
    # The delta-method variance matches the spread of the ratio across simulated experiments.
    assert abs(np.mean(var[0]) / np.var(ratio[0], ddof=1) - 1) < 0.08


def test_bootstrap_is_seeded_and_covers_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(909)
    a, b = rng.lognormal(0, 1, 300), rng.lognormal(0.1, 1, 250)
    first = bootstrap_difference(a, b, n_resamples=1000, seed=3)
    assert first == bootstrap_difference(a, b, n_resamples=1000, seed=3)
    assert first != bootstrap_difference(a, b, n_resamples=1000, seed=4)
    median = bootstrap_difference(a, b, statistic="median", n_resamples=500, seed=1)
    assert median.ci_low < median.difference < median.ci_high
    assert bootstrap_difference(a, b, statistic=0.9, n_resamples=500).statistic == "q0.9"
    # Coverage of the mean difference on skewed data (true difference known).
    true = math.exp(0.5) * (math.exp(0.2) - 1)
    k, hits = 200, 0
    for i in range(k):
        c, t = rng.lognormal(0, 1, 200), rng.lognormal(0.2, 1, 200)
        res = bootstrap_difference(c, t, n_resamples=1000, seed=i)
        hits += res.ci_low <= true <= res.ci_high
    assert abs(hits / k - 0.95) <= tolerance(0.95, k) + 0.02  # percentile-interval slack
    # On a large normal sample the bootstrap interval approaches the Welch interval.
    c, t = rng.normal(0, 1, 5000), rng.normal(0.05, 1, 5000)
    boot = bootstrap_difference(c, t, n_resamples=2000, seed=0)
    welch = welch_arrays(
        mean_c=c.mean(), var_c=c.var(ddof=1), n_c=5000,
        mean_t=t.mean(), var_t=t.var(ddof=1), n_t=5000,
    ).at()  # fmt: skip
    width = welch.ci_high - welch.ci_low
    assert abs(boot.ci_low - welch.ci_low) < 0.05 * width
    assert abs(boot.ci_high - welch.ci_high) < 0.05 * width
    with pytest.raises(ValueError):
        bootstrap_difference(a, b, statistic=1.5)
