"""Benchmark the drift statistics fast path against Evidently 0.7's DataDriftPreset.

    python benchmarks/drift.py [--rows 100000,1000000] [--seed N]

For each size, reference and current frames of that many rows x 20 columns (15 numeric
request descriptors, among them a few-valued one, and 5 categorical: two strings, two flags
and a small integer; current shifted in a few columns, ~1 % missing values in some) are built
from a seed, and each contender runs in its own fresh subprocess on the same frames:

* evidently - ``evidently_drift_values``: a real ``Report([DataDriftPreset(columns)])``
              (Evidently infers the column types itself) and the extraction of its values;
* fast      - ``drift_table(categorical="evidently")``: the vectorised path reproducing
              Evidently's statistic for every column (the default two-sample categorical test
              is timed after it, for information).

Both are warmed up on a small frame first (Evidently's first report pays seconds of lazy
imports), so the times are the computation. Memory is the peak resident set size above the
baseline taken after imports, data generation and the warm-up (Linux: the kernel's high-water
mark VmHWM is reset through /proc/self/clear_refs just before the run; where that is not
allowed, RSS is sampled every 5 ms instead). The parent process checks that both report the
same method and drift flag for every column and values within 1e-9 relative (1e-12 absolute
for distances near 0). Targets at 1M rows: speed ratio >= 15x, memory ratio <= 0.5.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _peak import PeakRss

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SPEED_TARGET = 15.0
MEMORY_TARGET = 0.5
RELATIVE_TOLERANCE = 1e-9
ABSOLUTE_TOLERANCE = 1e-12
MMAP_THRESHOLD = 128 * 1024
INTENTS = ("billing", "refund", "shipping", "account", "technical", "cancel", "other", "sales")
LANGUAGES = ("en", "de", "fr", "es")


def make_frames(rows: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A reference window and a slightly drifted current window of monitoring descriptors."""
    rng = np.random.default_rng(seed)

    def frame(shifted: bool) -> pd.DataFrame:
        s = 1.0 if shifted else 0.0
        n = rows
        intent_p = np.array([0.2, 0.15, 0.15, 0.12, 0.12, 0.1, 0.08, 0.08])
        if shifted:
            intent_p = np.array([0.17, 0.15, 0.15, 0.12, 0.15, 0.1, 0.08, 0.08])
        data: dict[str, Any] = {
            "prompt_chars": rng.lognormal(5.0, 0.6, n),
            "reply_chars": rng.lognormal(5.5 + 0.05 * s, 0.5, n),
            "ood_score": rng.beta(2.0 + 0.4 * s, 8.0, n),
            "latency_ms": rng.gamma(4.0, 60.0 * (1 + 0.1 * s), n),
            "ttft_ms": rng.gamma(3.0, 15.0, n),
            "prompt_tokens": rng.poisson(120, n),
            "completion_tokens": rng.poisson(200, n),
            "cost_usd": rng.gamma(2.0, 0.0004, n),
            "quality": rng.beta(8.0, 2.0, n),
            "rouge_l": rng.beta(6.0, 3.0 + 0.3 * s, n),
            "embedding_norm": rng.normal(10.0, 1.0, n),
            "perplexity": rng.lognormal(2.0, 0.3, n),
            "queue_ms": rng.exponential(5.0, n),
            "batch_size": rng.integers(1, 33, n),
            "temperature": rng.choice([0.0, 0.7], n, p=[0.8, 0.2]),
            "intent": np.asarray(INTENTS, dtype=object)[rng.choice(8, n, p=intent_p)],
            "language": np.asarray(LANGUAGES, dtype=object)[
                rng.choice(4, n, p=[0.7, 0.1, 0.1, 0.1])
            ],
            "empty_reply": rng.random(n) < 0.01,
            "refusal": rng.random(n) < (0.03 + 0.01 * s),
            "retries": rng.choice(4, n, p=[0.9, 0.07, 0.02, 0.01]),
        }
        df = pd.DataFrame(data)
        for col in ("latency_ms", "ood_score", "quality"):
            df.loc[rng.random(n) < 0.01, col] = np.nan
        return df

    return frame(False), frame(True)


def run_child(contender: str, rows: int, seed: int) -> dict[str, Any]:
    """Runs in the subprocess: one contender on one size; returns its values and costs."""
    from loopline.monitoring.stats import drift_table, evidently_drift_values
    from loopline.runtime import configure_environment

    configure_environment()
    if contender == "evidently":
        import evidently  # noqa: F401  (import cost is not part of the run)
    reference, current = make_frames(rows, seed)
    columns = list(reference.columns)
    warm_ref, warm_cur = make_frames(2000, seed + 1)
    if contender == "evidently":
        evidently_drift_values(warm_ref, warm_cur, columns)
    else:
        drift_table(warm_ref, warm_cur, categorical="evidently")
    del warm_ref, warm_cur

    meter = PeakRss()
    meter.start()
    start = time.perf_counter()
    if contender == "evidently":
        values = list(evidently_drift_values(reference, current, columns).values())
    else:
        values = drift_table(reference, current, categorical="evidently")
    seconds = time.perf_counter() - start
    peak_mb = meter.stop()
    out: dict[str, Any] = {
        "seconds": seconds,
        "peak_mb": peak_mb,
        "memory_method": meter.method,
        "columns": [v.to_dict() for v in values],
    }
    if contender == "fast":
        start = time.perf_counter()
        drift_table(reference, current)
        out["two_sample_seconds"] = time.perf_counter() - start
    return out


def spawn(contender: str, rows: int, seed: int) -> dict[str, Any]:
    # A fixed mmap threshold (glibc) returns every large array to the OS when it is freed, so
    # that the resident set follows the live allocations of both contenders alike.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", contender, "--rows", str(rows), "--seed", str(seed)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{contender} at {rows} rows failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def compare(evidently: dict[str, Any], fast: dict[str, Any]) -> tuple[list[str], float, str]:
    """Mismatches (empty when identical), the largest relative difference and its column."""
    theirs = {c["column"]: c for c in evidently["columns"]}
    problems: list[str] = []
    worst = 0.0
    worst_column = ""
    for ours in fast["columns"]:
        name = ours["column"]
        ref = theirs.get(name)
        if ref is None:
            problems.append(f"{name}: missing from Evidently's result")
            continue
        for key in ("method", "drifted", "n_reference", "n_current"):
            if ours[key] != ref[key]:
                problems.append(f"{name}: {key} {ours[key]!r} vs Evidently {ref[key]!r}")
        a, b = float(ours["statistic"]), float(ref["statistic"])
        diff = abs(a - b)
        rel = diff / abs(b) if b != 0 else (0.0 if diff == 0 else math.inf)
        if rel >= worst:
            worst, worst_column = rel, f"{name} ({ours['method']})"
        if diff > ABSOLUTE_TOLERANCE and rel > RELATIVE_TOLERANCE:
            problems.append(f"{name}: {ours['method']} {a!r} vs Evidently {b!r} (rel {rel:.1e})")
    return problems, worst, worst_column


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="100000,1000000", help="comma-separated sizes")
    parser.add_argument("--seed", type=int, default=20240917)
    parser.add_argument("--child", choices=("evidently", "fast"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(x) for x in str(args.rows).split(",") if x.strip()]
    if args.child:
        print(json.dumps(run_child(args.child, sizes[0], args.seed)))
        return

    print(f"\nLoopline drift statistics benchmark ({os.cpu_count()} cores, seed {args.seed})")
    print("20 columns (15 numeric, 5 categorical); each contender in a fresh process")
    header = (
        f"{'rows':>10}{'evidently s':>13}{'fast s':>9}{'speed':>9}{'evidently MB':>14}"
        f"{'fast MB':>9}{'memory':>8}{'2-sample s':>12}{'max rel diff':>14}  values"
    )
    print(header)
    print("-" * (len(header) + 4))
    verdicts: list[str] = []
    memory_method = ""
    for rows in sizes:
        ev = spawn("evidently", rows, args.seed)
        fast = spawn("fast", rows, args.seed)
        memory_method = fast["memory_method"]
        problems, worst, worst_column = compare(ev, fast)
        speed = ev["seconds"] / fast["seconds"]
        memory = fast["peak_mb"] / ev["peak_mb"] if ev["peak_mb"] > 0 else math.nan
        print(
            f"{rows:>10,}{ev['seconds']:>13.2f}{fast['seconds']:>9.2f}{speed:>8.1f}x"
            f"{ev['peak_mb']:>14.0f}{fast['peak_mb']:>9.1f}{memory:>8.3f}"
            f"{fast['two_sample_seconds']:>12.2f}{worst:>14.1e}  "
            + ("identical" if not problems else f"{len(problems)} MISMATCHES")
        )
        for line in problems:
            print(f"    {line}")
        methods: dict[str, int] = {}
        for col in fast["columns"]:
            methods[col["method"]] = methods.get(col["method"], 0) + 1
        drifted = [c["column"] for c in fast["columns"] if c["drifted"]]
        verdicts.append(
            f"{rows:,} rows: methods {methods}; drifted ({len(drifted)}/20): "
            f"{', '.join(drifted)}; largest relative difference in {worst_column}"
        )
        if rows == max(sizes) and rows >= 1_000_000:
            ok = speed >= SPEED_TARGET and memory <= MEMORY_TARGET and not problems
            verdicts.append(
                f"targets at {rows:,} rows: speed {speed:.1f}x (>= {SPEED_TARGET:g}x), memory "
                f"{memory:.2f} (<= {MEMORY_TARGET:g}), identical values: "
                + ("PASS" if ok else "FAIL")
            )
    print(f"\nmemory: peak RSS above the post-import, post-data baseline ({memory_method})")
    for line in verdicts:
        print(line)


if __name__ == "__main__":
    main()
