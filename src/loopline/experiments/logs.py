"""From the request and feedback logs to one row per unit of one experiment.

Every request-log line of a unit the server placed in an experiment carries
``experiments: {name: arm}`` and ``unit`` (see ``Treatment.log_fields`` in
:mod:`loopline.experiments.runtime`).
:func:`events_frame` keeps the lines of one experiment (live traffic only: the router's
shadow copies and the monitor's probes are not user requests, and held-out units are not
compared), and :func:`unit_table` reduces them per unit:

========================  ==================================================================
``requests``              requests of the unit
``errors``                of them answered with a 5xx (the server failed the user)
``latency_ms``            mean latency
``cost``                  money spent on the unit (sum of ``cost_usd``)
``tokens``                completion tokens generated (sum)
``quality``               mean label-free reply score (``loopline.serving.quality``)
``thumbs_up``             1 when the unit rated any reply ≥ 0.5 (feedback log), else 0
``first_seen``            time of the unit's first exposure
``pre_quality``           mean reply score of the unit **before** the experiment started
``pre_requests``          requests of the unit before the experiment started
========================  ==================================================================

The two ``pre_*`` columns are the pre-period covariates CUPED uses; units new to the service
get the mean of the units that have a pre-period (centring keeps the estimate unbiased). A
unit seen in two arms (the plan changed under it) is dropped and counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from loopline.experiments.metrics import aggregate_units
from loopline.experiments.runtime import HOLDOUT

LIVE_ROLES = frozenset({"stable", "candidate"})
UNIT_COLUMNS = (
    "requests",
    "errors",
    "latency_ms",
    "cost",
    "tokens",
    "quality",
    "thumbs_up",
    "first_seen",
    "pre_quality",
    "pre_requests",
)


def _quality(reply: object, status: object) -> float:
    from loopline.serving.quality import reply_quality

    if not isinstance(status, int) or not 200 <= status < 300 or not isinstance(reply, str):
        return 0.0
    return float(reply_quality(reply))


def events_frame(
    entries: Iterable[Mapping[str, Any]],
    experiment: str,
    *,
    ratings: Mapping[str, float] | None = None,
    started_at: float | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(exposed, pre)``: the experiment's live request lines (one row each, columns
    ``unit, variant, ts, status, error, latency_ms, cost, tokens, quality, thumbs_up``) and
    the pre-period lines of any unit (``unit, quality``) before ``started_at``."""
    rated = ratings or {}
    rows: list[tuple[Any, ...]] = []
    pre: list[tuple[str, float]] = []
    for e in entries:
        unit = e.get("unit")
        if not isinstance(unit, str) or not unit or e.get("variant") not in LIVE_ROLES:
            continue
        ts = float(e.get("ts") or 0.0)
        status = e.get("status")
        if started_at is not None and ts < started_at:
            pre.append((unit, _quality(e.get("reply"), status)))
            continue
        arms = e.get("experiments") or {}
        arm = arms.get(experiment) if isinstance(arms, Mapping) else None
        if not isinstance(arm, str) or arm == HOLDOUT:
            continue
        rating = rated.get(str(e.get("request_id", "")))
        rows.append(
            (
                unit,
                arm,
                ts,
                int(status) if isinstance(status, int) else 0,
                float(e.get("latency_ms") or 0.0),
                float(e.get("cost_usd") or 0.0),
                float(e.get("completion_tokens") or 0),
                _quality(e.get("reply"), status),
                1.0 if rating is not None and rating >= 0.5 else 0.0,
            )
        )
    exposed = pd.DataFrame(
        rows,
        columns=[
            "unit",
            "variant",
            "ts",
            "status",
            "latency_ms",
            "cost",
            "tokens",
            "quality",
            "thumbs_up",
        ],
    )
    exposed["error"] = (exposed["status"] >= 500).astype(np.float64)
    exposed["requests"] = 1.0
    return exposed, pd.DataFrame(pre, columns=["unit", "quality"])


@dataclass(frozen=True)
class UnitData:
    """The per-unit table and what was dropped on the way."""

    frame: pd.DataFrame
    requests: int
    conflicting_units: int


def unit_table(exposed: pd.DataFrame, pre: pd.DataFrame) -> UnitData:
    """One row per unit (see the module docstring), ordered by first exposure."""
    if exposed.empty:
        frame = pd.DataFrame(columns=["unit", "variant", *UNIT_COLUMNS])
        return UnitData(frame, 0, 0)
    table = aggregate_units(
        exposed,
        {
            "requests": "sum",
            "error": "sum",
            "latency_ms": "mean",
            "cost": "sum",
            "tokens": "sum",
            "quality": "mean",
            "thumbs_up": "any",
            "ts": "min",
        },
    )
    frame = table.frame.rename(columns={"error": "errors", "ts": "first_seen"})
    if pre.empty:
        frame["pre_quality"] = 0.0
        frame["pre_requests"] = 0.0
    else:
        grouped = pre.groupby("unit")["quality"]
        means, counts = grouped.mean(), grouped.size()
        frame["pre_requests"] = frame["unit"].map(counts).fillna(0).astype(np.float64)
        fill = float(means.mean())
        frame["pre_quality"] = frame["unit"].map(means).fillna(fill).astype(np.float64)
    frame["thumbs_up"] = frame["thumbs_up"].astype(np.float64)
    frame = frame.sort_values(["first_seen", "unit"], kind="stable").reset_index(drop=True)
    return UnitData(frame, len(exposed), table.n_conflicting_units)
