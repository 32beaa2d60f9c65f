"""Power, minimum detectable effect (MDE) and sample-size planning for two-arm tests.

Conventions follow the standard two-sample power functions (and agree with statsmodels'
``NormalIndPower`` / ``TTestIndPower``): ``n_control`` units in the control arm and
``ratio · n_control`` in the treatment arm, a two-sided test at level α, and a
*standardised* effect size d.

* **Normal (z) test**, effective size n_e = (1/n_C + 1/n_T)⁻¹:
  power(d) = Φ(d√n_e − z_{1−α/2}) + Φ(−d√n_e − z_{1−α/2}).
* **t-test** (pooled df ν = n_C + n_T − 2, noncentrality δ = d√n_e):
  power(d) = P(T'_{ν,δ} > t_{ν,1−α/2}) + P(T'_{ν,δ} < −t_{ν,1−α/2}), T' noncentral t.
* **Proportions** use Cohen's h = 2·asin√p_T − 2·asin√p_C as d with the normal power
  function: the arcsine transform makes the variance of 2·asin√p̂ ≈ 1/n whatever p, so
  the normal formula applies with unit variance.
* **Means**: d = MDE / σ (σ the per-unit standard deviation, assumed common to both arms).

Sample sizes and MDEs are found by solving power(d, n) = target with Brent's method (to
10⁻¹⁰); the float solution is reported together with the integer sizes to recruit (ceil).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import optimize, special
from scipy import stats as sps

from loopline.experiments._common import check_alpha, two_sided_z_critical

TestKind = Literal["z", "t"]


def cohens_h(p_treatment: float, p_control: float) -> float:
    """Cohen's h: 2·asin√p_T − 2·asin√p_C."""
    for p in (p_treatment, p_control):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"proportions must lie in [0, 1], got {p}")
    return 2.0 * math.asin(math.sqrt(p_treatment)) - 2.0 * math.asin(math.sqrt(p_control))


def _effective_n(n_control: float, ratio: float) -> float:
    return 1.0 / (1.0 / n_control + 1.0 / (n_control * ratio))


def normal_power(
    effect_size: float, n_control: float, alpha: float = 0.05, ratio: float = 1.0
) -> float:
    """Power of a two-sided two-sample z-test for standardised effect ``effect_size``."""
    check_alpha(alpha)
    shift = effect_size * math.sqrt(_effective_n(n_control, ratio))
    crit = two_sided_z_critical(alpha)
    return float(special.ndtr(shift - crit) + special.ndtr(-shift - crit))


def t_power(effect_size: float, n_control: float, alpha: float = 0.05, ratio: float = 1.0) -> float:
    """Power of a two-sided two-sample t-test (pooled df) for standardised effect
    ``effect_size``."""
    check_alpha(alpha)
    df = n_control + n_control * ratio - 2.0
    if df <= 0:
        raise ValueError("a t-test needs more than two units in total")
    nc = effect_size * math.sqrt(_effective_n(n_control, ratio))
    crit = float(special.stdtrit(df, 1.0 - alpha / 2.0))
    upper = float(sps.nct.sf(crit, df, nc))
    lower = float(sps.nct.cdf(-crit, df, nc))
    # Far in a tail the noncentral t routines can return NaN; the normal limit of that tail
    # (≪ 1e-15 there) is then exact to double precision.
    if math.isnan(upper):
        upper = float(special.ndtr(nc - crit))
    if math.isnan(lower):
        lower = float(special.ndtr(-crit - nc))
    return upper + lower


def _power(kind: TestKind, d: float, n: float, alpha: float, ratio: float) -> float:
    return normal_power(d, n, alpha, ratio) if kind == "z" else t_power(d, n, alpha, ratio)


@dataclass(frozen=True)
class SampleSizePlan:
    """Units needed per arm. ``n_control_exact`` solves power = target exactly;
    ``n_control``/``n_treatment`` are the integers to recruit."""

    test: TestKind
    effect_size: float
    alpha: float
    power: float
    ratio: float
    n_control_exact: float
    n_control: int
    n_treatment: int

    @property
    def n_total(self) -> int:
        return self.n_control + self.n_treatment


def sample_size(
    effect_size: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    test: TestKind = "z",
) -> SampleSizePlan:
    """Control-arm size at which a standardised effect is detected with ``power``."""
    check_alpha(alpha)
    check_alpha(power, "power")
    if effect_size == 0 or not math.isfinite(effect_size):
        raise ValueError("effect_size must be finite and non-zero")
    if ratio <= 0:
        raise ValueError("ratio must be positive")
    d = abs(effect_size)
    lo = 1.0 + 1.0 / ratio + 1e-9 if test == "t" else 1e-6
    if _power(test, d, lo, alpha, ratio) >= power:
        n = lo
    else:
        hi = max(4.0, lo * 2)
        while _power(test, d, hi, alpha, ratio) < power:
            hi *= 2.0
        n = optimize.brentq(lambda x: _power(test, d, x, alpha, ratio) - power, lo, hi, xtol=1e-10)
    n_c = math.ceil(n - 1e-9)
    return SampleSizePlan(test, d, alpha, power, ratio, n, n_c, math.ceil(n_c * ratio - 1e-9))


def minimum_detectable_effect(
    n_control: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    test: TestKind = "z",
) -> float:
    """The smallest standardised effect detected with ``power`` at ``n_control`` units."""
    check_alpha(alpha)
    check_alpha(power, "power")
    if power <= alpha:
        raise ValueError("power must exceed alpha")
    hi = 1.0
    while _power(test, hi, n_control, alpha, ratio) < power:
        hi *= 2.0
    return float(
        optimize.brentq(
            lambda d: _power(test, d, n_control, alpha, ratio) - power, 0.0, hi, xtol=1e-12
        )
    )


# --------------------------------------------------------------------------- proportions


def power_proportions(
    p_control: float,
    p_treatment: float,
    n_control: float,
    *,
    alpha: float = 0.05,
    ratio: float = 1.0,
) -> float:
    """Power to detect p_C → p_T (two-sided, arcsine/Cohen's h approximation)."""
    return normal_power(cohens_h(p_treatment, p_control), n_control, alpha, ratio)


def sample_size_proportions(
    p_control: float,
    p_treatment: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
) -> SampleSizePlan:
    """Units per arm to detect p_C → p_T with ``power``."""
    return sample_size(cohens_h(p_treatment, p_control), alpha=alpha, power=power, ratio=ratio)


@dataclass(frozen=True)
class MdePlan:
    """Minimum detectable effect at a given size: standardised, absolute and relative."""

    n_control: float
    alpha: float
    power: float
    effect_size: float
    absolute: float
    relative: float


def mde_proportions(
    p_control: float,
    n_control: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    direction: Literal["increase", "decrease"] = "increase",
) -> MdePlan:
    """Smallest change of a baseline rate p_C detectable at ``n_control`` units: solve h,
    then p_T = sin²(asin√p_C ± h/2)."""
    if not 0.0 < p_control < 1.0:
        raise ValueError("p_control must lie in (0, 1)")
    h = minimum_detectable_effect(n_control, alpha=alpha, power=power, ratio=ratio)
    phi = math.asin(math.sqrt(p_control)) + (h / 2.0 if direction == "increase" else -h / 2.0)
    phi = min(max(phi, 0.0), math.pi / 2)
    p_t = math.sin(phi) ** 2
    return MdePlan(n_control, alpha, power, h, p_t - p_control, p_t / p_control - 1.0)


# --------------------------------------------------------------------------- means


def power_means(
    mde: float,
    sd: float,
    n_control: float,
    *,
    alpha: float = 0.05,
    ratio: float = 1.0,
    test: TestKind = "t",
) -> float:
    """Power to detect an absolute mean difference ``mde`` with per-unit sd ``sd``."""
    if sd <= 0:
        raise ValueError("sd must be positive")
    return _power(test, mde / sd, n_control, alpha, ratio)


def sample_size_means(
    mde: float,
    sd: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    test: TestKind = "t",
) -> SampleSizePlan:
    """Units per arm to detect an absolute mean difference ``mde`` (d = mde/sd)."""
    if sd <= 0:
        raise ValueError("sd must be positive")
    return sample_size(mde / sd, alpha=alpha, power=power, ratio=ratio, test=test)


def mde_means(
    sd: float,
    n_control: float,
    *,
    baseline: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    test: TestKind = "t",
) -> MdePlan:
    """Smallest absolute (and, given ``baseline``, relative) mean difference detectable."""
    if sd <= 0:
        raise ValueError("sd must be positive")
    d = minimum_detectable_effect(n_control, alpha=alpha, power=power, ratio=ratio, test=test)
    rel = d * sd / baseline if baseline else float(np.nan)
    return MdePlan(n_control, alpha, power, d, d * sd, rel)
