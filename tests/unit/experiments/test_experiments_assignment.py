"""Hashing and assignment: deterministic, sticky, uniform, independent across salts, and
mutually exclusive within a layer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import stats

from loopline.experiments.assignment import (
    Layer,
    assign,
    assign_many,
    exposure,
    layers_by_name,
    variant_boundaries,
)
from loopline.experiments.hashing import DEFAULT_BUCKETS, bucket, buckets, hash64
from loopline.experiments.policy import ExperimentsConfig, ExperimentSpec, LayerSpec, VariantSpec

IDS = np.array([f"user-{i}" for i in range(100_000)])


def spec(name: str = "prompt-test", **kw: Any) -> ExperimentSpec:
    kw.setdefault("variants", (VariantSpec(name="control"), VariantSpec(name="treatment")))
    return ExperimentSpec(name=name, **kw)


def test_hash_is_pinned_across_processes_and_releases() -> None:
    # Golden values: changing the hash would silently reshuffle every running experiment.
    assert hash64("exp-salt", "user-1") == 1022731616443979329
    assert bucket("exp-salt", "user-1") == 9329
    assert bucket("exp-salt", 42) == bucket("exp-salt", "42") == 4926


def test_salt_encoding_is_unambiguous() -> None:
    assert hash64("a:b", "c") != hash64("a", "b:c")


def test_vectorised_buckets_equal_scalar_buckets() -> None:
    ids = [*IDS[:3000].tolist(), "user-1", "user-1", 7, 8]
    vec = buckets("s", ids)
    assert vec.tolist() == [bucket("s", u) for u in ids]
    assert buckets("s", []).shape == (0,)


def test_buckets_are_uniform() -> None:
    counts = np.bincount(buckets("uniformity", IDS), minlength=DEFAULT_BUCKETS)
    # 100,000 units over 10,000 buckets: Pearson chi-square against uniform.
    p = stats.chisquare(counts).pvalue
    assert p > 0.001
    coarse = np.bincount(buckets("uniformity", IDS) // 100, minlength=100)
    assert stats.chisquare(coarse).pvalue > 0.001


def test_assignment_is_sticky_and_vectorised_matches_scalar() -> None:
    s = spec(traffic=0.6, holdout=0.1)
    batch = assign_many(s, IDS[:5000])
    names = batch.variant_names()
    for i, uid in enumerate(IDS[:5000]):
        a = assign(s, uid)
        assert a == assign(s, uid)  # sticky: same answer every call
        assert a.variant == names[i]
        assert a.in_experiment == batch.in_experiment[i]
        assert a.holdout == batch.holdout[i]
        assert a.layer_bucket == batch.layer_bucket[i]


def test_allocation_traffic_and_holdout_shares() -> None:
    variants = (
        VariantSpec(name="a", weight=1),
        VariantSpec(name="b", weight=1),
        VariantSpec(name="c", weight=2, prompt_version="7"),
    )
    s = spec(variants=variants, traffic=0.5, holdout=0.2)
    batch = assign_many(s, IDS)
    inside = batch.in_experiment
    assert stats.binomtest(int(inside.sum()), IDS.size, 0.5).pvalue > 0.001
    held = batch.holdout
    assert not np.any(held & ~inside)
    assert stats.binomtest(int(held.sum()), int(inside.sum()), 0.2).pvalue > 0.001
    counts = batch.counts()
    observed = [counts["a"], counts["b"], counts["c"]]
    expected = np.array([0.25, 0.25, 0.5]) * sum(observed)
    assert stats.chisquare(observed, expected).pvalue > 0.001
    assert np.all(batch.variant_index[~inside | held] == -1)


def test_variant_boundaries_cover_the_space_exactly() -> None:
    variants = tuple(VariantSpec(name=f"v{i}", weight=w) for i, w in enumerate([1, 1, 1]))
    s = spec(variants=variants, holdout=0.05)
    holdout_end, ends = variant_boundaries(s)
    assert holdout_end == 500
    assert ends.tolist() == [3667, 6833, 10000]
    bad = spec(variants=(VariantSpec(name="x", weight=1), VariantSpec(name="y", weight=1e-6)))
    with pytest.raises(ValueError, match="rounds to zero"):
        variant_boundaries(bad)


def test_experiments_with_different_salts_are_independent() -> None:
    # For 40 pairs of experiments, the contingency table of (arm in A, arm in B) must look
    # independent: the 40 chi-square p-values are uniform (any one of them may be small).
    ids = IDS[:5_000]
    pvalues = []
    for k in range(40):
        a = assign_many(spec(f"exp-{k}-a"), ids)
        b = assign_many(spec(f"exp-{k}-b", variants=tuple(VariantSpec(name=n) for n in "xyz")), ids)
        table = np.zeros((2, 3))
        np.add.at(table, (a.variant_index, b.variant_index), 1)
        pvalues.append(stats.chi2_contingency(table).pvalue)
    assert stats.kstest(pvalues, "uniform").pvalue > 0.001
    assert sum(p < 0.05 for p in pvalues) <= 7  # binomial(40, 0.05): P(X > 7) < 0.001
    # Same salt, same split: a renamed copy of an experiment reproduces the assignment.
    a = assign_many(spec("exp-a"), ids)
    same = assign_many(spec("other-name", salt="exp-a"), ids)
    assert np.array_equal(same.variant_index, a.variant_index)
    assert not np.array_equal(assign_many(spec("exp-b"), ids).variant_index, a.variant_index)


def test_layer_experiments_never_share_a_unit() -> None:
    layer = LayerSpec(name="prompts")
    e1 = spec("e1", layer="prompts", bucket_range=(0, 3000))
    e2 = spec("e2", layer="prompts", bucket_range=(3000, 8000))
    lay = Layer(layer, (e1, e2))
    b1 = assign_many(e1, IDS, layer)
    b2 = assign_many(e2, IDS, layer)
    assert not np.any(b1.in_experiment & b2.in_experiment)
    assert stats.binomtest(int(b1.in_experiment.sum()), IDS.size, 0.3).pvalue > 0.001
    assert stats.binomtest(int(b2.in_experiment.sum()), IDS.size, 0.5).pvalue > 0.001
    batch = lay.assign_many(IDS)
    assert np.array_equal(batch.experiment_index == 0, b1.in_experiment)
    assert np.array_equal(batch.experiment_index == 1, b2.in_experiment)
    assert np.array_equal(
        batch.variant_index[batch.experiment_index == 0], b1.variant_index[b1.in_experiment]
    )
    assert lay.free_ranges() == ((8000, 10000),)
    for uid in IDS[:500]:
        a = lay.assign(uid)
        in1, in2 = assign(e1, uid, layer).in_experiment, assign(e2, uid, layer).in_experiment
        assert (a is None) == (not in1 and not in2)
        if a is not None:
            assert a.experiment == ("e1" if in1 else "e2")


def test_within_experiment_split_is_independent_of_layer_position() -> None:
    layer = LayerSpec(name="L")
    e1 = spec("e1", layer="L", bucket_range=(0, 5000))
    batch = assign_many(e1, IDS, layer)
    inside = batch.in_experiment
    # Inside the experiment's half of the layer, lower and upper layer buckets split alike.
    low = inside & (batch.layer_bucket < 2500)
    table = [
        np.bincount(batch.variant_index[low], minlength=2),
        np.bincount(batch.variant_index[inside & ~low], minlength=2),
    ]
    assert stats.chi2_contingency(table).pvalue > 0.001


def test_overlapping_layer_ranges_are_rejected() -> None:
    layer = LayerSpec(name="L")
    e1 = spec("e1", layer="L", bucket_range=(0, 5000))
    e2 = spec("e2", layer="L", bucket_range=(4999, 6000))
    with pytest.raises(ValueError, match="overlap"):
        Layer(layer, (e1, e2))
    with pytest.raises(ValidationError, match="overlap"):
        ExperimentsConfig(layers=(layer,), experiments=(e1, e2))
    with pytest.raises(ValidationError, match="unknown layer"):
        ExperimentsConfig(experiments=(e1,))
    with pytest.raises(ValueError, match="pass that layer"):
        assign(e1, "u")
    ok = ExperimentsConfig(
        layers=(layer,), experiments=(e1, spec("e3", layer="L", bucket_range=(5000, 6000)))
    )
    assert set(layers_by_name(ok.layers, ok.experiments)) == {"L"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"variants": (VariantSpec(name="a"),)}, "at least 2"),
        ({"variants": (VariantSpec(name="a"), VariantSpec(name="a"))}, "duplicate"),
        ({"control": "nope"}, "not a variant"),
        ({"bucket_range": (10, 5)}, "bucket_range"),
        ({"bucket_range": (0, 10), "traffic": 0.5}, "not both"),
        ({"holdout": 1.0}, "less than 1"),
        ({"unknown_key": 1}, "Extra inputs"),
    ],
)
def test_invalid_experiment_specs(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        spec(**kwargs)


def test_exposure_records() -> None:
    s = spec(traffic=0.5, holdout=0.2)
    ts = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    batch = assign_many(s, IDS[:2000])
    outside = IDS[:2000][~batch.in_experiment][0]
    held = IDS[:2000][batch.holdout][0]
    served = IDS[:2000][batch.variant_index >= 0][0]
    assert exposure(assign(s, outside), ts) is None
    hold_exp = exposure(assign(s, held), ts)
    assert hold_exp is not None and hold_exp.holdout and hold_exp.variant is None
    e = exposure(assign(s, served), ts, {"route": "chat"})
    assert e is not None and e.variant in ("control", "treatment")
    record = e.to_record()
    assert record["timestamp"] == "2025-01-02T03:04:05+00:00"
    assert record["ctx_route"] == "chat" and record["experiment"] == "prompt-test"
    assert s.expected_weights == {"control": 0.5, "treatment": 0.5}
