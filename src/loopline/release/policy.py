"""Configuration models of the release package: frozen pydantic, unknown keys forbidden.

These are the named thresholds the pure release code reads:

* :class:`CanaryAnalysisPolicy`: the sequential analysis of candidate versus stable
  (:func:`~loopline.release.analysis.analyze_canary`): false-rollback and false-promotion
  rates, degradation margins, where the sequential boundaries are tightest.
* :class:`CanaryPolicy`: canary steps and how long each step must / may last.
* :class:`BlueGreenPolicy`, :class:`ShadowPolicy`: the other two strategies.
* :class:`ThresholdPolicy`: the fixed-threshold baseline of the Flagger kind, kept for
  comparison (:func:`~loopline.release.analysis.threshold_verdict`).

:class:`ReleaseConfig` bundles them for the main configuration file.
"""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

StrategyName = Literal["canary", "blue_green", "shadow"]
InconclusiveAction = Literal["rollback", "promote_step"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CanaryAnalysisPolicy(_Frozen):
    """Sequential comparison of candidate and stable (see :mod:`loopline.release.analysis`).

    Rates
    -----
    * ``alpha`` bounds the probability of **rolling back a candidate that is no worse than
      stable**, over the whole release: it is split evenly (Bonferroni) over the enabled
      metrics and the analysed steps of the strategy.
    * ``promotion_alpha`` bounds the probability of **promoting a step although the candidate
      is worse than stable by at least a margin** on some metric. A step is promoted only when
      *every* metric is shown to be within its margin (an intersection-union test), so this
      rate needs no split.

    Margins (the tolerated degradation; ``None`` disables the metric)
    -----------------------------------------------------------------
    * ``error_rate_margin``: absolute increase of the share of failed requests
      (0.01 = +1 percentage point).
    * ``latency_tail_margin``: absolute increase of the share of requests slower than the
      stable version's ``latency_quantile`` latency (the *reference latency*). Both versions
      have a share of 1 − q when their latency distributions agree; a candidate whose p99 is
      higher has a larger share. 0.01 lets the candidate's share double from 1 % to 2 %
      (its p98 may reach the stable p99).
    * ``quality_margin``: relative decrease of the mean quality score (0..1);
      0.03 = candidate mean at most 3 % below stable.

    Sequential tuning
    -----------------
    * ``rate_ratios``: the candidate/stable rate ratios (> 1) the exact rollback test of the
      binary metrics mixes over; it is most sensitive to regressions of about these sizes
      and valid whatever the true ratio.
    * The Gaussian mixture tests (quality rollback, every within-margin test) are tightest
      after ``rollback_horizon`` / ``promotion_horizon`` candidate observations and valid at
      every other sample size; they do not decide before ``min_samples`` observations in
      each arm (the normal approximation needs them).
    """

    alpha: float = Field(0.01, gt=0, lt=1)
    promotion_alpha: float = Field(0.05, gt=0, lt=1)
    error_rate_margin: float | None = Field(0.01, gt=0, lt=1)
    latency_tail_margin: float | None = Field(0.01, gt=0, lt=1)
    latency_quantile: float = Field(0.99, gt=0.5, lt=1)
    quality_margin: float | None = Field(0.03, gt=0, lt=1)
    min_samples: int = Field(100, ge=10)
    rate_ratios: tuple[float, ...] = (1.5, 2.0, 3.0, 5.0, 10.0)
    rollback_horizon: int = Field(250, ge=10)
    promotion_horizon: int = Field(2000, ge=10)

    @field_validator("rate_ratios")
    @classmethod
    def _ratios(cls, ratios: tuple[float, ...]) -> tuple[float, ...]:
        if not ratios or any(r <= 1 for r in ratios):
            raise ValueError(f"rate_ratios must be a non-empty tuple of ratios > 1, got {ratios}")
        return ratios

    @model_validator(mode="after")
    def _some_metric(self) -> CanaryAnalysisPolicy:
        if self.enabled_metrics == ():
            raise ValueError("enable at least one canary metric (set a margin)")
        return self

    @property
    def enabled_metrics(self) -> tuple[str, ...]:
        """Names of the compared metrics, in report order."""
        names = (
            ("error_rate", self.error_rate_margin),
            ("latency_p99", self.latency_tail_margin),
            ("quality", self.quality_margin),
        )
        return tuple(name for name, margin in names if margin is not None)


class _StepLimits(_Frozen):
    """How long an analysed step must and may last.

    A step is promoted only after ``min_requests_per_step`` candidate requests and
    ``min_step_seconds``; a rollback may happen at any time. When ``max_requests_per_step``
    or ``max_step_seconds`` is reached without a decision the step is *inconclusive* and
    ``on_inconclusive`` decides (default: roll back, the candidate was not shown safe).
    """

    min_requests_per_step: int = Field(200, ge=1)
    min_step_seconds: float = Field(60.0, ge=0)
    max_requests_per_step: int | None = Field(50_000, ge=1)
    max_step_seconds: float | None = Field(3600.0, gt=0)
    on_inconclusive: InconclusiveAction = "rollback"
    analysis: CanaryAnalysisPolicy = CanaryAnalysisPolicy()

    @model_validator(mode="after")
    def _limits(self) -> _StepLimits:
        if (
            self.max_requests_per_step is not None
            and self.max_requests_per_step < self.min_requests_per_step
        ):
            raise ValueError("max_requests_per_step must be >= min_requests_per_step")
        if self.max_step_seconds is not None and self.max_step_seconds < self.min_step_seconds:
            raise ValueError("max_step_seconds must be >= min_step_seconds")
        return self

    @property
    def analysed_steps(self) -> int:
        """Number of analysed steps sharing ``analysis.alpha``."""
        return 1


class CanaryPolicy(_StepLimits):
    """A canary: the candidate's share of live traffic grows along ``steps`` (percent).

    Every step below 100 % is analysed; reaching 100 % is the promotion (with no stable
    traffic left there is nothing to compare with). Steps must increase strictly; a schedule
    that stops short of 100 % still ends with the candidate at 100 % when promoted.
    """

    steps: tuple[float, ...] = (5.0, 25.0, 50.0, 100.0)

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: tuple[float, ...]) -> tuple[float, ...]:
        if not steps:
            raise ValueError("a canary needs at least one step")
        if any(not 0 < w <= 100 for w in steps):
            raise ValueError(f"canary weights must lie in (0, 100], got {steps}")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError(f"canary weights must increase strictly, got {steps}")
        if steps[0] >= 100:
            raise ValueError("a canary needs at least one step below 100 %")
        return steps

    @property
    def analysed_weights(self) -> tuple[float, ...]:
        return tuple(w for w in self.steps if w < 100)

    @property
    def analysed_steps(self) -> int:
        return len(self.analysed_weights)


class ShadowPolicy(_StepLimits):
    """Shadow: ``mirror_percent`` of live requests is copied to the candidate, whose replies
    are recorded and compared with the stable replies but never returned. One analysed step.
    ``on_pass``: ``stop`` ends the release as *passed* (stable keeps serving; run a canary
    next), ``promote`` switches all traffic to the candidate."""

    mirror_percent: float = Field(100.0, gt=0, le=100)
    on_pass: Literal["stop", "promote"] = "stop"


class BlueGreenPolicy(_Frozen):
    """Blue/green: the candidate (green) is started and warmed with ``warmup_requests``
    probe requests, checked, then receives all traffic in one atomic switch. The stable (blue)
    stays running for ``bake_seconds`` so that a switch back is instant; after the bake the
    candidate is promoted and blue retired."""

    warmup_requests: int = Field(20, ge=0)
    bake_seconds: float = Field(300.0, ge=0)


class ThresholdPolicy(_Frozen):
    """The fixed-threshold baseline of the Flagger kind.

    Every ``interval_seconds`` the interval's candidate values are compared with limits: the
    stable version's value in the same interval moved by the margin (error rate and slow share
    at most ``+margin``, quality at least ``× (1 − margin)``). A metric without data in the
    interval fails the check. A passing check advances the canary one step; each failed check
    increments a counter that is never reset, and the release rolls back when it reaches
    ``max_failed_checks`` (Flagger's ``threshold``).
    """

    interval_seconds: float = Field(60.0, gt=0)
    max_failed_checks: int = Field(5, ge=1)
    error_rate_margin: float | None = Field(0.01, gt=0, lt=1)
    latency_tail_margin: float | None = Field(0.01, gt=0, lt=1)
    quality_margin: float | None = Field(0.03, gt=0, lt=1)


class GoldenProbes(_Frozen):
    """Live probes with known answers, scored against their references during a release.

    ``path``: a JSONL file of ``{"prompt": ..., "reference": ...}`` lines (relative paths are
    taken from the project root). At every analysis of a traffic step, ``per_poll`` probes are
    sent like live traffic (through the router, so each version receives its traffic share;
    in a shadow release directly to both) and each reply's ROUGE-L F against its reference
    joins that version's quality scores.
    """

    path: str
    per_poll: int = Field(4, ge=1, le=256)


class ReleaseConfig(_Frozen):
    """Everything the release package reads, under ``release:`` in the main configuration."""

    strategy: StrategyName = "canary"
    canary: CanaryPolicy = CanaryPolicy()
    blue_green: BlueGreenPolicy = BlueGreenPolicy()
    shadow: ShadowPolicy = ShadowPolicy()
    threshold: ThresholdPolicy = ThresholdPolicy()
    golden: GoldenProbes | None = None
