"""Configuration models of the experiments package: frozen pydantic, unknown keys forbidden.

These are the named thresholds and specifications the pure functions of this package read:
experiments and layers (:mod:`~loopline.experiments.assignment`), feature flags and rollout
schedules (:mod:`~loopline.experiments.flags`), metric definitions and analysis settings
(:mod:`~loopline.experiments.analysis`), and the decision policy
(:mod:`~loopline.experiments.decision`). :class:`ExperimentsConfig` bundles them for the main
configuration file.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from loopline.experiments.hashing import DEFAULT_BUCKETS

FlagValue = bool | int | float | str
ConditionValue = bool | int | float | str | tuple[bool | int | float | str, ...]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- assignment


class VariantSpec(_Frozen):
    """One arm of an experiment.

    A variant names what it serves: a model version, a prompt version (prompt registry) and/or
    generation parameters; any combination. ``weight`` is its relative share of the
    experiment's non-holdout traffic (weights need not sum to one).
    """

    name: str = Field(min_length=1)
    weight: float = Field(1.0, gt=0)
    model_version: str | None = None
    prompt_version: str | None = None
    params: dict[str, FlagValue] = Field(default_factory=dict)


class LayerSpec(_Frozen):
    """A layer: one hash space shared by mutually exclusive experiments.

    Units are hashed with the layer's ``salt`` (default: its name) into ``n_buckets`` layer
    buckets; each experiment of the layer owns a disjoint bucket range, so a unit is in at
    most one experiment of a layer.
    """

    name: str = Field(min_length=1)
    salt: str | None = None
    n_buckets: int = Field(DEFAULT_BUCKETS, ge=2)

    @property
    def effective_salt(self) -> str:
        return self.salt if self.salt is not None else f"layer:{self.name}"


class ExperimentSpec(_Frozen):
    """An experiment: variants, allocation, holdout and where it lives in its layer.

    * ``salt`` (default: the name) re-randomises the variant split inside the experiment, so
      two experiments never split units the same way.
    * ``layer`` names the :class:`LayerSpec` this experiment belongs to; ``None`` gives the
      experiment a private layer (salted ``"<salt>/traffic"``) of ``n_buckets`` buckets.
    * ``bucket_range`` is the ``[start, end)`` range of layer buckets the experiment owns;
      when omitted it is ``[0, round(traffic · n_buckets))``.
    * ``holdout`` is the share of the experiment's units that get no variant (they are served
      the default experience and are excluded from the comparison).
    * ``control`` names the baseline variant (default: the first).
    """

    name: str = Field(min_length=1)
    salt: str | None = None
    variants: tuple[VariantSpec, ...] = Field(min_length=2)
    control: str | None = None
    layer: str | None = None
    n_buckets: int = Field(DEFAULT_BUCKETS, ge=2)
    traffic: float = Field(1.0, gt=0, le=1)
    bucket_range: tuple[int, int] | None = None
    holdout: float = Field(0.0, ge=0, lt=1)
    allocation: Literal["fixed", "thompson"] = "fixed"
    """``thompson``: the experiment flow re-weights the variants by their posterior
    probability of being best on ``experiments.bandit.reward_column`` (a bandit optimises
    reward; use ``fixed`` to measure effects)."""

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentSpec:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment {self.name!r} has duplicate variant names: {names}")
        if self.control is not None and self.control not in names:
            raise ValueError(f"control {self.control!r} is not a variant of {self.name!r}")
        if self.bucket_range is not None:
            start, end = self.bucket_range
            if not 0 <= start < end <= self.n_buckets:
                raise ValueError(
                    f"bucket_range {self.bucket_range} of {self.name!r} must satisfy "
                    f"0 <= start < end <= n_buckets ({self.n_buckets})"
                )
            if self.traffic != 1.0:
                raise ValueError(f"{self.name!r}: set either bucket_range or traffic, not both")
        elif round(self.traffic * self.n_buckets) < 1:
            raise ValueError(f"{self.name!r}: traffic {self.traffic} rounds to zero buckets")
        return self

    @property
    def effective_salt(self) -> str:
        return self.salt if self.salt is not None else self.name

    @property
    def control_name(self) -> str:
        return self.control if self.control is not None else self.variants[0].name

    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variants)

    @property
    def layer_range(self) -> tuple[int, int]:
        if self.bucket_range is not None:
            return self.bucket_range
        return (0, round(self.traffic * self.n_buckets))

    @property
    def expected_weights(self) -> dict[str, float]:
        """Each variant's expected share of the analysed (non-holdout) units."""
        total = sum(v.weight for v in self.variants)
        return {v.name: v.weight / total for v in self.variants}


# --------------------------------------------------------------------------- flags


class Condition(_Frozen):
    """One targeting condition on a unit attribute.

    ``eq``/``ne`` compare for equality; ``in``/``not_in`` test membership in a tuple;
    ``lt``/``le``/``gt``/``ge`` compare numbers (booleans are not numbers here). A missing
    attribute, or one of the wrong type for the operator, never matches.
    """

    attribute: str = Field(min_length=1)
    op: Literal["eq", "ne", "in", "not_in", "lt", "le", "gt", "ge"]
    value: ConditionValue

    @model_validator(mode="after")
    def _value_fits_op(self) -> Condition:
        if self.op in ("in", "not_in") and not isinstance(self.value, tuple):
            raise ValueError(f"{self.attribute} {self.op}: value must be a list")
        if self.op in ("lt", "le", "gt", "ge") and (
            isinstance(self.value, bool | str | tuple) or not math.isfinite(self.value)
        ):
            raise ValueError(f"{self.attribute} {self.op}: value must be a finite number")
        if self.op in ("eq", "ne") and isinstance(self.value, tuple):
            raise ValueError(f"{self.attribute} {self.op}: value must be a scalar")
        return self


class TargetingRule(_Frozen):
    """Units matching every condition (AND) are served ``value`` (default: the flag's
    ``on_value``) if they fall inside ``percentage`` of the flag's hash space; otherwise
    evaluation continues with the next rule."""

    name: str = Field(min_length=1)
    conditions: tuple[Condition, ...] = ()
    percentage: float = Field(100.0, ge=0, le=100)
    value: FlagValue | None = None


class FlagSpec(_Frozen):
    """A feature flag evaluated locally from its spec: no network hop.

    Evaluation order: a disabled flag serves ``off_value``; the first rule that matches and
    whose percentage includes the unit serves its value; otherwise units inside
    ``rollout_percentage`` get ``on_value`` and the rest ``off_value``. Percentages use one
    bucket per (flag salt, unit), so raising a percentage only ever adds units.
    """

    key: str = Field(min_length=1)
    enabled: bool = True
    salt: str | None = None
    n_buckets: int = Field(DEFAULT_BUCKETS, ge=2)
    rules: tuple[TargetingRule, ...] = ()
    rollout_percentage: float = Field(0.0, ge=0, le=100)
    on_value: FlagValue = True
    off_value: FlagValue = False

    @property
    def effective_salt(self) -> str:
        return self.salt if self.salt is not None else f"flag:{self.key}"


class RolloutSchedule(_Frozen):
    """A gradual rollout: exposure percentages in order, each held at least
    ``min_step_seconds`` and left only when the guard passes."""

    steps: tuple[float, ...] = (1.0, 5.0, 25.0, 50.0, 100.0)
    min_step_seconds: float = Field(3600.0, ge=0)
    rollback_percentage: float = Field(0.0, ge=0, lt=100)

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: tuple[float, ...]) -> tuple[float, ...]:
        if not steps:
            raise ValueError("a rollout schedule needs at least one step")
        if any(not 0 < s <= 100 for s in steps):
            raise ValueError(f"rollout steps must lie in (0, 100]: {steps}")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError(f"rollout steps must increase strictly: {steps}")
        if steps[-1] != 100:
            raise ValueError(f"the last rollout step must be 100, got {steps[-1]}")
        return steps


# --------------------------------------------------------------------------- analysis


class MetricSpec(_Frozen):
    """How one metric is computed from the per-unit table.

    * ``binary``: ``column`` holds 0/1 per unit (e.g. resolved, thumbs-up).
    * ``continuous``: ``column`` holds a per-unit value (latency, tokens, cost).
    * ``ratio``: ``numerator``/``denominator`` columns hold per-unit sums (e.g. errors and
      requests); the metric is Σnum/Σden per variant, its variance by the delta method.

    ``covariate`` names a pre-period column for CUPED (binary and continuous metrics).
    ``rank_test`` also reports a Mann–Whitney p-value (skewed metrics); ``bootstrap`` replaces
    the fixed-horizon interval by a seeded percentile bootstrap (ignored when sequential).
    """

    name: str = Field(min_length=1)
    kind: Literal["binary", "continuous", "ratio"]
    column: str | None = None
    numerator: str | None = None
    denominator: str | None = None
    covariate: str | None = None
    higher_is_better: bool = True
    rank_test: bool = False
    bootstrap: bool = False

    @model_validator(mode="after")
    def _columns(self) -> MetricSpec:
        if self.kind == "ratio":
            if self.numerator is None or self.denominator is None:
                raise ValueError(f"ratio metric {self.name!r} needs numerator and denominator")
            if self.covariate is not None:
                raise ValueError(f"ratio metric {self.name!r} does not support a covariate")
        elif self.column is None:
            raise ValueError(f"{self.kind} metric {self.name!r} needs a column")
        return self

    @property
    def value_column(self) -> str:
        return self.column if self.column is not None else self.name


class SequentialConfig(_Frozen):
    """Always-valid inference by the mixture sequential probability ratio test (mSPRT).

    The mixing distribution on the effect is N(0, τ²). τ is expressed in units of the
    metric's per-unit standard deviation: τ = ``mixing_sd`` · σ̂. When ``mixing_sd`` is
    ``None`` it is derived from ``planned_units_per_variant`` so that the confidence
    sequence is narrowest at the planned sample size
    (:func:`~loopline.experiments.sequential.mixing_sd_for_horizon`). Before
    ``min_units_per_variant`` units per arm the test does not reject (variance estimates of
    very small samples are unreliable).
    """

    mixing_sd: float | None = Field(None, gt=0)
    planned_units_per_variant: int = Field(10_000, ge=2)
    min_units_per_variant: int = Field(100, ge=2)


class AnalysisConfig(_Frozen):
    """Settings of :func:`~loopline.experiments.analysis.analyze_experiment`.

    ``alpha`` is the two-sided level of every interval; with ``split_alpha_across_variants``
    the intervals of each treatment use α/k for k treatments (Bonferroni across arms).
    ``correction`` adjusts the reported p-values across all (metric, variant) pairs.
    """

    alpha: float = Field(0.05, gt=0, lt=1)
    srm_threshold: float = Field(0.001, gt=0, lt=1)
    correction: Literal["holm", "bh", "none"] = "holm"
    split_alpha_across_variants: bool = True
    sequential: SequentialConfig | None = SequentialConfig()
    bayesian: bool = True
    bootstrap_resamples: int = Field(2000, ge=100)
    seed: int = 0


# --------------------------------------------------------------------------- decisions


class GuardrailSpec(_Frozen):
    """A metric that must not degrade by more than ``max_relative_degradation`` (a fraction
    of the control's value, in the metric's bad direction). ``higher_is_better`` is taken from
    the metric's result."""

    metric: str = Field(min_length=1)
    max_relative_degradation: float = Field(0.0, ge=0)


class DecisionPolicy(_Frozen):
    """Thresholds of :func:`~loopline.experiments.decision.decide_experiment`.

    * ``primary_metric``: the quality metric a variant must win (or not lose) on.
    * ``guardrails``: metrics that must not degrade beyond their margin.
    * ``non_inferiority_margin``: largest relative loss on the primary metric accepted for a
      variant that is confidently cheaper.
    * ``cost_metric``: per-unit cost metric (absent: costs are taken as equal).
    * ``value_per_unit``: money one unit of the primary metric is worth per unit (e.g. per
      resolved conversation); a costlier variant ships only when
      gain × value_per_unit > extra cost. ``None``: a costlier variant never ships.
    * ``min_units_per_variant``: no decision before every arm has this many units.
    * ``max_units_per_variant``: horizon; reaching it without a winner rolls back.
    """

    primary_metric: str = Field(min_length=1)
    guardrails: tuple[GuardrailSpec, ...] = ()
    non_inferiority_margin: float = Field(0.01, ge=0, lt=1)
    cost_metric: str | None = "cost"
    value_per_unit: float | None = Field(None, ge=0)
    min_units_per_variant: int = Field(100, ge=1)
    max_units_per_variant: int | None = Field(None, ge=1)
    allow_ship_with_srm: bool = False


class BanditPolicy(_Frozen):
    """Thompson-sampling allocation (experiments with ``allocation: thompson``).

    * ``reward_column``: a 0/1 column of the per-unit table (e.g. ``thumbs_up``).
    * ``floor``: the share every arm keeps so none starves (the rest follows the posterior
      probability of being best).
    * ``ship_probability``: ship the arm whose probability of being best reaches it.
    * ``min_units_per_variant``: no decision and no re-weighting before this many units.
    """

    reward_column: str = "thumbs_up"
    floor: float = Field(0.05, ge=0, lt=0.5)
    ship_probability: float = Field(0.95, gt=0.5, lt=1)
    min_units_per_variant: int = Field(30, ge=1)
    draws: int = Field(20_000, ge=1000)
    seed: int = 0


class ExperimentsConfig(_Frozen):
    """Everything the experiments package reads from the main configuration."""

    layers: tuple[LayerSpec, ...] = ()
    experiments: tuple[ExperimentSpec, ...] = ()
    flags: tuple[FlagSpec, ...] = ()
    rollout: RolloutSchedule = RolloutSchedule()
    metrics: tuple[MetricSpec, ...] = ()
    analysis: AnalysisConfig = AnalysisConfig()
    decision: DecisionPolicy | None = None
    bandit: BanditPolicy = BanditPolicy()

    @model_validator(mode="after")
    def _references(self) -> ExperimentsConfig:
        for kind, names in (
            ("layer", [x.name for x in self.layers]),
            ("experiment", [x.name for x in self.experiments]),
            ("flag", [x.key for x in self.flags]),
            ("metric", [x.name for x in self.metrics]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate {kind} names: {dupes}")
        layers = {x.name: x for x in self.layers}
        for exp in self.experiments:
            if exp.layer is not None:
                if exp.layer not in layers:
                    raise ValueError(f"experiment {exp.name!r} names unknown layer {exp.layer!r}")
                if layers[exp.layer].n_buckets != exp.n_buckets:
                    raise ValueError(
                        f"experiment {exp.name!r} has n_buckets {exp.n_buckets}, its layer "
                        f"{exp.layer!r} has {layers[exp.layer].n_buckets}"
                    )
        from loopline.experiments.assignment import check_disjoint

        for layer in self.layers:
            check_disjoint(layer, [e for e in self.experiments if e.layer == layer.name])
        return self
