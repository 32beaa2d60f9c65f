"""Forecasts: back-tests on synthetic seasonal series, intervals, cross-check with statsmodels."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from loopline.cost.forecast import (
    _initial_states,
    backtest,
    fit_holt_winters,
    forecast,
    mape,
    seasonal_naive,
    smape,
)
from loopline.cost.policy import ForecastSpec


def hourly_series(n: int, seed: int = 0, noise: float = 3.0) -> np.ndarray:
    """Daily cycle, a morning peak, slow growth and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return (
        100
        + 0.05 * t
        + 30 * np.sin(2 * np.pi * t / 24)
        + 12 * (t % 24 == 9)
        + rng.normal(0, noise, n)
    )


def test_holt_winters_backtest_on_a_daily_season_beats_seasonal_naive() -> None:
    y = hourly_series(24 * 24)
    report = backtest(y, horizon=24, spec=ForecastSpec(season_length=24), n_origins=4)
    assert report.smape < 0.035 and report.mape < 0.035
    assert report.skill > 0.1  # clearly better than seasonal naive on noisy data
    assert 0.75 <= report.coverage <= 1.0  # 90 % intervals cover about 90 %
    assert len(report.per_origin_smape) == 4 and report.origins[-1] == len(y) - 24


def test_weekly_season_on_daily_spend() -> None:
    rng = np.random.default_rng(3)
    days = np.arange(7 * 20)
    y = (
        500
        + 2 * days
        + np.array([80, 90, 85, 70, 60, -150, -180])[days % 7]
        + rng.normal(0, 10, len(days))
    )
    report = backtest(y, horizon=7, spec=ForecastSpec(season_length=7), n_origins=5)
    assert report.smape < 0.03
    assert report.coverage >= 0.7


def test_noise_free_trend_and_season_is_forecast_almost_exactly() -> None:
    t = np.arange(24 * 10 + 48)
    y = 50 + 0.2 * t + 10 * np.sin(2 * np.pi * t / 24)
    fc = forecast(y[:-48], 48, ForecastSpec(season_length=24))
    assert mape(y[-48:], fc.mean) < 5e-3


def test_seasonal_naive_continues_a_periodic_series_exactly() -> None:
    y = np.tile([1.0, 5.0, 3.0, 2.0], 6)
    fc = seasonal_naive(y, 4, 8)
    assert np.allclose(fc.mean, np.tile([1.0, 5.0, 3.0, 2.0], 2))
    assert np.allclose(fc.upper, fc.lower)
    assert fc.total() == pytest.approx((22.0, 22.0, 22.0))


def test_matches_statsmodels_ets_for_the_same_parameters() -> None:
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    y = pd.Series(hourly_series(24 * 14, seed=1))
    alpha, beta, gamma = 0.3, 0.02, 0.1
    fit = fit_holt_winters(y.to_numpy(), 24, alpha, beta, gamma)
    level, trend, season = _initial_states(y.to_numpy(), 24)
    model = ETSModel(
        y,
        error="add",
        trend="add",
        seasonal="add",
        seasonal_periods=24,
        initialization_method="known",
        initial_level=level,
        initial_trend=trend,
        initial_seasonal=season,
    )
    with (
        warnings.catch_warnings(),
        model.fix_params(
            {"smoothing_level": alpha, "smoothing_trend": beta, "smoothing_seasonal": gamma}
        ),
    ):
        warnings.simplefilter("ignore")
        res = model.fit(disp=False)
    frame = res.get_prediction(start=len(y), end=len(y) + 47).summary_frame(alpha=0.1)
    ours = fit.forecast(48, level=0.9)
    assert np.allclose(frame["mean"].to_numpy(), ours.mean, atol=1e-8)
    # interval widths agree up to the variance estimator (statsmodels divides SSE by n, we by n - 3)
    ratio = (frame["pi_upper"] - frame["pi_lower"]).to_numpy() / (ours.upper - ours.lower)
    assert np.allclose(ratio, np.sqrt((len(y) - 3) / len(y)), rtol=1e-6)


def test_interval_of_the_sum_matches_simulated_paths() -> None:
    y = hourly_series(24 * 14, seed=2)
    fit = fit_holt_winters(y, 24)
    horizon = 60
    fc = fit.forecast(horizon)
    rng = np.random.default_rng(0)
    paths = 4000
    level = np.full(paths, fit.level)
    trend = np.full(paths, fit.trend)
    season = np.tile(fit.season, (paths, 1))
    sums = np.zeros(paths)
    for h in range(1, horizon + 1):
        i = (fit.n + h - 1) % 24
        err = rng.normal(0, fit.sigma, paths)
        value = level + trend + season[:, i] + err
        sums += value
        level = level + trend + fit.alpha * err
        trend = trend + fit.beta * err
        season[:, i] += fit.gamma * err
    assert sums.std() == pytest.approx(fc.cumulative_sd[-1], rel=0.06)
    assert sums.mean() == pytest.approx(fc.total()[0], rel=1e-3)
    # per-step and cumulative bands widen with the horizon
    assert np.all(np.diff(fc.upper - fc.lower) >= -1e-9)
    assert np.all(np.diff(fc.cumulative_sd) > 0)


def test_error_metrics() -> None:
    assert mape([100, 200], [110, 180]) == pytest.approx(0.1)
    assert smape([100, 0], [100, 0]) == 0.0
    assert smape([1.0], [3.0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="two seasons"):
        fit_holt_winters(np.ones(30), 24)
    short = forecast(np.arange(30.0), 5, ForecastSpec(season_length=24))
    assert short.method == "seasonal_naive"  # too short for Holt-Winters
