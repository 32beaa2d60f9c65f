"""Image builders: the Docker Engine API, Podman or Buildah, whichever is present.

Detection looks, it does not guess: the Engine API counts only when ``GET /_ping`` over its
socket answers ``OK``; Podman and Buildah count when their executables are on ``PATH``.
:func:`select_builder` is the pure decision over what was detected.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO
from urllib.parse import urlsplit

from loopline.fsutil import tail_text

DOCKER_API = "docker-api"
PODMAN = "podman"
BUILDAH = "buildah"
BUILDERS = (DOCKER_API, PODMAN, BUILDAH)
BuilderChoice = Literal["auto", "docker-api", "podman", "buildah", "none"]
DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"
LOG_TAIL_LINES = 40


class BuilderError(RuntimeError):
    """Building the image failed or the requested builder is not available."""


@dataclass(frozen=True)
class Detected:
    """What can build images here: the Engine API endpoint and the CLI executables found."""

    docker_api: str | None = None
    podman: str | None = None
    buildah: str | None = None

    def available(self) -> tuple[str, ...]:
        found = {DOCKER_API: self.docker_api, PODMAN: self.podman, BUILDAH: self.buildah}
        return tuple(name for name in BUILDERS if found[name])


def select_builder(detected: Detected, requested: str = "auto") -> str | None:
    """The builder to use: ``requested`` if available, or for ``auto`` the first available of
    Engine API, Podman, Buildah; ``None`` for ``none`` or when nothing is available."""
    if requested == "none":
        return None
    available = detected.available()
    if requested == "auto":
        return available[0] if available else None
    if requested not in BUILDERS:
        raise ValueError(f"unknown builder {requested!r}: use auto, none or one of {BUILDERS}")
    if requested not in available:
        raise BuilderError(f"builder {requested!r} was requested but is not available here")
    return requested


# -- detection --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Endpoint:
    """Where the Engine API listens: a unix socket path or a plain-HTTP base URL."""

    socket: str | None = None
    base_url: str = "http://docker"

    def describe(self) -> str:
        return f"unix://{self.socket}" if self.socket else self.base_url

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """The inverse of :meth:`describe`."""
        if text.startswith("unix://"):
            return cls(socket=text.removeprefix("unix://"))
        return cls(base_url=text)


def docker_endpoint(env: Mapping[str, str] | None = None) -> Endpoint | None:
    """The Engine API endpoint named by ``DOCKER_HOST``, else the default socket if present.

    TLS endpoints (``DOCKER_TLS_VERIFY``) are not supported and count as absent.
    """
    env = os.environ if env is None else env
    host = env.get("DOCKER_HOST", "").strip()
    if not host:
        return (
            Endpoint(socket=DEFAULT_DOCKER_SOCKET) if Path(DEFAULT_DOCKER_SOCKET).exists() else None
        )
    parts = urlsplit(host)
    if parts.scheme == "unix":
        return Endpoint(socket=parts.path)
    if parts.scheme in ("tcp", "http") and not env.get("DOCKER_TLS_VERIFY"):
        return Endpoint(base_url=f"http://{parts.netloc}")
    return None


def ping_docker(endpoint: Endpoint, timeout: float = 2.0) -> bool:
    """``True`` when ``GET /_ping`` answers ``OK``."""
    import httpx

    transport = httpx.HTTPTransport(uds=endpoint.socket) if endpoint.socket else None
    try:
        with httpx.Client(base_url=endpoint.base_url, transport=transport, timeout=timeout) as c:
            response = c.get("/_ping")
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.text.strip() == "OK"


def detect(env: Mapping[str, str] | None = None) -> Detected:
    """Probe for an Engine API (``DOCKER_HOST`` or the default socket), and for Podman and
    Buildah on ``PATH``; ``env`` replaces ``os.environ`` for both."""
    env = os.environ if env is None else env
    endpoint = docker_endpoint(env)
    api = endpoint.describe() if endpoint is not None and ping_docker(endpoint) else None
    path = env.get("PATH", "")
    return Detected(
        docker_api=api,
        podman=shutil.which(PODMAN, path=path),
        buildah=shutil.which(BUILDAH, path=path),
    )


# -- building ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class BuildRequest:
    """One image build: context, tag, build args, where the log goes, CLI storage options."""

    context: Path
    tag: str
    log_path: Path
    build_args: Mapping[str, str]
    exclude: Sequence[str] = ()
    storage_driver: str | None = None
    isolation: str | None = None
    network: str | None = None
    timeout: float = 3600.0


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    return tail_text(path, lines, missing="")


def _excluded(relative: str, exclude: Iterable[str]) -> bool:
    first = relative.split("/", 1)[0]
    return any(fnmatch.fnmatchcase(relative, e) or fnmatch.fnmatchcase(first, e) for e in exclude)


def context_tar(context: Path, dst: Path, exclude: Iterable[str] = ()) -> Path:
    """Write the build context as a tar (paths or top-level names matching ``exclude`` left out)."""
    exclude = tuple(exclude)
    with tarfile.open(dst, "w") as tar:
        for path in sorted(context.rglob("*")):
            relative = path.relative_to(context).as_posix()
            if _excluded(relative, exclude):
                continue
            tar.add(path, arcname=relative, recursive=False)
    return dst


def build_with_docker_api(endpoint: Endpoint, request: BuildRequest) -> None:
    """``POST /build`` with a tar of the context; the JSON progress stream goes to the log."""
    import httpx

    params = {
        "t": request.tag,
        "dockerfile": "Dockerfile",
        "rm": "1",
        "forcerm": "1",
        "buildargs": json.dumps(dict(request.build_args)),
    }
    if request.network:
        params["networkmode"] = request.network
    transport = httpx.HTTPTransport(uds=endpoint.socket) if endpoint.socket else None
    error: str | None = None
    with tempfile.TemporaryDirectory(prefix="loopline-build-") as tmp:
        tar_path = context_tar(request.context, Path(tmp) / "context.tar", request.exclude)
        with (
            request.log_path.open("w", encoding="utf-8") as log,
            tar_path.open("rb") as body,
            httpx.Client(
                base_url=endpoint.base_url, transport=transport, timeout=request.timeout
            ) as client,
        ):
            log.write(f"POST {endpoint.describe()}/build t={request.tag}\n")
            try:
                with client.stream(
                    "POST",
                    "/build",
                    params=params,
                    content=body,
                    headers={"Content-Type": "application/x-tar"},
                ) as response:
                    if response.status_code != 200:
                        response.read()
                        log.write(response.text)
                        error = f"Engine API answered {response.status_code}"
                    else:
                        for line in response.iter_lines():
                            error = _log_stream_line(line, log) or error
            except httpx.HTTPError as exc:
                error = f"Engine API request failed: {exc}"
                log.write(f"{error}\n")
    if error:
        raise BuilderError(
            f"image build through the Docker Engine API failed: {error}\n"
            f"log {request.log_path}, last lines:\n{_tail(request.log_path)}"
        )


def _log_stream_line(line: str, log: TextIO) -> str | None:
    """Write one JSON progress line to the log; return the error it reports, if any."""
    write = log.write
    if not line.strip():
        return None
    try:
        item = json.loads(line)
    except json.JSONDecodeError:
        write(line + "\n")
        return None
    if not isinstance(item, dict):
        return None
    if "stream" in item:
        write(str(item["stream"]))
    elif "status" in item:
        write(f"{item['status']}\n")
    if "error" in item or "errorDetail" in item:
        detail = item.get("errorDetail")
        message = str(item.get("error") or (detail or {}).get("message") or detail)
        write(f"ERROR: {message}\n")
        return message
    return None


def cli_command(builder: str, executable: str, request: BuildRequest) -> list[str]:
    """The ``podman build`` / ``buildah bud`` command line for ``request``."""
    cmd = [executable]
    if request.storage_driver:
        cmd += ["--storage-driver", request.storage_driver]
    cmd += ["build"] if builder == PODMAN else ["bud"]
    cmd += ["--format", "docker"]  # the OCI format has no HEALTHCHECK
    if request.isolation:
        cmd += ["--isolation", request.isolation]
    if request.network:
        cmd += ["--network", request.network]
    cmd += ["--tag", request.tag, "--file", str(request.context / "Dockerfile")]
    for key, value in sorted(request.build_args.items()):
        cmd += ["--build-arg", f"{key}={value}"]
    cmd.append(str(request.context))
    return cmd


def build_with_cli(builder: str, executable: str, request: BuildRequest) -> None:
    """Run Podman or Buildah; stdout and stderr go to the log."""
    cmd = cli_command(builder, executable, request)
    with request.log_path.open("w", encoding="utf-8") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        try:
            proc = subprocess.run(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=request.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise BuilderError(
                f"{builder} build timed out after {request.timeout:.0f} s; "
                f"log {request.log_path}, last lines:\n{_tail(request.log_path)}"
            ) from None
    if proc.returncode != 0:
        raise BuilderError(
            f"{builder} build failed (exit {proc.returncode}); log {request.log_path}, "
            f"last lines:\n{_tail(request.log_path)}"
        )


def run_build(builder: str, detected: Detected, request: BuildRequest) -> None:
    """Build with ``builder`` (one of :data:`BUILDERS`) as detected."""
    if builder == DOCKER_API:
        if not detected.docker_api:
            raise BuilderError("no Docker Engine API was detected")
        build_with_docker_api(Endpoint.parse(detected.docker_api), request)
        return
    executable = detected.podman if builder == PODMAN else detected.buildah
    if not executable:
        raise BuilderError(f"{builder} is not installed")
    build_with_cli(builder, executable, request)
