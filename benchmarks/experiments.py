"""Benchmark a full experiment analysis: Loopline's engine against plain pandas + statsmodels.

    python benchmarks/experiments.py [--rows 10000000] [--seed N] [--quick] [--json PATH]

Workload. An exposure log of ``--rows`` request rows (default 10,000,000; ``--quick``:
1,000,000) is generated from the seed and written once to a parquet file that both contenders
load, so generation is not timed. A row is one request of a unit: ``unit`` (int64 id, about
rows / 5 distinct units with skewed activity, rows in random order), ``variant`` (categorical;
control, b, c with weights 1:1:1, assigned per unit), the per-request outcomes ``resolved``
(0/1), ``latency_ms`` (lognormal around the unit's own level), ``cost_usd``,
``completion_tokens`` and ``error`` (0/1), and the unit's pre-period mean latency
``pre_latency_ms`` (repeated on its rows, correlated with its latency). Treatment b resolves
1 pp more requests, is 2 % faster, writes 3 % more tokens (so costs more) and fails 10 % less
often; c is identical to control.

Analysis (the same for both): aggregate the rows to one row per unit (units seen in several
variants dropped), then the sample-ratio-mismatch χ² of the arm counts, and for 5 metrics x
2 treatments against control

* resolved           - binary, any resolved request: two-proportion z-test;
* latency_ms         - continuous, mean per unit, CUPED on pre_latency_ms, then Welch;
* cost_usd           - continuous, sum per unit: Welch;
* completion_tokens  - continuous, sum per unit: Welch;
* error_rate         - ratio Σerrors / Σrequests, delta-method z-test;

with intervals at α/2 for the two treatments, the mSPRT always-valid p-value and confidence
sequence (mixing variance tuned to 10,000 units per arm), Bayesian chance to beat control and
expected loss (Beta–Binomial for resolved, normal approximation otherwise), chance to be best,
and Holm-adjusted p-values over the 10 (sequential) p-values. Contenders:

* loopline - ``aggregate_units`` + one ``analyze_experiment`` call with ``AnalysisConfig()``
             defaults. ``aggregate_units`` maps each column to one reduction, so the request
             count comes from a column of ones added to the log (timed).
* baseline - the way a data scientist would write it: one pandas named aggregation per unit
             (with ``nunique`` for contaminated units), ``scipy.stats.chisquare``, statsmodels
             ``proportions_ztest`` / ``confint_proportions_2indep`` and ``CompareMeans``
             (Welch), the CUPED θ as the covariate's coefficient in ``statsmodels.OLS`` with arm
             dummies (the pooled within-arm slope), the ratio delta method and the mSPRT
             formulas of ``loopline.experiments.sequential`` written out with pandas/numpy on
             the per-arm means and sample variances (ddof=1, for the binary metric too, as the
             engine computes them), the Beta posteriors by Monte-Carlo draws (closed normal
             formulas otherwise) and ``multipletests(method="holm")``.

Method. Each contender runs in its own fresh subprocess on the same file, warmed up first on
the log's first 50,000 rows. The wall time covers aggregation and analysis (the two parts are
also shown). Memory is the peak resident set size above the baseline taken after imports,
loading and the warm-up (Linux: the kernel's high-water mark VmHWM is reset through
/proc/self/clear_refs just before the run; where that is not allowed RSS is sampled every
5 ms), with a fixed glibc mmap threshold so that freed large arrays leave the resident set.
The parent checks that both report the same unit counts and: SRM p within 1e-9 relative;
fixed-horizon p-values and interval bounds (absolute and relative), sequential p-values and
confidence sequences, Holm-adjusted p-values, the CUPED θ and the closed-form Bayesian values
within 1e-6 relative (values near 0 against a floor: 1e-6 for p-values, 0.1 % of the control
value for bounds); Monte-Carlo values within 0.01 (chance to beat, expected loss in posterior
standard deviations of the difference) and 0.02 for the chance to be best (the engine uses
20,000 draws). ``--json PATH`` writes the times, memory, agreement and both sets of values.

Where the time goes, at 10M rows on 2 cores: the baseline's pandas groupby aggregation takes
~10-16 s of a ~12-17 s run, its analysis of the unit table ~2.5-4 s. The engine's
``aggregate_units`` codes the unit column once (by a lookup table, as these ids are dense
integers; sparse integer or string ids are hashed by ``pd.factorize``, which is slower) and
reduces every column in one ``np.bincount``/``ufunc.at`` pass over the codes, ~2-3 s; its
analysis takes ~0.5 s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _peak import PeakRss

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

VARIANTS = ("control", "b", "c")
WEIGHTS = (1.0, 1.0, 1.0)
ROWS_PER_UNIT = 5
WARM_ROWS = 50_000
ALPHA = 0.05
PLANNED_UNITS_PER_VARIANT = 10_000  # SequentialConfig() default
MC_DRAWS = 100_000
MMAP_THRESHOLD = 128 * 1024

# Effects per arm (control, b, c).
RESOLVE_LIFT = np.array([0.0, 0.01, 0.0])
LATENCY_FACTOR = np.array([1.0, 0.98, 1.0])
TOKEN_FACTOR = np.array([1.0, 1.03, 1.0])
ERROR_RATE = np.array([0.020, 0.018, 0.020])

# (metric, kind, higher is better)
METRICS = (
    ("resolved", "binary", True),
    ("latency_ms", "continuous", False),
    ("cost_usd", "continuous", False),
    ("completion_tokens", "continuous", False),
    ("error_rate", "ratio", False),
)

RTOL = 1e-6
SRM_RTOL = 1e-9
MC_TOL = 0.01
PROB_BEST_TOL = 0.02


# --------------------------------------------------------------------------- data


def make_events(rows: int, seed: int) -> pd.DataFrame:
    """The exposure log described in the module docstring."""
    rng = np.random.default_rng(seed)
    n_units = max(rows // ROWS_PER_UNIT, 100)
    arm_of_unit = rng.integers(0, len(VARIANTS), n_units)
    activity = rng.lognormal(0.0, 0.6, n_units)
    cdf = np.cumsum(activity)
    cdf /= cdf[-1]
    unit = np.minimum(np.searchsorted(cdf, rng.random(rows), side="right"), n_units - 1)
    arm = arm_of_unit[unit]
    ids = 1_000_000_000 + rng.permutation(n_units).astype(np.int64)
    log_latency = rng.normal(math.log(650.0), 0.35, n_units)
    pre_latency = np.exp(log_latency + 0.125 + rng.normal(0.0, 0.2, n_units))
    latency = np.exp(log_latency[unit] + np.log(LATENCY_FACTOR)[arm] + rng.normal(0.0, 0.5, rows))
    token_mean = rng.lognormal(math.log(220.0), 0.3, n_units)
    tokens = rng.poisson(token_mean[unit] * TOKEN_FACTOR[arm]).astype(np.int32)
    cost = tokens * 6e-7 + rng.gamma(2.0, 1.5e-4, rows)
    resolve_p = rng.beta(3.0, 7.0, n_units)
    resolved = rng.random(rows) < resolve_p[unit] + RESOLVE_LIFT[arm]
    error = rng.random(rows) < ERROR_RATE[arm]
    return pd.DataFrame(
        {
            "unit": ids[unit],
            "variant": pd.Categorical.from_codes(arm, categories=list(VARIANTS)),
            "resolved": resolved.astype(np.int8),
            "latency_ms": latency,
            "cost_usd": cost,
            "completion_tokens": tokens,
            "error": error.astype(np.int8),
            "pre_latency_ms": pre_latency[unit],
        }
    )


# --------------------------------------------------------------------------- memory


# --------------------------------------------------------------------------- loopline


def loopline_analysis(events: pd.DataFrame) -> tuple[Any, float]:
    """Aggregation and analysis with the engine; returns the result and the aggregation time."""
    from loopline.experiments.analysis import analyze_experiment
    from loopline.experiments.metrics import aggregate_units
    from loopline.experiments.policy import AnalysisConfig, MetricSpec

    start = time.perf_counter()
    events["requests"] = np.ones(len(events), dtype=np.int8)
    table = aggregate_units(
        events,
        {
            "resolved": "any",
            "latency_ms": "mean",
            "cost_usd": "sum",
            "completion_tokens": "sum",
            "error": "sum",
            "requests": "sum",
            "pre_latency_ms": "first",
        },
        unit="unit",
        variant="variant",
    )
    aggregate_seconds = time.perf_counter() - start
    specs = [
        MetricSpec(name="resolved", kind="binary", column="resolved"),
        MetricSpec(
            name="latency_ms",
            kind="continuous",
            column="latency_ms",
            covariate="pre_latency_ms",
            higher_is_better=False,
        ),
        MetricSpec(name="cost_usd", kind="continuous", column="cost_usd", higher_is_better=False),
        MetricSpec(
            name="completion_tokens",
            kind="continuous",
            column="completion_tokens",
            higher_is_better=False,
        ),
        MetricSpec(
            name="error_rate",
            kind="ratio",
            numerator="error",
            denominator="requests",
            higher_is_better=False,
        ),
    ]
    result = analyze_experiment(
        table.frame,
        specs,
        experiment="benchmark",
        control=VARIANTS[0],
        expected_weights=dict(zip(VARIANTS, WEIGHTS, strict=True)),
        config=AnalysisConfig(),
    )
    return result, aggregate_seconds


def loopline_values(result: Any) -> dict[str, Any]:
    """The engine's result in the common layout compared by the parent."""
    comparisons = []
    for m in result.metrics:
        seq = m.sequential
        comparisons.append(
            {
                "metric": m.metric,
                "variant": m.variant,
                "n_control": m.n_control,
                "n_treatment": m.n_treatment,
                "control_value": m.control_value,
                "treatment_value": m.treatment_value,
                "fixed_p": m.fixed.p_value,
                "fixed_ci_low": m.fixed.ci_low,
                "fixed_ci_high": m.fixed.ci_high,
                "fixed_rel_ci_low": m.fixed.relative_ci_low,
                "fixed_rel_ci_high": m.fixed.relative_ci_high,
                "seq_p": seq.p_value if seq is not None else math.nan,
                "seq_ci_low": seq.ci_low if seq is not None else math.nan,
                "seq_ci_high": seq.ci_high if seq is not None else math.nan,
                "seq_rel_ci_low": seq.relative_ci_low if seq is not None else math.nan,
                "seq_rel_ci_high": seq.relative_ci_high if seq is not None else math.nan,
                "adjusted_p": m.adjusted_p_value,
                "prob_beat_control": m.prob_beat_control,
                "expected_loss": m.expected_loss,
                "cuped_theta": math.nan if m.cuped_theta is None else m.cuped_theta,
            }
        )
    return {
        "units": dict(result.units),
        "srm_statistic": result.srm.statistic,
        "srm_p": result.srm.p_value,
        "comparisons": comparisons,
        "prob_best": {
            name: {v.variant: v.prob_best for v in post.variants}
            for name, post in result.bayesian.items()
        },
    }


# --------------------------------------------------------------------------- baseline


def _msprt(
    difference: np.ndarray, variance: np.ndarray, tau2: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Normal-mixture SPRT: min(1, 1/Λ) and the confidence-sequence half-width."""
    s = variance + tau2
    log_lr = 0.5 * np.log(variance / s) + tau2 * difference**2 / (2.0 * variance * s)
    p = np.minimum(1.0, np.exp(-log_lr))
    half = np.sqrt(variance * s / tau2 * (-2.0 * math.log(alpha) + np.log(s / variance)))
    return p, half


def baseline_analysis(events: pd.DataFrame, seed: int) -> tuple[dict[str, Any], float]:
    """The same analysis with pandas, scipy and statsmodels calls."""
    import statsmodels.api as sm
    from scipy import optimize, stats
    from statsmodels.stats.multitest import multipletests
    from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest
    from statsmodels.stats.weightstats import CompareMeans

    start = time.perf_counter()
    per_unit = events.groupby("unit", sort=True).agg(
        variant=("variant", "first"),
        n_variants=("variant", "nunique"),
        resolved=("resolved", "max"),
        latency_ms=("latency_ms", "mean"),
        cost_usd=("cost_usd", "sum"),
        completion_tokens=("completion_tokens", "sum"),
        errors=("error", "sum"),
        requests=("error", "size"),
        pre_latency_ms=("pre_latency_ms", "first"),
    )
    contaminated = per_unit["n_variants"] > 1
    units = per_unit[~contaminated] if contaminated.any() else per_unit
    aggregate_seconds = time.perf_counter() - start

    control, treatments = VARIANTS[0], VARIANTS[1:]
    alpha = ALPHA / len(treatments)
    z_crit = stats.norm.ppf(1.0 - alpha / 2.0)
    counts = units["variant"].value_counts().reindex(list(VARIANTS), fill_value=0)
    shares = np.asarray(WEIGHTS) / sum(WEIGHTS)
    srm = stats.chisquare(counts.to_numpy(), f_exp=counts.sum() * shares)

    # CUPED: θ is the covariate's coefficient with arm dummies (pooled within-arm slope).
    design = pd.get_dummies(units["variant"], dtype=float)
    design.insert(0, "pre_latency_ms", units["pre_latency_ms"])
    theta = float(sm.OLS(units["latency_ms"], design).fit().params["pre_latency_ms"])
    pre = units["pre_latency_ms"]
    latency_cuped = units["latency_ms"] - theta * (pre - pre.mean())

    by_arm = units.groupby("variant", observed=True)
    masks = {v: (units["variant"] == v).to_numpy() for v in VARIANTS}
    values = {
        "latency_ms": latency_cuped.to_numpy(),
        "cost_usd": units["cost_usd"].to_numpy(),
        "completion_tokens": units["completion_tokens"].to_numpy(np.float64),
    }

    # Per-arm n, mean and variance of the mean estimate, per metric.
    arm_tables: dict[str, pd.DataFrame] = {}
    moments = by_arm[["resolved", "cost_usd", "completion_tokens"]].agg(["count", "mean", "var"])
    for col in ("resolved", "cost_usd", "completion_tokens"):
        m = moments[col]
        arm_tables[col] = pd.DataFrame(
            {"n": m["count"], "mean": m["mean"], "var_mean": m["var"] / m["count"]}
        )
    m = latency_cuped.groupby(units["variant"], observed=True).agg(["count", "mean", "var"])
    arm_tables["latency_ms"] = pd.DataFrame(
        {"n": m["count"], "mean": m["mean"], "var_mean": m["var"] / m["count"]}
    )
    ratio_cols = by_arm[["errors", "requests"]]
    means, variances, n = ratio_cols.mean(), ratio_cols.var(), ratio_cols.size()
    cov = ratio_cols.cov().xs("errors", level=1)["requests"]
    ratio = means["errors"] / means["requests"]
    var_ratio = (variances["errors"] - 2 * ratio * cov + ratio**2 * variances["requests"]) / (
        n * means["requests"] ** 2
    )
    arm_tables["error_rate"] = pd.DataFrame({"n": n, "mean": ratio, "var_mean": var_ratio})

    rows: list[dict[str, Any]] = []
    for metric, kind, _ in METRICS:
        arms = arm_tables[metric].reindex(list(VARIANTS))
        c = arms.loc[control]
        for variant in treatments:
            t = arms.loc[variant]
            rel = t["mean"] / c["mean"] - 1.0
            rel_se = math.sqrt(
                t["var_mean"] / c["mean"] ** 2 + t["mean"] ** 2 * c["var_mean"] / c["mean"] ** 4
            )
            rel_lo, rel_hi = rel - z_crit * rel_se, rel + z_crit * rel_se
            if kind == "binary":
                x_c = round(c["mean"] * c["n"])
                x_t = round(t["mean"] * t["n"])
                n_c, n_t = int(c["n"]), int(t["n"])
                _, p = proportions_ztest([x_t, x_c], [n_t, n_c])
                lo, hi = confint_proportions_2indep(
                    x_t, n_t, x_c, n_c, method="wald", compare="diff", alpha=alpha
                )
                rr_lo, rr_hi = confint_proportions_2indep(
                    x_t, n_t, x_c, n_c, method="log", compare="ratio", alpha=alpha
                )
                rel_lo, rel_hi = rr_lo - 1.0, rr_hi - 1.0
            elif kind == "continuous":
                cm = CompareMeans.from_data(
                    values[metric][masks[variant]], values[metric][masks[control]]
                )
                _, p, _ = cm.ttest_ind(usevar="unequal")
                lo, hi = cm.tconfint_diff(alpha=alpha, usevar="unequal")
            else:
                diff = t["mean"] - c["mean"]
                se = math.sqrt(t["var_mean"] + c["var_mean"])
                p = 2.0 * stats.norm.sf(abs(diff / se))
                lo, hi = diff - z_crit * se, diff + z_crit * se
            rows.append(
                {
                    "metric": metric,
                    "variant": variant,
                    "n_control": int(c["n"]),
                    "n_treatment": int(t["n"]),
                    "control_value": float(c["mean"]),
                    "treatment_value": float(t["mean"]),
                    "fixed_p": float(p),
                    "fixed_ci_low": float(lo),
                    "fixed_ci_high": float(hi),
                    "fixed_rel_ci_low": float(rel_lo),
                    "fixed_rel_ci_high": float(rel_hi),
                    "cuped_theta": theta if metric == "latency_ms" else math.nan,
                }
            )

    # Sequential (mSPRT), vectorised over the 10 comparisons.
    table = pd.DataFrame(rows)
    a = -2.0 * math.log(alpha)
    u_star = optimize.brentq(lambda u: u - a - math.log1p(u), a, 10.0 * a + 10.0, xtol=1e-14)
    phi2 = u_star / (PLANNED_UNITS_PER_VARIANT / 2.0)
    arms_c = pd.DataFrame([arm_tables[r["metric"]].loc[control] for r in rows])
    arms_t = pd.DataFrame([arm_tables[r["metric"]].loc[r["variant"]] for r in rows])
    v_c, v_t = arms_c["var_mean"].to_numpy(), arms_t["var_mean"].to_numpy()
    m_c, m_t = arms_c["mean"].to_numpy(), arms_t["mean"].to_numpy()
    n_c, n_t = arms_c["n"].to_numpy(), arms_t["n"].to_numpy()
    variance = v_c + v_t
    tau2 = phi2 * variance / (1.0 / n_c + 1.0 / n_t)
    difference = m_t - m_c
    seq_p, half = _msprt(difference, variance, tau2, alpha)
    rel = m_t / m_c - 1.0
    _, rel_half = _msprt(rel, v_t / m_c**2 + m_t**2 * v_c / m_c**4, tau2 / m_c**2, alpha)
    table["seq_p"] = seq_p
    table["seq_ci_low"], table["seq_ci_high"] = difference - half, difference + half
    table["seq_rel_ci_low"], table["seq_rel_ci_high"] = rel - rel_half, rel + rel_half
    table["adjusted_p"] = multipletests(seq_p, method="holm")[1]

    # Bayesian: Monte-Carlo Beta posteriors (binary), normal formulas otherwise.
    rng = np.random.default_rng(seed)
    prob_best: dict[str, dict[str, float]] = {}
    beat: dict[tuple[str, str], float] = {}
    loss: dict[tuple[str, str], float] = {}
    for metric, kind, higher in METRICS:
        arms = arm_tables[metric].reindex(list(VARIANTS))
        sign = 1.0 if higher else -1.0
        if kind == "binary":
            x = np.round(arms["mean"] * arms["n"]).to_numpy()
            draws = rng.beta(1.0 + x, 1.0 + arms["n"].to_numpy() - x, size=(MC_DRAWS, len(x)))
            good = sign * draws
            for i, variant in enumerate(treatments, start=1):
                beat[metric, variant] = float(np.mean(good[:, i] > good[:, 0]))
                loss[metric, variant] = float(np.mean(np.maximum(good[:, 0] - good[:, i], 0.0)))
        else:
            mean, sd = arms["mean"].to_numpy(), np.sqrt(arms["var_mean"].to_numpy())
            draws = mean + sd * rng.standard_normal((MC_DRAWS, len(mean)))
            good = sign * draws
            for i, variant in enumerate(treatments, start=1):
                d = sign * (mean[i] - mean[0])
                s = math.hypot(sd[i], sd[0])
                beat[metric, variant] = float(stats.norm.cdf(d / s))
                loss[metric, variant] = float(
                    s * stats.norm.pdf(d / s) - d * stats.norm.cdf(-d / s)
                )
        best = np.bincount(np.argmax(good, axis=1), minlength=len(VARIANTS)) / MC_DRAWS
        prob_best[metric] = dict(zip(VARIANTS, best.tolist(), strict=True))
    table["prob_beat_control"] = [beat[r["metric"], r["variant"]] for r in rows]
    table["expected_loss"] = [loss[r["metric"], r["variant"]] for r in rows]

    result = {
        "units": {v: int(counts[v]) for v in VARIANTS},
        "srm_statistic": float(srm.statistic),
        "srm_p": float(srm.pvalue),
        "comparisons": table.to_dict("records"),
        "prob_best": prob_best,
    }
    return result, aggregate_seconds


# --------------------------------------------------------------------------- child


def run_child(contender: str, data: Path, seed: int) -> dict[str, Any]:
    """Runs in the subprocess: one contender on the saved log; returns its values and costs."""
    # Import costs are not part of the run.
    if contender == "loopline":
        import loopline.experiments.analysis  # noqa: F401
    else:
        import statsmodels.api  # noqa: F401
    events = pd.read_parquet(data)
    warm = events.iloc[:WARM_ROWS].copy()
    analysis: Callable[[pd.DataFrame], tuple[Any, float]]
    if contender == "loopline":
        analysis = loopline_analysis
    else:

        def analysis(frame: pd.DataFrame) -> tuple[Any, float]:
            return baseline_analysis(frame, seed)

    analysis(warm)
    del warm
    meter = PeakRss()
    meter.start()
    start = time.perf_counter()
    raw, aggregate_seconds = analysis(events)
    seconds = time.perf_counter() - start
    peak_mb = meter.stop()
    values = loopline_values(raw) if contender == "loopline" else raw
    return {
        "seconds": seconds,
        "aggregate_seconds": aggregate_seconds,
        "peak_mb": peak_mb,
        "baseline_rss_mb": meter.baseline / 1024,
        "memory_method": meter.method,
        "rows": len(events),
        **values,
    }


def spawn(contender: str, data: Path, seed: int) -> dict[str, Any]:
    # A fixed mmap threshold (glibc) returns every large array to the OS when it is freed, so
    # that the resident set follows the live allocations of both contenders alike.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", contender, "--data", str(data), "--seed", str(seed)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{contender} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# --------------------------------------------------------------------------- comparison


class Agreement:
    """Collects compared values per group: count, worst relative difference, mismatches."""

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, Any]] = {}
        self.problems: list[str] = []

    def _group(self, name: str) -> dict[str, Any]:
        return self.groups.setdefault(name, {"values": 0, "max_diff": 0.0, "where": ""})

    def relative(
        self, group: str, where: str, ours: Any, theirs: Any, *, rtol: float, floor: float
    ) -> None:
        """|a − b| <= rtol · max(|a|, |b|, floor); the worst scaled difference is kept."""
        g = self._group(group)
        g["values"] += 1
        a, b = float(ours), float(theirs)
        if math.isnan(a) and math.isnan(b):
            return
        if a == b:
            return
        scale = max(abs(a), abs(b), floor)
        diff = abs(a - b) / scale if math.isfinite(a - b) else math.inf
        if diff >= g["max_diff"]:
            g["max_diff"], g["where"] = diff, where
        if not diff <= rtol:
            self.problems.append(f"{group}: {where} loopline {a!r} vs baseline {b!r}")

    def absolute(self, group: str, where: str, ours: Any, theirs: Any, tol: float) -> None:
        g = self._group(group)
        g["values"] += 1
        diff = abs(float(ours) - float(theirs))
        if diff >= g["max_diff"]:
            g["max_diff"], g["where"] = diff, where
        if not diff <= tol:
            self.problems.append(f"{group}: {where} loopline {ours!r} vs baseline {theirs!r}")

    def exact(self, group: str, where: str, ours: Any, theirs: Any) -> None:
        self._group(group)["values"] += 1
        if ours != theirs:
            self.problems.append(f"{group}: {where} loopline {ours!r} vs baseline {theirs!r}")


def compare(loopline: dict[str, Any], baseline: dict[str, Any]) -> Agreement:
    """Check every value of the engine against the baseline (tolerances in the docstring)."""
    check = Agreement()
    check.exact("unit counts", "units per arm", loopline["units"], baseline["units"])
    for field in ("srm_p", "srm_statistic"):
        check.relative("SRM", field, loopline[field], baseline[field], rtol=SRM_RTOL, floor=1e-12)
    theirs = {(r["metric"], r["variant"]): r for r in baseline["comparisons"]}
    kinds = {name: kind for name, kind, _ in METRICS}
    for ours in loopline["comparisons"]:
        metric, variant = ours["metric"], ours["variant"]
        ref = theirs.get((metric, variant))
        where = f"{metric}/{variant}"
        if ref is None:
            check.problems.append(f"{where}: missing from the baseline")
            continue
        for field in ("n_control", "n_treatment"):
            check.exact("unit counts", f"{where} {field}", ours[field], ref[field])
        level = abs(ours["control_value"])
        # (group, field, floor of the scale of the relative difference)
        specs = [("arm values", "control_value", 0.0), ("arm values", "treatment_value", 0.0)]
        for prefix, group in (("fixed", "fixed-horizon"), ("seq", "sequential (mSPRT)")):
            specs.append((group, f"{prefix}_p", 1e-6))
            for bound in ("ci_low", "ci_high"):
                specs.append((group, f"{prefix}_{bound}", 1e-3 * level))
                specs.append((group, f"{prefix}_rel_{bound}", 1e-3))
        specs.append(("Holm", "adjusted_p", 1e-6))
        if metric == "latency_ms":
            specs.append(("CUPED theta", "cuped_theta", 0.0))
        if kinds[metric] != "binary":
            specs.append(("Bayes normal", "prob_beat_control", 1e-6))
            specs.append(("Bayes normal", "expected_loss", 1e-6 * level))
        for group, field, floor in specs:
            label = f"{where} {field}"
            check.relative(group, label, ours[field], ref[field], rtol=RTOL, floor=floor)
        if kinds[metric] != "binary":
            continue
        # Monte Carlo in the baseline: the loss in posterior SDs of the difference.
        p_c, p_t = ours["control_value"], ours["treatment_value"]
        sd = math.sqrt(p_c * (1 - p_c) / ours["n_control"] + p_t * (1 - p_t) / ours["n_treatment"])
        group = "Bayes Beta (MC)"
        check.absolute(
            group, f"{where} P(beat)", ours["prob_beat_control"], ref["prob_beat_control"], MC_TOL
        )
        check.absolute(
            group, f"{where} loss/sd", ours["expected_loss"] / sd, ref["expected_loss"] / sd, MC_TOL
        )
    for metric, arms in loopline["prob_best"].items():
        for variant, value in arms.items():
            check.absolute(
                "P(best) (MC)",
                f"{metric}/{variant}",
                value,
                baseline["prob_best"][metric][variant],
                PROB_BEST_TOL,
            )
    return check


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="exposure rows (default 10M)")
    parser.add_argument("--seed", type=int, default=20240917)
    parser.add_argument("--quick", action="store_true", help="1,000,000 rows")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--child", choices=("loopline", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.data, args.seed)))
        return
    rows = args.rows if args.rows is not None else (1_000_000 if args.quick else 10_000_000)

    print(f"\nLoopline experiment analysis benchmark ({os.cpu_count()} cores, seed {args.seed})")
    with tempfile.TemporaryDirectory(prefix="loopline-bench-") as tmp:
        data = Path(tmp) / "exposures.parquet"
        start = time.perf_counter()
        events = make_events(rows, args.seed)
        events.to_parquet(data, index=False)
        n_units = int(events["unit"].nunique())
        del events
        gen_seconds = time.perf_counter() - start
        print(
            f"{rows:,} exposure rows, {n_units:,} units, 3 arms (1:1:1), 5 metrics x 2 treatments;"
            f" data generated and written in {gen_seconds:.1f} s "
            f"({data.stat().st_size / 2**20:.0f} MB parquet)"
        )
        print("each contender in a fresh process on the same file, warmed up first\n")
        baseline = spawn("baseline", data, args.seed)
        loopline = spawn("loopline", data, args.seed)

    header = f"{'contender':<28}{'aggregate s':>12}{'analyse s':>11}{'wall s':>9}{'peak MB':>10}"
    print(header)
    print("-" * len(header))
    for name, res in (("pandas + statsmodels", baseline), ("loopline", loopline)):
        print(
            f"{name:<28}{res['aggregate_seconds']:>12.2f}"
            f"{res['seconds'] - res['aggregate_seconds']:>11.2f}"
            f"{res['seconds']:>9.2f}{res['peak_mb']:>10.0f}"
        )
    speed = baseline["seconds"] / loopline["seconds"]
    memory = loopline["peak_mb"] / baseline["peak_mb"] if baseline["peak_mb"] > 0 else math.nan
    analyse_speed = (baseline["seconds"] - baseline["aggregate_seconds"]) / max(
        loopline["seconds"] - loopline["aggregate_seconds"], 1e-9
    )
    print(
        f"\nspeed  (baseline / loopline wall time): {speed:.2f}x"
        f"  (analysis alone {analyse_speed:.1f}x)"
    )
    print(f"memory (loopline / baseline peak):      {memory:.2f}")
    print(
        f"memory: peak RSS above the post-load, post-warm-up baseline ({loopline['memory_method']})"
    )

    check = compare(loopline, baseline)
    total = sum(g["values"] for g in check.groups.values())
    verdict = "all agree" if not check.problems else f"{len(check.problems)} MISMATCHES"
    print(f"\nagreement: {total} values compared, {verdict}")
    for name, g in check.groups.items():
        worst = f"max diff {g['max_diff']:.1e} ({g['where']})" if g["where"] else "identical"
        print(f"  {name:<20}{g['values']:>4} values  {worst}")
    for line in check.problems:
        print(f"    {line}")

    print("\nloopline results (sequential intervals, relative to control)")
    print(f"  {'metric':<19}{'arm':<5}{'rel. diff':>10}{'interval':>22}{'p (seq)':>10}"
          f"{'Holm p':>10}{'P(beat)':>9}")  # fmt: skip
    for r in loopline["comparisons"]:
        rel = r["treatment_value"] / r["control_value"] - 1.0
        interval = f"[{r['seq_rel_ci_low']:+.2%}, {r['seq_rel_ci_high']:+.2%}]"
        print(
            f"  {r['metric']:<19}{r['variant']:<5}{rel:>+10.2%}{interval:>22}"
            f"{r['seq_p']:>10.2g}{r['adjusted_p']:>10.2g}{r['prob_beat_control']:>9.3f}"
        )

    if args.json is not None:
        out = {
            "rows": rows,
            "units": n_units,
            "seed": args.seed,
            "cores": os.cpu_count(),
            "contenders": {
                name: {
                    key: res[key]
                    for key in ("seconds", "aggregate_seconds", "peak_mb", "memory_method")
                }
                for name, res in (("baseline", baseline), ("loopline", loopline))
            },
            "speed_ratio": speed,
            "memory_ratio": memory,
            "agreement": {"groups": check.groups, "problems": check.problems},
            "loopline": {k: loopline[k] for k in ("units", "srm_p", "comparisons", "prob_best")},
            "baseline": {k: baseline[k] for k in ("units", "srm_p", "comparisons", "prob_best")},
        }
        args.json.write_text(json.dumps(out, indent=2) + "\n")
        print(f"\nresults written to {args.json}")


if __name__ == "__main__":
    main()
