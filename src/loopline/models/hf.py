"""Generation with Hugging Face causal LMs: the ``tiny`` and ``hf:<path>`` backends.

Both backends are the same class; they differ in how a customer message becomes a prompt:

* ``tiny`` (a folder carrying Loopline's marker, trained or fine-tuned here): ``format_prompt``.
* ``hf`` (any other causal-LM folder): the tokenizer's chat template when it has one, else
  ``format_prompt``.

Decoding is a small explicit loop rather than ``model.generate``: prompts are left-padded into
one batch (position ids follow the real tokens, so a padded row decodes exactly as it would
alone), the prompt runs once (prefill), then one token per step reuses a preallocated (static)
KV cache, under ``torch.inference_mode``. For a model of a million parameters the per-step
overhead matters: the loop is somewhat faster than ``generate`` at batch 1, and it gives exact
per-row token counts and a private, seedable sampler.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedTokenizerBase,
    StaticCache,
)

from loopline.models.base import Generation
from loopline.models.encoding import PromptEncoder
from loopline.models.folder import read_marker
from loopline.models.prompting import format_prompt

DEFAULT_MAX_BATCH_SIZE = 32


def load_causal_lm(path: str | Path) -> tuple[Any, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from a local folder, in float32, in eval mode.

    A folder with a ``config.json`` is loaded as usual. A folder with no ``config.json`` and a
    single ``*.gguf`` file is loaded through transformers' GGUF support (needs ``gguf``).
    Nothing is ever downloaded: a path that is not a local folder is an error.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder not found: {folder}")
    kwargs: dict[str, Any] = {"local_files_only": True}
    if not (folder / "config.json").is_file():
        ggufs = sorted(folder.glob("*.gguf"))
        if len(ggufs) != 1:
            raise FileNotFoundError(
                f"{folder} is not a Hugging Face model folder (no config.json"
                + (f", {len(ggufs)} .gguf files)" if ggufs else ")")
            )
        kwargs["gguf_file"] = ggufs[0].name
    tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs)
    model.eval()
    return model, tokenizer


def _stop_ids(model: Any, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    ids: set[int] = set()
    gen_cfg = getattr(model, "generation_config", None)
    for source in (getattr(gen_cfg, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, list | tuple):
            ids.update(int(i) for i in source)
    if not ids:
        raise ValueError("model has no eos token id: generation could never stop early")
    return sorted(ids)


class CausalLMGenerator:
    """Batched, KV-cached generation with a Hugging Face causal LM (implements ``Generator``)."""

    def __init__(
        self,
        model: Any,
        tokenizer: PreTrainedTokenizerBase,
        *,
        name: str,
        encoder: PromptEncoder,
        max_prompt_tokens: int | None = None,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        num_threads: int | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.name = name
        self.model = model
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.max_prompt_tokens = max_prompt_tokens
        self.max_batch_size = max_batch_size
        self.context_length: int | None = getattr(model.config, "max_position_embeddings", None)
        self.stop_ids = _stop_ids(model, tokenizer)
        self.static_cache = True
        pad = tokenizer.pad_token_id
        self.pad_id: int = pad if isinstance(pad, int) else self.stop_ids[0]
        if num_threads:
            torch.set_num_threads(num_threads)

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_folder(
        cls,
        path: str | Path,
        *,
        kind: Literal["tiny", "hf"],
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        num_threads: int | None = None,
    ) -> CausalLMGenerator:
        folder = Path(path).expanduser().resolve()
        marker = read_marker(folder)
        if kind == "tiny" and marker is None:
            raise ValueError(
                f"{folder} has no Loopline marker (loopline_model.json): it was not trained by "
                f"Loopline; load it as hf:{folder}"
            )
        model, tokenizer = load_causal_lm(folder)
        max_prompt: int | None = None
        if marker is not None:
            # Trained here: the model learned format_prompt, whatever its tokenizer offers.
            encoder = PromptEncoder(tokenizer, format_prompt)
            max_prompt = marker.max_seq_len
        elif getattr(tokenizer, "chat_template", None):
            encoder = PromptEncoder(tokenizer, _chat_template(tokenizer), add_bos=False)
        else:
            encoder = PromptEncoder(tokenizer, format_prompt)
        return cls(
            model,
            tokenizer,
            name=f"{kind}:{folder}",
            encoder=encoder,
            max_prompt_tokens=max_prompt,
            max_batch_size=max_batch_size,
            num_threads=num_threads,
        )

    # -- generation ------------------------------------------------------------------------
    def _prompt_budget(self, max_new_tokens: int) -> int | None:
        budget = self.max_prompt_tokens
        if self.context_length:
            room = self.context_length - max_new_tokens
            if room < 1:
                raise ValueError(
                    f"max_new_tokens={max_new_tokens} does not fit the model's context of "
                    f"{self.context_length} tokens"
                )
            budget = room if budget is None else min(budget, room)
        return budget

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[Generation]:
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if temperature < 0:
            raise ValueError("temperature must be >= 0")
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, not one string")
        budget = self._prompt_budget(max_new_tokens)
        rng: torch.Generator | None = None
        if temperature > 0:
            rng = torch.Generator()  # private: sampling never touches torch's global RNG
            if seed is None:
                rng.seed()
            else:
                rng.manual_seed(seed)
        out: list[Generation] = []
        for start in range(0, len(prompts), self.max_batch_size):
            chunk = prompts[start : start + self.max_batch_size]
            encoded = [self.encoder.prompt_ids(p, budget) for p in chunk]
            out.extend(self._generate_batch(encoded, max_new_tokens, temperature, rng))
        return out

    def _new_cache(self, max_len: int) -> Any:
        """A preallocated KV cache of ``max_len`` positions, written in place.

        A dynamic cache concatenates every layer's keys and values at every step, which was
        about half of the decoding time at batch 32. Architectures a static cache does not
        support fall back to the dynamic cache (``None`` lets the model create one).
        """
        if not self.static_cache:
            return None
        try:
            return StaticCache(config=self.model.config, max_cache_len=max_len)
        except (TypeError, ValueError, NotImplementedError):
            self.static_cache = False
            return None

    def _generate_batch(
        self,
        encoded: list[list[int]],
        max_new_tokens: int,
        temperature: float,
        rng: torch.Generator | None,
    ) -> list[Generation]:
        t0 = time.perf_counter()
        batch = len(encoded)
        width = max(len(ids) for ids in encoded)
        total = width + max_new_tokens
        input_ids = torch.full((batch, width), self.pad_id, dtype=torch.long)
        # The mask covers every position the batch can reach; columns are switched on as
        # tokens are generated, so nothing is re-allocated per step.
        attention = torch.zeros((batch, total), dtype=torch.long)
        for row, ids in enumerate(encoded):  # left padding: the last column is every prompt's end
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention[row, width - len(ids) : width] = 1
        positions = (attention[:, :width].cumsum(-1) - 1).clamp(min=0)
        stop = torch.tensor(self.stop_ids, dtype=torch.long)
        done = torch.zeros(batch, dtype=torch.bool)
        produced = torch.zeros(batch, dtype=torch.long)
        steps: list[torch.Tensor] = []
        first_token_s: float | None = None

        cache = self._new_cache(total)
        with torch.inference_mode():
            result = self.model(
                input_ids=input_ids,
                attention_mask=attention[:, :width],
                position_ids=positions,
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            for step in range(max_new_tokens):
                logits = result.logits[:, -1, :]
                if temperature > 0:
                    probs = torch.softmax(logits.float() / temperature, dim=-1)
                    token = torch.multinomial(probs, 1, generator=rng).squeeze(-1)
                else:
                    token = logits.argmax(dim=-1)
                token = torch.where(done, torch.full_like(token, self.pad_id), token)
                steps.append(token)
                if first_token_s is None:
                    first_token_s = time.perf_counter() - t0
                produced += (~done).long()
                done |= torch.isin(token, stop)
                if bool(done.all()) or step == max_new_tokens - 1:
                    break
                attention[:, width + step] = 1
                positions = positions[:, -1:] + 1
                result = self.model(
                    input_ids=token[:, None],
                    attention_mask=attention[:, : width + step + 1],
                    position_ids=positions,
                    cache=result.cache,
                    use_cache=True,
                )

        generated = torch.stack(steps, dim=1).tolist()
        stop_set = set(self.stop_ids)
        texts: list[str] = []
        for row in range(batch):
            ids = generated[row][: int(produced[row])]
            if ids and ids[-1] in stop_set:
                ids = ids[:-1]
            texts.append(str(self.tokenizer.decode(ids, skip_special_tokens=True)))
        latency = time.perf_counter() - t0
        return [
            Generation(
                text=texts[row],
                prompt_tokens=len(encoded[row]),
                completion_tokens=int(produced[row]),
                latency_s=latency,
                first_token_s=first_token_s,
            )
            for row in range(batch)
        ]


def _chat_template(tokenizer: PreTrainedTokenizerBase) -> Any:
    def render(message: str) -> str:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": message}], tokenize=False, add_generation_prompt=True
        )
        return str(text)

    return render
