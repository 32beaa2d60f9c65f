"""Training: the tiny model from scratch, or full / LoRA fine-tuning of a base model.

``train_model(settings, prepared_dir, out_dir)`` reads ``train.jsonl`` (and ``val.jsonl`` when
present, for a validation loss), trains with a plain PyTorch loop, and writes an ordinary
Hugging Face model folder plus Loopline's marker to ``out_dir``, atomically.

The loop: AdamW (no weight decay on norms and biases), linear warmup then cosine decay to 10%
of the peak learning rate, gradient clipping at 1.0, loss on the target tokens only (the prompt
is masked with -100), length-bucketed right-padded batches. Python, NumPy and torch are seeded
from ``training.seed``; with the same seed, data and thread count two runs give identical weights.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import transformers
from pydantic import BaseModel, ConfigDict
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from loopline.config import Settings, TinyModelConfig, TrainingConfig
from loopline.models.base import ModelSpecError, parse_spec
from loopline.models.encoding import PromptEncoder
from loopline.models.folder import ModelMarker, atomic_directory, write_marker
from loopline.models.hf import load_causal_lm
from loopline.models.prompting import format_prompt
from loopline.training.data import (
    Batch,
    Example,
    bucketed_batches,
    collate,
    encode_rows,
    read_split,
    training_texts,
)
from loopline.training.tokenizer import train_tokenizer

LOSS_CURVE_POINTS = 50
GRAD_CLIP = 1.0
MIN_LR_RATIO = 0.1
REPORT_FILE = "train_report.json"


class TrainReport(BaseModel):
    """What a training run did; JSON-serialisable (``model_dump(mode="json")``)."""

    model_config = ConfigDict(frozen=True)

    mode: Literal["scratch", "full", "lora"]
    steps: int
    final_loss: float  # mean training loss over the last min(10, steps) steps
    val_loss: float | None  # mean target-token loss on val.jsonl, when present
    loss_curve: list[tuple[int, float]]  # (step, mean loss since the previous point)
    train_examples: int
    tokens_seen: int  # non-pad tokens through the model (prompt + target)
    target_tokens_seen: int  # tokens that carried loss
    wall_seconds: float  # the optimisation loop alone (no tokenizer, loading or saving)
    tokens_per_s: float
    steps_per_s: float
    parameters: int
    trainable_parameters: int
    seed: int
    base_model: str | None
    num_threads: int
    torch_version: str
    transformers_version: str


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def available_cpus() -> int:
    """CPUs this process may run on (respects affinity masks, unlike ``os.cpu_count``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def torch_threads(n: int) -> Iterator[int]:
    """Use ``n`` intra-op threads (0 = all cores) inside the block, then restore."""
    before = torch.get_num_threads()
    wanted = n or available_cpus()
    torch.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        torch.set_num_threads(before)


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Multiplier on the peak learning rate at optimiser step ``step`` (0-based)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5 * (1 + math.cos(math.pi * progress))


def build_tiny_model(
    shape: TinyModelConfig, tokenizer: PreTrainedTokenizerBase
) -> LlamaForCausalLM:
    """A Llama-architecture causal LM of the configured shape for ``tokenizer``."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_heads,
        max_position_embeddings=shape.max_position_embeddings,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        rms_norm_eps=1e-5,
    )
    return LlamaForCausalLM(config)


def base_model_path(spec: str) -> Path:
    """``hf:<path>`` or a plain path to a local folder (never a hub id: this is offline)."""
    parsed = parse_spec(spec)
    if parsed.kind == "openai":
        raise ModelSpecError(f"training.base_model {spec!r}: cannot fine-tune a remote API model")
    path = Path(parsed.target).expanduser()
    if not path.is_dir():
        raise ModelSpecError(f"training.base_model {spec!r}: {path} is not a local model folder")
    return path


def _prepare(
    settings: Settings, rows: Sequence[dict[str, Any]]
) -> tuple[Any, PreTrainedTokenizerBase]:
    cfg = settings.training
    tokenizer: PreTrainedTokenizerBase
    if cfg.mode == "scratch":
        shape = settings.model.tiny
        if cfg.max_seq_len > shape.max_position_embeddings:
            raise ValueError(
                f"training.max_seq_len ({cfg.max_seq_len}) exceeds "
                f"model.tiny.max_position_embeddings ({shape.max_position_embeddings})"
            )
        tokenizer = train_tokenizer(
            training_texts(rows), shape.vocab_size, model_max_length=shape.max_position_embeddings
        )
        seed_everything(cfg.seed)  # the weight init depends on the seed alone
        return build_tiny_model(shape, tokenizer), tokenizer

    assert cfg.base_model is not None  # guaranteed by TrainingConfig
    model, tokenizer = load_causal_lm(base_model_path(cfg.base_model))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if cfg.mode == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=cfg.lora.r,
            lora_alpha=cfg.lora.alpha,
            lora_dropout=cfg.lora.dropout,
            target_modules=list(cfg.lora.target_modules),
            task_type="CAUSAL_LM",
            bias="none",
        )
        seed_everything(cfg.seed)  # adapter init
        model = get_peft_model(model, lora)
    return model, tokenizer


def _optimizer(model: torch.nn.Module, cfg: TrainingConfig) -> torch.optim.Optimizer:
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (decay if param.ndim >= 2 and "norm" not in name else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(0.9, 0.95), eps=1e-8)


def _loss(model: Any, batch: Batch) -> torch.Tensor:
    out = model(input_ids=batch.input_ids, labels=batch.labels, use_cache=False)
    loss: torch.Tensor = out.loss
    return loss


def evaluate_loss(
    model: Any, examples: Sequence[Example], pad_id: int, batch_size: int = 64
) -> float:
    """Mean loss per target token over ``examples`` (no gradient, eval mode)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    ordered = sorted(examples, key=lambda e: len(e.input_ids))
    with torch.inference_mode():
        for start in range(0, len(ordered), batch_size):
            batch = collate(ordered[start : start + batch_size], pad_id)
            total += float(_loss(model, batch)) * batch.n_target
            count += batch.n_target
    model.train(was_training)
    return total / max(count, 1)


def _downsample(losses: Sequence[float], points: int) -> list[tuple[int, float]]:
    if not losses:
        return []
    size = max(1, math.ceil(len(losses) / points))
    return [
        (min(start + size, len(losses)), float(np.mean(losses[start : start + size])))
        for start in range(0, len(losses), size)
    ]


def train_model(settings: Settings, prepared_dir: Path, out_dir: Path) -> TrainReport:
    """Train according to ``settings.training`` and save the model folder to ``out_dir``."""
    cfg = settings.training
    prepared_dir = Path(prepared_dir)
    rows = read_split(prepared_dir, "train")
    val_rows = read_split(prepared_dir, "val") if (prepared_dir / "val.jsonl").is_file() else []

    with torch_threads(cfg.num_threads) as threads:
        model, tokenizer = _prepare(settings, rows)
        encoder = PromptEncoder(tokenizer, format_prompt)
        pad_id = tokenizer.pad_token_id
        assert isinstance(pad_id, int)
        examples = encode_rows(rows, encoder, cfg.max_seq_len)

        seed_everything(cfg.seed)
        batches = bucketed_batches(examples, cfg.batch_size, random.Random(cfg.seed))
        optimizer = _optimizer(model, cfg)
        model.train()
        losses: list[float] = []
        tokens = target_tokens = 0
        t0 = time.perf_counter()
        for step in range(cfg.max_steps):
            for group in optimizer.param_groups:
                group["lr"] = cfg.learning_rate * lr_factor(step, cfg.warmup_steps, cfg.max_steps)
            batch = collate(next(batches), pad_id)
            loss = _loss(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
            optimizer.step()
            losses.append(float(loss.detach()))
            tokens += batch.n_tokens
            target_tokens += batch.n_target
        wall = time.perf_counter() - t0

        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if cfg.mode == "lora":
            model = model.merge_and_unload()
        for param in model.parameters():
            param.requires_grad_(True)
        model.eval()
        val_loss = (
            evaluate_loss(model, encode_rows(val_rows, encoder, cfg.max_seq_len), pad_id)
            if val_rows
            else None
        )
        total_params = sum(p.numel() for p in model.parameters())

    report = TrainReport(
        mode=cfg.mode,
        steps=cfg.max_steps,
        final_loss=float(np.mean(losses[-10:])),
        val_loss=val_loss,
        loss_curve=_downsample(losses, LOSS_CURVE_POINTS),
        train_examples=len(examples),
        tokens_seen=tokens,
        target_tokens_seen=target_tokens,
        wall_seconds=round(wall, 3),
        tokens_per_s=tokens / wall if wall > 0 else 0.0,
        steps_per_s=cfg.max_steps / wall if wall > 0 else 0.0,
        parameters=total_params,
        trainable_parameters=trainable,
        seed=cfg.seed,
        base_model=cfg.base_model,
        num_threads=threads,
        torch_version=torch.__version__,
        transformers_version=transformers.__version__,
    )
    save_model_folder(model, tokenizer, out_dir, settings, report)
    return report


def save_model_folder(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: Path,
    settings: Settings,
    report: TrainReport,
) -> Path:
    """Write the HF folder + marker + report into ``out_dir`` atomically."""
    cfg = settings.training
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    model.config.eos_token_id = eos
    model.config.pad_token_id = pad
    model.generation_config = GenerationConfig(
        eos_token_id=eos,
        pad_token_id=pad,
        bos_token_id=model.config.bos_token_id,
        do_sample=False,
        max_new_tokens=settings.evaluation.max_new_tokens,
    )
    with atomic_directory(Path(out_dir)) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_marker(
            tmp,
            ModelMarker(mode=cfg.mode, base_model=cfg.base_model, max_seq_len=cfg.max_seq_len),
        )
        (tmp / REPORT_FILE).write_text(report.model_dump_json(indent=2) + "\n", "utf-8")
    return Path(out_dir)
