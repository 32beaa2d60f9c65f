"""The serving engine: limits, cache, model thread, faults, metrics and the request log.

The HTTP layer (:mod:`loopline.serving.app`) parses OpenAI requests into
:class:`CompletionParams` and calls :meth:`ServingEngine.complete`; every request, answered
or refused, is then written once with :meth:`ServingEngine.record`, which returns only after
the line is durable.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from loopline.config import ServingConfig
from loopline.data.pii import redact_text
from loopline.models.base import Generation, Generator
from loopline.serving.batcher import JobResult, ModelWorker, QueueFullError
from loopline.serving.cache import ResponseCache, cache_key
from loopline.serving.metrics import ServingMetrics
from loopline.serving.model_store import ServedModel
from loopline.serving.plan import PlanWatcher
from loopline.serving.request_log import RequestLog

__all__ = [
    "ApiError",
    "CompletionParams",
    "CompletionResult",
    "QueueFullError",
    "ServingEngine",
]

GARBLED = "sorry sorry sorry sorry sorry sorry sorry sorry"


class ApiError(Exception):
    """A request the server refuses, with its HTTP status and OpenAI error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


@dataclass(frozen=True)
class CompletionParams:
    prompt: str
    max_tokens: int
    temperature: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @property
    def cacheable(self) -> bool:
        return self.temperature == 0 or self.seed is not None


@dataclass(frozen=True)
class CompletionResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    cache_hit: bool
    latency_s: float
    ttft_s: float | None
    batch_size: int
    cost_usd: float


def _apply_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    cut = min((i for s in stop if (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class ServingEngine:
    def __init__(
        self,
        config: ServingConfig,
        model: ServedModel,
        generator: Generator,
        request_log: RequestLog,
        *,
        variant: str = "stable",
        plan: PlanWatcher | None = None,
    ) -> None:
        self.config = config
        self.plan = plan if plan is not None else PlanWatcher(None)
        self.model = model
        self.generator = generator
        self.log = request_log
        self.variant = variant
        self.metrics = ServingMetrics(model.version)
        self.cache: ResponseCache[CompletionResult] = ResponseCache(
            config.cache_size, config.cache_ttl_s
        )
        self.worker = ModelWorker(
            generator,
            max_batch_size=config.max_batch_size,
            max_wait_s=config.max_wait_ms / 1000,
            max_queue=config.max_queue,
            max_delay_s=config.max_batch_delay_ms / 1000,
            pending=self.pending,
            on_batch=self._observe_batch,
        )
        self.active = 0  # completion requests inside the HTTP handler (event-loop thread only)
        self._faults = random.Random(config.faults.seed)
        self.started_at = time.time()
        self.ready = False
        self.metrics.info.labels(model.version, model.fingerprint, model.name).set(1)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self.worker.start()
        self.ready = True
        self.metrics.ready.set(1)

    def stop(self) -> None:
        self.ready = False
        self.metrics.ready.set(0)
        self.worker.stop()
        self.log.close()
        close = getattr(self.generator, "close", None)
        if callable(close):
            close()  # a model process

    @property
    def healthy(self) -> bool:
        """Ready, and the model (thread or process) is still there."""
        return self.ready and bool(getattr(self.generator, "alive", True))

    def pending(self) -> int:
        """Requests in the HTTP layer that are neither queued nor being decoded."""
        return max(0, self.active - self.worker.depth - self.worker.running)

    def _observe_batch(self, size: int, seconds: float) -> None:
        self.metrics.batch_size.labels(self.model.version).observe(size)
        self.metrics.batch_seconds.labels(self.model.version).observe(seconds)

    # -- limits -------------------------------------------------------------------------------
    def check_limits(self, params: CompletionParams) -> None:
        c = self.config
        for text, field in [(params.prompt, "prompt"), *((s, "stop") for s in params.stop)]:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ApiError(
                    400, f"{field} is not valid Unicode text: {exc.reason}", param=field
                ) from exc
        if not params.prompt.strip():
            raise ApiError(400, "the prompt is empty", param="prompt")
        if len(params.prompt) > c.max_prompt_chars:
            raise ApiError(
                400,
                f"the prompt has {len(params.prompt)} characters; this server accepts at most "
                f"{c.max_prompt_chars}",
                param="prompt",
                code="context_length_exceeded",
            )
        if not 1 <= params.max_tokens <= c.max_tokens_limit:
            raise ApiError(
                400,
                f"max_tokens must be between 1 and {c.max_tokens_limit}, got {params.max_tokens}",
                param="max_tokens",
            )

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        c = self.config
        return (
            prompt_tokens * c.price_per_1k_prompt_tokens
            + completion_tokens * c.price_per_1k_completion_tokens
        ) / 1000

    # -- the work -----------------------------------------------------------------------------
    async def complete(self, params: CompletionParams, *, variant: str) -> CompletionResult:
        """Answer one prompt: from the cache, or through the model thread."""
        self.check_limits(params)
        started = time.perf_counter()
        faults = self.config.faults
        if faults.extra_latency_ms:
            await asyncio.sleep(faults.extra_latency_ms / 1000)
        if faults.error_rate and self._faults.random() < faults.error_rate:
            raise ApiError(500, "injected fault (serving.faults.error_rate)", type="server_error")
        key = ""
        if params.cacheable and self.cache.enabled:
            key = cache_key(
                version=self.model.version,
                prompt=params.prompt,
                max_tokens=params.max_tokens,
                temperature=params.temperature,
                seed=params.seed,
                stop=list(params.stop),
            )
            hit = self.cache.get(key)
            if hit is not None:
                self.metrics.cache_hits.inc()
                elapsed = time.perf_counter() - started
                return replace(
                    hit,
                    cache_hit=True,
                    latency_s=elapsed,
                    ttft_s=elapsed,
                    batch_size=0,
                    cost_usd=0.0,
                )
            self.metrics.cache_misses.inc()
        try:
            future = self.worker.submit(
                params.prompt,
                max_tokens=params.max_tokens,
                temperature=params.temperature,
                seed=params.seed,
            )
        except QueueFullError as exc:
            self.metrics.rejected.labels("queue_full").inc()
            raise ApiError(
                503,
                f"the server is busy ({exc}); retry after {self.config.retry_after_s} s",
                type="server_overloaded",
                headers={"Retry-After": str(self.config.retry_after_s)},
            ) from exc
        self.metrics.queue_depth.set(self.worker.depth)
        try:
            job: JobResult = await asyncio.wait_for(
                asyncio.wrap_future(future), timeout=self.config.request_timeout_s
            )
        except TimeoutError as exc:
            future.cancel()
            self.metrics.rejected.labels("timeout").inc()
            raise ApiError(
                504,
                f"the request did not finish within {self.config.request_timeout_s} s",
                type="timeout",
            ) from exc
        except ValueError as exc:  # the backend refused the input (e.g. context too small)
            raise ApiError(400, str(exc), param="max_tokens") from exc
        except Exception as exc:  # the model failed: a 500 that is still logged and counted
            self.metrics.rejected.labels("model_error").inc()
            raise ApiError(500, f"model failed: {exc}", type="server_error") from exc
        finally:
            self.metrics.queue_depth.set(self.worker.depth)
        result = self._result(job.generation, job, params, started)
        if faults.garble_rate and self._faults.random() < faults.garble_rate:
            result = replace(result, text=GARBLED)
        elif key:
            self.cache.put(key, result)
        return result

    def _result(
        self, gen: Generation, job: JobResult, params: CompletionParams, started: float
    ) -> CompletionResult:
        text, stopped = _apply_stop(gen.text, params.stop)
        finish = "stop" if stopped or gen.completion_tokens < params.max_tokens else "length"
        ttft = None if gen.first_token_s is None else job.queue_s + gen.first_token_s
        return CompletionResult(
            text=text,
            prompt_tokens=gen.prompt_tokens,
            completion_tokens=gen.completion_tokens,
            finish_reason=finish,
            cache_hit=False,
            latency_s=time.perf_counter() - started,
            ttft_s=ttft,
            batch_size=job.batch_size,
            cost_usd=self.cost(gen.prompt_tokens, gen.completion_tokens),
        )

    # -- accounting ---------------------------------------------------------------------------
    async def record(
        self,
        *,
        request_id: str,
        endpoint: str,
        variant: str,
        status: int,
        started: float,
        prompt: str | None,
        result: CompletionResult | None = None,
        error: str | None = None,
        stream: bool = False,
        exposure: Mapping[str, Any] | None = None,
    ) -> None:
        """Count the request in the metrics and append it to the request log (durably)."""
        latency = time.perf_counter() - started
        m, v = self.metrics, self.model.version
        m.requests.labels(endpoint, str(status), variant, v).inc()
        m.latency.labels(endpoint, variant, v).observe(latency)
        entry: dict[str, Any] = {
            "request_id": request_id,
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "ts": time.time(),
            "model": self.model.name,
            "model_version": v,
            "variant": variant,
            "endpoint": endpoint,
            "status": status,
            "prompt": None if prompt is None else redact_text(prompt),
            "reply": None,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "latency_ms": round(latency * 1000, 3),
            "ttft_ms": None,
            "cache_hit": False,
            "batch_size": 0,
            "finish_reason": None,
            "cost_usd": 0.0,
            "stream": stream,
            "error": error,
            **(exposure or {}),
        }
        if result is not None:
            m.tokens.labels("prompt", variant, v).inc(result.prompt_tokens)
            m.tokens.labels("completion", variant, v).inc(result.completion_tokens)
            m.request_tokens.labels("prompt", v).observe(result.prompt_tokens)
            m.request_tokens.labels("completion", v).observe(result.completion_tokens)
            m.cost.labels(variant, v).inc(result.cost_usd)
            m.request_cost.labels(variant, v).observe(result.cost_usd)
            if result.ttft_s is not None:
                m.ttft.labels(variant, v).observe(result.ttft_s)
            entry.update(
                reply=redact_text(result.text),
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
                ttft_ms=None if result.ttft_s is None else round(result.ttft_s * 1000, 3),
                cache_hit=result.cache_hit,
                batch_size=result.batch_size,
                finish_reason=result.finish_reason,
                cost_usd=result.cost_usd,
            )
        await asyncio.wrap_future(self.log.append(entry))
