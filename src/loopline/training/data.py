"""Training examples: reading prepared splits, tokenising, and length-bucketed batches."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from loopline.models.encoding import PromptEncoder
from loopline.models.prompting import format_prompt, format_target

REQUIRED_FIELDS = ("prompt", "intent", "reply")
IGNORE_INDEX = -100


def read_split(prepared_dir: Path, split: str) -> list[dict[str, Any]]:
    """Rows of ``<prepared_dir>/<split>.jsonl`` (each must have prompt, intent, reply)."""
    path = Path(prepared_dir) / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"prepared split not found: {path}")
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON: {exc}") from exc
            missing = [f for f in REQUIRED_FIELDS if not isinstance(row.get(f), str)]
            if missing:
                raise ValueError(f"{path}:{lineno}: missing or non-string field(s) {missing}")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no examples")
    return rows


def training_texts(rows: Sequence[dict[str, Any]]) -> Iterator[str]:
    """The full training strings (prompt + target), for fitting a tokenizer."""
    for row in rows:
        yield format_prompt(row["prompt"]) + format_target(row["intent"], row["reply"])


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    n_prompt: int  # the first n_prompt tokens carry no loss

    @property
    def n_target(self) -> int:
        return len(self.input_ids) - self.n_prompt


def encode_rows(
    rows: Sequence[dict[str, Any]], encoder: PromptEncoder, max_seq_len: int
) -> list[Example]:
    out = []
    for row in rows:
        ids, n_prompt = encoder.example_ids(row["prompt"], row["intent"], row["reply"], max_seq_len)
        if len(ids) > n_prompt:  # an example whose target was cut away teaches nothing
            out.append(Example(ids, n_prompt))
    if not out:
        raise ValueError("no trainable examples after encoding (max_seq_len too small?)")
    return out


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor  # (B, T), right-padded
    labels: torch.Tensor  # (B, T), IGNORE_INDEX on prompt and padding
    n_tokens: int  # real (non-pad) tokens
    n_target: int  # tokens that carry loss


def collate(examples: Sequence[Example], pad_id: int) -> Batch:
    """Right-pad into tensors; only target tokens get labels.

    With right padding a causal model's real tokens never attend to the pads after them, so no
    attention mask is needed (which keeps PyTorch's fused causal attention path).
    """
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for row, ex in enumerate(examples):
        seq = torch.tensor(ex.input_ids, dtype=torch.long)
        ids[row, : len(seq)] = seq
        labels[row, ex.n_prompt : len(seq)] = seq[ex.n_prompt :]
    return Batch(
        input_ids=ids,
        labels=labels,
        n_tokens=sum(len(e.input_ids) for e in examples),
        n_target=sum(e.n_target for e in examples),
    )


def bucketed_batches(
    examples: Sequence[Example], batch_size: int, rng: random.Random, *, pool_batches: int = 32
) -> Iterator[list[Example]]:
    """Endless stream of batches of similar length (less padding), shuffled every epoch.

    Each epoch shuffles the examples, sorts pools of ``pool_batches * batch_size`` by length,
    cuts them into batches and shuffles the batches, so lengths are grouped but the order
    stays random. Fully determined by ``rng``.
    """
    n = len(examples)
    batch_size = min(batch_size, n)
    while True:
        order = list(range(n))
        rng.shuffle(order)
        batches: list[list[int]] = []
        pool = pool_batches * batch_size
        for start in range(0, n, pool):
            chunk = sorted(order[start : start + pool], key=lambda i: len(examples[i].input_ids))
            batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
        rng.shuffle(batches)
        for idx in batches:
            yield [examples[i] for i in idx]
