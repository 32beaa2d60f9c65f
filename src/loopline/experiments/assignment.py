"""Deterministic, sticky assignment of units to experiments, variants and holdouts.

Two hashes place a unit (see :mod:`loopline.experiments.hashing`):

1. **Layer bucket** ``b_L = H(layer salt, unit) mod N_L``. Every experiment of a layer owns a
   disjoint range ``[start, end)`` of layer buckets; a unit is *in* the experiment whose range
   holds ``b_L`` (at most one, so experiments of one layer never share a unit). An experiment
   without a layer gets a private one whose range is ``[0, round(traffic · N))``.
2. **Experiment bucket** ``b_E = H(experiment salt, unit) mod N``. The first
   ``round(holdout · N)`` experiment buckets are the holdout; the remaining buckets are split
   between variants in proportion to their weights, using rounded cumulative boundaries
   (so the shares sum exactly to the non-holdout range).

The second hash makes the variant split independent of the layer position and of every other
experiment's split (a different salt gives an independent uniform draw), which avoids
carry-over: units that were in the treatment of one experiment are spread evenly over the
arms of the next. Changing weights moves only the units whose bucket crosses a boundary.

Everything is a pure function of (spec, unit id); :func:`assign_many` and
:meth:`Layer.assign_many` do the same for arrays of ids with ``np.searchsorted``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from loopline.experiments._common import BoolArray, IntArray
from loopline.experiments.hashing import UnitIds, as_id_array, bucket, buckets
from loopline.experiments.policy import ExperimentSpec, LayerSpec


@dataclass(frozen=True)
class Assignment:
    """Where one unit landed in one experiment.

    ``variant`` is ``None`` when the unit is outside the experiment's traffic
    (``in_experiment`` false) or in its holdout (``holdout`` true); such units are served the
    default experience. ``layer_bucket`` and ``experiment_bucket`` are kept for audit.
    """

    unit_id: str
    experiment: str
    layer: str
    layer_bucket: int
    experiment_bucket: int | None
    in_experiment: bool
    holdout: bool
    variant: str | None

    @property
    def exposed(self) -> bool:
        """Whether the unit is served a variant (and so belongs to the comparison)."""
        return self.variant is not None


@dataclass(frozen=True)
class Exposure:
    """The record logged when a unit is first served an experiment's variant (or holdout)."""

    experiment: str
    unit_id: str
    variant: str | None
    holdout: bool
    layer: str
    timestamp: datetime
    context: Mapping[str, str] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """A flat dict for a log line or a DataFrame row (timestamp in ISO 8601)."""
        return {
            "experiment": self.experiment,
            "unit_id": self.unit_id,
            "variant": self.variant,
            "holdout": self.holdout,
            "layer": self.layer,
            "timestamp": self.timestamp.isoformat(),
            **{f"ctx_{k}": v for k, v in sorted(self.context.items())},
        }


def exposure(
    assignment: Assignment, timestamp: datetime, context: Mapping[str, str] | None = None
) -> Exposure | None:
    """The exposure to log for ``assignment``; ``None`` when the unit is not in the
    experiment's traffic (nothing was tested on it)."""
    if not assignment.in_experiment:
        return None
    return Exposure(
        experiment=assignment.experiment,
        unit_id=assignment.unit_id,
        variant=assignment.variant,
        holdout=assignment.holdout,
        layer=assignment.layer,
        timestamp=timestamp,
        context=dict(context or {}),
    )


@dataclass(frozen=True)
class AssignmentBatch:
    """Vectorised assignments: one entry per input unit id.

    ``variant_index`` indexes ``variants`` and is -1 for units without a variant (outside the
    experiment or held out).
    """

    experiment: str
    variants: tuple[str, ...]
    layer_bucket: IntArray
    in_experiment: BoolArray
    holdout: BoolArray
    variant_index: IntArray

    def variant_names(self) -> npt.NDArray[np.object_]:
        """Variant name per unit (``None`` where there is none)."""
        names = np.array([*self.variants, None], dtype=object)
        return np.asarray(names[self.variant_index], dtype=object)

    def counts(self) -> dict[str, int]:
        """Units per variant (plus ``"<holdout>"``)."""
        per = np.bincount(self.variant_index[self.variant_index >= 0], minlength=len(self.variants))
        out = {name: int(c) for name, c in zip(self.variants, per, strict=True)}
        out["<holdout>"] = int(self.holdout.sum())
        return out


def variant_boundaries(spec: ExperimentSpec) -> tuple[int, IntArray]:
    """``(holdout_end, ends)``: experiment buckets below ``holdout_end`` are held out and
    variant ``i`` owns ``[ends[i-1], ends[i])`` (with ``ends[-1] == n_buckets``)."""
    n = spec.n_buckets
    holdout_end = round(spec.holdout * n)
    weights = np.array([v.weight for v in spec.variants], dtype=np.float64)
    cumulative = np.cumsum(weights) / weights.sum()
    ends = holdout_end + np.rint(cumulative * (n - holdout_end)).astype(np.int64)
    ends[-1] = n
    if np.any(np.diff(np.concatenate([[holdout_end], ends])) <= 0):
        raise ValueError(f"experiment {spec.name!r}: a variant's weight rounds to zero buckets")
    return holdout_end, ends


def _layer_salt_and_size(spec: ExperimentSpec, layer: LayerSpec | None) -> tuple[str, str, int]:
    if spec.layer is None:
        if layer is not None:
            raise ValueError(
                f"experiment {spec.name!r} has no layer but layer {layer.name!r} given"
            )
        return f"experiment:{spec.name}", f"{spec.effective_salt}/traffic", spec.n_buckets
    if layer is None or layer.name != spec.layer:
        raise ValueError(f"experiment {spec.name!r} lives in layer {spec.layer!r}: pass that layer")
    return layer.name, layer.effective_salt, layer.n_buckets


def assign(spec: ExperimentSpec, unit_id: str | int, layer: LayerSpec | None = None) -> Assignment:
    """Assign one unit to ``spec`` (``layer`` must be given iff ``spec.layer`` is set)."""
    layer_name, layer_salt, layer_size = _layer_salt_and_size(spec, layer)
    uid = str(unit_id)
    lb = bucket(layer_salt, uid, layer_size)
    start, end = spec.layer_range
    if not start <= lb < end:
        return Assignment(uid, spec.name, layer_name, lb, None, False, False, None)
    eb = bucket(spec.effective_salt, uid, spec.n_buckets)
    holdout_end, ends = variant_boundaries(spec)
    if eb < holdout_end:
        return Assignment(uid, spec.name, layer_name, lb, eb, True, True, None)
    index = int(np.searchsorted(ends, eb, side="right"))
    return Assignment(uid, spec.name, layer_name, lb, eb, True, False, spec.variants[index].name)


def _variant_index(spec: ExperimentSpec, eb: IntArray) -> tuple[BoolArray, IntArray]:
    holdout_end, ends = variant_boundaries(spec)
    held = eb < holdout_end
    index = np.searchsorted(ends, eb, side="right").astype(np.int64)
    index[held] = -1
    return held, index


def assign_many(
    spec: ExperimentSpec,
    unit_ids: UnitIds,
    layer: LayerSpec | None = None,
) -> AssignmentBatch:
    """Vectorised :func:`assign`: ``assign_many(s, ids).variant_names()[i]`` equals
    ``assign(s, ids[i]).variant``."""
    _, layer_salt, layer_size = _layer_salt_and_size(spec, layer)
    ids = as_id_array(unit_ids)
    lb = buckets(layer_salt, ids, layer_size)
    start, end = spec.layer_range
    inside = (lb >= start) & (lb < end)
    eb = buckets(spec.effective_salt, ids, spec.n_buckets)
    held, index = _variant_index(spec, eb)
    index[~inside] = -1
    return AssignmentBatch(
        experiment=spec.name,
        variants=spec.variant_names,
        layer_bucket=lb,
        in_experiment=inside,
        holdout=held & inside,
        variant_index=index,
    )


@dataclass(frozen=True)
class LayerBatch:
    """Vectorised layer assignments: ``experiment_index`` indexes ``experiments`` (-1: none);
    ``variant_index`` indexes that experiment's variants (-1: none or holdout)."""

    layer: str
    experiments: tuple[str, ...]
    layer_bucket: IntArray
    experiment_index: IntArray
    holdout: BoolArray
    variant_index: IntArray


def check_disjoint(layer: LayerSpec, experiments: Sequence[ExperimentSpec]) -> None:
    """Raise ``ValueError`` unless every experiment belongs to ``layer``, matches its bucket
    count and owns a bucket range disjoint from the others'."""
    names = [e.name for e in experiments]
    if len(set(names)) != len(names):
        raise ValueError(f"layer {layer.name!r} lists an experiment twice: {names}")
    for exp in experiments:
        if exp.layer != layer.name:
            raise ValueError(f"experiment {exp.name!r} is not in layer {layer.name!r}")
        if exp.n_buckets != layer.n_buckets:
            raise ValueError(
                f"experiment {exp.name!r} uses {exp.n_buckets} buckets, layer {layer.name!r} "
                f"uses {layer.n_buckets}"
            )
    ordered = sorted(experiments, key=lambda e: e.layer_range)
    for a, b in itertools.pairwise(ordered):
        if b.layer_range[0] < a.layer_range[1]:
            raise ValueError(
                f"experiments {a.name!r} {a.layer_range} and {b.name!r} {b.layer_range} "
                f"overlap in layer {layer.name!r}"
            )


@dataclass(frozen=True)
class Layer:
    """Mutually exclusive experiments sharing one layer (validated on construction)."""

    spec: LayerSpec
    experiments: tuple[ExperimentSpec, ...]

    def __post_init__(self) -> None:
        check_disjoint(self.spec, self.experiments)

    def experiment_at(self, layer_bucket: int) -> ExperimentSpec | None:
        """The experiment owning ``layer_bucket``, if any."""
        for exp in self.experiments:
            start, end = exp.layer_range
            if start <= layer_bucket < end:
                return exp
        return None

    def assign(self, unit_id: str | int) -> Assignment | None:
        """The unit's assignment in the layer's experiment that owns it (``None``: no
        experiment of this layer owns its bucket)."""
        lb = bucket(self.spec.effective_salt, str(unit_id), self.spec.n_buckets)
        exp = self.experiment_at(lb)
        return None if exp is None else assign(exp, unit_id, self.spec)

    def free_ranges(self) -> tuple[tuple[int, int], ...]:
        """Bucket ranges no experiment owns (where a new experiment can go)."""
        out: list[tuple[int, int]] = []
        cursor = 0
        for exp in sorted(self.experiments, key=lambda e: e.layer_range):
            start, end = exp.layer_range
            if start > cursor:
                out.append((cursor, start))
            cursor = end
        if cursor < self.spec.n_buckets:
            out.append((cursor, self.spec.n_buckets))
        return tuple(out)

    def assign_many(self, unit_ids: UnitIds) -> LayerBatch:
        """Vectorised :meth:`assign` over an array of unit ids."""
        ids = as_id_array(unit_ids)
        lb = buckets(self.spec.effective_salt, ids, self.spec.n_buckets)
        exp_index = np.full(lb.shape, -1, dtype=np.int64)
        var_index = np.full(lb.shape, -1, dtype=np.int64)
        held = np.zeros(lb.shape, dtype=bool)
        for i, exp in enumerate(self.experiments):
            start, end = exp.layer_range
            inside = (lb >= start) & (lb < end)
            if not inside.any():
                continue
            exp_index[inside] = i
            eb = buckets(exp.effective_salt, ids[inside], exp.n_buckets)
            h, idx = _variant_index(exp, eb)
            held[inside] = h
            var_index[inside] = idx
        return LayerBatch(
            layer=self.spec.name,
            experiments=tuple(e.name for e in self.experiments),
            layer_bucket=lb,
            experiment_index=exp_index,
            holdout=held,
            variant_index=var_index,
        )


def layers_by_name(
    layers: Sequence[LayerSpec], experiments: Sequence[ExperimentSpec]
) -> Mapping[str, Layer]:
    """Build (and validate) every configured layer with its experiments."""
    return {
        spec.name: Layer(spec, tuple(e for e in experiments if e.layer == spec.name))
        for spec in layers
    }
