"""The data plane: an asyncio reverse proxy that splits, mirrors, fails over and records.

One :class:`Router` owns the routing state, one shared ``httpx.AsyncClient`` (keep-alive
pools), the stats ring and the mirror tasks. :class:`ProxyApp` is the ASGI app serving the
data port; every request goes through :meth:`Router.handle`.

Per request: the live arm comes from the state's splitter (smooth WRR, or a stable hash of
``x-loopline-user`` when present) or, while an A/B test of model versions runs, from the
unit's variant in the serving plan (``--plan-file``); a mirrored copy, if picked, is sent to
the candidate in the background. A candidate that cannot be reached (no response at all) is
recorded as a failure and the request is retried once on stable; a candidate's 5xx response
is returned as is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any

import httpx
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from loopline.experiments.runtime import route as plan_route
from loopline.experiments.runtime import unit_of
from loopline.fsutil import write_json
from loopline.routing.split import PercentSplitter, sticky_choice
from loopline.routing.state import RouterState
from loopline.routing.stats import StatsRing
from loopline.serving.plan import PlanWatcher
from loopline.serving.quality import reply_quality

log = logging.getLogger("loopline.routing")

_DROP_REQUEST = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
        b"host",
        b"content-length",
        b"x-loopline-variant",
    }
)
_DROP_RESPONSE = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-connection",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"x-request-id",
        b"x-loopline-arm",
    }
)
_UNREACHABLE = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
)
"""Failures before any response arrived: the backend is down or dropped the connection."""


@dataclass(frozen=True, slots=True)
class _Outgoing:
    """What is sent upstream for one client request (to any backend)."""

    method: str
    target: str  # raw path and query
    path: str  # decoded path, to recognise completion endpoints
    headers: list[tuple[bytes, bytes]]
    body: bytes


class _Route:
    """A state and the splitters that belong to it (swapped together in one assignment)."""

    __slots__ = ("live", "mirror", "state")

    def __init__(self, state: RouterState) -> None:
        self.state = state
        self.live = PercentSplitter(state.candidate_weight)
        self.mirror = PercentSplitter(state.mirror_percent)


def error_response(status: int, kind: str, message: str) -> Response:
    """An OpenAI-style JSON error."""
    body = {"error": {"message": message, "type": kind, "code": status}}
    return Response(json.dumps(body), status_code=status, media_type="application/json")


def _decoded(raw: bytes, encoding: str | None) -> bytes | None:
    if not encoding or encoding == "identity":
        return raw
    if encoding in ("gzip", "deflate"):
        try:
            return zlib.decompress(raw, 47)  # 47: detect gzip or zlib header
        except zlib.error:
            return None
    return None


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def reply_text(path: str, body: bytes) -> str | None:
    """The generated text of an OpenAI-shaped completion reply, if ``path`` is one."""
    if path.endswith("/chat/completions"):
        chat = True
    elif path.endswith("/completions"):
        chat = False
    else:
        return None
    try:
        choice = json.loads(body)["choices"][0]
        text = choice["message"]["content"] if chat else choice["text"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return text if isinstance(text, str) else None


def response_quality(path: str, status: int, headers: httpx.Headers, raw: bytes) -> float | None:
    """The reply quality of a successful, non-streamed JSON completion; otherwise ``None``."""
    if not 200 <= status < 300 or "json" not in headers.get("content-type", ""):
        return None
    body = _decoded(raw, headers.get("content-encoding"))
    if body is None:
        return None
    text = reply_text(path, body)
    if text is None:
        return None
    try:
        return float(reply_quality(text))
    except Exception:  # quality must never break proxying
        log.exception("reply_quality failed")
        return None


class Router:
    """Routing state, upstream client, stats and mirrors of one router process."""

    def __init__(
        self,
        state: RouterState,
        *,
        timeout: float = 60.0,
        stats_capacity: int = 200_000,
        max_mirrors: int = 64,
        max_connections: int = 512,
        state_file: Path | None = None,
        state_extra: dict[str, Any] | None = None,
        plan_file: Path | None = None,
    ) -> None:
        self._route = _Route(state)
        self.plan = PlanWatcher(plan_file) if plan_file is not None else None
        self.timeout = timeout
        self.stats = StatsRing(stats_capacity)
        self.max_mirrors = max_mirrors
        self.max_connections = max_connections
        self.dropped_mirrors = 0
        self.state_file = state_file
        self.state_extra = dict(state_extra or {})
        self._mirrors: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self._client: httpx.AsyncClient | None = None

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Open the shared upstream client and write the state file."""
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
            limits=httpx.Limits(
                max_connections=self.max_connections,
                max_keepalive_connections=self.max_connections,
                # below uvicorn's 5 s keep-alive, so an idle connection is dropped here
                # before the backend closes it under a request
                keepalive_expiry=4.0,
            ),
            follow_redirects=False,
            trust_env=False,
            # never keep a backend's cookies: they would be sent on other clients' requests
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        )
        await self._persist(self.state)

    async def close(self) -> None:
        """Cancel mirrors in flight and close the upstream client."""
        for task in list(self._mirrors):
            task.cancel()
        if self._mirrors:
            await asyncio.gather(*self._mirrors, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("router not started")
        return self._client

    # ---- state -----------------------------------------------------------------------

    @property
    def state(self) -> RouterState:
        return self._route.state

    @property
    def mirrors_in_flight(self) -> int:
        return len(self._mirrors)

    async def update(self, change: Callable[[RouterState], RouterState]) -> RouterState:
        """Apply ``change`` to the current state (serialised with other updates), swap the
        result in with one assignment, then write the state file. ``change`` may raise
        :class:`~loopline.routing.state.InvalidValueError`; nothing changes then."""
        async with self._lock:
            new = change(self.state)
            self._route = _Route(new)
            await self._persist(new)
            return new

    async def _persist(self, state: RouterState) -> None:
        if self.state_file is None:
            return
        data = {**self.state_extra, **state.to_dict(), "updated_at": time.time()}
        await asyncio.to_thread(write_json, data, self.state_file)

    # ---- data plane ------------------------------------------------------------------

    def _record(self, arm: str, status: int, started: float, quality: float | None) -> None:
        latency_ms = (time.perf_counter() - started) * 1000.0
        ok = 0 < status < 500
        self.stats.add(
            time.time(), arm, ok=ok, status=status, latency_ms=latency_ms, quality=quality
        )

    async def handle(self, request: Request) -> Response:
        """Proxy one request (see the module docstring)."""
        started = time.perf_counter()
        route = self._route  # one read: this request sees one consistent state
        state = route.state
        body = await request.body()

        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        headers = [(k, v) for k, v in request.headers.raw if k.lower() not in _DROP_REQUEST]
        if "x-request-id" not in request.headers:
            headers.append((b"x-request-id", request_id.encode("latin-1")))

        scope = request.scope
        path: str = scope["path"]
        target = scope.get("raw_path") or path.encode("utf-8")
        if scope.get("query_string"):
            target = target + b"?" + scope["query_string"]
        out = _Outgoing(request.method, target.decode("latin-1"), path, headers, body)

        candidate = state.candidate
        to_candidate = False
        plan = self.plan.current() if self.plan is not None else None
        if candidate is not None and plan is not None and plan.routed:
            # an A/B test of model versions: the unit's variant decides the backend
            header = request.headers.get("x-loopline-user")
            unit = unit_of(header, None if header else _json_object(body))
            to_candidate = plan_route(plan, unit) == "candidate"
        elif candidate is not None and state.candidate_weight > 0:
            user = request.headers.get("x-loopline-user")
            if user:
                to_candidate = sticky_choice(user, state.candidate_weight)
            else:
                to_candidate = route.live.next()
        if candidate is not None and state.mirror_percent > 0 and route.mirror.next():
            self._spawn_mirror(candidate, out)

        if to_candidate and candidate is not None:
            answer = await self._forward(candidate, out, "candidate", started, request_id)
            if answer is not None:
                return answer
            # unreachable before any reply: recorded as a candidate failure, retried on stable
        answer = await self._forward(state.stable, out, "stable", started, request_id)
        assert answer is not None  # stable is never retried
        return answer

    def _error(
        self, status: int, kind: str, arm: str, request_id: str, exc: Exception | None = None
    ) -> Response:
        if status == 504:
            message = f"the {arm} backend did not answer within {self.timeout:g} s"
        else:
            detail = f": {type(exc).__name__} {exc}" if exc is not None else ""
            message = f"the {arm} backend is unreachable{detail}"
        response = error_response(status, kind, message)
        response.headers["x-request-id"] = request_id
        response.headers["x-loopline-arm"] = arm
        return response

    async def _send(self, base: str, out: _Outgoing, variant: str) -> httpx.Response:
        # a bare Request: the client's default headers and cookies are not merged in
        upstream = httpx.Request(
            out.method,
            base.rstrip("/") + out.target,
            headers=[*out.headers, (b"x-loopline-variant", variant.encode())],
            content=out.body,
        )
        return await self.client.send(upstream, stream=True)

    @staticmethod
    def _out_headers(
        upstream: httpx.Response, arm: str, request_id: str
    ) -> list[tuple[bytes, bytes]]:
        out = [(k.lower(), v) for k, v in upstream.headers.raw if k.lower() not in _DROP_RESPONSE]
        out.append((b"x-request-id", request_id.encode("latin-1")))
        out.append((b"x-loopline-arm", arm.encode()))
        return out

    async def _forward(
        self, base: str, out: _Outgoing, arm: str, started: float, request_id: str
    ) -> Response | None:
        """Send ``out`` to ``base`` and build the client's response. For the candidate,
        ``None`` when it failed before anything reached the client (retry on stable)."""
        retry = arm == "candidate"
        try:
            upstream = await self._send(base, out, arm)
        except _UNREACHABLE as exc:
            self._record(arm, 0, started, None)
            if retry:
                log.warning("candidate unreachable (%s); retrying on stable", type(exc).__name__)
                return None
            return self._error(502, "upstream_unavailable", arm, request_id, exc)
        except httpx.TimeoutException:
            self._record(arm, 0, started, None)
            return self._error(504, "upstream_timeout", arm, request_id)
        except httpx.HTTPError as exc:
            self._record(arm, 0, started, None)
            return self._error(502, "upstream_unavailable", arm, request_id, exc)

        status = upstream.status_code
        out_headers = self._out_headers(upstream, arm, request_id)
        if upstream.headers.get("content-type", "").startswith("text/event-stream"):
            streaming = StreamingResponse(self._stream(upstream, arm, started), status_code=status)
            streaming.raw_headers = out_headers
            return streaming
        try:
            raw = b"".join([chunk async for chunk in upstream.aiter_raw()])
        except httpx.TimeoutException:
            self._record(arm, 0, started, None)
            return self._error(504, "upstream_timeout", arm, request_id)
        except httpx.HTTPError as exc:
            # the body is buffered, so the client has seen nothing yet: still retryable
            self._record(arm, 0, started, None)
            if retry:
                log.warning("candidate broke off (%s); retrying on stable", type(exc).__name__)
                return None
            return self._error(502, "upstream_unavailable", arm, request_id, exc)
        finally:
            await upstream.aclose()
        quality = response_quality(out.path, status, upstream.headers, raw)
        self._record(arm, status, started, quality)
        response = Response(raw, status_code=status)
        response.raw_headers = [(b"content-length", str(len(raw)).encode()), *out_headers]
        return response

    async def _stream(
        self, upstream: httpx.Response, arm: str, started: float
    ) -> AsyncIterator[bytes]:
        status = upstream.status_code
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.HTTPError:
            status = 0  # the backend broke off mid-stream: the client sees a cut stream
            raise
        finally:
            self._record(arm, status, started, None)
            await upstream.aclose()

    # ---- mirror ----------------------------------------------------------------------

    def _spawn_mirror(self, candidate: str, out: _Outgoing) -> None:
        if len(self._mirrors) >= self.max_mirrors:
            self.dropped_mirrors += 1
            return
        task = asyncio.create_task(self._mirror(candidate, out))
        self._mirrors.add(task)
        task.add_done_callback(self._mirrors.discard)

    async def _mirror(self, candidate: str, out: _Outgoing) -> None:
        started = time.perf_counter()
        status = 0
        quality = None
        try:
            upstream = await self._send(candidate, out, "shadow")
            try:
                raw = b"".join([chunk async for chunk in upstream.aiter_raw()])
            finally:
                await upstream.aclose()
            status = upstream.status_code
            if not upstream.headers.get("content-type", "").startswith("text/event-stream"):
                quality = response_quality(out.path, status, upstream.headers, raw)
        except httpx.HTTPError:
            status = 0
        self._record("shadow", status, started, quality)


class ProxyApp:
    """The data-plane ASGI app: every path and method goes to :meth:`Router.handle`."""

    def __init__(self, router: Router) -> None:
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; websockets are not proxied
        request = Request(scope, receive)
        try:
            response = await self.router.handle(request)
        except ClientDisconnect:
            return
        except Exception as exc:
            log.exception("router error on %s %s", scope.get("method"), scope.get("path"))
            response = error_response(500, "router_error", f"{type(exc).__name__}: {exc}")
        await response(scope, receive, send)
