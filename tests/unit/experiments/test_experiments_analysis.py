"""Per-unit aggregation and the end-to-end analysis: assignment → event log → unit table →
analyze_experiment → decide_experiment."""

from __future__ import annotations

import math
from dataclasses import fields

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from loopline.experiments import metrics
from loopline.experiments.analysis import analyze_experiment
from loopline.experiments.assignment import assign_many
from loopline.experiments.decision import decide_experiment
from loopline.experiments.metrics import ArmStats, RatioArmStats, aggregate_units
from loopline.experiments.policy import (
    AnalysisConfig,
    DecisionPolicy,
    ExperimentSpec,
    GuardrailSpec,
    MetricSpec,
    SequentialConfig,
    VariantSpec,
)
from loopline.experiments.stats import (
    Comparison,
    cuped,
    holm_adjust,
    mann_whitney,
    ratio_test,
    srm_check,
    two_proportion_ztest,
    welch_ttest,
)


def same(a: Comparison, b: Comparison, rel: float = 1e-9) -> bool:
    """Two comparisons agree field by field (bincount and numpy sums round differently)."""
    for f in fields(Comparison):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, str):
            if x != y:
                return False
        elif not math.isclose(x, y, rel_tol=rel, abs_tol=1e-12):
            return False
    return True


def test_aggregate_units_reduces_events_and_drops_contaminated_units() -> None:
    events = pd.DataFrame(
        {
            "unit": ["u1", "u1", "u2", "u3", "u3", "u4", "u4"],
            "variant": ["A", "A", "B", "B", "B", "A", "B"],
            "tokens": [10, 20, 5, 7, 8, 1, 1],
            "resolved": [0, 1, 0, 0, 0, 1, 1],
            "latency": [100.0, 300.0, 50.0, 70.0, 90.0, 1.0, 1.0],
            "pre_tokens": [40, 40, 9, 3, 3, 0, 0],
        }
    )
    table = aggregate_units(
        events,
        {"tokens": "sum", "resolved": "any", "latency": "mean", "pre_tokens": "first"},
    )
    assert table.n_conflicting_units == 1  # u4 was seen in A and in B
    frame = table.frame.set_index("unit")
    assert list(frame.index) == ["u1", "u2", "u3"]
    assert frame.loc["u1"].to_dict() == {
        "variant": "A", "tokens": 30, "resolved": 1, "latency": 200.0, "pre_tokens": 40
    }  # fmt: skip
    assert frame.loc["u3", "resolved"] == 0 and frame.loc["u3", "tokens"] == 15
    with pytest.raises(KeyError):
        aggregate_units(events, {"missing": "sum"})


AGGREGATIONS = ("sum", "mean", "max", "min", "count", "any", "first")


def reference_aggregate_units(
    events: pd.DataFrame, aggregations: dict[str, str], unit: str = "unit", variant: str = "variant"
) -> tuple[pd.DataFrame, int]:
    """The straightforward pandas version of ``aggregate_units``."""
    variants_per_unit = events.groupby(unit, sort=False, observed=True)[variant].nunique()
    conflicting = variants_per_unit.index[variants_per_unit > 1]
    clean = events[~events[unit].isin(conflicting)]
    grouped = clean.groupby(unit, sort=True, observed=True)
    columns = {variant: grouped[variant].first()}
    for column, how in aggregations.items():
        if how == "any":
            columns[column] = grouped[column].max().gt(0).astype(np.int64)
        else:
            columns[column] = grouped[column].agg(how)
    return pd.DataFrame(columns).reset_index(), len(conflicting)


def random_event_log(ids: str, variants: str, seed: int) -> tuple[pd.DataFrame, dict[str, str]]:
    """Events of 300 units (40 with a single row, every 7th without any value in the columns
    with missing values, ~1 % of rows logged under another arm) with one column per column
    kind and aggregation (``"x:sum"``...)."""
    rng = np.random.default_rng(seed)
    n_units = 256 if ids == "int8" else 300
    n_rows = 2000
    unit_index = np.concatenate(
        [rng.integers(0, n_units - 40, n_rows - 40), np.arange(n_units - 40, n_units)]
    )
    rng.shuffle(unit_index)
    arm = rng.integers(0, 3, n_units)[unit_index]
    arm = np.where(rng.random(n_rows) < 0.01, (arm + 1) % 3, arm)
    unit_ids: object
    if ids == "int_dense":  # a lookup table instead of hashing
        unit_ids = (1_000 + rng.permutation(n_units))[unit_index]
    elif ids == "int8":  # the whole int8 range, (x - lo) wraps around
        unit_ids = rng.permutation(np.arange(-128, 128, dtype=np.int8))[unit_index]
    elif ids == "uint64":  # dense ids above 2**63
        unit_ids = (np.uint64(2**64 - 1) - rng.permutation(n_units).astype(np.uint64))[unit_index]
    elif ids == "int_sparse":  # hashed by pd.factorize
        unit_ids = (rng.choice(2 * 10**12, n_units, replace=False) - 10**12)[unit_index]
    else:  # strings, some rows without a unit id
        names = np.array([f"user-{i}" for i in rng.permutation(n_units)], dtype=object)[unit_index]
        names[rng.random(n_rows) < 0.01] = None
        unit_ids = names
    arms = np.array(["control", "b", "c"], dtype=object)[arm]
    if variants == "missing":  # rows without a variant: ignored by the conflict check
        arms[rng.random(n_rows) < 0.05] = None
    variant: object = pd.Categorical(arms) if variants == "categorical" else arms

    empty_units = (unit_index % 7 == 0)[:, None]
    nan = (rng.random(n_rows) < 0.2) | empty_units[:, 0]
    x = np.where(nan, np.nan, rng.normal(0.0, 50.0, n_rows).round(2))
    ts = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**6, n_rows), unit="s")
    base: dict[str, tuple[object, tuple[str, ...]]] = {
        "x": (x, AGGREGATIONS),  # NaN in some rows, all NaN in some units
        "f32": (x.astype(np.float32), AGGREGATIONS),
        "i64": (rng.integers(-50, 1000, n_rows), AGGREGATIONS),
        "huge": (rng.integers(2**50, 2**51, n_rows), AGGREGATIONS),  # sums beyond 2**53
        "small8": (rng.integers(0, 2, n_rows).astype(np.int8), AGGREGATIONS),  # sums fit int8
        "big8": (rng.integers(0, 120, n_rows).astype(np.int8), AGGREGATIONS),  # some do not
        "u8": (rng.integers(0, 250, n_rows).astype(np.uint8), AGGREGATIONS),
        "flag": (rng.random(n_rows) < 0.3, AGGREGATIONS),
        "text": (np.where(nan, None, x.astype(str)), ("count", "first")),
        "ts": (pd.Series(ts).where(~nan), ("max", "min", "count", "first")),
        "nullable": (pd.array(np.where(nan, None, x), dtype="Float64"), AGGREGATIONS[:5]),
    }
    frame = pd.DataFrame({"unit": unit_ids, "variant": variant})
    aggregations: dict[str, str] = {}
    for name, (values, hows) in base.items():
        for how in hows:
            frame[f"{name}:{how}"] = np.asarray(values) if name != "nullable" else values
            aggregations[f"{name}:{how}"] = how
    return frame, aggregations


def assert_same_unit_table(
    events: pd.DataFrame, aggregations: dict[str, str], **names: str
) -> pd.DataFrame:
    table = aggregate_units(events, aggregations, **names)  # type: ignore[arg-type]
    expected, n_conflicting = reference_aggregate_units(events, aggregations, **names)
    assert table.n_conflicting_units == n_conflicting
    assert list(table.frame.columns) == list(expected.columns)
    assert isinstance(table.frame.index, pd.RangeIndex)
    for column in expected.columns:
        # Float sums and means are not Kahan-compensated: equal up to rounding; float32 columns
        # are summed in float64 (pandas: float32), a difference under cancellation.
        tol = {"rtol": 1e-5, "atol": 1e-3} if expected[column].dtype == np.float32 else {}
        pd.testing.assert_series_equal(
            table.frame[column], expected[column], check_exact=False, **({"rtol": 1e-12} | tol)
        )
    return table.frame


@pytest.mark.parametrize(
    ("ids", "variants"),
    [
        ("int_dense", "strings"),
        ("int8", "strings"),
        ("uint64", "categorical"),
        ("int_sparse", "missing"),
        ("str", "strings"),
        ("str", "categorical"),
        ("str", "missing"),
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_aggregate_units_matches_pandas_groupby(
    ids: str, variants: str, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    events, aggregations = random_event_log(ids, variants, seed)
    frame = assert_same_unit_table(events, aggregations)
    assert frame["unit"].is_monotonic_increasing and frame["unit"].is_unique
    assert 0 < len(frame) < events["unit"].nunique()  # conflicting units were dropped
    # The log's own edge cases occur: all-NaN units, single-row units, overflowing int8 sums.
    assert frame["x:sum"].eq(0).any() and frame["x:mean"].isna().any()
    assert frame["text:first"].isna().any() and frame["x:count"].eq(0).any()
    assert frame["small8:sum"].dtype == np.int8 and frame["big8:sum"].dtype == np.int64
    # Other column names, a reordered log (``first`` follows the rows) and row passes in
    # many blocks.
    shuffled = events.sample(frac=1.0, random_state=seed).rename(
        columns={"unit": "user", "variant": "arm"}
    )
    monkeypatch.setattr(metrics, "_BLOCK", 97)
    assert_same_unit_table(shuffled, aggregations, unit="user", variant="arm")


def test_aggregate_units_edge_cases() -> None:
    events, aggregations = random_event_log("int_dense", "strings", 0)
    # Empty log: the columns of the unit table, no units, no conflicts.
    empty = aggregate_units(events.iloc[:0], aggregations)  # type: ignore[arg-type]
    assert list(empty.frame.columns) == ["unit", "variant", *aggregations]
    assert len(empty.frame) == 0 and empty.n_conflicting_units == 0
    assert_same_unit_table(events.iloc[:0], aggregations)
    # Every unit conflicting: no units left.
    both = pd.DataFrame({"unit": [1, 1, 2, 2], "variant": ["a", "b", "b", "a"], "x": 1.0})
    table = aggregate_units(both, {"x": "sum"})
    assert table.n_conflicting_units == 2 and table.frame.empty
    assert list(table.frame.columns) == ["unit", "variant", "x"]
    # One row per unit.
    assert_same_unit_table(events.drop_duplicates("unit"), aggregations)
    # A unit whose rows have no variant keeps a missing variant and is not conflicting.
    no_arm = pd.DataFrame({"unit": ["u", "u", "v"], "variant": [None, None, "a"], "x": 1})
    assert_same_unit_table(no_arm, {"x": "sum"})
    # Unit ids of mixed types, one missing: ordered as pandas orders them.
    mixed = pd.DataFrame(
        {
            "unit": pd.Series([2, "a", 1, "a", None, 1.5, "B"], dtype=object),
            "variant": ["x", "x", "y", "x", "x", "y", "y"],
            "x": [1.0, 2, 3, 4, 5, 6, 7],
        }
    )
    assert list(assert_same_unit_table(mixed, {"x": "sum"})["unit"]) == [1, 1.5, 2, "B", "a"]
    with pytest.raises(ValueError, match="unit column"):
        aggregate_units(events, {"unit": "count"})


def test_arm_statistics() -> None:
    arm = ArmStats.from_counts(30, 100)
    assert arm.var == pytest.approx(np.var([1] * 30 + [0] * 70, ddof=1))
    ratio = RatioArmStats.from_values([1, 2, 3, 4], [2, 2, 4, 4])
    assert ratio.ratio == pytest.approx(10 / 12)
    with pytest.raises(ValueError):
        ArmStats.from_values([1.0])
    with pytest.raises(ValueError):
        ArmStats.from_values([1.0, float("nan")])


METRICS = (
    MetricSpec(name="resolved", kind="binary", column="resolved"),
    MetricSpec(
        name="satisfaction", kind="continuous", column="satisfaction", covariate="pre_satisfaction"
    ),
    MetricSpec(
        name="latency", kind="continuous", column="latency", higher_is_better=False, rank_test=True
    ),
    MetricSpec(
        name="errors",
        kind="ratio",
        numerator="errors",
        denominator="requests",
        higher_is_better=False,
    ),
    MetricSpec(name="cost", kind="continuous", column="cost", higher_is_better=False),
)


def simulate_units(n_users: int, seed: int) -> tuple[ExperimentSpec, pd.DataFrame]:
    """Assign users to a 3-arm prompt experiment and simulate their per-unit outcomes:
    B resolves more at a higher cost, C is a cheaper prompt with the same quality."""
    spec = ExperimentSpec(
        name="prompt-v7",
        variants=(
            VariantSpec(name="A", prompt_version="6"),
            VariantSpec(name="B", prompt_version="7"),
            VariantSpec(name="C", prompt_version="7-short"),
        ),
        holdout=0.05,
    )
    ids = np.array([f"user-{i}" for i in range(n_users)])
    batch = assign_many(spec, ids)
    keep = batch.variant_index >= 0
    arm = batch.variant_index[keep]
    rng = np.random.default_rng(seed)
    n = arm.size
    pre = rng.normal(3.5, 1.0, n)
    frame = pd.DataFrame(
        {
            "unit": ids[keep],
            "variant": np.array(spec.variant_names)[arm],
            "resolved": (rng.random(n) < np.array([0.40, 0.46, 0.40])[arm]).astype(int),
            "pre_satisfaction": pre,
            "satisfaction": 0.8 * pre + rng.normal(0.7, 0.6, n) + np.array([0.0, 0.1, 0.0])[arm],
            "latency": rng.lognormal(np.log(800), 0.4, n) * np.array([1.0, 1.01, 0.97])[arm],
            "requests": 1 + rng.poisson(3, n),
        }
    )
    frame["errors"] = rng.binomial(frame["requests"], 0.02)
    frame["cost"] = (
        frame["requests"] * np.array([0.010, 0.011, 0.007])[arm] * rng.uniform(0.9, 1.1, n)
    )
    return spec, frame


def test_analysis_agrees_with_the_individual_tests() -> None:
    spec, frame = simulate_units(30_000, seed=1)
    config = AnalysisConfig(sequential=None, correction="holm", split_alpha_across_variants=True)
    res = analyze_experiment(
        frame, METRICS, experiment=spec.name, control="A",
        expected_weights=spec.expected_weights, config=config,
    )  # fmt: skip
    assert res.treatments == ("B", "C") and res.alpha == 0.025
    counts = frame["variant"].value_counts()
    assert res.units == {v: int(counts[v]) for v in "ABC"}
    assert res.srm == srm_check([counts[v] for v in "ABC"], [1, 1, 1])
    arms = {v: frame[frame["variant"] == v] for v in "ABC"}
    for variant in ("B", "C"):
        t, c = arms[variant], arms["A"]
        binary = res.metric("resolved", variant)
        assert binary is not None and binary.interval == "fixed"
        ref = two_proportion_ztest(c["resolved"].sum(), len(c), t["resolved"].sum(), len(t), 0.025)
        assert same(binary.fixed, ref) and binary.p_value == binary.fixed.p_value
        sat = res.metric("satisfaction", variant)
        ref_cuped = cuped(
            c["satisfaction"],
            c["pre_satisfaction"],
            t["satisfaction"],
            t["pre_satisfaction"],
            0.025,
        )
        assert sat is not None and sat.method == "cuped_welch_t"
        # θ is pooled over all three arms in the analysis, over two in the direct call.
        assert math.isclose(
            sat.fixed.difference, ref_cuped.adjusted.difference, rel_tol=0.05, abs_tol=5e-3
        )
        assert sat.cuped_variance_reduction is not None and sat.cuped_variance_reduction > 0.5
        lat = res.metric("latency", variant)
        assert lat is not None
        assert same(lat.fixed, welch_ttest(c["latency"], t["latency"], 0.025))
        assert lat.rank_p_value == mann_whitney(c["latency"], t["latency"]).p_value
        err = res.metric("errors", variant)
        ref_ratio = ratio_test(
            RatioArmStats.from_values(c["errors"], c["requests"]),
            RatioArmStats.from_values(t["errors"], t["requests"]),
            0.025,
        )
        assert err is not None
        assert math.isclose(err.fixed.statistic, ref_ratio.statistic, rel_tol=1e-9)
        assert math.isclose(err.fixed.p_value, ref_ratio.p_value, rel_tol=1e-9, abs_tol=1e-15)
    raw = np.array([m.p_value for m in res.metrics])
    np.testing.assert_allclose([m.adjusted_p_value for m in res.metrics], holm_adjust(raw))
    bayes = res.bayesian["resolved"]
    assert bayes.model == "beta_binomial" and bayes.variant("B").prob_beat_control > 0.99
    assert res.metric("resolved", "B").prob_beat_control == bayes.variant("B").prob_beat_control  # type: ignore[union-attr]
    assert res.bayesian["latency"].model == "normal"


def test_sequential_intervals_are_wider_and_the_decision_follows_the_economics() -> None:
    spec, frame = simulate_units(30_000, seed=2)
    config = AnalysisConfig(sequential=SequentialConfig(planned_units_per_variant=10_000))
    res = analyze_experiment(
        frame, METRICS, experiment=spec.name, control="A", expected_weights=spec.expected_weights,
        config=config,
    )  # fmt: skip
    for m in res.metrics:
        assert m.interval == "sequential" and m.sequential is not None
        assert m.ci_low <= m.fixed.ci_low and m.ci_high >= m.fixed.ci_high
        assert m.p_value >= m.fixed.p_value
    b = res.metric("resolved", "B")
    assert b is not None and b.significantly_better
    policy = DecisionPolicy(
        primary_metric="resolved",
        guardrails=(
            GuardrailSpec(metric="latency", max_relative_degradation=0.05),
            GuardrailSpec(metric="errors", max_relative_degradation=0.5),
        ),
        cost_metric="cost",
        non_inferiority_margin=0.1,
    )
    # Without a value per unit, the costlier B cannot ship; C is cheaper and non-inferior.
    decision = decide_experiment(res, policy)
    assert (decision.action, decision.variant) == ("ship", "C"), decision.reasons
    # A resolution worth 1.0 makes B's +6 points worth its +0.004 per user: B wins on value.
    valued = decide_experiment(res, policy.model_copy(update={"value_per_unit": 1.0}))
    assert (valued.action, valued.variant) == ("ship", "B"), valued.reasons
    verdict = {v.variant: v for v in valued.verdicts}
    assert verdict["B"].net_value_per_unit > verdict["C"].net_value_per_unit  # type: ignore[operator]


def test_aa_analysis_keeps_running_and_rejects_unknown_variants() -> None:
    rng = np.random.default_rng(3)
    n = 4000
    frame = pd.DataFrame(
        {"variant": rng.choice(["A", "B"], n), "resolved": (rng.random(n) < 0.3).astype(int)}
    )
    metrics = (MetricSpec(name="resolved", kind="binary", column="resolved"),)
    res = analyze_experiment(
        frame, metrics, experiment="aa", control="A", expected_weights={"A": 1, "B": 1}
    )
    decision = decide_experiment(res, DecisionPolicy(primary_metric="resolved", cost_metric=None))
    assert decision.action == "keep_running" and decision.valid
    frame.loc[0, "variant"] = "Z"
    with pytest.raises(ValueError, match="outside the experiment"):
        analyze_experiment(
            frame, metrics, experiment="aa", control="A", expected_weights={"A": 1, "B": 1}
        )
    with pytest.raises(ValueError, match="control"):
        analyze_experiment(
            frame, metrics, experiment="aa", control="Q", expected_weights={"A": 1, "B": 1}
        )


def test_tiny_or_empty_arms_give_undefined_results_not_errors() -> None:
    frame = pd.DataFrame(
        {"variant": ["A"] * 5 + ["B"], "x": [1.0, 2, 3, 4, 5, 6], "ok": [1, 0, 1, 1, 0, 1]}
    )
    metrics = (
        MetricSpec(name="x", kind="continuous", column="x", rank_test=True, bootstrap=True),
        MetricSpec(name="ok", kind="binary", column="ok"),
    )
    weights = {"A": 1, "B": 1, "C": 1}  # C has no units yet
    res = analyze_experiment(frame, metrics, experiment="e", control="A", expected_weights=weights)
    assert res.units == {"A": 5, "B": 1, "C": 0}
    assert res.bayesian == {}
    assert all(math.isnan(m.p_value) or m.p_value <= 1 for m in res.metrics)
    assert math.isnan(res.metric("x", "C").fixed.difference)  # type: ignore[union-attr]
    decision = decide_experiment(res, DecisionPolicy(primary_metric="ok", cost_metric=None))
    assert decision.action == "keep_running" and "0 units" in decision.reasons[0]
    bad = frame.assign(ok=[2, 0, 1, 1, 0, 1])
    with pytest.raises(ValueError, match="other than 0 and 1"):
        analyze_experiment(bad, metrics, experiment="e", control="A", expected_weights=weights)


def test_bootstrap_interval_option() -> None:
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"variant": np.repeat(["A", "B"], 500), "x": rng.lognormal(0, 1, 1000)})
    metrics = (MetricSpec(name="x", kind="continuous", column="x", bootstrap=True),)
    config = AnalysisConfig(sequential=None, bootstrap_resamples=500)
    res = analyze_experiment(
        frame,
        metrics,
        experiment="e",
        control="A",
        expected_weights={"A": 1, "B": 1},
        config=config,
    )
    (m,) = res.metrics
    assert m.interval == "bootstrap" and m.ci_low < m.difference < m.ci_high
    assert (m.ci_low, m.ci_high) != (m.fixed.ci_low, m.fixed.ci_high)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "r", "kind": "ratio", "numerator": "a"},
        {"name": "r", "kind": "ratio", "numerator": "a", "denominator": "b", "covariate": "c"},
        {"name": "b", "kind": "binary"},
        {"name": "b", "kind": "binary", "column": "b", "extra": 1},
    ],
)
def test_invalid_metric_specs(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        MetricSpec(**kwargs)
