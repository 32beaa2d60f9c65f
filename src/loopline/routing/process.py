"""Start and stop a router process (what the local target calls)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from loopline.fsutil import tail_text


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    return tail_text(path, lines, empty="(empty log)")


def router_command(
    port: int,
    admin_port: int,
    stable: str,
    candidate: str | None = None,
    *,
    state_file: Path | str | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The command line of a router process."""
    cmd = [sys.executable, "-m", "loopline.routing", "--port", str(port)]
    cmd += ["--admin-port", str(admin_port), "--stable", stable]
    if candidate is not None:
        cmd += ["--candidate", candidate]
    if state_file is not None:
        cmd += ["--state-file", str(state_file)]
    return cmd + list(extra_args)


def start_router(
    port: int,
    admin_port: int,
    stable: str,
    candidate: str | None = None,
    *,
    log_path: Path | str,
    state_file: Path | str | None = None,
    ready_timeout: float = 30.0,
    extra_args: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """Start ``python -m loopline.routing`` in its own session (output to ``log_path``) and
    return once its admin API answers; raises ``RuntimeError`` with the log's tail if it
    exits or is not ready within ``ready_timeout`` seconds (it is killed then).
    ``extra_args`` are more CLI options (``--candidate-weight``, ``--timeout``, ...)."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = router_command(
        port, admin_port, stable, candidate, state_file=state_file, extra_args=extra_args
    )
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + ready_timeout
    url = f"http://127.0.0.1:{admin_port}/healthz"
    with httpx.Client(timeout=1.0, trust_env=False) as http:
        while True:
            code = proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"router exited with status {code} before it was ready; "
                    f"log {log_path}:\n{_tail(log_path)}"
                )
            try:
                if http.get(url).status_code == 200:
                    return proc
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                stop_router(proc, timeout=2.0)
                raise RuntimeError(
                    f"router not ready within {ready_timeout:g} s; "
                    f"log {log_path}:\n{_tail(log_path)}"
                )
            time.sleep(0.05)


def stop_router(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM the router, SIGKILL it after ``timeout`` seconds; returns its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)
