"""Quality gates: a candidate's metrics against absolute thresholds and against the champion.

Pure: no I/O, no MLflow. ``evaluate_gates`` turns metric mappings and the configured
:class:`~loopline.config.GateSpec` list into a :class:`GateResult` that records every check
(passed, failed or skipped) with a message a reviewer can read without the numbers at hand.

Each ``GateSpec`` yields up to three checks, named ``<metric>.min``, ``<metric>.max`` and
``<metric>.no_regression``. Comparisons at a threshold are inclusive: a value equal to the
minimum passes, and a regression exactly equal to the tolerance passes. Differences are
compared with a tolerance of ``EPSILON`` so that float noise (``0.88 - 0.85 = 0.0300...03``)
does not decide a gate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from loopline.config import GateSpec

GateKind = Literal["min", "max", "regression"]

EPSILON = 1e-9
"""Slack for comparisons of computed differences (regressions), not for raw thresholds."""


def fmt(value: float) -> str:
    """Format a metric value for messages: three decimals, ``nan``/``inf`` spelled out."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.3f}"


@dataclass(frozen=True)
class GateCheck:
    """One check of one metric.

    ``threshold`` is the bound the value was compared against: the configured minimum or
    maximum, or for a regression check the worst value still allowed (champion minus the
    tolerance when higher is better). ``reference`` is the champion's value for regression
    checks. ``skipped`` checks (no champion to compare with) count as passed.
    """

    name: str
    metric: str
    kind: GateKind
    value: float | None
    threshold: float | None
    passed: bool
    message: str
    higher_is_better: bool = True
    reference: float | None = None
    skipped: bool = False


@dataclass(frozen=True)
class GateResult:
    passed: bool
    checks: tuple[GateCheck, ...]

    @property
    def failures(self) -> tuple[GateCheck, ...]:
        return tuple(c for c in self.checks if not c.passed)

    @property
    def skipped(self) -> tuple[GateCheck, ...]:
        return tuple(c for c in self.checks if c.skipped)

    def for_metric(self, metric: str) -> tuple[GateCheck, ...]:
        return tuple(c for c in self.checks if c.metric == metric)

    def direction(self, metric: str) -> bool | None:
        """``higher_is_better`` of a gated metric, ``None`` if the metric is not gated."""
        for check in self.checks:
            if check.metric == metric:
                return check.higher_is_better
        return None

    @property
    def summary(self) -> str:
        total = len(self.checks)
        if total == 0:
            return "no gates configured"
        skipped = self.skipped
        note = f" ({len(skipped)} skipped: no champion to compare with)" if skipped else ""
        if self.passed:
            return f"all {total} gate checks passed{note}"
        failed = self.failures
        names = ", ".join(c.name for c in failed)
        return f"{len(failed)} of {total} gate checks failed: {names}{note}"


def _as_float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _unusable(
    spec: GateSpec, kind: GateKind, name: str, value: float | None, threshold: float | None
) -> GateCheck:
    """A failed check for a metric that is absent (``value`` None) or not a finite number."""
    problem = (
        "is missing from the candidate's metrics"
        if value is None
        else f"= {fmt(value)} is not a finite number"
    )
    return GateCheck(
        name=name,
        metric=spec.metric,
        kind=kind,
        value=value,
        threshold=threshold,
        passed=False,
        message=f"{spec.metric} {problem}",
        higher_is_better=spec.higher_is_better,
    )


def _bound_check(
    spec: GateSpec, kind: Literal["min", "max"], bound: float, value: float | None
) -> GateCheck:
    name = f"{spec.metric}.{kind}"
    if value is None:
        return _unusable(spec, kind, name, None, bound)
    if not math.isfinite(value):
        return _unusable(spec, kind, name, value, bound)
    if kind == "min":
        ok = value >= bound
        relation = "meets minimum" if ok else "below minimum"
    else:
        ok = value <= bound
        relation = "within maximum" if ok else "above maximum"
    return GateCheck(
        name=name,
        metric=spec.metric,
        kind=kind,
        value=value,
        threshold=bound,
        passed=ok,
        message=f"{spec.metric} = {fmt(value)} {relation} {fmt(bound)}",
        higher_is_better=spec.higher_is_better,
    )


def _regression_check(
    spec: GateSpec, tolerance: float, value: float | None, champion: Mapping[str, float] | None
) -> GateCheck:
    name = f"{spec.metric}.no_regression"
    reference = _as_float(champion.get(spec.metric)) if champion is not None else None
    if reference is None or not math.isfinite(reference):
        why = (
            "no champion to compare with"
            if champion is None
            else f"champion has no usable {spec.metric}"
        )
        shown = None if value is None else value
        return GateCheck(
            name=name,
            metric=spec.metric,
            kind="regression",
            value=shown,
            threshold=None,
            passed=True,
            message=f"{spec.metric} regression check skipped: {why}",
            higher_is_better=spec.higher_is_better,
            reference=reference,
            skipped=True,
        )
    limit = reference - tolerance if spec.higher_is_better else reference + tolerance
    if value is None:
        return _unusable(spec, "regression", name, None, limit)
    if not math.isfinite(value):
        return _unusable(spec, "regression", name, value, limit)
    # Positive ``worsening`` means the candidate is worse than the champion.
    worsening = reference - value if spec.higher_is_better else value - reference
    ok = worsening <= tolerance + EPSILON
    if worsening > EPSILON:
        what = f"regressed by {fmt(worsening)}"
    elif worsening < -EPSILON:
        what = f"improved by {fmt(-worsening)}"
    else:
        what = "unchanged"
    return GateCheck(
        name=name,
        metric=spec.metric,
        kind="regression",
        value=value,
        threshold=limit,
        passed=ok,
        message=(f"{spec.metric} {what} vs champion {fmt(reference)} (tolerance {fmt(tolerance)})"),
        higher_is_better=spec.higher_is_better,
        reference=reference,
    )


def evaluate_gates(
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    gates: Sequence[GateSpec],
) -> GateResult:
    """Check ``candidate`` against every gate; ``champion`` is ``None`` before the first promotion.

    A metric missing from the candidate fails each of its checks. A regression check is
    skipped (recorded as passed, ``skipped=True``) when there is no champion or the champion
    lacks that metric.
    """
    checks: list[GateCheck] = []
    for spec in gates:
        value = _as_float(candidate.get(spec.metric))
        if spec.min is not None:
            checks.append(_bound_check(spec, "min", spec.min, value))
        if spec.max is not None:
            checks.append(_bound_check(spec, "max", spec.max, value))
        if spec.max_regression is not None:
            checks.append(_regression_check(spec, spec.max_regression, value, champion))
    return GateResult(passed=all(c.passed for c in checks), checks=tuple(checks))
