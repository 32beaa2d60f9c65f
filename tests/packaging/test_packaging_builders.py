"""Builder selection and detection: pure decisions and real probes (no engine here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopline.packaging.builders import (
    BuilderError,
    BuildRequest,
    Detected,
    Endpoint,
    cli_command,
    context_tar,
    detect,
    docker_endpoint,
    ping_docker,
    select_builder,
)

ALL = Detected(docker_api="unix:///run/docker.sock", podman="/usr/bin/podman", buildah="/b")
NO_API = Detected(podman="/usr/bin/podman", buildah="/usr/bin/buildah")
ONLY_BUILDAH = Detected(buildah="/usr/bin/buildah")
NONE = Detected()


@pytest.mark.parametrize(
    ("detected", "requested", "expected"),
    [
        (ALL, "auto", "docker-api"),
        (NO_API, "auto", "podman"),
        (ONLY_BUILDAH, "auto", "buildah"),
        (NONE, "auto", None),
        (ALL, "none", None),
        (NONE, "none", None),
        (ALL, "podman", "podman"),
        (ALL, "buildah", "buildah"),
        (NO_API, "buildah", "buildah"),
        (Detected(docker_api="http://10.0.0.1:2375"), "docker-api", "docker-api"),
    ],
)
def test_select_builder(detected: Detected, requested: str, expected: str | None) -> None:
    assert select_builder(detected, requested) == expected


@pytest.mark.parametrize(
    ("detected", "requested"),
    [(NONE, "podman"), (NO_API, "docker-api"), (ONLY_BUILDAH, "podman"), (NONE, "buildah")],
)
def test_requested_builder_that_is_missing_is_an_error(detected: Detected, requested: str) -> None:
    with pytest.raises(BuilderError, match=f"{requested!r} was requested but is not available"):
        select_builder(detected, requested)


def test_unknown_builder_name() -> None:
    with pytest.raises(ValueError, match="unknown builder 'kaniko'"):
        select_builder(ALL, "kaniko")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DOCKER_HOST": "unix:///tmp/d.sock"}, Endpoint(socket="/tmp/d.sock")),
        ({"DOCKER_HOST": "tcp://127.0.0.1:2375"}, Endpoint(base_url="http://127.0.0.1:2375")),
        ({"DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS_VERIFY": "1"}, None),
        ({"DOCKER_HOST": "ssh://user@host"}, None),
    ],
)
def test_docker_endpoint_from_docker_host(env: dict[str, str], expected: Endpoint | None) -> None:
    assert docker_endpoint(env) == expected
    if expected is not None:
        assert Endpoint.parse(expected.describe()) == expected


def test_ping_of_a_missing_socket_or_a_socket_that_is_no_engine(tmp_path: Path) -> None:
    import socket

    assert ping_docker(Endpoint(socket=str(tmp_path / "missing.sock"))) is False
    path = tmp_path / "silent.sock"
    with socket.socket(socket.AF_UNIX) as server:  # accepts, never answers HTTP
        server.bind(str(path))
        server.listen(1)
        assert ping_docker(Endpoint(socket=str(path)), timeout=0.5) is False


def test_detect_finds_only_what_is_on_path(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "buildah"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    env = {"DOCKER_HOST": f"unix://{tmp_path}/none.sock", "PATH": str(bindir)}
    assert detect(env) == Detected(buildah=str(fake))


def test_cli_commands(tmp_path: Path) -> None:
    request = BuildRequest(
        context=tmp_path,
        tag="m:1",
        log_path=tmp_path / "build.log",
        build_args={"BASE_IMAGE": "base:1"},
        storage_driver="vfs",
        isolation="chroot",
    )
    assert cli_command("podman", "podman", request) == [
        "podman", "--storage-driver", "vfs", "build", "--format", "docker",
        "--isolation", "chroot", "--tag", "m:1", "--file", f"{tmp_path}/Dockerfile",
        "--build-arg", "BASE_IMAGE=base:1", str(tmp_path),
    ]  # fmt: skip
    assert cli_command("buildah", "/usr/bin/buildah", request)[:4] == [
        "/usr/bin/buildah",
        "--storage-driver",
        "vfs",
        "bud",
    ]


def test_context_tar_skips_ignored_entries(tmp_path: Path) -> None:
    import tarfile

    ctx = tmp_path / "ctx"
    (ctx / "mlflow-model").mkdir(parents=True)
    (ctx / "mlflow-model" / "MLmodel").write_text("x")
    (ctx / "model").mkdir()
    (ctx / "model" / "a.tmp").write_text("x")
    (ctx / "model" / "config.json").write_text("{}")
    (ctx / "Dockerfile").write_text("FROM x\n")
    (ctx / "build.log").write_text("")
    tar = context_tar(ctx, tmp_path / "c.tar", ("mlflow-model", "build.log", "*.tmp"))
    with tarfile.open(tar) as t:
        assert sorted(t.getnames()) == ["Dockerfile", "model", "model/config.json"]
