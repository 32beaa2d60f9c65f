"""Shared array types and argument checks for the experiments package (internal)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
from scipy import special

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

EPSILON = 1e-12
"""Slack for comparisons of computed quantities against exact thresholds."""


def as_float_array(values: npt.ArrayLike | Iterable[float], name: str) -> FloatArray:
    """``values`` as a finite one-dimensional float64 array (a copy only when needed)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """``alpha`` as a float in the open interval (0, 1)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"{name} must lie in (0, 1), got {alpha}")
    return float(alpha)


def z_quantile(p: float | FloatArray) -> FloatArray:
    """Standard normal quantile Φ⁻¹(p), vectorised."""
    return np.asarray(special.ndtri(p), dtype=np.float64)


def two_sided_z_critical(alpha: float) -> float:
    """z_{1-α/2}: the two-sided critical value of a standard normal statistic."""
    return float(special.ndtri(1.0 - alpha / 2.0))


def finite_or_nan(value: float) -> float:
    """``value`` as a float, or NaN when it is not finite (for result fields)."""
    value = float(value)
    return value if math.isfinite(value) else math.nan
