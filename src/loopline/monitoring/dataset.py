"""The monitoring dataset: one row of descriptors per served request, and its reference.

The current window comes from the request log (prompts and replies there are already
PII-redacted); the reference is the champion's training split, described the same way (its
prompts, and the replies the model was trained to produce). Columns:

* inputs (``INPUT_COLUMNS``): prompt length, PII hits (redaction placeholders), and
  ``ood_score``: 1 − the cosine similarity of the prompt's MiniLM embedding to its nearest
  reference prompt (reference rows: to their nearest reference prompt with another text,
  so both sides measure the same thing). Word counts are described too.
* outputs (``OUTPUT_COLUMNS``): reply length, the intent the reply names (``none`` when it
  names none), well-formed / refusal flags, the share of repeated word trigrams, PII hits
  and the label-free reply score of :mod:`loopline.serving.quality`.
* operational (``OPERATIONAL_COLUMNS``, current window only): status, latency, tokens, cost,
  version, variant, cache hit, and ``feedback`` (a user rating in [0, 1]) when one was given.

Embeddings are computed on at most ``embedding_max_rows`` sampled rows per side (seeded);
the other rows' ``ood_score`` is NaN and drift statistics drop NaNs per column.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from loopline.data.pii import PII_KINDS, PLACEHOLDERS
from loopline.models.prompting import format_target, parse_output
from loopline.serving.quality import describe_reply

if TYPE_CHECKING:
    from loopline.config import Settings

# prompt_words is described but not a drift column: it moves with prompt_chars, and two
# columns that always drift together would halve the dataset drift-share rule's meaning.
INPUT_COLUMNS: tuple[str, ...] = ("prompt_chars", "prompt_pii", "ood_score")
OUTPUT_COLUMNS: tuple[str, ...] = (
    "reply_chars",
    "reply_words",
    "reply_intent",
    "reply_well_formed",
    "reply_refusal",
    "reply_repetition",
    "reply_pii",
    "reply_quality",
)
CATEGORICAL_COLUMNS: frozenset[str] = frozenset(
    {"reply_intent", "reply_well_formed", "reply_refusal"}
)
OPERATIONAL_COLUMNS: tuple[str, ...] = (
    "ts",
    "request_id",
    "status",
    "latency_ms",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "model_version",
    "variant",
    "cache_hit",
    "feedback",
)
COMPLETION_ENDPOINTS: frozenset[str] = frozenset({"chat", "completions"})
NO_INTENT = "none"

_PII_RE = re.compile("|".join(re.escape(PLACEHOLDERS[k]) for k in PII_KINDS))
_REFUSAL_RE = re.compile(
    r"\b(?:i can(?:not|'t|’t) help|i am (?:unable|not able)|i'm (?:unable|not able)|"
    r"i can only help|outside (?:of )?(?:my|our|the) (?:scope|support)|"
    r"(?:not|isn't|is not) something (?:i|we) can help)",
    re.IGNORECASE,
)


def column_kinds() -> dict[str, str]:
    """``numeric`` or ``categorical`` for every input and output column."""
    return {
        c: ("categorical" if c in CATEGORICAL_COLUMNS else "numeric")
        for c in (*INPUT_COLUMNS, *OUTPUT_COLUMNS)
    }


def prompt_descriptors(prompts: Sequence[str]) -> pd.DataFrame:
    """The input columns except ``ood_score`` (which needs the reference)."""
    return pd.DataFrame(
        {
            "prompt_chars": [len(p) for p in prompts],
            "prompt_words": [len(p.split()) for p in prompts],
            "prompt_pii": [len(_PII_RE.findall(p)) for p in prompts],
        },
        dtype="float64",
    )


def reply_descriptors(replies: Sequence[str | None]) -> pd.DataFrame:
    """The output columns of raw model outputs (``intent: …`` / ``reply: …`` text)."""
    rows: list[dict[str, Any]] = []
    for raw in replies:
        text = raw or ""
        parsed = parse_output(text)
        d = describe_reply(text)
        rows.append(
            {
                "reply_chars": float(len(parsed.reply)),
                "reply_words": float(len(parsed.reply.split())),
                "reply_intent": parsed.intent or NO_INTENT,
                "reply_well_formed": "yes" if d.well_formed >= 1.0 else "no",
                "reply_refusal": "yes" if _REFUSAL_RE.search(parsed.reply) else "no",
                "reply_repetition": 1.0 - d.not_repetitive,
                "reply_pii": float(len(_PII_RE.findall(parsed.reply))),
                "reply_quality": d.score,
            }
        )
    return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))


def requests_frame(
    records: Iterable[Mapping[str, Any]],
    feedback: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Descriptor rows of the logged completion requests that carry a prompt.

    Failed requests (no reply) keep their operational columns; their reply columns describe
    an empty reply. ``feedback`` maps request ids to a rating in [0, 1].
    """
    kept = [
        r
        for r in records
        if r.get("endpoint") in COMPLETION_ENDPOINTS and isinstance(r.get("prompt"), str)
    ]
    prompts = [str(r["prompt"]) for r in kept]
    replies = [r.get("reply") if isinstance(r.get("reply"), str) else "" for r in kept]
    frame = pd.concat(
        [prompt_descriptors(prompts), reply_descriptors(replies)], axis=1
    ).reset_index(drop=True)
    frame.insert(3, "ood_score", np.nan)
    ratings = feedback or {}
    ops = pd.DataFrame(
        {
            "ts": [float(r.get("ts") or 0.0) for r in kept],
            "request_id": [str(r.get("request_id", "")) for r in kept],
            "status": [int(r.get("status") or 0) for r in kept],
            "latency_ms": [float(r.get("latency_ms") or 0.0) for r in kept],
            "prompt_tokens": [int(r.get("prompt_tokens") or 0) for r in kept],
            "completion_tokens": [int(r.get("completion_tokens") or 0) for r in kept],
            "cost_usd": [float(r.get("cost_usd") or 0.0) for r in kept],
            "model_version": [str(r.get("model_version", "")) for r in kept],
            "variant": [str(r.get("variant", "")) for r in kept],
            "cache_hit": [bool(r.get("cache_hit")) for r in kept],
            "feedback": [ratings.get(str(r.get("request_id", "")), np.nan) for r in kept],
        }
    )
    out = pd.concat([frame, ops], axis=1)
    out.attrs["prompts"] = prompts
    return out


def select_window(
    records: Iterable[Mapping[str, Any]],
    *,
    now: float,
    minutes: float,
    max_rows: int,
    versions: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The newest ``max_rows`` records of the last ``minutes`` before ``now`` (optionally of
    the given model versions only), oldest first."""
    since = now - minutes * 60.0
    keep = set(versions) if versions else None
    picked = [
        dict(r)
        for r in records
        if since <= float(r.get("ts") or 0.0) <= now
        and (keep is None or str(r.get("model_version")) in keep)
    ]
    picked.sort(key=lambda r: float(r.get("ts") or 0.0))
    return picked[-max_rows:]


def reference_frame(train: pd.DataFrame, max_rows: int, seed: int = 0) -> pd.DataFrame:
    """Descriptor rows of (at most ``max_rows`` sampled) training tickets: their prompts,
    and the outputs the model was trained to produce."""
    missing = [c for c in ("prompt", "intent", "reply") if c not in train.columns]
    if missing:
        raise ValueError(f"reference data lacks column(s) {missing}")
    if train.empty:
        raise ValueError("reference data is empty: no training rows to compare with")
    if len(train) > max_rows:
        train = train.sample(n=max_rows, random_state=seed)
    prompts = [str(p) for p in train["prompt"]]
    targets = [
        format_target(str(i), str(r)) for i, r in zip(train["intent"], train["reply"], strict=True)
    ]
    frame = pd.concat([prompt_descriptors(prompts), reply_descriptors(targets)], axis=1)
    frame.insert(3, "ood_score", np.nan)
    frame.attrs["prompts"] = prompts
    return frame


def _sample_index(n: int, limit: int, seed: int) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


@dataclass(frozen=True)
class Embeddings:
    """Unit-norm prompt embeddings of the sampled rows of both sides."""

    reference: np.ndarray
    current: np.ndarray
    reference_rows: np.ndarray
    current_rows: np.ndarray


def embed_prompts(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    encode: Any,
    *,
    max_rows: int,
    seed: int = 0,
    cache_dir: Path | None = None,
) -> Embeddings:
    """Embed (a sample of) both sides' prompts and fill their ``ood_score`` in place.

    ``encode`` maps a list of texts to unit-norm vectors (``SentenceEmbedder.encode``). The
    reference embeddings are cached in ``cache_dir`` by the hash of their texts.
    """
    ref_prompts: list[str] = reference.attrs.get("prompts", [])
    cur_prompts: list[str] = current.attrs.get("prompts", [])
    ref_rows = _sample_index(len(ref_prompts), max_rows, seed)
    cur_rows = _sample_index(len(cur_prompts), max_rows, seed + 1)
    ref_texts = [ref_prompts[i] for i in ref_rows]
    ref_emb: np.ndarray | None = None
    cache: Path | None = None
    if cache_dir is not None:
        digest = hashlib.sha256("\x1e".join(ref_texts).encode("utf-8")).hexdigest()[:24]
        cache = cache_dir / f"reference-{digest}.npy"
        if cache.is_file():
            ref_emb = np.load(cache)
    if ref_emb is None:
        ref_emb = np.asarray(encode(ref_texts), dtype=np.float32)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp.npy")
            np.save(tmp, ref_emb)
            tmp.replace(cache)
    cur_emb = (
        np.asarray(encode([cur_prompts[i] for i in cur_rows]), dtype=np.float32)
        if len(cur_rows)
        else np.zeros((0, ref_emb.shape[1]), dtype=np.float32)
    )
    if len(ref_emb) >= 2:
        # A reference prompt's neighbour is another prompt: itself and exact duplicates
        # (the corpus has some) are masked, or the reference would look more in-domain
        # than any new traffic can be.
        sims = ref_emb @ ref_emb.T
        _, text_ids = np.unique(np.asarray(ref_texts, dtype=object), return_inverse=True)
        sims[text_ids[:, None] == text_ids[None, :]] = -np.inf
        reference.loc[reference.index[ref_rows], "ood_score"] = 1.0 - sims.max(axis=1)
    if len(cur_emb) and len(ref_emb):
        current.loc[current.index[cur_rows], "ood_score"] = 1.0 - (cur_emb @ ref_emb.T).max(axis=1)
    return Embeddings(ref_emb, cur_emb, ref_rows, cur_rows)


def read_feedback(directory: Path) -> dict[str, float]:
    """Ratings by request id from ``*.jsonl`` files of ``{"request_id", "rating"}`` lines
    (the newest rating of a request wins); unreadable lines are skipped."""
    import json

    ratings: dict[str, float] = {}
    if not directory.is_dir():
        return ratings
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text("utf-8", errors="replace").splitlines():
            try:
                item = json.loads(line)
                ratings[str(item["request_id"])] = float(item["rating"])
            except (ValueError, KeyError, TypeError):
                continue
    return ratings


def training_split(settings: Settings) -> pd.DataFrame:
    """The prepared training split of the checkout (the champion's reference window)."""
    from loopline.data.io import read_prepared
    from loopline.data.prepare import prepared_dir

    folder = prepared_dir(settings)
    try:
        frames = read_prepared(folder)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"no prepared training data at {folder}: run `loopline train` first ({exc})"
        ) from None
    if "train" not in frames:
        raise FileNotFoundError(f"{folder} has no train split")
    return frames["train"]
