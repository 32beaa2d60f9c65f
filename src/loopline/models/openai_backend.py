"""The ``openai:<base_url>`` backend: any OpenAI-compatible server as a :class:`Generator`.

``openai:http://127.0.0.1:8000/v1`` talks to a Loopline server, vLLM, Ollama
(``http://localhost:11434/v1``) or OpenAI itself (``https://api.openai.com/v1``). The model
name follows a ``#``: ``openai:https://api.openai.com/v1#gpt-4o-mini``; without one, the
server's first listed model is used. The API key is read from ``OPENAI_API_KEY`` (local
servers accept any value). Each prompt is sent as one user message to
``/v1/chat/completions``; up to ``concurrency`` requests are in flight at once, so a batching
server can batch them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from loopline.models.base import Generation, ModelSpecError


class OpenAIGenerator:
    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        concurrency: int = 8,
        timeout_s: float = 120.0,
        api_key: str | None = None,
    ) -> None:
        from openai import OpenAI, OpenAIError

        if not base_url.startswith(("http://", "https://")):
            raise ModelSpecError(f"openai backend needs an http(s) base URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.client = OpenAI(
            base_url=self.base_url,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "unused",
            timeout=timeout_s,
            max_retries=2,
        )
        if model is None:
            try:
                listed = self.client.models.list().data
            except OpenAIError as exc:
                raise ModelSpecError(f"cannot list models at {self.base_url}: {exc}") from exc
            if not listed:
                raise ModelSpecError(f"{self.base_url} serves no models")
            model = listed[0].id
        self.model = model
        self.concurrency = max(1, concurrency)
        self.name = f"openai:{self.base_url}#{self.model}"

    def _one(
        self, prompt: str, max_new_tokens: int, temperature: float, seed: int | None
    ) -> Generation:
        started = time.perf_counter()
        extra: dict[str, Any] = {} if seed is None else {"seed": seed}
        resp = self.client.chat.completions.create(
            model=self.model,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=max_new_tokens,
            temperature=temperature,
            **extra,
        )
        text = resp.choices[0].message.content or "" if resp.choices else ""
        usage = resp.usage
        return Generation(
            text=text,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            latency_s=time.perf_counter() - started,
        )

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[Generation]:
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, not one string")
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        with ThreadPoolExecutor(min(self.concurrency, max(1, len(prompts)))) as pool:
            return list(
                pool.map(lambda p: self._one(p, max_new_tokens, temperature, seed), prompts)
            )


def from_spec(target: str, *, concurrency: int | None = None) -> OpenAIGenerator:
    """``<base_url>[#model]`` -> a generator."""
    base_url, _, model = target.partition("#")
    return OpenAIGenerator(base_url, model or None, concurrency=concurrency or 8)
