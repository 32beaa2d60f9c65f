"""Configuration models of the cost package: frozen pydantic, unknown keys forbidden.

Every threshold the pure functions of :mod:`loopline.cost` read lives here under a name:
the capacity SLO and planner policy (:mod:`~loopline.cost.planner`), spot interruption model
and fallback (:mod:`~loopline.cost.spot`), budgets, alerting and enforcement
(:mod:`~loopline.cost.budget`), forecasting (:mod:`~loopline.cost.forecast`) and
recommendations (:mod:`~loopline.cost.recommend`). :class:`CostConfig` bundles them for the
main configuration file.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from loopline.cost.catalog import INTERRUPTION_BANDS, Offer, Pricing

Period = Literal["daily", "weekly", "monthly"]
ATTRIBUTION_DIMENSIONS: tuple[str, ...] = ("model", "version", "variant", "team", "environment")
SCOPE_KEYS: tuple[str, ...] = (*ATTRIBUTION_DIMENSIONS, "kind", "provider")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- capacity


class ThroughputSpec(_Frozen):
    """Sustained tokens/s one replica serves *at the latency target*, by instance.

    Resolution order for an offer: ``per_instance[instance_type]``, then
    ``per_gpu[gpu_type] × gpu_count`` for GPU offers, then ``per_vcpu × vcpu`` for CPU-only
    offers. An offer with no resolvable throughput is not eligible (the model was never measured
    on it).
    """

    per_instance: dict[str, float] = Field(default_factory=dict)
    per_gpu: dict[str, float] = Field(default_factory=dict)
    per_vcpu: float | None = Field(None, gt=0)

    @field_validator("per_instance", "per_gpu")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in value.items() if not v > 0]
        if bad:
            raise ValueError(f"throughput must be positive for {bad}")
        return value

    def for_offer(self, offer: Offer) -> float | None:
        """Tokens/s of one replica on ``offer``, or ``None`` when unmeasured."""
        if offer.instance_type in self.per_instance:
            return self.per_instance[offer.instance_type]
        if offer.gpu_type is not None:
            per_gpu = self.per_gpu.get(offer.gpu_type)
            return per_gpu * offer.gpu_count if per_gpu is not None else None
        return self.per_vcpu * offer.vcpu if self.per_vcpu is not None else None


class CapacitySLO(_Frozen):
    """What the serving fleet must deliver.

    * ``throughput``: per-replica tokens/s measured at ``latency_p95_ms``.
    * ``headroom``: required capacity = demand × headroom (burst absorption at the latency
      target); the availability guarantee is stated against this required capacity.
    * ``availability``: probability, per hour, that capacity surviving spot interruptions still
      covers the required capacity.
    * ``min_replicas``: floor on replicas in hours with demand (0 allows scale-to-zero only in
      hours with zero demand).
    """

    latency_p95_ms: float = Field(1000.0, gt=0)
    availability: float = Field(0.999, gt=0.5, lt=1.0)
    headroom: float = Field(1.2, ge=1.0)
    min_replicas: int = Field(1, ge=0)
    throughput: ThroughputSpec


def _default_reclaim() -> dict[str, float]:
    return {"<5%": 0.002, "5-10%": 0.004, "10-15%": 0.006, "15-20%": 0.008, ">20%": 0.012}


class InterruptionModel(_Frozen):
    """How spot interruption risk is modelled, shared by the planner and the simulation.

    Each spot *pool* (cloud/region/instance type) is reclaimed as a whole, independently of the
    other pools, within a planning hour with probability ``reclaim_probability[band]``.

    Default derivation: a band's upper bound f is the share of a pool's instances interrupted
    per month (AWS Spot Instance Advisor; Azure eviction-rate ranges; >20 % taken as 30 %). Read
    pessimistically as f pool-wide reclaim events per month, the hourly probability is f / 730;
    the defaults multiply that by about 30 for burstiness (a month's interruptions arriving
    within about a day), so f = 5 % gives 0.002 per hour. Raise them to plan for a harsher spot
    market. ``replacement_overhead_hours`` is the billed time lost per interruption
    (replacement start-up); it enters the expected cost of a spot replica-hour.
    """

    reclaim_probability: dict[str, float] = Field(default_factory=_default_reclaim)
    replacement_overhead_hours: float = Field(0.25, ge=0, le=1)

    @field_validator("reclaim_probability")
    @classmethod
    def _bands(cls, value: dict[str, float]) -> dict[str, float]:
        missing = [b for b in INTERRUPTION_BANDS if b not in value]
        unknown = [b for b in value if b not in INTERRUPTION_BANDS]
        if missing or unknown:
            raise ValueError(f"bands missing {missing}, unknown {unknown}")
        if any(not 0 < p < 1 for p in value.values()):
            raise ValueError("reclaim probabilities must lie in (0, 1)")
        return value

    def probability(self, offer: Offer) -> float:
        return self.reclaim_probability[offer.interruption_band]


class PlannerPolicy(_Frozen):
    """Choices of the capacity planner beyond the SLO.

    * ``clouds``/``regions``/``exclude_instance_types``: where capacity may be bought.
    * ``allow_spot``: false plans on-demand only.
    * ``max_spot_share_per_offer`` (θ): no spot pool carries more than θ × the required
      capacity (diversification cap); θ × required is also the *loss unit* of the availability
      bound.
    * ``spare_capacity_options`` (ρ): the spare capacity, as a fraction of required, that the
      planner may hold to absorb spot losses; it picks one per level. ρ = 0 forbids spot.
    * ``max_levels``: hours are grouped into at most this many capacity levels (see
      :func:`~loopline.cost.planner.plan_capacity`); each level is one exact MILP.
    * ``time_limit_seconds``: per MILP; a level that hits it reports its gap.
    """

    clouds: tuple[str, ...] | None = None
    regions: tuple[str, ...] | None = None
    exclude_instance_types: tuple[str, ...] = ()
    allow_spot: bool = True
    max_spot_share_per_offer: float = Field(0.1, gt=0, le=1)
    spare_capacity_options: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
    max_levels: int = Field(16, ge=1)
    time_limit_seconds: float = Field(10.0, gt=0)
    interruption: InterruptionModel = Field(default_factory=InterruptionModel)

    @field_validator("spare_capacity_options")
    @classmethod
    def _spare(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(not 0 <= v <= 5 for v in value):
            raise ValueError("spare capacity options must lie in [0, 5]")
        return tuple(sorted(set(value) | {0.0}))


# --------------------------------------------------------------------------- spot


class FallbackPolicy(_Frozen):
    """What happens when a spot pool is reclaimed (used by the interruption simulation).

    The lost replicas are replaced by on-demand replicas of the same offer after
    ``replacement_delay_minutes`` and kept until the end of the hour. ``runs`` is the number of
    simulated horizons; ``stress`` multiplies every reclaim probability (1 = the planning
    model) to probe a harsher market.
    """

    replacement_delay_minutes: float = Field(5.0, ge=0, le=60)
    runs: int = Field(2000, ge=10)
    stress: float = Field(1.0, gt=0)


# --------------------------------------------------------------------------- budgets


class BudgetSpec(_Frozen):
    """A spend budget for one scope and period.

    ``scope`` filters ledger lines: keys among the attribution dimensions (model, version,
    variant, team, environment), ``kind`` (tokens/compute/storage) and ``provider``; an empty
    scope is the whole ledger. Thresholds are fractions of ``amount``: crossing ``soft`` warns,
    crossing ``hard`` is a breach that triggers enforcement.
    """

    name: str = Field(min_length=1)
    amount: float = Field(gt=0)
    period: Period = "monthly"
    scope: dict[str, str] = Field(default_factory=dict)
    soft_threshold: float = Field(0.8, gt=0)
    hard_threshold: float = Field(1.0, gt=0)

    @field_validator("scope")
    @classmethod
    def _scope(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = [k for k in value if k not in SCOPE_KEYS]
        if unknown:
            raise ValueError(f"unknown scope keys {unknown}; use {list(SCOPE_KEYS)}")
        return value

    @model_validator(mode="after")
    def _order(self) -> BudgetSpec:
        if self.soft_threshold >= self.hard_threshold:
            raise ValueError("soft_threshold must be below hard_threshold")
        return self


class ForecastSpec(_Frozen):
    """Spend/demand forecasting.

    ``method``: additive Holt-Winters (ETS(A,A,A), parameters fitted by least squares) or
    seasonal-naive with drift. ``season_length`` in steps (24 for hourly series with a daily
    cycle, 168 for a weekly cycle, 7 for daily series). ``interval_level`` is the two-sided
    coverage of prediction intervals.
    """

    method: Literal["holt_winters", "seasonal_naive"] = "holt_winters"
    season_length: int = Field(24, ge=2)
    interval_level: float = Field(0.9, gt=0.5, lt=1.0)


class AlertPolicy(_Frozen):
    """When projected spend raises an alert before a breach.

    A projection alerts when the upper bound of the period-end spend interval (at
    ``forecast.interval_level``) reaches a threshold. Projections use the scope's hourly spend
    over the last ``history_hours``; with fewer than ``min_history_steps`` hours of history no
    projection is made (only actual breaches alert).
    """

    forecast: ForecastSpec = Field(default_factory=ForecastSpec)
    history_hours: int = Field(14 * 24, ge=4)
    min_history_steps: int = Field(48, ge=4)


class EnforcementPolicy(_Frozen):
    """What to do at the hard limit, as data for a task that acts through the guard.

    ``action``: route traffic to ``cheaper_variant``, rate-limit, or only alert.
    ``act_on_projection``: also enforce when the hard limit is *projected* (upper bound) to
    be breached, not only when actually breached. ``min_rate_fraction`` floors a rate limit.
    ``guard``: which guard the change must pass (the experiment or canary guard).
    """

    action: Literal["route_to_cheaper_variant", "rate_limit", "alert_only"] = "rate_limit"
    cheaper_variant: str | None = None
    act_on_projection: bool = False
    min_rate_fraction: float = Field(0.1, ge=0, le=1)
    guard: Literal["canary", "experiment"] = "canary"

    @model_validator(mode="after")
    def _variant(self) -> EnforcementPolicy:
        if self.action == "route_to_cheaper_variant" and not self.cheaper_variant:
            raise ValueError("route_to_cheaper_variant needs cheaper_variant")
        return self


# --------------------------------------------------------------------------- recommendations


class RecommendPolicy(_Frozen):
    """Thresholds of the savings recommendations.

    ``target_utilization``: right-sizing keeps observed peak throughput at or below this share
    of capacity. ``min_monthly_savings``: smaller recommendations are dropped.
    ``idle_demand_tokens_per_s``: demand at or below it counts as idle for scale-to-zero;
    ``min_idle_hours``: shortest window worth scaling to zero; ``cold_start_minutes``: cost of
    waking up (billed replica time, per window). ``hours_per_month`` converts hourly to monthly.
    """

    target_utilization: float = Field(0.7, gt=0, le=1)
    min_monthly_savings: float = Field(10.0, ge=0)
    idle_demand_tokens_per_s: float = Field(0.0, ge=0)
    min_idle_hours: int = Field(3, ge=1)
    cold_start_minutes: float = Field(5.0, ge=0)
    hours_per_month: float = Field(730.0, gt=0)


# --------------------------------------------------------------------------- accounting


class AccountingPolicy(_Frozen):
    """How :mod:`~loopline.cost.operations` books this environment's own spend.

    Token lines come from the request log, one per served request, attributed to the logged
    model, version and variant, to ``team`` and to ``environment`` (default: the settings'
    environment). ``token_pricing``: ``log`` takes a request's logged ``cost_usd`` (what the
    server charged at ``serving.price_per_1k_*``) and falls back to the price book when a line
    has none; ``price_book`` always prices from the book. ``price_book_models`` maps a served
    model name to its ``provider/model`` entry in the price book (unmapped models are looked up
    as ``self-hosted/<name>``).

    Compute lines: every model-server process counts as ``replicas_per_server`` replicas of
    the catalog offer ``server_offer`` (``cloud/region/instance_type``) at ``server_pricing``
    while it runs. When it ran is read from the deployment records and the stack where they
    say so, and otherwise from its first to its last logged request; a silence longer than
    ``session_gap_minutes`` between two requests is taken as the server being down.
    """

    team: str = Field("unattributed", min_length=1)
    environment: str | None = Field(None, min_length=1)
    token_pricing: Literal["log", "price_book"] = "log"
    price_book_models: dict[str, str] = Field(default_factory=dict)
    server_offer: str = "aws/us-east-1/m7i.xlarge"
    server_pricing: Pricing = "on_demand"
    replicas_per_server: int = Field(1, ge=1)
    session_gap_minutes: float = Field(30.0, gt=0)

    @field_validator("price_book_models")
    @classmethod
    def _entries(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [k for k, v in value.items() if "/" not in v.strip("/")]
        if bad:
            raise ValueError(f"price_book_models values must read 'provider/model': {bad}")
        return value

    @field_validator("server_offer")
    @classmethod
    def _offer_key(cls, value: str) -> str:
        if len([p for p in value.split("/") if p]) != 3:
            raise ValueError(f"server_offer {value!r} must read cloud/region/instance_type")
        return value


class CostConfig(_Frozen):
    """The ``cost`` section of the main configuration."""

    accounting: AccountingPolicy = Field(default_factory=AccountingPolicy)
    slo: CapacitySLO | None = None
    planner: PlannerPolicy = Field(default_factory=PlannerPolicy)
    fallback: FallbackPolicy = Field(default_factory=FallbackPolicy)
    budgets: tuple[BudgetSpec, ...] = ()
    alerts: AlertPolicy = Field(default_factory=AlertPolicy)
    enforcement: EnforcementPolicy = Field(default_factory=EnforcementPolicy)
    recommend: RecommendPolicy = Field(default_factory=RecommendPolicy)

    @field_validator("budgets")
    @classmethod
    def _unique(cls, value: tuple[BudgetSpec, ...]) -> tuple[BudgetSpec, ...]:
        names = [b.name for b in value]
        if len(names) != len(set(names)):
            raise ValueError("budget names must be unique")
        return value
