"""build_package against a real MLflow registry on SQLite; the Dockerfile checked by hadolint."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from loopline.packaging import (
    FingerprintMismatchError,
    OutDirNotEmptyError,
    PackageResult,
    UnknownModelVersionError,
    build_package,
    detect,
)
from loopline.packaging.requirements import pin_requirements, public_version
from loopline.registry.lineage import model_fingerprint
from loopline.registry.mlflow_registry import ModelRegistry
from tests.packaging.conftest import register_fake

HADOLINT = Path(sys.executable).parent / "hadolint"
SERVE_ARGS = ("--project", "--model-dir", "--checksum", "--host", "--port", "--variant")


@pytest.fixture(scope="module")
def package(champion_project: Any, tmp_path_factory: pytest.TempPathFactory) -> PackageResult:
    out = tmp_path_factory.mktemp("pkg") / "context"
    start = time.perf_counter()
    result = build_package(champion_project.settings, "champion", out, build=False)
    print(f"\ncontext build: {time.perf_counter() - start:.2f} s")
    return result


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def test_context_has_every_part(package: PackageResult, champion_project: Any) -> None:
    ctx = package.context_dir
    assert package.builder is None and package.build_log is None
    assert package.model_version == champion_project.good.version
    assert package.image_tag == f"{champion_project.settings.model.name}:{package.model_version}"
    assert package.message == (
        f"context ready at {ctx}; build it with: docker build -t {package.image_tag} {ctx}"
    )
    for name in ("Dockerfile", ".dockerignore", "requirements.txt", "MODEL_CHECKSUM"):
        assert (ctx / name).is_file(), name
    assert (ctx / "mlflow-model" / "MLmodel").is_file()
    assert (ctx / "model" / "loopline_model.json").is_file()
    assert (ctx / "model" / "config.json").is_file()
    for name in ("configs/loopline.yaml", "configs/envs/local.yaml", "params.yaml"):
        assert (ctx / "app" / name).read_bytes() == (champion_project.root / name).read_bytes()
    assert [p.name for p in (ctx / "wheels").glob("loopline-*.whl")]
    assert siblings(ctx) == []  # no temp dirs left beside it
    # the image's non-root user can read everything the Dockerfile copies
    assert all(p.stat().st_mode & 0o004 for p in [ctx, *ctx.rglob("*")])


def test_checksum_is_the_registered_fingerprint_of_the_model(
    package: PackageResult, champion_project: Any
) -> None:
    ctx = package.context_dir
    fingerprint = (ctx / "MODEL_CHECKSUM").read_text().strip()
    assert fingerprint == package.fingerprint == model_fingerprint(ctx / "model")
    assert fingerprint == champion_project.good.tags["loopline.model_fingerprint"]
    assert fingerprint == model_fingerprint(champion_project.models["good"])


def test_requirements_are_pinned_to_this_environment(package: PackageResult) -> None:
    lines = [
        line
        for line in (package.context_dir / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines and all(re.fullmatch(r"[a-z0-9][a-z0-9._-]*==[^=\s]+", ln) for ln in lines)
    pins = dict(line.split("==") for line in lines)
    from importlib.metadata import version

    assert pins["torch"] == public_version(version("torch"))
    for name in ("mlflow", "transformers", "fastapi", "uvicorn", "prefect", "starlette"):
        assert pins[name] == public_version(version(name)), name
    assert "loopline" not in pins and "pytest" not in pins and "ruff" not in pins


def test_dockerfile_is_hadolint_clean_and_runs_the_server_unprivileged(
    package: PackageResult,
) -> None:
    ctx = package.context_dir
    proc = subprocess.run(
        [str(HADOLINT), "--no-color", "Dockerfile"],
        cwd=ctx,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    text = (ctx / "Dockerfile").read_text()
    users = re.findall(r"(?m)^USER (\S+)", text)
    assert users == ["10001:10001"]
    assert re.search(r"(?m)^HEALTHCHECK .*\n\s+CMD \[\"python\".*/healthz", text)
    assert re.search(r"(?m)^ARG BASE_IMAGE=python:3\.11-slim$", text)
    assert "EXPOSE 8000" in text and 'VOLUME ["/var/lib/loopline"]' in text
    for env in ('DO_NOT_TRACK="1"', 'MLFLOW_DISABLE_TELEMETRY="true"', 'HF_HUB_OFFLINE="1"'):
        assert env in text
    assert f'io.loopline.model.fingerprint="{package.fingerprint}"' in text
    entrypoint = json.loads(re.search(r"(?m)^ENTRYPOINT (.*)$", text).group(1))  # type: ignore[union-attr]
    assert entrypoint[:2] == ["loopline", "serve"]
    args = dict(zip(entrypoint[2::2], entrypoint[3::2], strict=True))
    assert args == {
        "--project": "/opt/loopline/app",
        "--model-dir": "/opt/loopline/model",
        "--checksum": package.fingerprint,
        "--host": "0.0.0.0",
        "--port": "8000",
        "--variant": "stable",
        "--request-log": "/var/lib/loopline/requests",
    }
    assert "mlflow-model" in (ctx / ".dockerignore").read_text().split()


def test_manifest_describes_the_package(package: PackageResult, champion_project: Any) -> None:
    ctx = package.context_dir
    manifest = json.loads((ctx / "manifest.json").read_text())
    assert manifest["model"]["version"] == package.model_version
    assert manifest["model"]["fingerprint"] == package.fingerprint
    assert manifest["model"]["requested"] == "champion"
    assert "champion" in manifest["model"]["aliases"]
    assert manifest["image"]["tag"] == package.image_tag
    assert manifest["builder"] is None
    reqs = (ctx / "requirements.txt").read_bytes()
    assert manifest["requirements"]["sha256"] == hashlib.sha256(reqs).hexdigest()
    files = manifest["files"]
    assert (
        files["model/config.json"]
        == hashlib.sha256((ctx / "model" / "config.json").read_bytes()).hexdigest()
    )
    on_disk = {
        p.relative_to(ctx).as_posix()
        for p in ctx.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }
    assert set(files) == on_disk
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", manifest["created"])


def test_unknown_alias_or_version_is_refused_and_leaves_nothing(
    champion_project: Any, tmp_path: Path
) -> None:
    out = tmp_path / "ctx"
    with pytest.raises(
        UnknownModelVersionError,
        match=r"no alias 'nightly'.*versions: 1, [0-9, ]*; aliases: .*champion=1",
    ):
        build_package(champion_project.settings, "nightly", out, build=False)
    with pytest.raises(UnknownModelVersionError, match="no version 99"):
        build_package(champion_project.settings, "99", out, build=False)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_non_empty_out_dir_is_refused_unless_overwrite(
    champion_project: Any, tmp_path: Path
) -> None:
    out = tmp_path / "ctx"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutDirNotEmptyError, match="not empty"):
        build_package(champion_project.settings, "champion", out, build=False)
    assert (out / "keep.txt").read_text() == "mine"
    result = build_package(champion_project.settings, "1", out, build=False, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "Dockerfile").is_file()
    assert result.model_version == "1" and siblings(out) == []


def test_a_tampered_model_in_the_artifact_store_is_refused(
    champion_project: Any, tmp_path: Path
) -> None:
    settings = champion_project.settings.model_copy(
        update={
            "model": champion_project.settings.model.model_copy(
                update={"name": f"pkg-tamper-{uuid.uuid4().hex[:8]}"}
            )
        }
    )
    version = register_fake(settings, tmp_path / "fake")
    reg = ModelRegistry(settings)
    with reg._uris():
        mv = reg.client.get_model_version(reg.name, version.version)
        model_id = str(mv.source).removeprefix("models:/")
        stored = reg.client.get_logged_model(model_id).artifact_location
    weights = next(Path(stored.removeprefix("file://")).rglob("model.safetensors"))
    weights.write_bytes(b"\xff" * weights.stat().st_size)
    out = tmp_path / "ctx"
    with pytest.raises(FingerprintMismatchError, match="fingerprint"):
        build_package(settings, version.version, out, build=False)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake"]


def test_without_any_builder_the_context_is_left_ready_with_instructions(
    champion_project: Any, tmp_path: Path
) -> None:
    empty_path = tmp_path / "bin"
    empty_path.mkdir()
    nothing = detect({"DOCKER_HOST": f"unix://{tmp_path}/no.sock", "PATH": str(empty_path)})
    assert nothing.available() == ()
    out = tmp_path / "ctx"
    result = build_package(champion_project.settings, "champion", out, build=True, detected=nothing)
    assert result.builder is None and result.build_log is None
    assert result.message == (
        f"context ready at {out}; no Docker engine, Podman or Buildah found; "
        f"build it with: docker build -t {result.image_tag} {out}"
    )
    assert json.loads((out / "manifest.json").read_text())["builder"] is None


def test_pinned_closure_follows_transitive_dependencies() -> None:
    pinned = pin_requirements(["fastapi"], extra_roots=())
    names = {line.split("==")[0] for line in pinned.pins}
    assert {"fastapi", "starlette", "pydantic", "pydantic-core"} <= names
    assert "torch" not in names
    with pytest.raises(RuntimeError, match="not installed"):
        pin_requirements(["surely-not-installed-pkg"], extra_roots=())


def test_unknown_builder_name_is_refused(champion_project: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown builder"):
        build_package(champion_project.settings, "champion", tmp_path / "x", builder="kaniko")
    assert shutil.which("hadolint") or HADOLINT.exists()
