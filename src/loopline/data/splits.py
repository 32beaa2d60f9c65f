"""Leak-free train/val/test assignment by a stable hash of the normalised prompt.

A ticket's split depends only on its prompt text after normalisation (Unicode NFKC, lower
case, placeholders unified, digit runs collapsed, punctuation dropped, whitespace collapsed),
never on its position, its id or the random seed. Re-sent and near-identical tickets
therefore always land in the same split, and adding tickets never moves existing ones.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable

import pandas as pd

from loopline.config import SplitConfig

SPLITS: tuple[str, ...] = ("train", "val", "test")

# The hash key is part of the split definition: changing it reshuffles every split.
_HASH_KEY = b"loopline-split-v1"
_PLACEHOLDER = re.compile(r"\[\s*(?:email|phone|card|name)\s*\]", re.IGNORECASE)
_DIGITS = re.compile(r"\d+")
_NON_WORD = re.compile(r"[^\w<>]+")


def normalise_prompt(text: str) -> str:
    """The form two prompts must share to count as duplicates.

    >>> normalise_prompt("Where is  order #123?? -- [NAME]")
    'where is order 0 <pii>'
    """
    t = unicodedata.normalize("NFKC", text).lower()
    t = _PLACEHOLDER.sub(" <pii> ", t)
    t = _DIGITS.sub("0", t)
    t = _NON_WORD.sub(" ", t.replace("_", " "))
    return " ".join(t.split())


def hash_unit(text: str) -> float:
    """A stable number in [0, 1) for ``text`` (keyed blake2b, independent of PYTHONHASHSEED)."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=_HASH_KEY).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_for(prompt: str, fractions: SplitConfig) -> str:
    """The split ``prompt`` belongs to under ``fractions``."""
    u = hash_unit(normalise_prompt(prompt))
    if u < fractions.train:
        return "train"
    if u < fractions.train + fractions.val:
        return "val"
    return "test"


def assign_splits(prompts: Iterable[str], fractions: SplitConfig) -> list[str]:
    """``split_for`` for each prompt, in order."""
    return [split_for(p, fractions) for p in prompts]


def with_splits(df: pd.DataFrame, fractions: SplitConfig, column: str = "prompt") -> pd.DataFrame:
    """A copy of ``df`` with a ``split`` column assigned from ``column``."""
    out = df.copy()
    out["split"] = assign_splits(out[column].astype(str), fractions)
    return out
