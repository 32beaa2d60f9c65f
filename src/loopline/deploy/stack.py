"""The local deployment: model-server processes behind the router, and the file that says
which is which.

``<state_dir>/deploy/stack.json`` records the router (pid, ports) and the servers (stable,
candidate, standby: version, pid, port); it is rewritten atomically after every change, so
``loopline status``, ``rollback`` and ``down`` in another process act on what is really
running. ``<state_dir>/deploy/lock`` serialises every command that changes the stack.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from loopline.config import Settings
from loopline.fsutil import read_json, tail_text, write_json
from loopline.routing.process import free_port


class DeployError(RuntimeError):
    """A deployment command cannot proceed (the message says why and what to do)."""


@dataclass(frozen=True)
class ServerProc:
    version: str
    pid: int
    port: int
    variant: str
    log: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class RouterProc:
    pid: int
    port: int
    admin_port: int
    log: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"


@dataclass(frozen=True)
class Stack:
    router: RouterProc | None = None
    stable: ServerProc | None = None
    candidate: ServerProc | None = None
    standby: ServerProc | None = None  # the previous stable, kept warm for a switch back
    release_id: str | None = None  # the release in progress, if any
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stack:
        def server(d: dict[str, Any] | None) -> ServerProc | None:
            return None if d is None else ServerProc(**d)

        router = data.get("router")
        return cls(
            router=None if router is None else RouterProc(**router),
            stable=server(data.get("stable")),
            candidate=server(data.get("candidate")),
            standby=server(data.get("standby")),
            release_id=data.get("release_id"),
            extra=dict(data.get("extra") or {}),
        )


def deploy_dir(settings: Settings) -> Path:
    return settings.state_path / "deploy"


def stack_file(settings: Settings) -> Path:
    return deploy_dir(settings) / "stack.json"


def load_stack(settings: Settings) -> Stack:
    path = stack_file(settings)
    if not path.is_file():
        return Stack()
    return Stack.from_dict(read_json(path))


def prometheus_targets(stack: Stack) -> list[dict[str, Any]]:
    """The running model servers as a Prometheus ``file_sd`` document (one group per role;
    infra/prometheus/prometheus.yml reads ``targets/serving*.json``)."""
    # No `version` target label: the servers' own series carry it, and a target label of
    # the same name would rename theirs to `exported_version`.
    roles = (("stable", stack.stable), ("candidate", stack.candidate), ("standby", stack.standby))
    return [
        {"targets": [server.url.removeprefix("http://")], "labels": {"role": role}}
        for role, server in roles
        if server is not None
    ]


def targets_file(settings: Settings) -> Path:
    return settings.path(settings.monitoring.state_dir) / "targets" / "serving.json"


def save_stack(settings: Settings, stack: Stack) -> Stack:
    """Persist the stack, and the servers' addresses for Prometheus (both atomically)."""
    deploy_dir(settings).mkdir(parents=True, exist_ok=True)
    write_json(stack.to_dict(), stack_file(settings))
    write_json(prometheus_targets(stack), targets_file(settings))
    return stack


@contextmanager
def stack_lock(settings: Settings, what: str) -> Iterator[None]:
    """Exclusive right to change the stack; a second command fails at once, naming it."""
    directory = deploy_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "lock").open("a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another command"
            raise DeployError(
                f"cannot {what}: the local deployment is busy ({holder}); "
                "wait for it or use `loopline rollback` to abort a release"
            ) from None
        fh.truncate(0)
        fh.write(f"{what} (pid {os.getpid()})")
        fh.flush()
        try:
            yield
        finally:
            fh.truncate(0)


# -- processes ---------------------------------------------------------------------------------
def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own exited child not yet reaped) is not alive.
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == 0


def stop_pid(pid: int | None, timeout: float = 15.0) -> None:
    """SIGTERM the process group, then SIGKILL after ``timeout``."""
    if not pid or not alive(pid):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def _spawn(cmd: Sequence[str], log: Path, cwd: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return proc.pid


def start_server(
    settings: Settings,
    version: str,
    variant: str,
    *,
    set_args: Sequence[str] = (),
) -> ServerProc:
    """Launch ``loopline serve`` for registry ``version`` in its own session; returns at once.

    The version is resolved, downloaded and verified here; the server gets the cached folder
    with the registered checksum (it verifies it again before loading) and so never opens the
    registry itself, which saves it seconds of start-up.
    """
    from loopline.serving.model_store import ServingError, from_registry

    try:
        served = from_registry(settings, version)
    except ServingError as exc:
        raise DeployError(str(exc)) from exc
    port = free_port()
    log = deploy_dir(settings) / "logs" / f"server-v{served.version}-{port}.log"
    cmd = [
        sys.executable, "-m", "loopline.cli", "serve",
        "--project", str(Path(settings.root).resolve()), "--env", settings.env,
        "--model-dir", str(served.path), "--checksum", served.fingerprint,
        "--version-label", served.version,
        "--port", str(port), "--variant", variant,
    ]  # fmt: skip
    for item in set_args:
        cmd += ["--set", item]
    pid = _spawn(cmd, log, Path(settings.root))
    return ServerProc(version=served.version, pid=pid, port=port, variant=variant, log=str(log))


def server_ready(server: ServerProc) -> str | None:
    """``None`` when the server answers ``/readyz``, else why not."""
    if not alive(server.pid):
        log = tail_text(server.log)
        return f"v{server.version} server (pid {server.pid}) is not running; log:\n{log}"
    try:
        resp = httpx.get(f"{server.url}/readyz", timeout=2.0, trust_env=False)
    except httpx.HTTPError as exc:
        return f"v{server.version} server not answering on {server.url}: {type(exc).__name__}"
    if resp.status_code != 200:
        return f"v{server.version} server not ready ({resp.status_code})"
    return None


def wait_ready(server: ServerProc, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        reason = server_ready(server)
        if reason is None:
            return
        if not alive(server.pid) or time.monotonic() > deadline:
            stop_pid(server.pid, timeout=2)
            raise DeployError(f"model server did not become ready: {reason}")
        time.sleep(0.2)


def start_router_proc(settings: Settings, stable: ServerProc) -> RouterProc:
    from loopline.routing.process import start_router

    port, admin_port = free_port(), free_port()
    log = deploy_dir(settings) / "logs" / f"router-{port}.log"
    proc = start_router(
        port,
        admin_port,
        stable.url,
        log_path=log,
        state_file=deploy_dir(settings) / "router-state.json",
        extra_args=["--plan-file", str(settings.path(settings.serving.experiments_plan))],
    )
    return RouterProc(pid=proc.pid, port=port, admin_port=admin_port, log=str(log))
