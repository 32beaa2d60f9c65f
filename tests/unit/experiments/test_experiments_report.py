"""The experiment report: sequential timelines and the self-contained HTML document."""

from __future__ import annotations

import html
import itertools
import math
from dataclasses import dataclass
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from loopline.experiments.analysis import ExperimentResult, analyze_experiment
from loopline.experiments.decision import Decision, decide_experiment
from loopline.experiments.metrics import ArmStats
from loopline.experiments.policy import (
    AnalysisConfig,
    DecisionPolicy,
    GuardrailSpec,
    MetricSpec,
    SequentialConfig,
)
from loopline.experiments.report import Timeline, render_report, sequential_timeline
from loopline.experiments.sequential import sequential_look

ARMS = ("control", "B", "C")
RESOLVED = MetricSpec(name="resolved", kind="binary", column="resolved")
LATENCY = MetricSpec(
    name="latency",
    kind="continuous",
    column="latency",
    covariate="pre_latency",
    higher_is_better=False,
)
ERRORS = MetricSpec(
    name="error_rate",
    kind="ratio",
    numerator="errors",
    denominator="requests",
    higher_is_better=False,
)
METRICS = (RESOLVED, LATENCY, ERRORS)
CONFIG = AnalysisConfig(sequential=SequentialConfig(planned_units_per_variant=3000))
POLICY = DecisionPolicy(
    primary_metric="resolved",
    guardrails=(GuardrailSpec(metric="latency", max_relative_degradation=0.05),),
    cost_metric=None,
)
LOOKS = 25


def make_units(
    n_per_arm: int = 3000, *, seed: int = 7, arms: tuple[str, ...] = ARMS
) -> pd.DataFrame:
    """A per-unit table: B resolves more, the last arm errs more; exposure times ascend."""
    rng = np.random.default_rng(seed)
    variant = rng.permutation(np.repeat(np.array(arms, dtype=object), n_per_arm))
    n = variant.size
    is_b = variant == arms[1]
    is_last = variant == arms[-1]
    pre = rng.gamma(4.0, 200.0, n)
    return pd.DataFrame(
        {
            "variant": variant,
            "resolved": (rng.random(n) < np.where(is_b, 0.36, 0.30)).astype(np.int64),
            "latency": 0.8 * pre + rng.normal(200.0, 100.0, n) - 30.0 * is_last,
            "pre_latency": pre,
            "errors": rng.poisson(np.where(is_last, 0.26, 0.2), n),
            "requests": rng.poisson(5.0, n) + 1,
            "exposed_at": 1.7e9 + rng.uniform(0.0, 7 * 86_400.0, n),
        }
    )


def analyse(units: pd.DataFrame, arms: tuple[str, ...] = ARMS) -> ExperimentResult:
    return analyze_experiment(
        units,
        METRICS,
        experiment="exp-report",
        control=arms[0],
        expected_weights=dict.fromkeys(arms, 1.0),
        config=CONFIG,
    )


class TagChecker(HTMLParser):
    """Checks that every element is closed in order and counts the SVG figures."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link", "col", "wbr", "source"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.svgs = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.svgs += tag == "svg"
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
        else:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")


def check_html(doc: str) -> TagChecker:
    assert doc.startswith("<!doctype html>")
    checker = TagChecker()
    checker.feed(doc)
    checker.close()
    assert checker.errors == []
    assert checker.stack == []
    return checker


@dataclass(frozen=True)
class Rendered:
    units: pd.DataFrame
    result: ExperimentResult
    decision: Decision
    timelines: tuple[Timeline, ...]
    doc: str


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    units = make_units()
    result = analyse(units)
    decision = decide_experiment(result, POLICY)
    timelines = (
        sequential_timeline(
            units, RESOLVED, control="control", variant="B", config=CONFIG,
            order="exposed_at", looks=LOOKS,
        ),
        sequential_timeline(units, ERRORS, control="control", variant="C", config=CONFIG),
    )  # fmt: skip
    context = {"created": "2026-01-02T03:04:05Z", "mlflow run": "abc123"}
    doc = render_report(result, decision=decision, timelines=timelines, context=context)
    return Rendered(units, result, decision, timelines, doc)


# --------------------------------------------------------------------------- timelines


@pytest.mark.parametrize("spec", [RESOLVED, ERRORS], ids=lambda s: s.name)
@pytest.mark.parametrize("variant", ["B", "C"])
def test_last_look_is_the_analysed_sequential_interval(
    rendered: Rendered, spec: MetricSpec, variant: str
) -> None:
    timeline = sequential_timeline(
        rendered.units, spec, control="control", variant=variant, config=CONFIG,
        order="exposed_at",
    )  # fmt: skip
    m = rendered.result.metric(spec.name, variant)
    assert m is not None and m.interval == "sequential"
    last = timeline.points[-1]
    assert last.units == len(rendered.units)
    assert timeline.alpha == pytest.approx(CONFIG.alpha / 2)  # split across two treatments
    assert last.difference == pytest.approx(m.difference, abs=1e-12)
    assert abs(last.lower - m.ci_low) < 1e-9
    assert abs(last.upper - m.ci_high) < 1e-9


def test_timeline_looks_agree_with_a_direct_look_at_each_prefix(rendered: Rendered) -> None:
    timeline = rendered.timelines[0]
    assert len(timeline.points) == LOOKS
    units = [p.units for p in timeline.points]
    assert units == sorted(units) and units[-1] == len(rendered.units)
    assert np.all(np.diff(units) >= len(rendered.units) // LOOKS)  # evenly spaced
    times = [p.time for p in timeline.points if p.time is not None]
    assert len(times) == LOOKS and times == sorted(times)
    p_values = [p.p_value for p in timeline.points]
    assert all(b <= a for a, b in itertools.pairwise(p_values))  # running minimum
    ordered = rendered.units.sort_values("exposed_at", kind="stable")
    sequential = CONFIG.sequential
    assert sequential is not None
    for k in (3, 12, LOOKS - 1):
        point = timeline.points[k]
        prefix = ordered.iloc[: point.units]
        arms = [
            ArmStats.from_values(prefix.loc[prefix["variant"] == v, "resolved"])
            for v in ("control", "B")
        ]
        look = sequential_look(arms[0], arms[1], sequential, timeline.alpha)
        assert point.difference == pytest.approx(look.difference, abs=1e-12)
        assert point.lower == pytest.approx(look.ci_low, abs=1e-9)
        assert point.upper == pytest.approx(look.ci_high, abs=1e-9)
        assert point.time == prefix["exposed_at"].max()


def test_timeline_is_on_raw_values_without_cuped(rendered: Rendered) -> None:
    units = rendered.units
    timeline = sequential_timeline(units, LATENCY, control="control", variant="C", config=CONFIG)
    raw = units.groupby("variant")["latency"].mean()
    assert timeline.points[-1].difference == pytest.approx(raw["C"] - raw["control"], rel=1e-9)
    assert all(p.time is None for p in timeline.points)  # no order column


def test_timeline_rejects_bad_input(rendered: Rendered) -> None:
    units = rendered.units
    fixed = AnalysisConfig(sequential=None)
    with pytest.raises(ValueError, match="sequential"):
        sequential_timeline(units, RESOLVED, control="control", variant="B", config=fixed)
    with pytest.raises(ValueError, match="no rows"):
        sequential_timeline(units, RESOLVED, control="control", variant="Z", config=CONFIG)
    with pytest.raises(ValueError, match="looks"):
        sequential_timeline(units, RESOLVED, control="control", variant="B", config=CONFIG, looks=0)
    with pytest.raises(ValueError, match="order column"):
        sequential_timeline(
            units, RESOLVED, control="control", variant="B", config=CONFIG, order="missing"
        )


# --------------------------------------------------------------------------- report


def test_report_is_well_formed_and_complete(rendered: Rendered) -> None:
    doc = rendered.doc
    checker = check_html(doc)
    assert checker.svgs == 1 + len(rendered.timelines)  # forest plot + one per timeline
    assert "<title>Experiment exp-report</title>" in doc
    for name in (*ARMS, *(m.name for m in METRICS), "2026-01-02T03:04:05Z", "abc123"):
        assert name in doc
    decision = rendered.decision
    assert decision.action == "ship" and decision.variant == "B"
    assert f'<span class="badge ok">{decision.action}</span> <b>B</b>' in doc
    assert "SRM OK" in doc and "SRM MISMATCH" not in doc
    assert "(sequential)" in doc  # interval kind in the forest plot labels
    for external in ("<script", "<link", "src=", 'href="http', "url(http"):
        assert external not in doc  # self-contained
    first = rendered.timelines[0].first_rejection
    assert first is not None
    assert f"first reached α = 0.025 at look {first + 1} of {LOOKS}" in doc
    adjusted = rendered.result.metric("resolved", "B")
    assert adjusted is not None and adjusted.cuped_variance_reduction is None
    cuped = rendered.result.metric("latency", "B")
    assert cuped is not None and cuped.cuped_variance_reduction is not None
    assert f"{100 * cuped.cuped_variance_reduction:.2f} %" in doc


def test_report_is_byte_identical_for_the_same_input(rendered: Rendered) -> None:
    again = render_report(
        rendered.result,
        decision=rendered.decision,
        timelines=rendered.timelines,
        context={"created": "2026-01-02T03:04:05Z", "mlflow run": "abc123"},
    )
    assert again == rendered.doc


def test_srm_badge_follows_the_split(rendered: Rendered) -> None:
    units = rendered.units
    drop = units.index[units["variant"] == "C"][:600]
    result = analyse(units.drop(index=drop))
    assert result.srm.mismatch and not rendered.result.srm.mismatch
    doc = render_report(result, decision=decide_experiment(result, POLICY))
    assert check_html(doc).svgs == 1
    assert "SRM MISMATCH" in doc and "SRM OK" not in doc
    assert "sample-ratio mismatch" in doc  # the decision's alert


def test_user_text_is_escaped() -> None:
    evil = "<script>alert('$x$ & \"y\"')</script>"
    arms = ("control", evil)
    units = make_units(300, seed=3, arms=arms)
    result = analyse(units, arms)
    timeline = sequential_timeline(
        units, RESOLVED, control="control", variant=evil, config=CONFIG, looks=5
    )
    doc = render_report(
        result,
        decision=decide_experiment(result, POLICY),
        timelines=[timeline],
        title="<i>title</i>",
        context={"<k>": "<b>bold</b>"},
    )
    assert check_html(doc).svgs == 2
    assert "<script" not in doc.lower() and "<i>" not in doc and "<b>bold" not in doc
    assert html.escape(evil) in doc  # tables, headings and reasons
    assert "&lt;i&gt;title&lt;/i&gt;" in doc and "&lt;b&gt;bold&lt;/b&gt;" in doc
    assert "&lt;script&gt;alert('$x$ &amp; \"y\"')" in doc  # SVG text, no mathtext


def test_unbounded_and_undefined_intervals_render() -> None:
    units = make_units(30, seed=5)  # fewer than min_units_per_variant: no sequential bound
    units["never"] = 0  # a zero control mean: the relative difference is undefined
    metrics = (*METRICS, MetricSpec(name="never", kind="binary", column="never"))
    result = analyze_experiment(
        units,
        metrics,
        experiment="tiny",
        control="control",
        expected_weights=dict.fromkeys(ARMS, 1.0),
        config=CONFIG,
    )
    m = result.metric("resolved", "B")
    assert m is not None and math.isinf(m.relative_ci_low) and math.isinf(m.ci_high)
    never = result.metric("never", "B")
    assert never is not None and math.isnan(never.relative_difference)
    timeline = sequential_timeline(
        units, RESOLVED, control="control", variant="B", config=CONFIG, order="exposed_at"
    )
    assert all(p.lower == -math.inf and p.upper == math.inf for p in timeline.points)
    assert all(p.p_value == 1.0 for p in timeline.points) and timeline.first_rejection is None
    assert timeline.points[-1].lower == m.ci_low
    doc = render_report(result, timelines=[timeline, Timeline("x", "B", "control", 0.05, ())])
    assert check_html(doc).svgs == 2  # the timeline without looks has no figure
    assert "unbounded" in doc and "undefined" in doc and "no looks" in doc
