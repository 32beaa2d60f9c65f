"""Seasonal forecasts of spend or demand with prediction intervals, and their back-tests.

Two methods, numpy only (scipy for the parameter search):

* **Holt-Winters additive** in its error-correction form, ETS(A,A,A)::

      ŷ_t = l_{t-1} + b_{t-1} + s_{t-m}            ε_t = y_t − ŷ_t
      l_t = l_{t-1} + b_{t-1} + α ε_t
      b_t = b_{t-1} + β ε_t
      s_t = s_{t-m} + γ ε_t

  with 0 < α < 1, 0 < β < α, 0 < γ < 1 − α (searched as α, β = α b*, γ = (1 − α) g* with
  b*, g* in (0, 1)), fitted by least squares of the one-step errors. Initial states come from
  the first two seasons. The h-step error is ``Σ_{j<h} c_j ε_{T+h−j}`` with ``c_0 = 1`` and
  ``c_j = α + β j + γ·[j mod m = 0]``, so its variance is ``σ² Σ_{j<h} c_j²``; the *sum* of
  the next H values has error ``Σ_i ε_{T+i} C_{H−i}`` with ``C_k = Σ_{j≤k} c_j``, which gives an
  exact interval for cumulative spend (what a budget cares about), not a sum of per-step
  bounds.
* **Seasonal naive with drift**: ``ŷ_{T+h} = y_{T+h−m(k+1)} + (k+1) m d`` with
  ``k = ⌊(h−1)/m⌋`` and d the mean per-step seasonal difference; error variance ``σ²(k+1)``.

Intervals are normal at ``interval_level``. ``backtest`` runs rolling-origin evaluation and
reports MAPE, sMAPE, MAE and interval coverage next to the seasonal-naive baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize
from scipy.stats import norm

from loopline.cost.policy import ForecastSpec

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Forecast:
    """Point forecast with a two-sided ``level`` interval per step.

    ``cumulative_sd[h-1]`` is the standard deviation of the error of the *sum* of the first h
    forecast values, used by :meth:`total`.
    """

    mean: FloatArray
    lower: FloatArray
    upper: FloatArray
    level: float
    method: str
    cumulative_sd: FloatArray

    @property
    def horizon(self) -> int:
        return len(self.mean)

    def total(
        self, steps: int | None = None, level: float | None = None
    ) -> tuple[float, float, float]:
        """``(expected, lower, upper)`` of the sum of the first ``steps`` values."""
        h = self.horizon if steps is None else steps
        if h <= 0:
            return 0.0, 0.0, 0.0
        if h > self.horizon:
            raise ValueError(f"forecast covers {self.horizon} steps, asked for {h}")
        z = float(norm.ppf(0.5 + (self.level if level is None else level) / 2))
        m = float(self.mean[:h].sum())
        sd = float(self.cumulative_sd[h - 1])
        return m, m - z * sd, m + z * sd

    def cumulative(self, level: float | None = None) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Running sums of the forecast with their interval, per step."""
        z = float(norm.ppf(0.5 + (self.level if level is None else level) / 2))
        m = np.cumsum(self.mean)
        return m, m - z * self.cumulative_sd, m + z * self.cumulative_sd


def _as_series(y: npt.ArrayLike) -> FloatArray:
    arr = np.asarray(y, dtype=float).reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise ValueError("series contains non-finite values")
    return arr


def _z(level: float) -> float:
    return float(norm.ppf(0.5 + level / 2))


# --------------------------------------------------------------------------- Holt-Winters


@dataclass(frozen=True)
class HoltWintersFit:
    """A fitted ETS(A,A,A) model; states are as of the last observation."""

    alpha: float
    beta: float
    gamma: float
    season_length: int
    level: float
    trend: float
    season: FloatArray  # season[i]: seasonal state for time index ≡ i (mod m), 0-based times
    sigma: float
    sse: float
    n: int

    def forecast(self, horizon: int, level: float = 0.9, nonnegative: bool = False) -> Forecast:
        """Point forecasts and intervals for the next ``horizon`` steps."""
        m = self.season_length
        h = np.arange(1, horizon + 1)
        seasonal = self.season[(self.n + h - 1) % m]
        mean = self.level + h * self.trend + seasonal
        j = np.arange(horizon)
        c = self.alpha + self.beta * j + self.gamma * ((j % m == 0) & (j > 0))
        c[0] = 1.0
        step_sd = self.sigma * np.sqrt(np.cumsum(c**2))
        big_c = np.cumsum(c)  # C_k = Σ_{j≤k} c_j
        cum_sd = self.sigma * np.sqrt(np.cumsum(big_c**2))
        z = _z(level)
        lower = mean - z * step_sd
        if nonnegative:
            lower = np.maximum(lower, 0.0)
        return Forecast(mean, lower, mean + z * step_sd, level, "holt_winters", cum_sd)


def _initial_states(y: FloatArray, m: int) -> tuple[float, float, FloatArray]:
    first, second = y[:m].mean(), y[m : 2 * m].mean()
    trend = (second - first) / m
    level = first - trend * (m + 1) / 2  # state before the first observation
    season = ((y[:m] - first) + (y[m : 2 * m] - second)) / 2
    return float(level), float(trend), season - season.mean()


def _filter(
    y: FloatArray,
    m: int,
    *,
    alpha: float,
    beta: float,
    gamma: float,
    init: tuple[float, float, FloatArray],
) -> tuple[float, float, float, FloatArray]:
    """Run the recursions; returns SSE and the final level, trend and seasonal states."""
    level, trend, season0 = init
    season = [float(v) for v in season0]
    sse = 0.0
    for t, obs in enumerate(y.tolist()):
        i = t % m
        err = obs - (level + trend + season[i])
        sse += err * err
        level = level + trend + alpha * err
        trend = trend + beta * err
        season[i] += gamma * err
    return sse, level, trend, np.array(season)


def _params(theta: FloatArray) -> tuple[float, float, float]:
    a, b, g = (float(v) for v in theta)
    return a, a * b, (1 - a) * g


def fit_holt_winters(
    y: npt.ArrayLike,
    season_length: int,
    alpha: float | None = None,
    beta: float | None = None,
    gamma: float | None = None,
) -> HoltWintersFit:
    """Fit additive Holt-Winters by least squares (parameters given are held fixed).

    Needs at least two full seasons.
    """
    series = _as_series(y)
    m = season_length
    if len(series) < 2 * m:
        raise ValueError(f"Holt-Winters needs two seasons ({2 * m} points), got {len(series)}")
    init = _initial_states(series, m)
    if alpha is not None and beta is not None and gamma is not None:
        a, b, g = alpha, beta, gamma
    else:

        def objective(theta: FloatArray) -> float:
            pa, pb, pg = _params(theta)
            if alpha is not None:
                pa = alpha
            if beta is not None:
                pb = beta
            if gamma is not None:
                pg = gamma
            return _filter(series, m, alpha=pa, beta=pb, gamma=pg, init=init)[0]

        best = None
        for start in ((0.3, 0.1, 0.2), (0.1, 0.05, 0.05), (0.6, 0.2, 0.5)):
            res = minimize(
                objective,
                np.array(start),
                method="L-BFGS-B",
                bounds=[(1e-4, 0.9999)] * 3,
                options={"maxiter": 200},
            )
            if best is None or res.fun < best.fun:
                best = res
        assert best is not None
        a, b, g = _params(best.x)
        a = alpha if alpha is not None else a
        b = beta if beta is not None else b
        g = gamma if gamma is not None else g
    sse, level, trend, season = _filter(series, m, alpha=a, beta=b, gamma=g, init=init)
    dof = max(len(series) - 3, 1)
    return HoltWintersFit(
        alpha=a,
        beta=b,
        gamma=g,
        season_length=m,
        level=level,
        trend=trend,
        season=season,
        sigma=math.sqrt(sse / dof),
        sse=sse,
        n=len(series),
    )


# --------------------------------------------------------------------------- seasonal naive


def seasonal_naive(
    y: npt.ArrayLike,
    season_length: int,
    horizon: int,
    level: float = 0.9,
    nonnegative: bool = False,
) -> Forecast:
    """Seasonal naive with drift (see the module docstring). Needs more than one season."""
    series = _as_series(y)
    m = season_length
    if len(series) <= m:
        raise ValueError(f"seasonal naive needs more than one season ({m} points)")
    diffs = series[m:] - series[:-m]
    drift = float(diffs.mean()) / m
    resid = diffs - drift * m
    sigma = float(np.sqrt(np.mean(resid**2))) if len(resid) > 1 else 0.0
    h = np.arange(1, horizon + 1)
    k = (h - 1) // m
    base = series[len(series) - m + ((h - 1) % m)]
    mean = base + (k + 1) * m * drift
    step_sd = sigma * np.sqrt(k + 1)
    # sum of the first H values: innovation i enters floor((H - i)/m) + 1 times
    cum_var = np.empty(horizon)
    for big_h in range(1, horizon + 1):
        i = np.arange(1, big_h + 1)
        cum_var[big_h - 1] = np.sum(((big_h - i) // m + 1.0) ** 2)
    cum_sd = sigma * np.sqrt(cum_var)
    z = _z(level)
    lower = mean - z * step_sd
    if nonnegative:
        lower = np.maximum(lower, 0.0)
    return Forecast(mean, lower, mean + z * step_sd, level, "seasonal_naive", cum_sd)


def forecast(y: npt.ArrayLike, horizon: int, spec: ForecastSpec | None = None) -> Forecast:
    """Forecast ``horizon`` steps with ``spec``'s method and interval level.

    Holt-Winters falls back to seasonal naive when the history is shorter than two seasons.
    Lower bounds are clipped at zero when the history is non-negative (spend, demand).
    """
    spec = spec or ForecastSpec()
    series = _as_series(y)
    nonneg = bool(np.all(series >= 0))
    if spec.method == "holt_winters" and len(series) >= 2 * spec.season_length:
        fit = fit_holt_winters(series, spec.season_length)
        return fit.forecast(horizon, spec.interval_level, nonnegative=nonneg)
    return seasonal_naive(series, spec.season_length, horizon, spec.interval_level, nonneg)


# --------------------------------------------------------------------------- back-test


def mape(actual: npt.ArrayLike, predicted: npt.ArrayLike) -> float:
    """Mean absolute percentage error over points with a non-zero actual (fraction, not %)."""
    a, p = _as_series(actual), _as_series(predicted)
    mask = a != 0
    return float(np.mean(np.abs((p[mask] - a[mask]) / a[mask]))) if mask.any() else math.nan


def smape(actual: npt.ArrayLike, predicted: npt.ArrayLike) -> float:
    """Symmetric MAPE in [0, 2]: mean of 2|F − A| / (|A| + |F|); 0 where both are 0."""
    a, p = _as_series(actual), _as_series(predicted)
    den = np.abs(a) + np.abs(p)
    ratio = np.divide(2 * np.abs(p - a), den, out=np.zeros_like(den), where=den > 0)
    return float(np.mean(ratio))


@dataclass(frozen=True)
class BacktestReport:
    """Rolling-origin accuracy of a method and of the seasonal-naive baseline."""

    method: str
    horizon: int
    origins: tuple[int, ...]
    mape: float
    smape: float
    mae: float
    coverage: float
    level: float
    baseline_mape: float
    baseline_smape: float
    per_origin_smape: tuple[float, ...]

    @property
    def skill(self) -> float:
        """1 − sMAPE / baseline sMAPE (positive: better than seasonal naive)."""
        return 1.0 - self.smape / self.baseline_smape if self.baseline_smape > 0 else 0.0


def backtest(
    y: npt.ArrayLike, horizon: int, spec: ForecastSpec | None = None, n_origins: int = 4
) -> BacktestReport:
    """Fit on ``y[:T]`` and score ``y[T:T+horizon]`` for ``n_origins`` origins ending at the end.

    Origins are ``horizon`` apart; the earliest must leave enough history for the method.
    """
    spec = spec or ForecastSpec()
    series = _as_series(y)
    origins = [len(series) - horizon * (n_origins - i) for i in range(n_origins)]
    if origins[0] <= spec.season_length:
        raise ValueError("series too short for this many back-test origins")
    actual_all, pred_all, base_all, inside = [], [], [], []
    per_origin = []
    for t in origins:
        actual = series[t : t + horizon]
        fc = forecast(series[:t], horizon, spec)
        base = seasonal_naive(series[:t], spec.season_length, horizon, spec.interval_level)
        actual_all.append(actual)
        pred_all.append(fc.mean)
        base_all.append(base.mean)
        inside.append((actual >= fc.lower) & (actual <= fc.upper))
        per_origin.append(smape(actual, fc.mean))
    a = np.concatenate(actual_all)
    p = np.concatenate(pred_all)
    b = np.concatenate(base_all)
    return BacktestReport(
        method=spec.method,
        horizon=horizon,
        origins=tuple(origins),
        mape=mape(a, p),
        smape=smape(a, p),
        mae=float(np.mean(np.abs(a - p))),
        coverage=float(np.mean(np.concatenate(inside))),
        level=spec.interval_level,
        baseline_mape=mape(a, b),
        baseline_smape=smape(a, b),
        per_origin_smape=tuple(per_origin),
    )
