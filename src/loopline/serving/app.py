"""The OpenAI-compatible HTTP API over a :class:`~loopline.serving.engine.ServingEngine`.

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``,
``GET /healthz`` (the process is up), ``GET /readyz`` (the model is loaded and the model
thread runs), ``GET /metrics`` (Prometheus).

Request bodies are parsed by hand from raw bytes so that *every* malformed input — not JSON,
wrong types, unknown roles, too long, too many tokens, too large a body — is answered with a
4xx and an OpenAI-style error object naming the offending field, never a 5xx. The model
answers one customer message: for chat, the last ``user`` message (system and earlier turns
are accepted and not used by Loopline's task model); ``n`` must be 1.

``stream: true`` is supported with server-sent events in OpenAI's chunk format. The model
thread decodes a whole batch before any text exists, so the chunks are sent once the reply is
complete; time to first token is still measured at the model (queue wait plus prefill).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loopline.experiments.runtime import (
    DEFAULT,
    Treatment,
    attributes_of,
    render_prompt,
    resolve,
    unit_of,
)
from loopline.serving.engine import ApiError, CompletionParams, CompletionResult, ServingEngine

Handled = tuple[Response, list[tuple[str, CompletionResult]]]
Work = Callable[[Mapping[str, Any], str, list[str], Treatment], Awaitable[Handled]]
# "probe": the monitor's golden probes (kept out of the monitoring window by this label).
VARIANTS = frozenset({"stable", "candidate", "shadow", "probe"})
COMPLETION_PATHS = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}


# -- request models -------------------------------------------------------------------------------
class _Lenient(BaseModel):
    # Clients send fields this server does not use (user, logprobs, stream_options, ...).
    model_config = ConfigDict(extra="allow", frozen=True)


class TextPart(_Lenient):
    type: Literal["text"]
    text: str


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class _Sampling(_Lenient):
    model: str = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0, le=2)
    seed: int | None = None
    n: int = Field(1, ge=1, le=1)
    stop: str | list[str] | None = None
    stream: bool = False

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: str | list[str] | None) -> str | list[str] | None:
        items = [v] if isinstance(v, str) else (v or [])
        if len(items) > 4 or any(not s for s in items):
            raise ValueError("stop takes up to 4 non-empty strings")
        return v

    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    def prompt(self) -> str:
        users = [m for m in self.messages if m.role == "user"]
        if not users:
            raise ApiError(400, "messages must contain a user message", param="messages")
        return users[-1].text()


class CompletionRequest(_Sampling):
    prompt: str | list[str]

    def prompts(self) -> list[str]:
        items = [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)
        if not items:
            raise ApiError(400, "prompt must not be an empty list", param="prompt")
        if len(items) > 16:
            raise ApiError(400, "at most 16 prompts per request", param="prompt")
        return items


def _validation_error(exc: ValidationError) -> ApiError:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or None
    return ApiError(400, f"invalid request: {loc or 'body'}: {err['msg']}", param=loc)


# -- middleware: bound the body size before anything reads it --------------------------------
class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, whether or not they declare a
    ``Content-Length`` (a chunked body is counted as it arrives)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(scope, send, self.limit)
            return
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLargeError
            return message

        try:
            await self.app(scope, bounded, send)
        except _BodyTooLargeError:
            await _too_large(scope, send, self.limit)


class _BodyTooLargeError(Exception):
    pass


async def _too_large(scope: Scope, send: Send, limit: int) -> None:
    err = ApiError(413, f"request body exceeds {limit} bytes", code="request_too_large")
    await JSONResponse(err.body(), status_code=413)(scope, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


# -- the app ----------------------------------------------------------------------------------
def create_app(engine: ServingEngine) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if not engine.ready:
            engine.start()
        yield
        engine.stop()

    app = FastAPI(
        title="Loopline model server",
        version=engine.model.version,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )

    async def body_json(request: Request) -> Mapping[str, Any]:
        raw = await request.body()
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the body is not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise ApiError(400, "the body is nested too deeply") from exc
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object")
        return data

    def check_model(name: str) -> None:
        if name not in engine.model.model_ids:
            raise ApiError(
                404,
                f"model {name!r} is not served here; available: {list(engine.model.model_ids)}",
                param="model",
                code="model_not_found",
            )

    def params_of(
        req: _Sampling, prompt: str, max_tokens: int | None, treatment: Treatment
    ) -> CompletionParams:
        """The model call: the experiment's prompt template and generation parameters (a
        variant's parameters override the client's) over the request's own."""
        p = treatment.params
        return CompletionParams(
            prompt=render_prompt(treatment.prompt_template, prompt),
            max_tokens=int(p.get("max_tokens", max_tokens or engine.config.default_max_tokens)),
            temperature=float(p.get("temperature", req.temperature)),
            seed=int(p["seed"]) if "seed" in p else req.seed,
            stop=req.stops(),
        )

    def treatment_of(request: Request, data: Mapping[str, Any]) -> Treatment:
        plan = engine.plan.current()
        if not plan.experiments and not plan.flags and plan.default is None:
            return DEFAULT
        unit = unit_of(request.headers.get("x-loopline-user"), data)
        return resolve(plan, unit, attributes_of(data))

    async def handle(request: Request, work: Work) -> Response:
        started = time.perf_counter()
        endpoint = COMPLETION_PATHS[request.url.path]
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        header_variant = request.headers.get("x-loopline-variant", "")
        variant = header_variant if header_variant in VARIANTS else engine.variant
        seen: list[str] = []  # the prompts, once parsed (so refusals log them too)
        engine.active += 1
        try:
            return await _handled(
                request_id=request_id,
                endpoint=endpoint,
                variant=variant,
                started=started,
                seen=seen,
                request=request,
                work=work,
            )
        finally:
            engine.active -= 1

    async def _handled(
        *,
        request_id: str,
        endpoint: str,
        variant: str,
        started: float,
        seen: list[str],
        request: Request,
        work: Work,
    ) -> Response:
        treatment = DEFAULT
        try:
            data = await body_json(request)
            treatment = treatment_of(request, data)
            response, results = await work(data, variant, seen, treatment)
        except ApiError as err:
            await engine.record(
                request_id=request_id,
                endpoint=endpoint,
                variant=variant,
                status=err.status,
                started=started,
                prompt=seen[0] if len(seen) == 1 else None,
                error=err.message,
                exposure=treatment.log_fields() if treatment.unit_id else None,
            )
            headers = {**err.headers, "x-request-id": request_id}
            return JSONResponse(err.body(), status_code=err.status, headers=headers)
        for i, (prompt, res) in enumerate(results):
            # A multi-prompt completion is one log line per prompt (ids suffixed -0, -1, ...).
            await engine.record(
                request_id=request_id if len(results) == 1 else f"{request_id}-{i}",
                endpoint=endpoint,
                variant=variant,
                status=200,
                started=started,
                prompt=prompt,
                result=res,
                stream=isinstance(response, StreamingResponse),
                exposure=treatment.log_fields() if treatment.unit_id else None,
            )
        response.headers["x-request-id"] = request_id
        if treatment.arms:
            response.headers["x-loopline-experiments"] = treatment.header()
        response.headers["x-loopline-model-version"] = engine.model.version
        return response

    def usage(results: list[CompletionResult]) -> dict[str, int]:
        p = sum(r.prompt_tokens for r in results)
        c = sum(r.completion_tokens for r in results)
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        async def work(
            data: Mapping[str, Any], variant: str, seen: list[str], treatment: Treatment
        ) -> Handled:
            try:
                req = ChatRequest.model_validate(data)
            except ValidationError as exc:
                raise _validation_error(exc) from exc
            prompt = req.prompt()
            seen.append(prompt)
            check_model(req.model)
            params = params_of(req, prompt, req.max_completion_tokens or req.max_tokens, treatment)
            result = await engine.complete(params, variant=variant)
            rid = f"chatcmpl-{uuid.uuid4().hex}"
            created = int(time.time())
            if req.stream:
                return _chat_stream(rid, created, req, result, engine), [(prompt, result)]
            body = {
                "id": rid,
                "object": "chat.completion",
                "created": created,
                "model": req.model,
                "system_fingerprint": f"v{engine.model.version}",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": result.text},
                        "finish_reason": result.finish_reason,
                        "logprobs": None,
                    }
                ],
                "usage": usage([result]),
            }
            return JSONResponse(body), [(prompt, result)]

        return await handle(request, work)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        async def work(
            data: Mapping[str, Any], variant: str, seen: list[str], treatment: Treatment
        ) -> Handled:
            try:
                req = CompletionRequest.model_validate(data)
            except ValidationError as exc:
                raise _validation_error(exc) from exc
            prompts = req.prompts()
            seen.extend(prompts)
            check_model(req.model)
            if req.stream and len(prompts) > 1:
                raise ApiError(400, "stream supports one prompt", param="stream")
            params = [params_of(req, p, req.max_tokens, treatment) for p in prompts]
            for p in params:
                engine.check_limits(p)
            results = list(
                await asyncio.gather(*(engine.complete(p, variant=variant) for p in params))
            )
            rid = f"cmpl-{uuid.uuid4().hex}"
            created = int(time.time())
            pairs = list(zip(prompts, results, strict=True))
            if req.stream:
                return _text_stream(rid, created, req, results[0]), pairs
            body = {
                "id": rid,
                "object": "text_completion",
                "created": created,
                "model": req.model,
                "system_fingerprint": f"v{engine.model.version}",
                "choices": [
                    {"index": i, "text": r.text, "finish_reason": r.finish_reason, "logprobs": None}
                    for i, r in enumerate(results)
                ],
                "usage": usage(results),
            }
            return JSONResponse(body), pairs

        return await handle(request, work)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        created = int(engine.started_at)
        return {
            "object": "list",
            "data": [
                {"id": mid, "object": "model", "created": created, "owned_by": "loopline"}
                for mid in engine.model.model_ids
            ],
        }

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": engine.model.version}

    @app.get("/readyz")
    async def readyz() -> Response:
        if not engine.healthy:
            return JSONResponse({"ready": False}, status_code=503)
        return JSONResponse(
            {
                "ready": True,
                "model": engine.model.name,
                "version": engine.model.version,
                "fingerprint": engine.model.fingerprint,
                "queue_depth": engine.worker.depth,
            }
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        engine.metrics.queue_depth.set(engine.worker.depth)
        return PlainTextResponse(
            generate_latest(engine.metrics.registry), media_type=CONTENT_TYPE_LATEST
        )

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, err: ApiError) -> Response:
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> Response:
        err = ApiError(500, f"internal error: {type(exc).__name__}", type="server_error")
        return JSONResponse(err.body(), status_code=500)

    app.add_middleware(BodyLimit, limit=engine.config.max_body_bytes)
    return app


def _sse(payload: Mapping[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)] if text else []


def _chat_stream(
    rid: str, created: int, req: ChatRequest, result: CompletionResult, engine: ServingEngine
) -> StreamingResponse:
    base = {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": req.model,
        "system_fingerprint": f"v{engine.model.version}",
    }
    include_usage = bool((getattr(req, "stream_options", None) or {}).get("include_usage"))

    async def events() -> AsyncIterator[bytes]:
        first = {"role": "assistant", "content": ""}
        yield _sse({**base, "choices": [{"index": 0, "delta": first, "finish_reason": None}]})
        for piece in _pieces(result.text):
            delta = {"content": piece}
            yield _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        end = {"index": 0, "delta": {}, "finish_reason": result.finish_reason}
        yield _sse({**base, "choices": [end]})
        if include_usage:
            p, c = result.prompt_tokens, result.completion_tokens
            totals = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
            yield _sse({**base, "choices": [], "usage": totals})
        yield _sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream")


def _text_stream(
    rid: str, created: int, req: CompletionRequest, result: CompletionResult
) -> StreamingResponse:
    base = {"id": rid, "object": "text_completion", "created": created, "model": req.model}

    async def events() -> AsyncIterator[bytes]:
        for piece in _pieces(result.text):
            choice = {"index": 0, "text": piece, "finish_reason": None, "logprobs": None}
            yield _sse({**base, "choices": [choice]})
        end = {"index": 0, "text": "", "finish_reason": result.finish_reason, "logprobs": None}
        yield _sse({**base, "choices": [end]})
        yield _sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream")
