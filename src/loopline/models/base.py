"""The ``Generator`` protocol every model backend implements, and model-spec parsing.

This module is deliberately free of heavy imports (no torch, no transformers) so that code
which only needs the types (serving, experiments, cost) can import it cheaply.

A *spec* names a model: ``tiny:<dir>`` (a folder trained by Loopline), ``hf:<dir>`` (any
Hugging Face causal-LM folder), ``openai:<base_url>`` (an OpenAI-compatible server), or a bare
directory, which is ``tiny`` when it carries Loopline's marker file and ``hf`` otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

BackendKind = Literal["tiny", "hf", "openai"]
BACKENDS: tuple[BackendKind, ...] = ("tiny", "hf", "openai")


class ModelSpecError(ValueError):
    """A model spec is malformed or names something that cannot be loaded."""


@dataclass(frozen=True)
class Generation:
    """One completion.

    ``text`` excludes the prompt and the stop token. ``completion_tokens`` counts every
    generated token including the stop token when one was produced. ``latency_s`` is the wall
    time the request waited for its answer: for a batched backend, the wall time of the batch
    the request was part of. ``first_token_s`` is the time until its first token existed
    (the prefill of its batch), when the backend knows it.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    first_token_s: float | None = None


@runtime_checkable
class Generator(Protocol):
    """Something that answers raw customer messages.

    ``prompts`` are the customer messages themselves; each backend applies its own prompt
    format (Loopline's ``format_prompt`` or the model's chat template). ``temperature=0``
    means greedy decoding; with ``temperature > 0`` the same ``seed`` gives the same samples.
    """

    name: str

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[Generation]: ...


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec. ``kind`` is ``None`` for a bare path (decided by its contents)."""

    kind: BackendKind | None
    target: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}" if self.kind else self.target


def parse_spec(spec: str) -> ModelSpec:
    """Split ``"<kind>:<target>"``; anything without a known ``kind:`` prefix is a bare path.

    Windows drive letters (``C:\\models``) and unknown prefixes are treated as paths, so only
    the backend names listed in :data:`BACKENDS` are ever read as a kind.
    """
    text = spec.strip()
    if not text:
        raise ModelSpecError(
            "empty model spec (expected tiny:<dir>, hf:<dir>, openai:<url> or a dir)"
        )
    head, sep, rest = text.partition(":")
    if sep and head in BACKENDS:
        if not rest.strip():
            raise ModelSpecError(
                f"model spec {spec!r} names backend {head!r} but no target after ':'"
            )
        return ModelSpec(kind=head, target=rest.strip())
    return ModelSpec(kind=None, target=text)


MARKER_FILE = "loopline_model.json"  # written by training into every folder it produces


def load_generator(
    spec: str,
    *,
    max_batch_size: int | None = None,
    num_threads: int | None = None,
) -> Generator:
    """Load the model ``spec`` names.

    * ``tiny:<dir>``: a folder trained by Loopline (must carry ``loopline_model.json``).
    * ``hf:<dir>``: any local Hugging Face causal-LM folder (chat template if it has one).
    * ``<dir>``: ``tiny`` when the folder carries Loopline's marker, ``hf`` otherwise.
    * ``openai:<base_url>[#model]``: an OpenAI-compatible server (Loopline's own, vLLM,
      Ollama, OpenAI); ``max_batch_size`` is the number of requests in flight.

    ``max_batch_size`` caps how many prompts run through the model at once (default 32);
    ``num_threads`` sets torch's (process-wide) intra-op thread count when given.
    Heavy libraries are imported only here, when a model is actually loaded.
    """
    parsed = parse_spec(spec)
    if parsed.kind == "openai":
        from loopline.models.openai_backend import from_spec

        return from_spec(parsed.target, concurrency=max_batch_size)
    folder = Path(parsed.target).expanduser()
    if not folder.is_dir():
        raise ModelSpecError(f"model spec {spec!r}: {folder} is not a directory")
    kind = parsed.kind or ("tiny" if (folder / MARKER_FILE).is_file() else "hf")

    from loopline.models.hf import DEFAULT_MAX_BATCH_SIZE, CausalLMGenerator

    try:
        return CausalLMGenerator.from_folder(
            folder,
            kind="tiny" if kind == "tiny" else "hf",
            max_batch_size=max_batch_size or DEFAULT_MAX_BATCH_SIZE,
            num_threads=num_threads,
        )
    except (OSError, ValueError) as exc:
        raise ModelSpecError(f"model spec {spec!r}: cannot load {folder}: {exc}") from exc
