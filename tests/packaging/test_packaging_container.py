"""Build the packaged image with Podman from a locally made base and serve a completion.

Skipped unless ``podman`` is installed. No registry is reachable from inside a build here, so
the base image is made locally (``debootstrap`` of Debian bookworm, which ships Python 3.11,
imported with ``podman import``; cached between runs) and the package vendors every wheel.
``LOOPLINE_TEST_BASE_IMAGE`` names another base; ``LOOPLINE_TEST_STORAGE_DRIVER`` (default
``overlay``; ``vfs`` works everywhere but copies every layer) the storage driver.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from loopline.packaging import build_package

pytestmark = [
    pytest.mark.container,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed"),
]

BASE_IMAGE = "localhost/loopline-test-base:bookworm"
DRIVER = os.environ.get("LOOPLINE_TEST_STORAGE_DRIVER", "overlay")
RUN_OPTS = (
    "--runtime", "runc", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
    "--network", "host",
)  # fmt: skip
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "loopline-test"


def podman(
    *args: str, timeout: float = 600, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", "--storage-driver", DRIVER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def make_base_image() -> str:
    """A minimal Debian bookworm with python3 and venv, imported into Podman (once)."""
    image = os.environ.get("LOOPLINE_TEST_BASE_IMAGE", BASE_IMAGE)
    if podman("image", "exists", image, check=False).returncode == 0:
        return image
    if image != BASE_IMAGE or shutil.which("debootstrap") is None or os.geteuid() != 0:
        pytest.skip(f"base image {image} missing and cannot be made (debootstrap as root)")
    rootfs = CACHE / "bookworm-rootfs"
    if not (rootfs / "usr" / "bin" / "python3").exists():
        shutil.rmtree(rootfs, ignore_errors=True)
        rootfs.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "debootstrap", "--variant=minbase", "--include=python3,python3-venv",
                "bookworm", str(rootfs), "http://deb.debian.org/debian",
            ],
            check=True, capture_output=True, timeout=900,
        )  # fmt: skip
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / junk).glob("*"):
                if item.is_file():
                    item.unlink()
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(
        ["podman", "--storage-driver", DRIVER, "import", "-", image],
        stdin=tar.stdout,
        check=True,
        capture_output=True,
        timeout=600,
    )
    tar.wait(60)
    return image


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"loopline-pkg-{uuid.uuid4().hex[:8]}"
    yield name
    podman("rm", "--force", "--time", "5", name, check=False)


def wait_ready(url: str, name: str, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        state = podman("inspect", "--format", "{{.State.Running}}", name, check=False)
        if state.stdout.strip() != "true":
            break
        time.sleep(1.0)
    logs = podman("logs", name, check=False)
    raise AssertionError(f"container not ready:\n{logs.stdout}\n{logs.stderr}")


def test_packaged_image_serves_a_completion(
    champion_project: Any, tmp_path: Path, container_name: str
) -> None:
    from tests.serving.support import free_port

    base = make_base_image()
    tag = f"localhost/loopline-pkg-test:{uuid.uuid4().hex[:8]}"
    start = time.perf_counter()
    result = build_package(
        champion_project.settings,
        "champion",
        tmp_path / "ctx",
        tag=tag,
        builder="podman",
        base_image=base,
        vendor_wheels=True,
        storage_driver=DRIVER,
        isolation="chroot",
        network="host",
    )
    total = time.perf_counter() - start
    print(
        f"\ncontext {result.context_seconds:.1f} s, image build {result.build_seconds:.1f} s, "
        f"total {total:.1f} s"
    )
    try:
        assert result.builder == "podman" and result.build_log is not None
        labels = podman("image", "inspect", "--format", "{{json .Labels}}", tag).stdout
        assert result.fingerprint in labels
        user = podman("image", "inspect", "--format", "{{.Config.User}}", tag).stdout.strip()
        assert user == "10001:10001"

        port = free_port()
        podman(
            "run", "--detach", "--name", container_name, *RUN_OPTS, "--read-only",
            tag, "--host", "127.0.0.1", "--port", str(port),
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        ready_start = time.perf_counter()
        wait_ready(url, container_name)
        print(f"container ready in {time.perf_counter() - ready_start:.1f} s")
        response = httpx.post(
            f"{url}/v1/completions",
            json={
                "model": champion_project.settings.model.name,
                "prompt": "I was charged twice",
                "max_tokens": 8,
            },
            timeout=60,
        )
        assert response.status_code == 200, response.text
        text = response.json()["choices"][0]["text"]
        assert isinstance(text, str) and text
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        # The image's own healthcheck command works inside the container.
        check = podman(
            "exec", container_name, "python", "-c",
            f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/healthz')",
        )  # fmt: skip
        assert check.returncode == 0
    finally:
        podman("rm", "--force", "--time", "5", container_name, check=False)
        podman("rmi", "--force", tag, check=False)
