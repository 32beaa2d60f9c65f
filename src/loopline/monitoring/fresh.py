"""Fresh labelled tickets for retraining after input drift.

In production the tickets behind a drift alert go to a labelling queue and come back with
their intents and approved replies. This demo has no people in the loop, so the stand-in
labeller draws labelled tickets of the drifted kinds the model can learn from the drift
scenario's generator (:func:`loopline.data.drift.generate_drifted_traffic`): other registers
and long prompts of the known intents. Tickets of intents the model has never seen need a
person to extend the label set first; the retraining never invents labels for them.

The tickets land in ``data.fresh_dir`` as one JSONL file per batch (atomic), where the
``generate`` stage adds them to the corpus, so DVC versions them through ``data/raw``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loopline.config import Settings

LEARNABLE_KINDS: tuple[str, ...] = ("register", "long_prompt")


def write_fresh_tickets(
    settings: Settings,
    n: int,
    *,
    seed: int,
    kinds: tuple[str, ...] = LEARNABLE_KINDS,
    stamp: str | None = None,
) -> Path:
    """Write ``n`` labelled tickets of ``kinds`` to ``<fresh_dir>/tickets-<stamp>.jsonl``.

    Tickets whose prompt exceeds the data contract's ``max_prompt_chars`` are dropped (the
    contract would refuse them); raises ``ValueError`` for an unknown or unlearnable kind.
    """
    from loopline.data.drift import generate_drifted_traffic
    from loopline.data.io import write_jsonl

    bad = [k for k in kinds if k not in LEARNABLE_KINDS]
    if bad or not kinds:
        raise ValueError(f"fresh tickets: kinds must be among {LEARNABLE_KINDS}, got {kinds}")
    if n < 1:
        raise ValueError(f"fresh tickets: n must be >= 1, got {n}")
    cfg = settings.data
    frame = generate_drifted_traffic(
        n,
        seed,
        dict.fromkeys(kinds, 1.0),
        max_prompt_chars=cfg.max_prompt_chars,
        max_reply_chars=cfg.max_reply_chars,
        long_sentences=(2, 4),
    )
    frame = frame[frame["prompt"].str.len() <= cfg.max_prompt_chars].drop(columns=["drift_kind"])
    stamp = stamp or time.strftime("%Y%m%dT%H%M%S")
    frame = frame.assign(ticket_id=[f"FRS-{stamp}-{i:05d}" for i in range(len(frame))])
    folder = settings.path(cfg.fresh_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return write_jsonl(frame.reset_index(drop=True), folder / f"tickets-{stamp}.jsonl")
