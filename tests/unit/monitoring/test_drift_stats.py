"""Unit tests of the drift statistics: kinds, errors, edge cases, and the statistics themselves
against independent scipy computations (Evidently itself: test_evidently_equivalence.py)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from loopline.monitoring.stats import (
    DEFAULT_THRESHOLDS,
    FEW_VALUES_MAX,
    INTEGER_CARDINALITY_LIMIT,
    MONTE_CARLO_DRAWS,
    SMALL_REFERENCE_MAX_ROWS,
    WASSERSTEIN_MIN_STD,
    ColumnDrift,
    column_drift,
    drift_table,
    drifted_share,
    infer_kind,
    is_drifted,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


# --- kinds ----------------------------------------------------------------------------------


def test_infer_kind_follows_evidentlys_rule() -> None:
    few = np.arange(INTEGER_CARDINALITY_LIMIT).repeat(3)
    many = np.arange(INTEGER_CARDINALITY_LIMIT + 1).repeat(3)
    assert infer_kind(np.array([0.5, 1.0, 1.0])) == "numeric"  # floats, even few-valued
    assert infer_kind(few) == "categorical"
    assert infer_kind(many) == "numeric"
    assert infer_kind(many.astype(np.uint16)) == "numeric"
    assert infer_kind(pd.Series(few, dtype="Int64")) == "categorical"
    assert infer_kind(np.array([True, False])) == "categorical"
    assert infer_kind(pd.Series(["a", "b"], dtype="category")) == "categorical"
    assert infer_kind(pd.Series(["a", "b", None, "a"])) == "categorical"
    # Evidently would call an all-distinct string column "text"; a window of intents is not
    assert infer_kind(pd.Series([f"intent{i}" for i in range(20)])) == "categorical"


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        (pd.Series(pd.date_range("2024-01-01", periods=3)), "dtype datetime64"),
        (pd.Series([{"a": 1}, {"b": 2}]), "neither numbers nor strings"),
        (pd.Series([None, None], dtype=object), "all values are missing"),
    ],
)
def test_infer_kind_rejects_what_it_cannot_compare(values: pd.Series, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as info:
        infer_kind(values, column="when")
    assert "'when'" in str(info.value)


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["numeric", "categorical"])
def test_empty_and_all_missing_sides_are_named(kind: str) -> None:
    good = np.array([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"'latency'.*reference data is empty"):
        column_drift(np.array([]), good, column="latency", kind=kind)
    with pytest.raises(ValueError, match=r"'latency'.*current data is empty"):
        column_drift(good, np.array([np.nan, np.inf, -np.inf]), column="latency", kind=kind)


def test_unknown_kind_mode_and_bad_thresholds_are_rejected() -> None:
    a, b = np.arange(30.0), np.arange(30.0) + 1
    with pytest.raises(ValueError, match=r"'x'.*unknown kind 'ordinal'"):
        column_drift(a, b, column="x", kind="ordinal")
    with pytest.raises(ValueError, match="unknown categorical method 'fisher'"):
        column_drift(a, b, categorical="fisher")
    with pytest.raises(ValueError, match="unknown categorical method"):
        drift_table(pd.DataFrame({"x": a}), pd.DataFrame({"x": b}), categorical="gof")
    for bad in (0.0, -0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match=r"'x'.*threshold"):
            column_drift(a, b, column="x", threshold=bad)
    with pytest.raises(ValueError, match=r"'x'.*needs numbers.*object"):
        column_drift(a, np.array(["a", "b"], dtype=object), column="x", kind="numeric")
    with pytest.raises(ValueError, match="unknown drift method"):
        is_drifted("psi", 0.3, 0.2)


def test_drift_table_names_mismatched_and_unknown_columns() -> None:
    ref = pd.DataFrame({"a": [1.0, 2.0], "b": [1.0, 2.0]})
    cur = pd.DataFrame({"a": [1.0, 2.0], "c": [1.0, 2.0]})
    with pytest.raises(ValueError, match=r"only in reference \['b'\], only in current \['c'\]"):
        drift_table(ref, cur)
    with pytest.raises(ValueError, match="'b' is missing from the current data"):
        drift_table(ref, cur, columns=["b"])
    with pytest.raises(ValueError, match=r"kinds given for columns that are not compared: \['z'\]"):
        drift_table(ref, cur, columns=["a"], kinds={"z": "numeric"})
    with pytest.raises(ValueError, match="thresholds given"):
        drift_table(ref, cur, columns=["a"], thresholds={"b": 0.1})
    with pytest.raises(ValueError, match="no columns"):
        drift_table(ref, cur, columns=[])


# --- the numeric statistics (Evidently's rules) ------------------------------------------------


def test_small_reference_uses_the_ks_p_value(rng: np.random.Generator) -> None:
    ref = rng.normal(0, 1, SMALL_REFERENCE_MAX_ROWS)
    cur = rng.normal(0.3, 1, 400)
    result = column_drift(ref, cur, column="latency")
    assert (result.kind, result.method) == ("numeric", "ks")
    assert result.statistic == stats.ks_2samp(ref, cur).pvalue
    assert result.drifted == (result.statistic <= DEFAULT_THRESHOLDS["ks"])
    assert (result.n_reference, result.n_current) == (ref.size, cur.size)


def test_large_reference_uses_normed_wasserstein_equal_to_scipy(rng: np.random.Generator) -> None:
    for n_ref, n_cur in ((SMALL_REFERENCE_MAX_ROWS + 1, 1), (1500, 1501), (4000, 300)):
        ref = np.round(rng.lognormal(0, 1, n_ref), 2)  # rounded: many ties
        cur = np.round(rng.lognormal(0.1, 1, n_cur), 2)
        result = column_drift(ref, cur)
        expected = stats.wasserstein_distance(ref, cur) / np.std(ref)
        assert result.method == "wasserstein"
        assert math.isclose(result.statistic, expected, rel_tol=1e-12)
        assert result.drifted == (result.statistic >= DEFAULT_THRESHOLDS["wasserstein"])


def test_nan_and_inf_are_dropped_before_the_size_rule(rng: np.random.Generator) -> None:
    ref = np.r_[rng.normal(0, 1, SMALL_REFERENCE_MAX_ROWS), [np.nan, np.inf, -np.inf]]
    cur = np.r_[rng.normal(0, 1, 50), [np.nan]]
    result = column_drift(pd.Series(ref), pd.Series(cur))
    assert result.method == "ks"
    assert (result.n_reference, result.n_current) == (SMALL_REFERENCE_MAX_ROWS, 50)


def test_zero_std_reference_is_normed_by_the_floor(rng: np.random.Generator) -> None:
    ref = np.full(2000, 4.0)
    cur = 4.0 + rng.normal(0, 0.01, 500)
    result = column_drift(ref, cur)
    assert result.method == "wasserstein"
    assert math.isclose(
        result.statistic, stats.wasserstein_distance(ref, cur) / WASSERSTEIN_MIN_STD, rel_tol=1e-12
    )
    assert result.drifted


@pytest.mark.parametrize("n", [50, 3000])
def test_constant_column_equal_on_both_sides_never_drifts(n: int) -> None:
    ref, cur = np.full(n, 2.5), np.full(n // 2, 2.5)
    ours = column_drift(ref, cur)
    evidently = column_drift(ref, cur, categorical="evidently")
    assert (ours.method, ours.statistic, ours.drifted) == ("chisquare_homogeneity", 1.0, False)
    expected = ("z", 1.0) if n <= SMALL_REFERENCE_MAX_ROWS else ("jensenshannon", 0.0)
    assert (evidently.method, evidently.statistic) == expected
    assert not evidently.drifted


def test_few_valued_numeric_columns_are_compared_as_categories(rng: np.random.Generator) -> None:
    values = np.arange(FEW_VALUES_MAX, dtype=float)
    ref, cur = rng.choice(values, 300), rng.choice(values, 300)
    assert column_drift(ref, cur, categorical="evidently").method == "evidently_chisquare"
    assert column_drift(ref[ref < 2], cur[cur < 2], categorical="evidently").method == "z"
    assert column_drift(ref, cur).method == "chisquare_homogeneity"
    more = np.r_[ref, [FEW_VALUES_MAX + 0.5]]  # one more distinct value: a numeric test
    assert column_drift(more, cur).method == "ks"


def test_threshold_comparisons_follow_evidently(rng: np.random.Generator) -> None:
    ref, cur = rng.normal(0, 1, 200), rng.normal(0.2, 1, 200)
    p = column_drift(ref, cur).statistic
    assert column_drift(ref, cur, threshold=p).drifted  # KS: p <= threshold
    cats = np.array(list("abc"), dtype=object)
    cref, ccur = cats[rng.integers(0, 3, 200)], cats[rng.integers(0, 3, 150)]
    for mode in ("evidently", "two_sample"):
        q = column_drift(cref, ccur, categorical=mode).statistic
        assert not column_drift(cref, ccur, categorical=mode, threshold=q).drifted  # p < threshold
    big_ref, big_cur = rng.normal(0, 1, 3000), rng.normal(0.2, 1, 3000)
    d = column_drift(big_ref, big_cur).statistic
    assert column_drift(big_ref, big_cur, threshold=d).drifted  # distance >= threshold


# --- the two-sample categorical test --------------------------------------------------------------


def test_two_sample_test_equals_the_contingency_chi_square_with_large_counts(
    rng: np.random.Generator,
) -> None:
    cats = np.array(["a", "b", "c", "d"], dtype=object)
    ref = cats[rng.choice(4, 800, p=[0.4, 0.3, 0.2, 0.1])]
    cur = cats[rng.choice(4, 600, p=[0.35, 0.3, 0.2, 0.15])]
    table = np.array([[np.sum(ref == c) for c in cats], [np.sum(cur == c) for c in cats]])
    expected = stats.chi2_contingency(table, correction=False).pvalue
    result = column_drift(ref, cur, kind="categorical")
    assert result.method == "chisquare_homogeneity"
    assert math.isclose(result.statistic, expected, rel_tol=1e-9)


def test_monte_carlo_p_value_matches_the_exact_permutation_distribution() -> None:
    # 2 x 2 with small expected counts: enumerate the hypergeometric null exactly
    ref = np.array(["yes"] * 2 + ["no"] * 10, dtype=object)
    cur = np.array(["yes"] * 6 + ["no"] * 6, dtype=object)
    result = column_drift(ref, cur, kind="categorical")
    total_yes, n_ref, n_cur = 8, 12, 12
    n = n_ref + n_cur

    def pearson(yes_cur: int) -> float:
        observed = np.array(
            [[total_yes - yes_cur, n_ref - total_yes + yes_cur], [yes_cur, n_cur - yes_cur]],
            dtype=float,
        )
        expected = np.outer(observed.sum(1), observed.sum(0)) / n
        return float(((observed - expected) ** 2 / expected).sum())

    x_obs = pearson(6)
    null = stats.hypergeom(n, total_yes, n_cur)
    support = range(max(0, total_yes - n_ref), min(total_yes, n_cur) + 1)
    exact = sum(null.pmf(k) for k in support if pearson(k) >= x_obs - 1e-9)
    standard_error = math.sqrt(exact * (1 - exact) / MONTE_CARLO_DRAWS)
    assert abs(result.statistic - exact) < 4 * standard_error + 1 / (MONTE_CARLO_DRAWS + 1)
    assert result.statistic >= 1 / (MONTE_CARLO_DRAWS + 1)
    # deterministic: the same data gives the same p-value
    assert column_drift(ref, cur, kind="categorical") == result


def test_a_new_category_is_not_an_automatic_alarm_for_the_two_sample_test() -> None:
    ref = np.array(["a"] * 30 + ["b"] * 20, dtype=object)
    cur = np.array(["a"] * 29 + ["b"] * 20 + ["c"], dtype=object)
    evidently = column_drift(ref, cur, categorical="evidently")
    assert (evidently.method, evidently.statistic, evidently.drifted) == (
        "evidently_chisquare",
        0.0,
        True,
    )
    ours = column_drift(ref, cur)
    assert ours.statistic > 0.5 and not ours.drifted


def test_single_category_and_disjoint_categories() -> None:
    same = column_drift(np.array(["x"] * 40), np.array(["x"] * 10))
    assert (same.statistic, same.drifted) == (1.0, False)
    disjoint = column_drift(np.array(["x"] * 40), np.array(["y"] * 40))
    assert disjoint.statistic < 1e-15 and disjoint.drifted
    # three rows a side: only 2 of the C(6, 3) = 20 equally likely splits are this extreme
    tiny = column_drift(np.array(["x"] * 3), np.array(["y"] * 3))
    assert abs(tiny.statistic - 0.1) < 4 * math.sqrt(0.1 * 0.9 / MONTE_CARLO_DRAWS)
    assert not tiny.drifted


def test_missing_categories_are_dropped() -> None:
    ref = pd.Series(["a", None, "b", np.nan, "a"] * 10, dtype=object)
    cur = pd.Series(["a", "b", pd.NA] * 10, dtype=object)
    result = column_drift(ref, cur)
    assert (result.kind, result.n_reference, result.n_current) == ("categorical", 30, 20)


# --- inputs, results and tables -------------------------------------------------------------------


def test_series_arrays_and_lists_give_the_same_result(rng: np.random.Generator) -> None:
    ref, cur = rng.normal(0, 1, 1200), rng.normal(0, 1, 900)
    a = column_drift(ref, cur)
    assert column_drift(pd.Series(ref), pd.Series(cur)) == a
    assert column_drift(list(ref), list(cur)) == a


def test_result_is_frozen_and_serialisable(rng: np.random.Generator) -> None:
    result = column_drift(rng.normal(0, 1, 100), rng.normal(0, 1, 100), column="ood")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.drifted = True  # type: ignore[misc]
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["column"] == "ood" and payload["method"] == "ks"
    assert ColumnDrift(**payload) == result


def test_drift_table_infers_kinds_and_applies_overrides(rng: np.random.Generator) -> None:
    n = 500
    ref = pd.DataFrame(
        {
            "latency": rng.gamma(3, 40, n),
            "retries": rng.integers(0, 3, n),
            "intent": rng.choice(["a", "b", "c"], n),
        }
    )
    cur = ref.sample(frac=1.0, random_state=1).reset_index(drop=True)
    table = drift_table(ref, cur, kinds={"retries": "numeric"}, thresholds={"latency": 0.01})
    assert [(c.column, c.kind) for c in table] == [
        ("latency", "numeric"),
        ("retries", "numeric"),
        ("intent", "categorical"),
    ]
    assert table[0].threshold == 0.01
    # the same rows shuffled: nothing drifts
    assert drifted_share(table) == 0.0
    with pytest.raises(ValueError, match="empty table"):
        drifted_share([])
