"""The experiment decision: a pure function of an analysis result and a policy.

``decide_experiment(result, policy) -> Decision`` names one action; a task performs it.

Actions
-------
* ``ship``: serve the named variant to everyone.
* ``keep_running``: no decision yet (or the data cannot be trusted: ``valid`` is false).
* ``stop_for_harm``: the named variants are confidently *worse on the primary metric*; stop
  them (control stays).
* ``roll_back``: send the named variants' traffic back to control now: a guardrail
  (latency, error rate, cost, …) is confidently degraded beyond its margin, or the horizon
  was reached without any variant worth shipping.

Per-variant evidence
--------------------
All comparisons use the intervals in the result (always-valid confidence sequences when the
analysis was sequential), direction-aware: *improvement* is positive when the metric moves
in its good direction, and relative to control.

* **Guardrail** g with margin m: degradation interval D = −(improvement interval).
  *Breach* when D's lower bound > m (confidently worse than the margin); *cleared* when D's
  upper bound ≤ m; otherwise *pending*, which blocks shipping.
* **Primary harm**: the improvement interval lies entirely below 0.
* **Superior**: the improvement interval lies entirely above 0.
* **Non-inferior**: the improvement interval's lower bound is above −``non_inferiority_margin``.
* **Cost** (``policy.cost_metric``, per unit, lower is better; Δc = cost_T − cost_C):
  *confidently cheaper* when the interval of Δc lies below 0.

A variant is a **ship candidate** when every guardrail is cleared and either

1. it is confidently cheaper and non-inferior on the primary metric (the cost-aware rule for
   cheaper variants), or
2. it is superior and, if its point estimate of Δc is positive (costlier), its absolute
   primary gain × ``value_per_unit`` exceeds Δc (the cost-aware rule for costlier variants;
   with no ``value_per_unit`` a costlier variant never ships).

Net value per unit = gain × value_per_unit − Δc ranks candidates (without a value per unit:
the larger relative improvement, then the lower cost).

Rules, in order
---------------
1. A variant lacks the primary metric: ``keep_running``, invalid.
2. Some arm has fewer than ``min_units_per_variant`` units: ``keep_running``.
3. Fixed-horizon intervals before the horizon (``max_units_per_variant``) are not acted on
   (peeking would inflate the error rates): ``keep_running``.
4. A guardrail breach: ``roll_back`` the breaching (and any harmful) variants. An SRM does
   not suppress this: reverting to control is the safe side of a biased comparison.
5. Primary harm: ``stop_for_harm`` those variants.
6. Sample-ratio mismatch: ``keep_running`` with an alert, invalid; nothing ships
   (unless ``allow_ship_with_srm``).
7. A ship candidate: ``ship`` the best one.
8. The horizon is reached: ``roll_back`` every treatment (no variant earned a launch).
9. Otherwise ``keep_running``.

Experiments allocated by Thompson sampling are decided by :func:`decide_bandit` (the same
safety rules 4-5, then ship the arm that is best with high posterior probability).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from loopline.experiments.analysis import ExperimentResult, MetricResult
from loopline.experiments.bandit import BetaBernoulliBandit
from loopline.experiments.policy import BanditPolicy, DecisionPolicy

Action = Literal["ship", "keep_running", "stop_for_harm", "roll_back"]
VariantStatus = Literal[
    "winner",
    "cheaper_non_inferior",
    "harmful",
    "guardrail_breach",
    "guardrail_pending",
    "not_worth_cost",
    "inconclusive",
    "missing_data",
]


def _pct(x: float) -> str:
    return "nan" if math.isnan(x) else f"{100 * x:+.2f} %"


def _interval(lo: float, hi: float) -> str:
    return f"[{_pct(lo)}, {_pct(hi)}]"


@dataclass(frozen=True)
class VariantVerdict:
    """The evidence about one treatment variant and what it implies."""

    variant: str
    status: VariantStatus
    reasons: tuple[str, ...]
    primary_improvement: float | None = None
    primary_interval: tuple[float, float] | None = None
    cost_difference: float | None = None
    net_value_per_unit: float | None = None
    breached_guardrails: tuple[str, ...] = ()
    pending_guardrails: tuple[str, ...] = ()

    @property
    def ship_candidate(self) -> bool:
        return self.status in ("winner", "cheaper_non_inferior")


@dataclass(frozen=True)
class Decision:
    """The action, the variant it ships (``ship``) or the variants it removes
    (``stop_for_harm``/``roll_back``), the reasons, alerts for humans, whether the data was
    trustworthy, and the per-variant verdicts behind it."""

    action: Action
    variant: str | None
    affected: tuple[str, ...]
    reasons: tuple[str, ...]
    alerts: tuple[str, ...]
    valid: bool
    verdicts: tuple[VariantVerdict, ...]

    @property
    def summary(self) -> str:
        target = f" {self.variant}" if self.variant else ""
        if self.affected and not self.variant:
            target = " " + ", ".join(self.affected)
        return f"{self.action}{target}: " + "; ".join(self.reasons)


def _guardrails(
    result: ExperimentResult, policy: DecisionPolicy, variant: str
) -> tuple[list[str], list[str], list[str]]:
    breached, pending, reasons = [], [], []
    for g in policy.guardrails:
        m = result.metric(g.metric, variant)
        if m is None:
            pending.append(g.metric)
            reasons.append(f"guardrail {g.metric} has no result")
            continue
        ilo, ihi = m.improvement_interval
        dlo, dhi = -ihi, -ilo
        if m.control_value == 0:
            # a relative change from zero does not exist: judge the absolute interval
            alo, ahi = m.absolute_improvement_interval
            if m.treatment_value == 0:
                reasons.append(f"guardrail {g.metric}: zero in both arms")
            elif -ahi > 0:  # confidently worse than a control that has none
                breached.append(g.metric)
                reasons.append(
                    f"guardrail {g.metric}: {m.treatment_value:.4g} against none in control "
                    f"(worse by [{-ahi:.4g}, {-alo:.4g}])"
                )
            elif -alo > 0:
                pending.append(g.metric)
                reasons.append(
                    f"guardrail {g.metric}: {m.treatment_value:.4g} against none in control, "
                    "not yet distinguishable"
                )
            else:
                reasons.append(f"guardrail {g.metric}: better than a control of zero")
        elif math.isnan(dlo) or math.isnan(dhi):
            pending.append(g.metric)
            reasons.append(f"guardrail {g.metric} interval undefined")
        elif dlo > g.max_relative_degradation:
            breached.append(g.metric)
            reasons.append(
                f"guardrail {g.metric} degraded by {_interval(dlo, dhi)} "
                f"(> {100 * g.max_relative_degradation:.2f} % allowed)"
            )
        elif dhi > g.max_relative_degradation:
            pending.append(g.metric)
            reasons.append(
                f"guardrail {g.metric} degradation {_interval(dlo, dhi)} not yet within "
                f"{100 * g.max_relative_degradation:.2f} %"
            )
    return breached, pending, reasons


def _verdict(result: ExperimentResult, policy: DecisionPolicy, variant: str) -> VariantVerdict:
    primary = result.metric(policy.primary_metric, variant)
    if primary is None:
        return VariantVerdict(
            variant, "missing_data", (f"{variant}: no result for {policy.primary_metric}",)
        )
    breached, pending, g_reasons = _guardrails(result, policy, variant)
    ilo, ihi = primary.improvement_interval
    imp = primary.improvement
    cost: MetricResult | None = (
        result.metric(policy.cost_metric, variant) if policy.cost_metric else None
    )
    dc = cost.difference if cost is not None else 0.0
    cheaper = cost is not None and cost.ci_high < 0
    gain = primary.absolute_improvement
    net = gain * policy.value_per_unit - dc if policy.value_per_unit is not None else None
    head = (
        f"{variant}: {policy.primary_metric} {_pct(imp)} {_interval(ilo, ihi)} "
        f"({primary.interval} interval)"
    )
    reasons = (head, *(f"{variant}: {r}" for r in g_reasons))
    base = VariantVerdict(
        variant,
        "inconclusive",
        reasons,
        primary_improvement=imp,
        primary_interval=(ilo, ihi),
        cost_difference=dc if cost is not None else None,
        net_value_per_unit=net,
        breached_guardrails=tuple(breached),
        pending_guardrails=tuple(pending),
    )
    if breached:
        return replace(base, status="guardrail_breach")
    if ihi < 0:
        return replace(
            base, status="harmful", reasons=(*reasons, f"{variant}: confidently worse than control")
        )
    status: VariantStatus
    if cheaper and ilo > -policy.non_inferiority_margin:
        status = "cheaper_non_inferior"
        why = (
            f"cheaper by {-dc:.6g} per unit and within the non-inferiority margin "
            f"of {100 * policy.non_inferiority_margin:.2f} %"
        )
    elif ilo > 0 and dc > 0:
        if net is not None and net > 0:
            status, why = "winner", f"gain is worth its extra cost: net value {net:.6g} per unit"
        else:
            status = "not_worth_cost"
            why = f"better but costlier by {dc:.6g} per unit; " + (
                "no value_per_unit configured" if net is None else f"net value {net:.6g}"
            )
    elif ilo > 0:
        status, why = "winner", "confidently better than control"
    else:
        status, why = "inconclusive", "not yet distinguishable from control"
    if status in ("winner", "cheaper_non_inferior") and pending:
        status = "guardrail_pending"
        why += f", but guardrails pending: {', '.join(pending)}"
    return replace(base, status=status, reasons=(*reasons, f"{variant}: {why}"))


def _rank(v: VariantVerdict) -> tuple[float, float, float]:
    net = v.net_value_per_unit if v.net_value_per_unit is not None else -math.inf
    imp = v.primary_improvement if v.primary_improvement is not None else -math.inf
    cost = -(v.cost_difference or 0.0)
    return (net, imp, cost)


def decide_experiment(result: ExperimentResult, policy: DecisionPolicy) -> Decision:
    """Decide what happens to the experiment; see the module docstring for the rules."""
    verdicts = tuple(_verdict(result, policy, v) for v in result.treatments)
    alerts: list[str] = []
    if result.srm.mismatch:
        observed = ", ".join(f"{100 * s:.2f} %" for s in result.srm.observed_share)
        expected = ", ".join(f"{100 * s:.2f} %" for s in result.srm.expected_share)
        alerts.append(
            f"sample-ratio mismatch: observed {observed} vs expected {expected} "
            f"(p = {result.srm.p_value:.2e}); check assignment and exposure logging"
        )

    def out(
        action: Action,
        reasons: list[str],
        *,
        variant: str | None = None,
        affected: tuple[str, ...] = (),
        valid: bool = True,
    ) -> Decision:
        return Decision(action, variant, affected, tuple(reasons), tuple(alerts), valid, verdicts)

    missing = [v.variant for v in verdicts if v.status == "missing_data"]
    if missing:
        alerts.append(f"primary metric {policy.primary_metric} missing for {missing}")
        return out("keep_running", [r for v in verdicts for r in v.reasons], valid=False)
    n_min = result.min_units
    if n_min < policy.min_units_per_variant:
        return out(
            "keep_running",
            [f"smallest arm has {n_min} units (< {policy.min_units_per_variant} required)"],
            valid=not result.srm.mismatch,
        )
    horizon = policy.max_units_per_variant is not None and n_min >= policy.max_units_per_variant
    fixed = any(m.interval != "sequential" for m in result.metrics)
    if fixed and policy.max_units_per_variant is not None and not horizon:
        return out(
            "keep_running",
            [
                f"fixed-horizon analysis: waiting for {policy.max_units_per_variant} units per "
                f"arm (smallest arm has {n_min})"
            ],
            valid=not result.srm.mismatch,
        )
    breach = [v for v in verdicts if v.status == "guardrail_breach"]
    harmful = [v for v in verdicts if v.status == "harmful"]
    if breach:
        affected = tuple(v.variant for v in (*breach, *harmful))
        reasons = [r for v in (*breach, *harmful) for r in v.reasons]
        return out("roll_back", reasons, affected=affected, valid=not result.srm.mismatch)
    if harmful:
        reasons = [r for v in harmful for r in v.reasons]
        return out(
            "stop_for_harm",
            reasons,
            affected=tuple(v.variant for v in harmful),
            valid=not result.srm.mismatch,
        )
    if result.srm.mismatch and not policy.allow_ship_with_srm:
        return out(
            "keep_running",
            ["sample-ratio mismatch: results are not trustworthy, nothing ships"],
            valid=False,
        )
    candidates = [v for v in verdicts if v.ship_candidate]
    if candidates:
        best = max(candidates, key=_rank)
        return out("ship", list(best.reasons), variant=best.variant)
    everyone = [r for v in verdicts for r in v.reasons]
    if horizon:
        return out(
            "roll_back",
            [f"horizon of {policy.max_units_per_variant} units per arm reached", *everyone],
            affected=result.treatments,
        )
    return out("keep_running", everyone)


def bandit_state(
    arms: tuple[str, ...], units: Mapping[str, int], successes: Mapping[str, float]
) -> BetaBernoulliBandit:
    """The Beta posteriors (uniform prior) of ``arms`` from units and rewarded units."""
    bandit = BetaBernoulliBandit.new(arms)
    for arm in arms:
        n, s = int(units.get(arm, 0)), round(float(successes.get(arm, 0.0)))
        bandit = bandit.update(arm, successes=s, failures=max(n - s, 0))
    return bandit


def decide_bandit(
    result: ExperimentResult,
    bandit: BetaBernoulliBandit,
    policy: DecisionPolicy,
    bandit_policy: BanditPolicy,
) -> Decision:
    """The decision for a Thompson-sampling experiment.

    Safety first: a roll-back or stop for harm that :func:`decide_experiment` finds (guardrail
    breach, primary harm) stands. Otherwise the arm whose posterior probability of being best
    reaches ``ship_probability`` ships (control included: then the experiment ends with no
    change), and until then the experiment keeps running. Effect sizes of an adaptively
    allocated test are biased, so no cost-aware or sequential rule applies here.
    """
    base = decide_experiment(result, policy)
    if base.action in ("roll_back", "stop_for_harm"):
        return base
    best = bandit.allocation(draws=bandit_policy.draws, seed=bandit_policy.seed)
    shares = ", ".join(f"{arm} {100 * p:.1f} %" for arm, p in best.items())
    n_min = min((result.units.get(a, 0) for a in bandit.arms), default=0)
    alerts = tuple(a for a in base.alerts if not a.startswith("sample-ratio mismatch"))
    if n_min < bandit_policy.min_units_per_variant:
        reason = (
            f"smallest arm has {n_min} units (< {bandit_policy.min_units_per_variant}); "
            f"probability of being best: {shares}"
        )
        return Decision("keep_running", None, (), (reason,), alerts, True, base.verdicts)
    arm, p = max(best.items(), key=lambda kv: kv[1])
    if p >= bandit_policy.ship_probability:
        reason = (
            f"{arm} is best with probability {100 * p:.1f} % "
            f"(>= {100 * bandit_policy.ship_probability:.0f} %); {shares}"
        )
        return Decision("ship", arm, (), (reason,), alerts, True, base.verdicts)
    reason = f"no arm is best with {100 * bandit_policy.ship_probability:.0f} %: {shares}"
    return Decision("keep_running", None, (), (reason,), alerts, True, base.verdicts)
