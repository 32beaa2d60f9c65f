"""Simulated traffic for measuring drift detection: clean and drifted request-log records.

``clean_records`` are tickets from the corpus generator with other seeds (the training
distribution, new customers and orders); ``drifted_records`` come from the drift scenario
(:func:`loopline.data.drift.generate_drifted_traffic`). Replies are the training targets of
each ticket, i.e. a model that answers like its training data, so input drift is measured
on its own and output columns move only where the traffic itself asks for other answers
(new intents, refusals of off-topic questions).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from loopline.config import DataConfig
from loopline.models.prompting import format_target


def _records(frame: pd.DataFrame, start: float) -> list[dict[str, Any]]:
    return [
        {
            "request_id": f"sim-{start:.0f}-{i}",
            "ts": start + i,
            "endpoint": "chat",
            "status": 200,
            "prompt": str(p),
            "reply": format_target(str(intent), str(reply)),
            "latency_ms": 20.0,
            "model_version": "1",
            "variant": "stable",
        }
        for i, (p, intent, reply) in enumerate(
            zip(frame["prompt"], frame["intent"], frame["reply"], strict=True)
        )
    ]


def clean_records(n: int, seed: int, data: DataConfig | None = None) -> list[dict[str, Any]]:
    """``n`` redacted in-distribution requests (the corpus generator with ``seed``)."""
    from loopline.data.prepare import build_raw

    cfg = (data or DataConfig()).model_copy(update={"seed": seed, "n_tickets": max(n, 50)})
    frame, _ = build_raw(cfg)
    return _records(frame.head(n), 0.0)


def drifted_records(
    n: int, seed: int, mix: Mapping[str, float] | None = None
) -> list[dict[str, Any]]:
    """``n`` redacted requests of the drift scenario (default mix: every drift kind)."""
    from loopline.data.drift import generate_drifted_traffic

    return _records(generate_drifted_traffic(n, seed, mix), 0.0)


class MemoEncoder:
    """Wraps an ``encode(texts) -> vectors`` function with a per-text cache, so windows
    resampled from one pool embed each prompt once."""

    def __init__(self, encode: Callable[[Sequence[str]], np.ndarray]) -> None:
        self._encode = encode
        self._cache: dict[str, np.ndarray] = {}

    def prime(self, texts: Sequence[str]) -> None:
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if todo:
            for text, vec in zip(todo, self._encode(todo), strict=True):
                self._cache[text] = vec

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.prime(texts)
        return np.stack([self._cache[t] for t in texts])
