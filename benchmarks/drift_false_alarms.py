"""False alarms of categorical drift tests on undrifted data: our two-sample test vs Evidently's.

    python benchmarks/drift_false_alarms.py [--runs N] [--seed N] [--quick]

Reference and current are drawn from the *same* category distribution, so every "drift" is a
false alarm. Each cell runs ``loopline.monitoring.stats.column_drift`` on the same draws in
both modes:

* ours      - ``categorical="two_sample"``: chi-square test of homogeneity on the 2 x k table,
              Monte-Carlo permutation p-value when an expected count is below 5; p < 0.05.
* evidently - ``categorical="evidently"``: Evidently 0.7.23's default (chi-square goodness of
              fit against the reference shares, or the Z-test for two values, at <= 1,000
              reference rows; Jensen-Shannon distance >= 0.1 above). That this mode equals
              Evidently's own values is what tests/monitoring/test_evidently_equivalence.py
              checks on real Evidently runs.

Distributions: balanced (5 categories at 20 %), unbalanced (one category at 90 %, others at
3, 3, 2, 1, 1 %) and binary (95 / 5 %, a flag such as "refusal"). Current sizes 20 ... 5,000;
reference 1x and 5x the current size, and a fixed 10,000-row reference (a champion's training
window against small monitoring windows). Target: our rate <= 5 % in every cell (a cell is
flagged when its rate exceeds the 99.9 % binomial quantile of 5 % for its number of runs).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from loopline.monitoring.stats import column_drift

DISTRIBUTIONS: dict[str, tuple[float, ...]] = {
    "balanced": (0.2, 0.2, 0.2, 0.2, 0.2),
    "unbalanced": (0.90, 0.03, 0.03, 0.02, 0.01, 0.01),
    "binary": (0.95, 0.05),
}
CURRENT_SIZES = (20, 50, 100, 300, 1000, 5000)
REFERENCES: tuple[tuple[str, int | None, int | None], ...] = (
    ("1x", 1, None),
    ("5x", 5, None),
    ("10k", None, 10_000),
)
ALPHA = 0.05
TOLERANCE_QUANTILE = 0.999


def false_alarm_rates(
    shares: tuple[float, ...], n_current: int, n_reference: int, runs: int, seed: int
) -> tuple[float, float, str]:
    """(ours, evidently, evidently's method) over ``runs`` undrifted draws."""
    rng = np.random.default_rng(seed)
    labels = np.array([f"c{i}" for i in range(len(shares))], dtype=object)
    p = np.asarray(shares)
    ours = theirs = 0
    methods: set[str] = set()
    for _ in range(runs):
        # the order of the rows does not matter to either test: draw counts, repeat labels
        ref = np.repeat(labels, rng.multinomial(n_reference, p))
        cur = np.repeat(labels, rng.multinomial(n_current, p))
        a = column_drift(ref, cur, kind="categorical", categorical="two_sample")
        b = column_drift(ref, cur, kind="categorical", categorical="evidently")
        ours += a.drifted
        theirs += b.drifted
        methods.add(b.method)
    return ours / runs, theirs / runs, "/".join(sorted(methods))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="draws per cell")
    parser.add_argument("--seed", type=int, default=20240917)
    parser.add_argument("--quick", action="store_true", help="100 draws per cell")
    args = parser.parse_args()
    runs = 100 if args.quick else args.runs
    limit = stats.binom.ppf(TOLERANCE_QUANTILE, runs, ALPHA) / runs
    start = time.perf_counter()

    print(
        f"\nCategorical false alarms on undrifted data ({os.cpu_count()} cores, {runs} draws "
        f"per cell, seed {args.seed}); flagged above {100 * limit:.1f} % "
        f"(99.9 % binomial quantile of {100 * ALPHA:.0f} %)"
    )
    header = (
        f"{'distribution':<12}{'current':>8}{'reference':>11}{'ours':>9}{'evidently':>11}"
        f"  evidently method"
    )
    print(header)
    print("-" * (len(header) + 8))
    worst = 0.0
    pooled_ours = pooled_theirs = 0.0
    flagged: list[str] = []
    cell = 0
    for name, shares in DISTRIBUTIONS.items():
        for label, ratio, fixed in REFERENCES:
            for n_current in CURRENT_SIZES:
                n_reference = fixed if fixed is not None else n_current * (ratio or 1)
                if fixed is not None and n_current >= fixed:
                    continue
                cell += 1
                ours, theirs, method = false_alarm_rates(
                    shares, n_current, n_reference, runs, args.seed + cell
                )
                worst = max(worst, ours)
                pooled_ours += ours
                pooled_theirs += theirs
                mark = ""
                if ours > limit:
                    mark = "  <- ours above target"
                    flagged.append(f"{name} n={n_current} ref={n_reference}")
                print(
                    f"{name:<12}{n_current:>8}{n_reference:>8} ({label:>3})"
                    f"{100 * ours:>7.1f} %{100 * theirs:>9.1f} %  {method}{mark}"
                )
        print()
    elapsed = time.perf_counter() - start
    verdict = "PASS" if not flagged else "FAIL: " + "; ".join(flagged)
    print(
        f"pooled over all {cell} cells ({cell * runs:,} draws): two-sample test "
        f"{100 * pooled_ours / cell:.2f} %, Evidently's default {100 * pooled_theirs / cell:.2f} %"
    )
    print(
        f"worst false-alarm rate of the two-sample test: {100 * worst:.1f} % "
        f"(target <= {100 * ALPHA:.0f} %): {verdict}  [{elapsed:.0f} s]"
    )


if __name__ == "__main__":
    main()
