"""Monte Carlo canaries: how often, and after how many requests, a policy rolls back.

Both decision procedures of :mod:`loopline.release.analysis` run here on simulated traffic,
many releases at once (rows of arrays), through the library's own vectorised functions:

* :func:`simulate_sequential` drives :func:`~loopline.release.analysis.analyze_canary_arrays`
  through the canary steps of a :class:`~loopline.release.policy.CanaryPolicy`, looking after
  every ``look_requests`` candidate requests;
* :func:`simulate_threshold` drives
  :func:`~loopline.release.analysis.threshold_check_arrays` the way Flagger does: one check
  per interval of ``interval_requests`` live requests, a passing check advances one step,
  the release rolls back at ``max_failed_checks`` failed checks.

Traffic model: each request fails with probability ``error_rate``, is slower than the
reference latency with probability ``slow_share`` and gets a quality score of mean
``quality_mean`` and standard deviation ``quality_sd``. Per look (or interval) the counts are
binomial; the quality scores of a batch of b requests enter through their sufficient
statistics, drawn from the normal model (batch mean ~ N(μ, σ²/b), within-batch sum of squares
~ σ²·χ²_{b−1}), which is exact for normal scores and the CLT approximation otherwise.
Requests are split between the versions in proportion to the step's weights (rounded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from loopline.release.analysis import (
    CONTINUE,
    ROLLBACK,
    ArmArrays,
    analyze_canary_arrays,
    threshold_check_arrays,
)
from loopline.release.policy import CanaryPolicy, ThresholdPolicy

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class TrafficModel:
    """How one version behaves, per request."""

    error_rate: float = 0.02
    slow_share: float = 0.01
    quality_mean: float = 0.80
    quality_sd: float = 0.15

    def degraded(
        self, *, errors_pp: float = 0.0, slow_pp: float = 0.0, quality_rel: float = 0.0
    ) -> TrafficModel:
        """This model with ``+errors_pp`` error rate, ``+slow_pp`` slow share (fractions) and
        the quality mean scaled by ``1 − quality_rel``."""
        return TrafficModel(
            error_rate=self.error_rate + errors_pp,
            slow_share=self.slow_share + slow_pp,
            quality_mean=self.quality_mean * (1.0 - quality_rel),
            quality_sd=self.quality_sd,
        )


@dataclass(frozen=True)
class SimulationResult:
    """One row per simulated release.

    ``candidate_requests`` / ``total_requests`` are counted until the release ended (rollback
    or promotion); ``step`` is the index of the analysed step where it rolled back, or the
    number of analysed steps when promoted; ``inconclusive`` marks releases whose last
    decision came from a step limit.
    """

    rolled_back: BoolArray
    inconclusive: BoolArray
    step: IntArray
    candidate_requests: FloatArray
    total_requests: FloatArray

    @property
    def runs(self) -> int:
        return int(self.rolled_back.size)

    @property
    def rollback_rate(self) -> float:
        return float(self.rolled_back.mean())

    @property
    def promotion_rate(self) -> float:
        return 1.0 - self.rollback_rate

    def median_requests_to_rollback(self, *, total: bool = False) -> float:
        """Median (over rolled-back releases) of the requests served until the rollback
        (candidate requests, or all requests with ``total``); NaN when none rolled back."""
        values = (self.total_requests if total else self.candidate_requests)[self.rolled_back]
        return float(np.median(values)) if values.size else math.nan

    def median_requests_to_promote(self, *, total: bool = False) -> float:
        values = (self.total_requests if total else self.candidate_requests)[~self.rolled_back]
        return float(np.median(values)) if values.size else math.nan


def _batch(
    rng: np.random.Generator, model: TrafficModel, n: npt.ArrayLike, shape: tuple[int, ...]
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Errors, slow requests, quality sum and quality sum of squares of batches of ``n``."""
    b = np.broadcast_to(np.asarray(n, dtype=np.float64), shape)
    bi = b.astype(np.int64)
    errors = rng.binomial(bi, model.error_rate).astype(np.float64)
    slow = rng.binomial(bi, model.slow_share).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = model.quality_mean + model.quality_sd * rng.standard_normal(shape) / np.sqrt(b)
        within = model.quality_sd**2 * rng.chisquare(np.maximum(b - 1.0, 1.0))
    mean = np.where(b > 0, mean, 0.0)
    within = np.where(b > 1, within, 0.0)
    return errors, slow, b * mean, within + b * mean**2


def _arm(
    n: FloatArray, errors: FloatArray, slow: FloatArray, q_sum: FloatArray, q_sq: FloatArray
) -> ArmArrays:
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = q_sum / n
        var = np.maximum(q_sq - n * mean**2, 0.0) / (n - 1.0)
    return ArmArrays.build(
        requests=n,
        errors=errors,
        slow=slow,
        quality_count=n,
        quality_mean=np.nan_to_num(mean),
        quality_var=np.nan_to_num(var),
    )


def _split(weight: float, candidate: float) -> float:
    """Stable requests that arrive alongside ``candidate`` candidate requests."""
    return float(round(candidate * (100.0 - weight) / weight))


def simulate_sequential(
    stable: TrafficModel,
    candidate: TrafficModel,
    policy: CanaryPolicy,
    *,
    runs: int,
    rng: np.random.Generator,
    look_requests: int = 25,
    requests_per_second: float = 50.0,
    random_routing: bool = False,
    chunk_looks: int = 64,
    max_looks_per_step: int = 100_000,
) -> SimulationResult:
    """Simulate ``runs`` canaries under the sequential analysis.

    The analysis looks after every ``look_requests`` candidate requests (on average, with
    ``random_routing``: each request then goes to the candidate independently with the step's
    probability, instead of an exact proportional split); the step's elapsed time is its
    total requests divided by ``requests_per_second``. Looks are simulated in chunks of
    ``chunk_looks`` for the releases still undecided, so memory stays small.
    """
    weights = policy.analysed_weights
    rolled_back = np.zeros(runs, dtype=bool)
    inconclusive = np.zeros(runs, dtype=bool)
    step_of = np.full(runs, len(weights), dtype=np.int64)
    cand_total = np.zeros(runs)
    all_total = np.zeros(runs)
    alive = np.arange(runs)
    for index, weight in enumerate(weights):
        per_look = float(look_requests) + _split(weight, float(look_requests))
        # cumulative (requests, errors, slow, quality sum, quality sum of squares) per arm
        carry_c = np.zeros((5, alive.size))
        carry_s = np.zeros((5, alive.size))
        pending = np.arange(alive.size)  # positions in ``alive`` still undecided in this step
        looks_done = 0
        while pending.size:
            if looks_done >= max_looks_per_step:
                raise RuntimeError(
                    "simulated step did not end: set max_requests_per_step or max_step_seconds"
                )
            shape = (pending.size, chunk_looks)
            if random_routing:
                b_c = rng.binomial(int(per_look), weight / 100.0, shape).astype(np.float64)
            else:
                b_c = np.full(shape, float(look_requests))
            b_s = per_look - b_c
            batch_c = (b_c, *_batch(rng, candidate, b_c, shape))
            batch_s = (b_s, *_batch(rng, stable, b_s, shape))
            cum_c = [carry_c[i, pending, None] + np.cumsum(x, 1) for i, x in enumerate(batch_c)]
            cum_s = [carry_s[i, pending, None] + np.cumsum(x, 1) for i, x in enumerate(batch_s)]
            looks = looks_done + np.arange(1, chunk_looks + 1, dtype=np.float64)
            res = analyze_canary_arrays(
                _arm(*cum_s),
                _arm(*cum_c),
                policy,
                candidate_weight=weight,
                elapsed_s=per_look * looks / requests_per_second,
            )
            decided = res.verdict != CONTINUE
            hit = decided.any(axis=1)
            rows = np.flatnonzero(hit)
            first = np.argmax(decided, axis=1)[rows]
            who = alive[pending[rows]]
            cand_total[who] += cum_c[0][rows, first]
            all_total[who] += per_look * looks[first]
            inconclusive[who] = res.inconclusive[rows, first]
            back = res.verdict[rows, first] == ROLLBACK
            rolled_back[who[back]] = True
            step_of[who[back]] = index
            for i in range(5):
                carry_c[i, pending] = cum_c[i][:, -1]
                carry_s[i, pending] = cum_s[i][:, -1]
            pending = pending[~hit]
            looks_done += chunk_looks
        alive = alive[~rolled_back[alive]]
    return SimulationResult(rolled_back, inconclusive, step_of, cand_total, all_total)


def simulate_threshold(
    stable: TrafficModel,
    candidate: TrafficModel,
    weights: tuple[float, ...],
    policy: ThresholdPolicy,
    *,
    runs: int,
    rng: np.random.Generator,
    interval_requests: int,
) -> SimulationResult:
    """Simulate ``runs`` canaries under the Flagger-kind threshold baseline.

    Each interval carries ``interval_requests`` live requests (a fixed time at a constant
    rate), split by the current step's weight; ``weights`` are the analysed steps (a passing
    check at the last one promotes).
    """
    w = np.asarray(weights, dtype=np.float64)
    step = np.zeros(runs, dtype=np.int64)
    failed = np.zeros(runs, dtype=np.int64)
    rolled_back = np.zeros(runs, dtype=bool)
    cand_total = np.zeros(runs)
    all_total = np.zeros(runs)
    alive = np.arange(runs)
    while alive.size:
        weight = w[step[alive]]
        b_c = np.round(interval_requests * weight / 100.0)
        b_s = interval_requests - b_c
        shape = (alive.size,)
        c = _batch(rng, candidate, b_c, shape)
        s = _batch(rng, stable, b_s, shape)
        passed = threshold_check_arrays(_arm(b_s, *s), _arm(b_c, *c), policy).passed
        cand_total[alive] += b_c
        all_total[alive] += interval_requests
        step[alive] += passed
        failed[alive] += ~passed
        back = failed[alive] >= policy.max_failed_checks
        rolled_back[alive[back]] = True
        done = back | (step[alive] >= w.size)
        alive = alive[~done]
    step = np.where(rolled_back, step, w.size)
    return SimulationResult(
        rolled_back, np.zeros(runs, dtype=bool), step.astype(np.int64), cand_total, all_total
    )
