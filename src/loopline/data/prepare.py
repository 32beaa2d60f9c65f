"""Data stages run by DVC through the CLI: generate the raw corpus, prepare the splits.

``generate_raw`` writes ``<raw_dir>/tickets.jsonl``: generated and already redacted, so
personal data never reaches the disk. ``prepare`` reads it back, redacts once more (defence
in depth for raw files produced elsewhere), assigns leak-free hash splits and writes
``<prepared_dir>/{train,val,test}.jsonl`` and ``stats.json``. Every file is written
atomically; a failed stage leaves the previous outputs untouched.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from loopline.config import DataConfig, Settings
from loopline.data.corpus import CUSTOMER_COLUMNS, generate_tickets
from loopline.data.io import read_dataset, write_json, write_jsonl
from loopline.data.pii import PII_KINDS, PLACEHOLDERS, RedactionStats, redact_frame
from loopline.data.splits import SPLITS, normalise_prompt, with_splits

RAW_FILE = "tickets.jsonl"
STATS_FILE = "stats.json"

# Columns every prepared split has, then the optional ones kept when the raw data has them.
PREPARED_REQUIRED: tuple[str, ...] = ("ticket_id", "prompt", "intent", "reply", "split")
PREPARED_OPTIONAL: tuple[str, ...] = ("channel", "true_intent", "is_ambiguous", "is_noisy")
PREPARED_COLUMNS: tuple[str, ...] = PREPARED_REQUIRED + PREPARED_OPTIONAL
TEXT_COLUMNS: tuple[str, ...] = ("prompt", "reply")


def raw_path(settings: Settings) -> Path:
    return settings.path(settings.data.raw_dir) / RAW_FILE


def prepared_dir(settings: Settings) -> Path:
    return settings.path(settings.data.prepared_dir)


def build_raw(
    cfg: DataConfig, fresh: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, RedactionStats]:
    """The generated corpus (plus ``fresh`` tickets) with every text and customer column
    redacted."""
    tickets = generate_tickets(cfg)
    if fresh is not None and len(fresh):
        tickets = pd.concat([tickets, fresh[list(tickets.columns)]], ignore_index=True)
    return redact_frame(tickets, (*TEXT_COLUMNS, *CUSTOMER_COLUMNS))


def read_fresh(directory: Path) -> pd.DataFrame | None:
    """Labelled production tickets in ``directory`` (``*.jsonl``, sorted by name), or None.

    Every file must carry the corpus columns; raises ``DatasetParseError`` naming the file.
    """
    from loopline.data.corpus import CORPUS_COLUMNS
    from loopline.data.io import DatasetParseError, read_dataset

    files = sorted(directory.glob("*.jsonl")) if directory.is_dir() else []
    frames = []
    for path in files:
        frame = read_dataset(path)
        missing = [c for c in CORPUS_COLUMNS if c not in frame.columns]
        if missing:
            raise DatasetParseError(path, f"fresh tickets lack column(s) {missing}")
        frames.append(frame[list(CORPUS_COLUMNS)])
    return pd.concat(frames, ignore_index=True) if frames else None


def generate_raw(settings: Settings) -> Path:
    """Generate the corpus, add the fresh labelled tickets, redact; write
    ``<raw_dir>/tickets.jsonl`` atomically."""
    fresh = read_fresh(settings.path(settings.data.fresh_dir))
    frame, _ = build_raw(settings.data, fresh)
    return write_jsonl(frame, raw_path(settings))


def _placeholder_counts(frames: dict[str, pd.DataFrame]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for frame in frames.values():
        for col in TEXT_COLUMNS:
            text = frame[col].astype(str)
            for kind in PII_KINDS:
                counts[kind] += int(text.str.count(PLACEHOLDERS[kind].replace("[", r"\[")).sum())
    return {k: counts[k] for k in PII_KINDS}


def build_prepared(
    raw: pd.DataFrame, cfg: DataConfig
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Split ``raw`` into prepared frames (``PREPARED_COLUMNS``) and compute their stats.

    Raises ``ValueError`` naming the columns ``raw`` lacks.
    """
    missing = [c for c in PREPARED_REQUIRED if c != "split" and c not in raw.columns]
    if missing:
        raise ValueError(f"raw data lacks required column(s) {missing}")
    redacted, residual = redact_frame(raw, TEXT_COLUMNS)
    split_frame = with_splits(redacted, cfg.splits)
    columns = [c for c in PREPARED_COLUMNS if c in split_frame.columns]
    frames = {
        split: split_frame.loc[split_frame["split"] == split, columns].reset_index(drop=True)
        for split in SPLITS
    }
    n = len(split_frame)
    groups = split_frame["prompt"].astype(str).map(normalise_prompt).value_counts()
    stats: dict[str, Any] = {
        "rows": n,
        "seed": cfg.seed,
        "splits": {s: len(frames[s]) for s in SPLITS},
        "fractions": {s: round(len(frames[s]) / n, 4) if n else 0.0 for s in SPLITS},
        "configured_fractions": cfg.splits.model_dump(),
        "intents": {
            s: {str(k): int(v) for k, v in frames[s]["intent"].value_counts().sort_index().items()}
            for s in SPLITS
        },
        "duplicate_prompt_groups": int((groups > 1).sum()),
        "redaction": {
            "placeholders": _placeholder_counts(frames),
            "residual_hits": dict(residual.counts),
        },
    }
    for flag in ("is_ambiguous", "is_noisy"):
        if flag in split_frame.columns:
            stats[flag.removeprefix("is_")] = {s: int(frames[s][flag].sum()) for s in SPLITS}
    return frames, stats


def prepare(settings: Settings, *, validate: bool = False) -> dict[str, Path]:
    """Read the raw corpus, write the prepared splits and ``stats.json``.

    Returns the written paths keyed ``train``, ``val``, ``test`` and ``stats``. With
    ``validate=True`` the dataset contract runs first and a violation
    (``DataValidationError``) leaves the prepared directory untouched.
    """
    raw = read_dataset(raw_path(settings))
    frames, stats = build_prepared(raw, settings.data)
    if validate:
        from loopline.data.contracts import validate_prepared

        validate_prepared(frames, settings)
    out_dir = prepared_dir(settings)
    stats["source"] = f"{settings.data.raw_dir}/{RAW_FILE}"  # relative: stable across checkouts
    paths: dict[str, Path] = {
        split: write_jsonl(frames[split], out_dir / f"{split}.jsonl") for split in SPLITS
    }
    paths["stats"] = write_json(stats, out_dir / STATS_FILE)
    return paths
