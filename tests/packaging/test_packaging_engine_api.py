"""The Docker Engine API builder against a real Engine API: Podman's Docker-compatible
service (``podman system service``) on a unix socket. Skipped unless ``podman`` is installed.

Small hand-made contexts on the locally made base image keep this quick; the full package is
built in ``test_packaging_container.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopline.packaging.builders import (
    BuilderError,
    BuildRequest,
    Endpoint,
    build_with_docker_api,
    detect,
    select_builder,
)

pytestmark = [
    pytest.mark.container,
    pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed"),
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``(DOCKER_HOST, base image)`` of a Podman API service started for this module."""
    from tests.packaging.test_packaging_container import DRIVER, make_base_image

    base = make_base_image()
    sock = tmp_path_factory.mktemp("engine") / "podman.sock"
    env = {**os.environ, "BUILDAH_ISOLATION": "chroot"}
    proc = subprocess.Popen(
        ["podman", "--storage-driver", DRIVER, "system", "service", "--time=0", f"unix://{sock}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("podman system service did not start")
            time.sleep(0.1)
        yield f"unix://{sock}", base
    finally:
        proc.terminate()
        proc.wait(20)


def context(tmp_path: Path, base: str, run: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"ARG BASE_IMAGE={base}\nFROM ${{BASE_IMAGE}}\nCOPY hello.txt /hello.txt\nRUN {run}\n"
    )
    (ctx / "hello.txt").write_text("hello\n")
    (ctx / "build.log").write_text("not sent\n")
    return ctx


def test_engine_api_is_detected_and_builds(engine: tuple[str, str], tmp_path: Path) -> None:
    from tests.packaging.test_packaging_container import podman

    docker_host, base = engine
    detected = detect({"DOCKER_HOST": docker_host, "PATH": ""})
    assert detected.docker_api == docker_host
    assert select_builder(detected) == "docker-api"
    tag = "localhost/loopline-engine-api-test:1"
    ctx = context(tmp_path, base, "test -f /hello.txt && test ! -e /build.log")
    request = BuildRequest(
        context=ctx, tag=tag, log_path=tmp_path / "api.log", build_args={"BASE_IMAGE": base},
        exclude=("build.log",),
    )  # fmt: skip
    try:
        build_with_docker_api(Endpoint.parse(docker_host), request)
        assert podman("image", "exists", tag, check=False).returncode == 0
        assert "hello.txt" in request.log_path.read_text()
    finally:
        podman("rmi", "--force", tag, check=False)


def test_engine_api_build_failure_names_the_log_tail(
    engine: tuple[str, str], tmp_path: Path
) -> None:
    docker_host, base = engine
    ctx = context(tmp_path, base, "echo boom-from-the-build && false")
    request = BuildRequest(
        context=ctx, tag="localhost/loopline-engine-api-fail:1", log_path=tmp_path / "api.log",
        build_args={},
    )  # fmt: skip
    with pytest.raises(BuilderError, match=r"(?s)Docker Engine API failed.*boom-from-the-build"):
        build_with_docker_api(Endpoint.parse(docker_host), request)
