"""Canary analysis: is the candidate worse than the stable version, and may the release go on?

``analyze_canary(step_metrics, policy) -> CanaryVerdict`` is pure: the target counts what
happened during the current step (per version: requests, failed requests, requests slower
than a reference latency, and the sum statistics of a quality score) and the verdict names
what the strategy does next: ``continue``, ``promote_step`` or ``rollback``. The same
numbers go through a fixed-threshold baseline of the Flagger kind,
:func:`threshold_verdict`, kept for comparison (``benchmarks/canary.py``).

Metrics and their degradation d (positive = candidate worse)
------------------------------------------------------------
* ``error_rate`` (binary per request): d = p_C − p_S, the difference of failed-request
  shares. Margin: absolute (0.01 = +1 percentage point).
* ``latency_p99`` (a test on a high quantile): the target fixes a *reference latency* L,
  normally the stable version's p99 measured before the step, and counts requests slower
  than L. If both versions have the same latency distribution, both shares are 1 %;
  q₀.₉₉(candidate) > L exactly when the candidate's share exceeds 1 %. So comparing the
  exceedance shares s_C − s_S is a two-proportion test on the tail, with none of the
  instability of comparing two estimated p99s, and it works from histogram counts. Margin:
  absolute increase of the share (0.01: the candidate's p98 may reach the stable p99).
* ``quality`` (continuous score in 0..1, per scored request): relative degradation
  d = 1 − q̄_C / q̄_S with the delta-method variance
  V = s²_C/(n_C q̄_S²) + q̄_C² s²_S/(n_S q̄_S⁴). Margin: relative (0.03 = −3 %).

Sequential tests (always valid)
-------------------------------
Every test below is an e-process: a nonnegative (super)martingale Λ with mean ≤ 1 while its
null hypothesis holds, so by Ville's inequality P(∃ look: Λ ≥ 1/α) ≤ α. Looks may be taken
after every request, and the step stops the first time a boundary is crossed with the error
rates held at that data-dependent time. p = min(1, 1/Λ) is the always-valid p-value.

* **Rollback test for the binary metrics** (errors, slow requests), H₀: the candidate's
  rate is at most the stable rate. Conditioning on the X = x_C + x_S events seen so far
  removes the unknown base rate: under H₀ each event comes from the candidate with
  probability at most π = n_C / (n_C + n_S), its share of the requests; if the candidate's
  rate is r times the stable rate the probability is θ_r = πr / (πr + 1 − π). Λ is the
  likelihood ratio of θ_r against π averaged over a grid of rate ratios r > 1
  (``rate_ratios``, default 1.5, 2, 3, 5, 10):

      Λ = mean_r  r^{x_C} / (1 + π(r − 1))^X.

  Each term is a martingale under θ = π and a supermartingale for θ < π, so the test is
  exact (no normal approximation) for any number of events, which matters because failures
  and slow requests are rare: a Gaussian test with estimated variances is anti-conservative
  at a handful of events. It needs no minimum sample: a candidate that fails every request
  is rolled back after a few. (A Poisson-process view of the same test underlies Lindon,
  Sanden & Shirikian, "Rapid regression detection in software deployments through
  sequential testing", KDD 2022.) The test is exact when π is the routing probability;
  π is taken from the realised request counts instead, so that a traffic splitter a little
  off its configured weight does not bias it (a plug-in whose error rate
  ``tests/unit/release`` checks by simulation, with proportional and random routing).
* **Rollback test for quality**, H₀: d ≤ 0: the mixture SPRT on the Gaussian approximation
  d̂ ~ N(d, V) (:func:`loopline.experiments.sequential.msprt_arrays`; method and references
  in that module) with V evaluated at q̄_C = q̄_S:
  Λ = √(V/(V+τ²)) · exp(τ² d̂² / (2V(V+τ²))); rejected when d̂ > 0 and 1/Λ ≤ α_m.
* **Within-margin test** (non-inferiority) for every metric, H₀: d ≥ margin: the same
  Gaussian mSPRT on d̂ − margin with the unpooled variance (for binary metrics with one
  pseudo-success and one pseudo-failure per arm, Agresti–Caffo, so V > 0); rejected when
  d̂ < margin and 1/Λ ≤ ``promotion_alpha``.

The verdict: ``rollback`` as soon as any metric's rollback test rejects (at any time in the
step); ``promote_step`` when the step has its minimum requests and duration and *every*
enabled metric's within-margin test rejects; when a step limit is reached first,
``policy.on_inconclusive``; else ``continue``. Candidates between 0 and the margin are an
indifference zone: either decision is acceptable, whichever boundary is crossed first (as in
Wald's SPRT with its two hypotheses).

Error rates and the Bonferroni split
------------------------------------
A false rollback needs one of k metrics × S analysed steps to reject falsely, so each
rollback test runs at α_m = α / (k·S) and the union bound keeps the release-wide
false-rollback probability ≤ α (``policy.alpha``). A false promotion of a step needs the
degraded metric's within-margin test to reject falsely (all metrics must pass), so it is
≤ ``promotion_alpha`` without a split. The Gaussian mixtures use τ² = φ² σ̂², σ̂² = V·n_h,
n_h = (1/n_C + 1/n_S)⁻¹, with φ from
:func:`~loopline.experiments.sequential.mixing_sd_for_horizon` so that each boundary is
tightest at its horizon (``rollback_horizon`` / ``promotion_horizon`` candidate observations
at the step's traffic split). Their validity with estimated variances is asymptotic, so the
Gaussian tests do not decide before ``min_samples`` observations per arm. The reported
confidence sequence [d̂ − h, d̂ + h] (unpooled variance, level 1 − α_m) covers d at all
looks simultaneously.

The p-values are those of the current look; because the first rejection ends the step, the
running minimum over looks (the always-valid p-value) equals the current value whenever a
verdict acts on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import special

from loopline.experiments.sequential import mixing_sd_for_horizon, msprt_arrays
from loopline.release.policy import CanaryPolicy, ShadowPolicy, ThresholdPolicy

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

MetricName = Literal["error_rate", "latency_p99", "quality"]
Verdict = Literal["continue", "promote_step", "rollback"]
MetricStatus = Literal["degraded", "within_margin", "undecided", "insufficient_data"]
AnalysedPolicy = CanaryPolicy | ShadowPolicy

CONTINUE, PROMOTE_STEP, ROLLBACK = 0, 1, 2
VERDICTS: tuple[Verdict, Verdict, Verdict] = ("continue", "promote_step", "rollback")
"""Verdict names indexed by the codes of :attr:`CanaryArrays.verdict`."""

SEQUENTIAL_METHOD = "sequential, always-valid (Bonferroni over metrics and steps)"
THRESHOLD_METHOD = "fixed thresholds per interval (Flagger kind)"
CHECKS_METHOD = "checks"

_TESTS: dict[str, str] = {
    "error_rate": "rollback: exact sequential event-share test (rate-ratio mixture); "
    "within margin: mSPRT on the difference of failure shares",
    "latency_p99": "tail exceedance (share of requests slower than the reference latency); "
    "rollback: exact sequential event-share test; within margin: mSPRT on the difference",
    "quality": "mSPRT on the relative difference of mean scores (delta method)",
}


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class ArmMetrics:
    """What one version served during the current step (or threshold interval).

    ``slow`` counts requests slower than the step's reference latency
    (:attr:`StepMetrics.latency_reference_ms`). ``quality_*`` are the count, mean and sample
    variance (ddof=1) of the quality scores of the scored requests. ``latency_p99_ms`` is
    reported, not tested.
    """

    requests: int
    errors: int = 0
    slow: int = 0
    quality_count: int = 0
    quality_mean: float = 0.0
    quality_var: float = 0.0
    latency_p99_ms: float | None = None

    def __post_init__(self) -> None:
        if self.requests < 0:
            raise ValueError(f"requests must be >= 0, got {self.requests}")
        for name in ("errors", "slow"):
            value = getattr(self, name)
            if not 0 <= value <= self.requests:
                raise ValueError(f"{name} must lie in [0, requests={self.requests}], got {value}")
        if self.quality_count < 0 or self.quality_var < 0:
            raise ValueError("quality_count and quality_var must be >= 0")
        if self.quality_count and not (
            math.isfinite(self.quality_mean) and math.isfinite(self.quality_var)
        ):
            raise ValueError("quality statistics must be finite")

    @classmethod
    def from_requests(
        cls,
        *,
        failed: npt.ArrayLike,
        latency_ms: npt.ArrayLike,
        latency_reference_ms: float,
        quality: npt.ArrayLike | None = None,
    ) -> ArmMetrics:
        """Summarise per-request records: a failed flag and a latency per request, and the
        quality scores of the scored requests (any subset)."""
        f = np.asarray(failed, dtype=bool)
        lat = np.asarray(latency_ms, dtype=np.float64)
        if f.shape != lat.shape or f.ndim != 1:
            raise ValueError("failed and latency_ms must be one-dimensional and equally long")
        q = np.asarray([] if quality is None else quality, dtype=np.float64)
        return cls(
            requests=int(f.size),
            errors=int(f.sum()),
            slow=int(np.sum(lat > latency_reference_ms)),
            quality_count=int(q.size),
            quality_mean=float(q.mean()) if q.size else 0.0,
            quality_var=float(q.var(ddof=1)) if q.size > 1 else 0.0,
            latency_p99_ms=float(np.quantile(lat, 0.99)) if lat.size else None,
        )


def latency_reference(latency_ms: npt.ArrayLike, quantile: float = 0.99) -> float:
    """The reference latency of a step: the stable version's ``quantile`` latency measured
    before the step (fix it at step start so the slow counts mean the same all step)."""
    lat = np.asarray(latency_ms, dtype=np.float64)
    if lat.size == 0:
        raise ValueError("no latencies to take a reference from")
    return float(np.quantile(lat, quantile))


@dataclass(frozen=True)
class StepMetrics:
    """Cumulative counts of both versions since the start of canary step ``step``.

    ``candidate_weight`` is the candidate's share of live traffic in percent; for a shadow
    release ``mirrored`` is true and it is the share of requests mirrored to the candidate
    (the stable version serves all of them). ``elapsed_s`` is the time since the step began.
    """

    step: int
    candidate_weight: float
    stable: ArmMetrics
    candidate: ArmMetrics
    elapsed_s: float = 0.0
    latency_reference_ms: float | None = None
    mirrored: bool = False

    def __post_init__(self) -> None:
        upper_ok = self.candidate_weight <= 100 if self.mirrored else self.candidate_weight < 100
        if not (self.candidate_weight > 0 and upper_ok):
            raise ValueError(
                f"candidate_weight must lie in (0, 100{']' if self.mirrored else ')'}, "
                f"got {self.candidate_weight}"
            )
        if self.step < 0 or self.elapsed_s < 0:
            raise ValueError("step and elapsed_s must be >= 0")


@dataclass(frozen=True)
class ArmArrays:
    """:class:`ArmMetrics` for many analyses at once (arrays broadcasting together)."""

    requests: FloatArray
    errors: FloatArray
    slow: FloatArray
    quality_count: FloatArray
    quality_mean: FloatArray
    quality_var: FloatArray

    @classmethod
    def of(cls, arm: ArmMetrics) -> ArmArrays:
        return cls.build(
            requests=arm.requests,
            errors=arm.errors,
            slow=arm.slow,
            quality_count=arm.quality_count,
            quality_mean=arm.quality_mean,
            quality_var=arm.quality_var,
        )

    @classmethod
    def build(
        cls,
        *,
        requests: npt.ArrayLike,
        errors: npt.ArrayLike = 0.0,
        slow: npt.ArrayLike = 0.0,
        quality_count: npt.ArrayLike = 0.0,
        quality_mean: npt.ArrayLike = 0.0,
        quality_var: npt.ArrayLike = 0.0,
    ) -> ArmArrays:
        def f(x: npt.ArrayLike) -> FloatArray:
            return np.asarray(x, dtype=np.float64)

        return cls(
            f(requests), f(errors), f(slow), f(quality_count), f(quality_mean), f(quality_var)
        )


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class MetricAnalysis:
    """The comparison of one metric at one look.

    ``degradation`` is in the metric's bad direction (absolute share difference for
    ``error_rate`` and ``latency_p99``, relative for ``quality``); ``ci_low``/``ci_high`` the
    confidence sequence for it (level 1 − ``alpha``); ``p_value`` the always-valid p-value
    of "no degradation" (rollback when ≤ ``alpha`` and the estimate is positive),
    ``p_value_margin`` that of "degraded by at least ``margin``" (within margin when
    ≤ ``promotion_alpha``). Threshold checks fill ``limit`` (the candidate value allowed)
    instead of the statistics. ``None`` means not available (no data, unbounded).
    """

    metric: MetricName
    test: str
    status: MetricStatus
    message: str
    n_stable: int
    n_candidate: int
    stable_value: float | None
    candidate_value: float | None
    degradation: float | None
    margin: float
    alpha: float | None = None
    promotion_alpha: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    p_value_margin: float | None = None
    limit: float | None = None


@dataclass(frozen=True)
class CanaryVerdict:
    """What the analysis of one step at one look concluded, with the evidence.

    ``method`` names the decision procedure (sequential, threshold baseline or plain checks),
    ``alpha`` the release-wide false-rollback bound of a sequential verdict, ``reasons`` a
    readable account (for ``rollback``: one reason per degraded metric).
    """

    verdict: Verdict
    step: int
    candidate_weight: float
    method: str
    reasons: tuple[str, ...]
    metrics: tuple[MetricAnalysis, ...] = ()
    candidate_requests: int = 0
    stable_requests: int = 0
    elapsed_s: float = 0.0
    alpha: float | None = None
    inconclusive: bool = False
    latency_reference_ms: float | None = None
    stable_p99_ms: float | None = None
    candidate_p99_ms: float | None = None

    @property
    def summary(self) -> str:
        return f"step {self.step} ({self.candidate_weight:g} %): {self.verdict}: " + "; ".join(
            self.reasons
        )

    def metric(self, name: MetricName) -> MetricAnalysis:
        for m in self.metrics:
            if m.metric == name:
                return m
        raise KeyError(f"{name} was not analysed (metrics: {[m.metric for m in self.metrics]})")

    @classmethod
    def from_checks(
        cls, step: int, passed: bool, reasons: Sequence[str], *, candidate_weight: float = 0.0
    ) -> CanaryVerdict:
        """A verdict from plain pass/fail checks (blue/green warm-up checks, smoke probes):
        ``promote_step`` when they passed, ``rollback`` otherwise."""
        return cls(
            verdict="promote_step" if passed else "rollback",
            step=step,
            candidate_weight=candidate_weight,
            method=CHECKS_METHOD,
            reasons=tuple(reasons) or (("checks passed",) if passed else ("checks failed",)),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (every float is finite or ``None``)."""
        out = asdict(self)
        out["reasons"] = list(self.reasons)
        out["metrics"] = [asdict(m) for m in self.metrics]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CanaryVerdict:
        fields = dict(data)
        fields["reasons"] = tuple(fields.get("reasons", ()))
        fields["metrics"] = tuple(MetricAnalysis(**m) for m in fields.get("metrics", ()))
        return cls(**fields)


# --------------------------------------------------------------------------- vectorised core


@dataclass(frozen=True)
class MetricArrays:
    """:class:`MetricAnalysis` for many analyses at once; statistics are NaN/inf where the
    metric is not ``active`` (too few observations or no variance)."""

    metric: MetricName
    margin: float
    alpha: float
    promotion_alpha: float
    n_stable: FloatArray
    n_candidate: FloatArray
    stable_value: FloatArray
    candidate_value: FloatArray
    degradation: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    p_value: FloatArray
    p_value_margin: FloatArray
    active: BoolArray
    degraded: BoolArray
    within_margin: BoolArray


@dataclass(frozen=True)
class CanaryArrays:
    """The sequential analysis of many steps/looks at once.

    ``verdict`` holds codes (:data:`CONTINUE`, :data:`PROMOTE_STEP`, :data:`ROLLBACK`;
    names in :data:`VERDICTS`); ``ready`` marks looks where the step has its minimum
    requests and duration, ``exhausted`` those at a step limit; ``inconclusive`` those whose
    verdict came from ``on_inconclusive``.
    """

    verdict: IntArray
    metrics: tuple[MetricArrays, ...]
    ready: BoolArray
    exhausted: BoolArray
    inconclusive: BoolArray
    metric_alpha: float


def metric_alpha(policy: AnalysedPolicy) -> float:
    """α_m: the release-wide ``alpha`` split evenly over enabled metrics and analysed steps."""
    a = policy.analysis
    return a.alpha / (len(a.enabled_metrics) * policy.analysed_steps)


def _mixing_sd(alpha: float, horizon: int, stable_per_candidate: float) -> float:
    # Boundary tightest at ``horizon`` candidate units and ``horizon × ratio`` stable units.
    stable_units = max(1, round(horizon * stable_per_candidate))
    return mixing_sd_for_horizon(alpha, stable_units, horizon / stable_units)


def event_share_log_evalue(
    x_s: npt.ArrayLike,
    n_s: npt.ArrayLike,
    x_c: npt.ArrayLike,
    n_c: npt.ArrayLike,
    rate_ratios: Sequence[float],
) -> FloatArray:
    """log Λ of the exact one-sided rollback test for a binary metric (module docstring).

    With π = n_C/(n_C + n_S), each of the X = x_C + x_S events comes from the candidate with
    probability θ_r = πr/(πr + 1 − π) when the candidate's rate is r times the stable rate.
    The likelihood ratio of θ_r against θ₁ = π for the observed split of the events is
    r^{x_C} / (1 + π(r − 1))^X; Λ is its average over ``rate_ratios`` (all > 1).
    """
    r = np.asarray(rate_ratios, dtype=np.float64)
    xs, ns, xc, nc = (np.asarray(a, dtype=np.float64)[..., None] for a in (x_s, n_s, x_c, n_c))
    with np.errstate(divide="ignore", invalid="ignore"):
        pi = nc / (nc + ns)
        log_lr = xc * np.log(r) - (xc + xs) * np.log1p(pi * (r - 1.0))
    return np.asarray(special.logsumexp(log_lr, axis=-1) - math.log(r.size), dtype=np.float64)


def _decide(
    metric: MetricName,
    *,
    n_s: FloatArray,
    n_c: FloatArray,
    value_s: FloatArray,
    value_c: FloatArray,
    d: FloatArray,
    p_rollback: FloatArray,
    rollback_ok: BoolArray,
    v_alt: FloatArray,
    usable: BoolArray,
    margin: float,
    alpha: float,
    phi_r: float,
    promotion_alpha: float,
    phi_p: float,
    min_samples: int,
) -> MetricArrays:
    """Combine a metric's rollback p-value (``p_rollback``, decisive where ``rollback_ok``)
    with its Gaussian within-margin test and confidence sequence (variance ``v_alt``)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        n_h = 1.0 / (1.0 / n_c + 1.0 / n_s)
        prom = msprt_arrays(d - margin, v_alt, phi_p**2 * v_alt * n_h, promotion_alpha)
        half = msprt_arrays(d, v_alt, phi_r**2 * v_alt * n_h, alpha).half_width
        active = usable & (np.minimum(n_s, n_c) >= min_samples) & (v_alt > 0) & np.isfinite(d)
        degraded = rollback_ok & (d > 0) & (p_rollback <= alpha)
        within = active & ~degraded & (d < margin) & (prom.p_value <= promotion_alpha)
    return MetricArrays(
        metric=metric,
        margin=margin,
        alpha=alpha,
        promotion_alpha=promotion_alpha,
        n_stable=n_s,
        n_candidate=n_c,
        stable_value=value_s,
        candidate_value=value_c,
        degradation=d,
        ci_low=np.where(active, d - half, -np.inf),
        ci_high=np.where(active, d + half, np.inf),
        p_value=np.where(rollback_ok, p_rollback, np.nan),
        p_value_margin=np.where(active, prom.p_value, np.nan),
        active=np.asarray(active | rollback_ok),
        degraded=np.asarray(degraded),
        within_margin=np.asarray(within),
    )


def _binary(
    metric: MetricName,
    x_s: FloatArray,
    n_s: FloatArray,
    x_c: FloatArray,
    n_c: FloatArray,
    *,
    rate_ratios: Sequence[float],
    **kw: Any,
) -> MetricArrays:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        p_s, p_c = x_s / n_s, x_c / n_c
        a_s, a_c = (x_s + 1.0) / (n_s + 2.0), (x_c + 1.0) / (n_c + 2.0)
        v_alt = a_s * (1.0 - a_s) / (n_s + 2.0) + a_c * (1.0 - a_c) / (n_c + 2.0)
        log_e = event_share_log_evalue(x_s, n_s, x_c, n_c, rate_ratios)
        p_rollback = np.minimum(1.0, np.exp(-log_e))
    rollback_ok = np.asarray((n_s > 0) & (n_c > 0) & (x_c + x_s > 0))
    d = p_c - p_s
    return _decide(
        metric,
        n_s=n_s,
        n_c=n_c,
        value_s=p_s,
        value_c=p_c,
        d=d,
        p_rollback=p_rollback,
        rollback_ok=rollback_ok,
        v_alt=v_alt,
        usable=np.ones(np.shape(d), dtype=bool),
        **kw,
    )


QUALITY_VAR_FLOOR = 1e-4
"""Smallest per-request variance of quality scores the analysis assumes (SD 0.01 on 0..1)."""


def _quality(stable: ArmArrays, candidate: ArmArrays, **kw: Any) -> MetricArrays:
    n_s, n_c = stable.quality_count, candidate.quality_count
    q_s, q_c = stable.quality_mean, candidate.quality_mean
    alpha, phi_r, min_samples = kw["alpha"], kw["phi_r"], kw["min_samples"]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # Scores resolve no finer than QUALITY_VAR_FLOOR: two arms of (near) constant scores
        # must not turn a rounding difference into a "significant" degradation.
        var_s = np.maximum(stable.quality_var, QUALITY_VAR_FLOOR)
        var_c = np.maximum(candidate.quality_var, QUALITY_VAR_FLOOR)
        vm_s, vm_c = var_s / n_s, var_c / n_c
        d = 1.0 - q_c / q_s
        v_null = (vm_c + vm_s) / q_s**2
        v_alt = vm_c / q_s**2 + q_c**2 * vm_s / q_s**4
        n_h = 1.0 / (1.0 / n_c + 1.0 / n_s)
        p_rollback = msprt_arrays(d, v_null, phi_r**2 * v_null * n_h, alpha).p_value
    usable = np.asarray(q_s > 0)
    rollback_ok = np.asarray(
        usable & (np.minimum(n_s, n_c) >= min_samples) & (v_null > 0) & np.isfinite(d)
    )
    return _decide(
        "quality",
        n_s=n_s,
        n_c=n_c,
        value_s=q_s,
        value_c=q_c,
        d=d,
        p_rollback=p_rollback,
        rollback_ok=rollback_ok,
        v_alt=v_alt,
        usable=usable,
        **kw,
    )


def analyze_canary_arrays(
    stable: ArmArrays,
    candidate: ArmArrays,
    policy: AnalysedPolicy,
    *,
    candidate_weight: float,
    elapsed_s: npt.ArrayLike = 0.0,
    mirrored: bool = False,
) -> CanaryArrays:
    """The sequential analysis (module docstring) of many looks at once: the arrays of
    cumulative step statistics broadcast together; one traffic split for all."""
    a = policy.analysis
    if not 0 < candidate_weight <= 100 or (candidate_weight == 100 and not mirrored):
        raise ValueError(f"cannot analyse a step at candidate weight {candidate_weight}")
    ratio = 100.0 / candidate_weight if mirrored else (100.0 - candidate_weight) / candidate_weight
    alpha_m = metric_alpha(policy)
    phi_r = _mixing_sd(alpha_m, a.rollback_horizon, ratio)
    phi_p = _mixing_sd(a.promotion_alpha, a.promotion_horizon, ratio)
    common: dict[str, Any] = {
        "alpha": alpha_m,
        "phi_r": phi_r,
        "promotion_alpha": a.promotion_alpha,
        "phi_p": phi_p,
        "min_samples": a.min_samples,
    }
    metrics: list[MetricArrays] = []
    if a.error_rate_margin is not None:
        metrics.append(
            _binary(
                "error_rate",
                stable.errors,
                stable.requests,
                candidate.errors,
                candidate.requests,
                margin=a.error_rate_margin,
                rate_ratios=a.rate_ratios,
                **common,
            )
        )
    if a.latency_tail_margin is not None:
        metrics.append(
            _binary(
                "latency_p99",
                stable.slow,
                stable.requests,
                candidate.slow,
                candidate.requests,
                margin=a.latency_tail_margin,
                rate_ratios=a.rate_ratios,
                **common,
            )
        )
    if a.quality_margin is not None:
        metrics.append(_quality(stable, candidate, margin=a.quality_margin, **common))

    shape = np.broadcast_shapes(*(m.degradation.shape for m in metrics), np.shape(elapsed_s))
    elapsed = np.broadcast_to(np.asarray(elapsed_s, dtype=np.float64), shape)
    n_c = np.broadcast_to(candidate.requests, shape)
    degraded = np.zeros(shape, dtype=bool)
    within = np.ones(shape, dtype=bool)
    for m in metrics:
        degraded |= m.degraded
        within &= m.within_margin
    ready = (n_c >= policy.min_requests_per_step) & (elapsed >= policy.min_step_seconds)
    exhausted = np.zeros(shape, dtype=bool)
    if policy.max_requests_per_step is not None:
        exhausted |= n_c >= policy.max_requests_per_step
    if policy.max_step_seconds is not None:
        exhausted |= elapsed >= policy.max_step_seconds
    fallback = ROLLBACK if policy.on_inconclusive == "rollback" else PROMOTE_STEP
    promote = ready & within
    inconclusive = exhausted & ~degraded & ~promote
    verdict = np.where(
        degraded, ROLLBACK, np.where(promote, PROMOTE_STEP, np.where(inconclusive, fallback, 0))
    ).astype(np.int64)
    return CanaryArrays(verdict, tuple(metrics), ready, exhausted, inconclusive, alpha_m)


# --------------------------------------------------------------------------- scalar verdicts


def _opt(x: object) -> float | None:
    v = float(np.asarray(x))
    return v if math.isfinite(v) else None


def _share(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f} %"


def _delta(metric: MetricName, x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{100 * x:+.2f} %" if metric == "quality" else f"{100 * x:+.2f} pp"


def _p(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2g}"


def _fmt3(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


_LABEL = {"error_rate": "error rate", "latency_p99": "slow share", "quality": "quality"}


def _metric_analysis(m: MetricArrays, reference_ms: float | None) -> MetricAnalysis:
    n_s, n_c = int(np.asarray(m.n_stable)), int(np.asarray(m.n_candidate))
    value_s, value_c = _opt(m.stable_value), _opt(m.candidate_value)
    d = _opt(m.degradation)
    lo, hi = _opt(m.ci_low), _opt(m.ci_high)
    p, p_m = _opt(m.p_value), _opt(m.p_value_margin)
    label = _LABEL[m.metric]
    if m.metric == "quality":
        values = (
            f"quality {_fmt3(value_c)} vs stable {_fmt3(value_s)}, "
            f"degradation {_delta(m.metric, d)}"
        )
    else:
        values = f"{label} {_share(value_c)} vs stable {_share(value_s)} ({_delta(m.metric, d)})"
        if m.metric == "latency_p99" and reference_ms is not None:
            values += f" above the {reference_ms:.0f} ms reference"
    margin = _delta(m.metric, m.margin)
    if not bool(np.asarray(m.active)):
        status: MetricStatus = "insufficient_data"
        verdict = (
            f"not tested yet ({n_c} candidate / {n_s} stable observations; needs enough "
            "observations in both arms and a positive variance)"
        )
    else:
        if lo is None or hi is None:
            cs = "no confidence sequence yet (too few observations)"
        else:
            cs = f"confidence sequence [{_delta(m.metric, lo)}, {_delta(m.metric, hi)}]"
        if bool(np.asarray(m.degraded)):
            status = "degraded"
            verdict = f"{cs}; degraded: p = {_p(p)} ≤ α {m.alpha:.3g}"
        elif bool(np.asarray(m.within_margin)):
            status = "within_margin"
            verdict = f"{cs}; within the {margin} margin: p = {_p(p_m)} ≤ {m.promotion_alpha:.3g}"
        else:
            status = "undecided"
            verdict = (
                f"{cs}; undecided: p(no degradation) = {_p(p)} > α {m.alpha:.3g}, "
                f"p(≥ {margin}) = {_p(p_m)}, needs ≤ {m.promotion_alpha:.3g}"
            )
    return MetricAnalysis(
        metric=m.metric,
        test=_TESTS[m.metric],
        status=status,
        message=f"{values}: {verdict}",
        n_stable=n_s,
        n_candidate=n_c,
        stable_value=value_s,
        candidate_value=value_c,
        degradation=d,
        margin=m.margin,
        alpha=m.alpha,
        promotion_alpha=m.promotion_alpha,
        ci_low=lo,
        ci_high=hi,
        p_value=p,
        p_value_margin=p_m,
    )


def analyze_canary(step_metrics: StepMetrics, policy: AnalysedPolicy) -> CanaryVerdict:
    """The sequential verdict on the current step (see the module docstring)."""
    sm = step_metrics
    res = analyze_canary_arrays(
        ArmArrays.of(sm.stable),
        ArmArrays.of(sm.candidate),
        policy,
        candidate_weight=sm.candidate_weight,
        elapsed_s=sm.elapsed_s,
        mirrored=sm.mirrored,
    )
    metrics = tuple(_metric_analysis(m, sm.latency_reference_ms) for m in res.metrics)
    verdict = VERDICTS[int(res.verdict)]
    n_c = sm.candidate.requests
    progress = f"{n_c} candidate requests in {sm.elapsed_s:.0f} s"
    reasons: list[str]
    if any(m.status == "degraded" for m in metrics):
        reasons = [f"{m.metric}: {m.message}" for m in metrics if m.status == "degraded"]
    elif verdict == "promote_step" and not bool(res.inconclusive):
        reasons = [f"all {len(metrics)} metrics within their margins after {progress}"]
        reasons += [f"{m.metric}: {m.message}" for m in metrics]
    else:
        reasons = []
        if bool(res.inconclusive):
            reasons.append(
                f"step limit reached after {progress} without a decision: "
                f"{policy.on_inconclusive} (on_inconclusive)"
            )
        elif not bool(res.ready):
            need = []
            if n_c < policy.min_requests_per_step:
                need.append(f"{policy.min_requests_per_step} candidate requests (has {n_c})")
            if sm.elapsed_s < policy.min_step_seconds:
                need.append(f"{policy.min_step_seconds:g} s (has {sm.elapsed_s:.0f} s)")
            reasons.append("step needs at least " + " and ".join(need))
        reasons += [f"{m.metric}: {m.message}" for m in metrics if m.status != "within_margin"]
    return CanaryVerdict(
        verdict=verdict,
        step=sm.step,
        candidate_weight=sm.candidate_weight,
        method=SEQUENTIAL_METHOD,
        reasons=tuple(reasons),
        metrics=metrics,
        candidate_requests=n_c,
        stable_requests=sm.stable.requests,
        elapsed_s=sm.elapsed_s,
        alpha=policy.analysis.alpha,
        inconclusive=bool(res.inconclusive),
        latency_reference_ms=sm.latency_reference_ms,
        stable_p99_ms=sm.stable.latency_p99_ms,
        candidate_p99_ms=sm.candidate.latency_p99_ms,
    )


# --------------------------------------------------------------------------- threshold baseline


@dataclass(frozen=True)
class ThresholdArrays:
    """Threshold checks of many intervals at once: per metric the candidate value, its limit
    and whether it passed (no data fails); ``passed`` is the conjunction."""

    passed: BoolArray
    metrics: tuple[tuple[MetricName, float, FloatArray, FloatArray, FloatArray, BoolArray], ...]
    """(metric, margin, stable value, candidate value, limit, passed) per enabled metric."""


def threshold_check_arrays(
    stable: ArmArrays, candidate: ArmArrays, policy: ThresholdPolicy
) -> ThresholdArrays:
    """Fixed-threshold checks of one interval's counts (:class:`ThresholdPolicy`)."""
    rows: list[tuple[MetricName, float, FloatArray, FloatArray, FloatArray, BoolArray]] = []
    with np.errstate(divide="ignore", invalid="ignore"):
        if policy.error_rate_margin is not None:
            s = stable.errors / stable.requests
            c = candidate.errors / candidate.requests
            limit = s + policy.error_rate_margin
            rows.append(("error_rate", policy.error_rate_margin, s, c, limit, c <= limit))
        if policy.latency_tail_margin is not None:
            s = stable.slow / stable.requests
            c = candidate.slow / candidate.requests
            limit = s + policy.latency_tail_margin
            rows.append(("latency_p99", policy.latency_tail_margin, s, c, limit, c <= limit))
        if policy.quality_margin is not None:
            s, c = stable.quality_mean, candidate.quality_mean
            limit = s * (1.0 - policy.quality_margin)
            has = (stable.quality_count > 0) & (candidate.quality_count > 0)
            rows.append(("quality", policy.quality_margin, s, c, limit, has & (c >= limit)))
    if not rows:
        raise ValueError("the threshold policy checks no metric")
    passed = np.ones(np.broadcast_shapes(*(r[5].shape for r in rows)), dtype=bool)
    for row in rows:
        passed &= row[5]  # NaN comparisons (no requests) are False: no data fails
    return ThresholdArrays(passed, tuple(rows))


@dataclass(frozen=True)
class ThresholdState:
    """Counters of the threshold baseline across the whole release (never reset)."""

    checks: int = 0
    failed_checks: int = 0


def threshold_verdict(
    state: ThresholdState, interval: StepMetrics, policy: ThresholdPolicy
) -> tuple[ThresholdState, CanaryVerdict]:
    """One interval check of the Flagger-kind baseline: pass → ``promote_step``; fail →
    count it, ``rollback`` at ``max_failed_checks`` failures, else ``continue``.
    ``interval`` holds the counts of this interval only (not cumulative)."""
    res = threshold_check_arrays(
        ArmArrays.of(interval.stable), ArmArrays.of(interval.candidate), policy
    )
    analyses: list[MetricAnalysis] = []
    for metric, margin, s, c, limit, ok in res.metrics:
        vs, vc, lim = _opt(s), _opt(c), _opt(limit)
        quality = metric == "quality"
        n_s = interval.stable.quality_count if quality else interval.stable.requests
        n_c = interval.candidate.quality_count if quality else interval.candidate.requests
        if vc is None or lim is None or (quality and (n_s == 0 or n_c == 0)):
            status: MetricStatus = "insufficient_data"
            message = f"{_LABEL[metric]}: no data in the interval (fails the check)"
        else:
            passed = bool(np.asarray(ok))
            status = "within_margin" if passed else "degraded"
            shown = _fmt3 if quality else _share
            relation = ("≥" if quality else "≤") if passed else ("<" if quality else ">")
            message = (
                f"{_LABEL[metric]} {shown(vc)} {relation} limit {shown(lim)} "
                f"(stable {shown(vs)}, margin {_delta(metric, margin)})"
            )
        if quality:
            degradation = None if vc is None or not vs else 1.0 - vc / vs
        else:
            degradation = None if vc is None or vs is None else vc - vs
        analyses.append(
            MetricAnalysis(
                metric=metric,
                test="fixed threshold: interval value against stable ± margin",
                status=status,
                message=message,
                n_stable=n_s,
                n_candidate=n_c,
                stable_value=vs,
                candidate_value=vc,
                degradation=degradation,
                margin=margin,
                limit=lim,
            )
        )
    passed = bool(np.asarray(res.passed))
    failed = state.failed_checks + (0 if passed else 1)
    new_state = ThresholdState(checks=state.checks + 1, failed_checks=failed)
    failing = [f"{a.metric}: {a.message}" for a in analyses if a.status != "within_margin"]
    verdict: Verdict
    if passed:
        verdict = "promote_step"
        reasons = [f"check {new_state.checks} passed ({failed} failed so far)"]
    elif failed >= policy.max_failed_checks:
        verdict = "rollback"
        reasons = [f"{failed} failed checks reached the limit of {policy.max_failed_checks}"]
        reasons += failing
    else:
        verdict = "continue"
        reasons = [f"check failed ({failed} of {policy.max_failed_checks} allowed failures)"]
        reasons += failing
    return new_state, CanaryVerdict(
        verdict=verdict,
        step=interval.step,
        candidate_weight=interval.candidate_weight,
        method=THRESHOLD_METHOD,
        reasons=tuple(reasons),
        metrics=tuple(analyses),
        candidate_requests=interval.candidate.requests,
        stable_requests=interval.stable.requests,
        elapsed_s=interval.elapsed_s,
        latency_reference_ms=interval.latency_reference_ms,
        stable_p99_ms=interval.stable.latency_p99_ms,
        candidate_p99_ms=interval.candidate.latency_p99_ms,
    )
