"""Helpers of the router tests: fake OpenAI backend processes, router processes, load."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from loopline.routing.client import RouterAdmin
from loopline.routing.loadgen import RawReply, run_load
from loopline.routing.process import free_port, start_router

STABLE_REPLY = "intent: billing_refund\nreply: stable says your refund arrives within five days"
CANDIDATE_REPLY = "intent: password_reset\nreply: candidate says use the reset link we emailed"
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "where is my refund"}]}


@dataclass
class Backend:
    name: str
    url: str
    proc: subprocess.Popen[bytes]

    def control(self, status: int | None = None, delay: float = 0.0) -> None:
        httpx.put(
            f"{self.url}/_control", json={"status": status, "delay": delay}
        ).raise_for_status()

    def seen(self) -> dict[str, int]:
        return dict(httpx.get(f"{self.url}/_seen").json())

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


@dataclass
class RouterProc:
    url: str
    admin_url: str
    admin: RouterAdmin
    proc: subprocess.Popen[bytes]
    log_path: Path
    state_file: Path


def spawn_backend(name: str, reply: str, log_dir: Path) -> Backend:
    """Start a fake backend process (returns at once; see :func:`wait_ready`)."""
    port = free_port()
    log = (log_dir / f"backend-{name}-{port}.log").open("wb")
    cmd = [sys.executable, "-m", "loopline.routing.fakebackend", "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--name", name, "--reply", reply], stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    return Backend(name, f"http://127.0.0.1:{port}", proc)


def wait_ready(backend: Backend, timeout: float = 20.0) -> Backend:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert backend.proc.poll() is None, f"backend {backend.name} exited"
        try:
            if httpx.get(f"{backend.url}/v1/models", timeout=1.0).status_code == 200:
                return backend
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"backend {backend.name} not ready")


def stop_backend(backend: Backend) -> None:
    if backend.proc.poll() is None:
        backend.proc.terminate()
        try:
            backend.proc.wait(5)
        except subprocess.TimeoutExpired:
            backend.proc.kill()
            backend.proc.wait()


def launch_router(
    tmp: Path, stable: str, candidate: str | None, extra_args: tuple[str, ...] = ()
) -> RouterProc:
    port, admin_port = free_port(), free_port()
    state_file = tmp / f"router-{port}.json"
    log_path = tmp / f"router-{port}.log"
    proc = start_router(
        port,
        admin_port,
        stable,
        candidate,
        log_path=log_path,
        state_file=state_file,
        extra_args=extra_args,
    )
    admin = RouterAdmin(f"http://127.0.0.1:{admin_port}")
    return RouterProc(f"http://127.0.0.1:{port}", admin.base_url, admin, proc, log_path, state_file)


def fire(
    url: str,
    n: int,
    *,
    concurrency: int = 8,
    method: str = "POST",
    path: str = "/v1/chat/completions",
    payload: dict[str, Any] | None = None,
    headers: Callable[[int], dict[str, str]] | None = None,
) -> list[RawReply]:
    """Send ``n`` requests (a chat completion by default) over ``concurrency`` keep-alive
    connections; the replies in send order."""
    if payload is None and method == "POST":
        payload = CHAT
    replies, _ = asyncio.run(
        run_load(
            url,
            n,
            concurrency=concurrency,
            method=method,
            path=path,
            payload=payload,
            headers=headers,
        )
    )
    return replies


def arm_counts(replies: list[RawReply]) -> Counter[str]:
    return Counter(r.headers.get("x-loopline-arm", "") for r in replies)
