"""The fast path computes what Evidently 0.7 computes: real Evidently runs on generated data.

Every column of every dataset is compared: same method, same drift flag, same counts after
the NaN/inf drop, same kind (Evidently's own type inference where no kinds are given) and
values within 1e-9 relative (1e-12 absolute, for distances of nearly equal distributions,
whose last bits depend on the order categories are summed in).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import pytest

from loopline.monitoring.stats import (
    DEFAULT_DRIFT_SHARE,
    ColumnDrift,
    drift_table,
    drifted_share,
    evidently_drift_values,
)

REL = 1e-9
ABS = 1e-12


def _assert_same(
    ours: list[ColumnDrift], theirs: Mapping[str, ColumnDrift], expected_methods: Mapping[str, str]
) -> None:
    assert [c.column for c in ours] == list(theirs)
    for mine in ours:
        ref = theirs[mine.column]
        where = f"column {mine.column!r}"
        assert mine.method == ref.method, where
        assert mine.kind == ref.kind, where
        assert mine.drifted == ref.drifted, where
        assert mine.threshold == ref.threshold, where
        assert (mine.n_reference, mine.n_current) == (ref.n_reference, ref.n_current), where
        assert math.isclose(mine.statistic, ref.statistic, rel_tol=REL, abs_tol=ABS), (
            f"{where}: {mine.statistic!r} vs Evidently {ref.statistic!r}"
        )
    # the datasets are built so that every default method is exercised where intended
    assert {c.column: c.method for c in ours} == dict(expected_methods)


def _with_missing(values: np.ndarray, rng: np.random.Generator, share: float) -> np.ndarray:
    out = values.astype(float)
    out[rng.random(out.size) < share] = np.nan
    return out


def _small_frames(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference of 400 rows: KS, chi-square and Z regime."""

    def frame(n: int, shift: float) -> pd.DataFrame:
        lognormal = rng.lognormal(0.0, 1.0 + shift, n)
        lognormal[rng.choice(n, 4, replace=False)] = np.inf
        intents = np.array(["billing", "refund", "shipping", "other"], dtype=object)
        intent = intents[rng.choice(4, n, p=[0.55, 0.25, 0.15, 0.05])]
        if shift:  # a category the reference never saw (Evidently: p = 0)
            intent[:3] = "new_intent"
        return pd.DataFrame(
            {
                "latency": _with_missing(rng.normal(100 + 8 * shift, 15, n), rng, 0.02),
                "reply_len": lognormal,
                "tokens": rng.integers(0, 500, n),
                "retries": rng.choice(4, n, p=[0.7, 0.2, 0.07, 0.03]),
                "rating": rng.choice([1.0, 2.0, 3.0, 4.0], n),
                "is_long": rng.choice([0.0, 1.0], n, p=[0.8 - 0.1 * shift, 0.2 + 0.1 * shift]),
                "intent": intent,
                "refusal": rng.random(n) < 0.1,
                "model": np.full(n, "tiny", dtype=object),
            }
        )

    return frame(400, 0.0), frame(700, 1.0)


def _large_frames(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference of 2,500 rows: Wasserstein and Jensen-Shannon regime."""

    def frame(n: int, shift: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "latency": _with_missing(rng.gamma(4.0, 50 * (1 + 0.15 * shift), n), rng, 0.01),
                "ood": rng.beta(2 + shift, 8, n),
                "tokens": rng.poisson(150, n),
                # constant reference (std 0: Evidently divides by 0.001), varied current
                "flat": 3.0 + (shift * rng.normal(0, 0.0005, n)),
                "temperature": rng.choice([0.0, 0.3, 0.7], n, p=[0.6, 0.3, 0.1]),
                "retries": rng.choice(3, n, p=[0.9 - 0.05 * shift, 0.08, 0.02 + 0.05 * shift]),
                "intent": rng.choice(["a", "b", "c", "d", "e"], n).astype(object),
                "empty": rng.random(n) < 0.02,
            }
        )

    return frame(2500, 0.0), frame(1500, 1.0)


@pytest.fixture(scope="module")
def rng() -> np.random.Generator:
    return np.random.default_rng(20240917)


def test_small_reference_ks_chisquare_z(rng: np.random.Generator) -> None:
    reference, current = _small_frames(rng)
    columns = list(reference.columns)
    theirs = evidently_drift_values(reference, current, columns)
    ours = drift_table(reference, current, categorical="evidently")
    _assert_same(
        ours,
        theirs,
        {
            "latency": "ks",
            "reply_len": "ks",
            "tokens": "ks",
            "retries": "evidently_chisquare",  # int with <= 10 values: categorical
            "rating": "evidently_chisquare",  # float with 4 values: compared as categories
            "is_long": "z",  # two numeric values
            "intent": "evidently_chisquare",
            "refusal": "z",
            "model": "z",  # a single value on both sides: p = 1
        },
    )
    assert theirs["intent"].statistic == 0.0 and theirs["intent"].drifted  # unseen category
    assert theirs["model"].statistic == 1.0 and not theirs["model"].drifted
    assert theirs["reply_len"].n_current < len(current)  # inf dropped like NaN
    # the dataset-level rule: drift when the share of drifted columns is >= 0.5
    share = drifted_share(ours)
    assert share == sum(c.drifted for c in theirs.values()) / len(theirs)


def test_large_reference_wasserstein_jensenshannon(rng: np.random.Generator) -> None:
    reference, current = _large_frames(rng)
    theirs = evidently_drift_values(reference, current, list(reference.columns))
    ours = drift_table(reference, current, categorical="evidently")
    _assert_same(
        ours,
        theirs,
        {
            "latency": "wasserstein",
            "ood": "wasserstein",
            "tokens": "wasserstein",
            "flat": "wasserstein",
            "temperature": "jensenshannon",  # a float with 3 values
            "retries": "jensenshannon",
            "intent": "jensenshannon",
            "empty": "jensenshannon",
        },
    )
    assert theirs["flat"].drifted  # the 0.001 floor makes a tiny spread a large distance


def test_size_rule_counts_the_reference_after_dropping_missing_values(
    rng: np.random.Generator,
) -> None:
    n = 1008
    with_gaps = rng.normal(0, 1, n)
    with_gaps[:8] = np.nan  # 1,000 values left: still the KS regime
    reference = pd.DataFrame(
        {
            "gappy": with_gaps,
            "full": rng.normal(0, 1, n),
            "exactly_1000": np.r_[rng.normal(0, 1, 1000), [np.inf] * 8],
            "infinite_and_nan": np.r_[rng.normal(0, 1, 1001), [np.nan] * 3, [-np.inf] * 4],
        }
    )
    current = pd.DataFrame({c: rng.normal(0.1, 1, 300) for c in reference.columns})
    theirs = evidently_drift_values(reference, current, list(reference.columns))
    ours = drift_table(reference, current, categorical="evidently")
    _assert_same(
        ours,
        theirs,
        {
            "gappy": "ks",
            "full": "wasserstein",
            "exactly_1000": "ks",
            "infinite_and_nan": "wasserstein",
        },
    )


def test_explicit_kinds_and_thresholds(rng: np.random.Generator) -> None:
    n_ref, n_cur = 300, 250
    ids = np.array([f"user{i}" for i in range(1000)], dtype=object)
    reference = pd.DataFrame(
        {
            "stars": rng.integers(1, 9, n_ref),  # 8 values: Evidently would say categorical
            "free_text_id": ids[rng.choice(1000, n_ref)],  # mostly distinct: Evidently's "text"
            "score": np.round(rng.normal(0, 1, n_ref), 1),
        }
    )
    current = pd.DataFrame(
        {
            "stars": rng.integers(2, 10, n_cur),
            "free_text_id": ids[rng.choice(1000, n_cur)],
            "score": np.round(rng.normal(0.2, 1, n_cur), 1),
        }
    )
    kinds = {"stars": "numeric", "free_text_id": "categorical", "score": "categorical"}
    theirs = evidently_drift_values(reference, current, list(reference.columns), kinds=kinds)
    ours = drift_table(reference, current, kinds=kinds, categorical="evidently")
    _assert_same(
        ours,
        theirs,
        {"stars": "ks", "free_text_id": "evidently_chisquare", "score": "evidently_chisquare"},
    )


def test_evidently_dataset_drift_is_share_at_least_one_half(rng: np.random.Generator) -> None:
    """Half the columns drifted: Evidently's dataset-level test fails (drift) at share 0.5."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    n = 300
    reference = pd.DataFrame({c: rng.normal(0, 1, n) for c in "abcd"})
    current = pd.DataFrame({c: rng.normal(1.0 if c in "ab" else 0.0, 1, n) for c in "abcd"})
    ours = drift_table(reference, current, categorical="evidently")
    assert drifted_share(ours) == 0.5
    snapshot = Report([DataDriftPreset()], include_tests=True).run(current, reference).dict()
    counts = [
        m["value"]
        for m in snapshot["metrics"]
        if m["config"]["type"] == "evidently:metric_v2:DriftedColumnsCount"
    ]
    assert counts == [{"count": 2.0, "share": drifted_share(ours)}]
    dataset_tests = [
        t
        for t in snapshot["tests"]
        if t["metric_config"]["params"]["type"] == "evidently:metric_v2:DriftedColumnsCount"
    ]
    assert len(dataset_tests) == 1
    status = dataset_tests[0]["status"]
    assert getattr(status, "value", status) == "FAIL"
    assert drifted_share(ours) >= DEFAULT_DRIFT_SHARE
