"""A minimal HTTP/1.1 load generator for router tests and benchmarks.

Keep-alive connections on raw asyncio streams: about a tenth of the CPU of a full HTTP client
per request, so on a small machine the generator does not crowd out the router it measures.
Understands exactly what the router and the fake backend send (``content-length`` or
``chunked`` bodies); not a general client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class RawReply:
    status: int
    headers: Mapping[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes
    latency_ms: float

    def json(self) -> Any:
        return json.loads(self.body)


class RawConnection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self._reader, self._writer

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> RawReply:
        reader, writer = await self._open()
        lines = [f"{method} {path} HTTP/1.1", f"host: {self.host}:{self.port}"]
        if body or method in ("POST", "PUT", "PATCH"):
            lines += ["content-type: application/json", f"content-length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        started = time.perf_counter()
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        out: dict[str, str] = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                out[name.strip().lower()] = value.strip()
        if "content-length" in out:
            payload = await reader.readexactly(int(out["content-length"]))
        elif out.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await reader.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(chunk[:-2])
            payload = b"".join(parts)
        else:
            payload = await reader.read()
            await self.close()
        latency_ms = (time.perf_counter() - started) * 1000.0
        if out.get("connection", "").lower() == "close":
            await self.close()
        return RawReply(status, out, payload, latency_ms)


async def run_load(
    url: str,
    n: int,
    *,
    concurrency: int = 8,
    method: str = "POST",
    path: str = "/v1/chat/completions",
    payload: Mapping[str, Any] | None = None,
    headers: Callable[[int], Mapping[str, str]] | None = None,
) -> tuple[list[RawReply], float]:
    """Send ``n`` requests over ``concurrency`` connections; the replies in send order and
    the elapsed wall time in seconds."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    body = b"" if payload is None else json.dumps(payload).encode()
    replies: list[RawReply | None] = [None] * n
    indices = iter(range(n))

    async def worker() -> None:
        conn = RawConnection(host, port)
        try:
            for i in indices:
                extra = headers(i) if headers is not None else None
                replies[i] = await conn.request(method, path, body, extra)
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, n)))))
    elapsed = time.perf_counter() - started
    return [r for r in replies if r is not None], elapsed
