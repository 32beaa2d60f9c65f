"""``build_package``: a registered model version as a container build context, optionally built.

The context (``out_dir``)::

    Dockerfile, .dockerignore
    model/            the Hugging Face folder, fingerprint-verified against the version's tag
    MODEL_CHECKSUM    that fingerprint (beside model/: a file inside would change it)
    mlflow-model/     the registered MLflow model (``mlflow models serve -m mlflow-model``)
    app/              configs/loopline.yaml, configs/envs/*.yaml, params.yaml of the project
    wheels/           the Loopline wheel (and, with ``vendor_wheels``, every requirement)
    requirements.txt  the runtime closure, pinned to the versions installed here
    manifest.json     what is in the package (sha256 of every file, versions, builder)
    build.log         written by a build, after the context is complete

The context is assembled in a temporary sibling directory and renamed into place, so
``out_dir`` is either absent, the previous content (``overwrite``) or the complete package.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from loopline.config import BASE_FILE, ENV_DIR, PARAMS_FILE, Settings
from loopline.packaging.builders import (
    BuilderError,
    BuildRequest,
    Detected,
    detect,
    run_build,
    select_builder,
)
from loopline.packaging.dockerfile import (
    DEFAULT_BASE_IMAGE,
    DOCKERIGNORE,
    DockerfileSpec,
    render_dockerfile,
    render_dockerignore,
)
from loopline.packaging.requirements import PinnedRequirements, pin_requirements
from loopline.registry.lineage import TAG_PREFIX, is_fingerprint, model_fingerprint

logger = logging.getLogger(__name__)

MANIFEST_FORMAT = 1
CHECKSUM_FILE = "MODEL_CHECKSUM"
MANIFEST_FILE = "manifest.json"
BUILD_LOG = "build.log"
FINGERPRINT_TAG = f"{TAG_PREFIX}model_fingerprint"
_TAG = re.compile(
    r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?"
)
_REGISTRY_HOST = re.compile(r"[A-Za-z0-9.-]+(?::\d+)?/")


class PackagingError(RuntimeError):
    """The package could not be made (the message names what is wrong)."""


class UnknownModelVersionError(PackagingError, LookupError):
    """The requested version or alias does not exist in the registry."""


class FingerprintMismatchError(PackagingError):
    """The downloaded model's content differs from the fingerprint registered with it."""


class OutDirNotEmptyError(PackagingError, FileExistsError):
    """``out_dir`` exists and is not empty (pass ``overwrite=True`` to replace it)."""


class ImageBuildError(PackagingError):
    """The context is complete but building the image failed (the message has the log tail)."""


@dataclass(frozen=True)
class PackageResult:
    """What ``build_package`` produced. ``builder`` is ``None`` when no image was built."""

    context_dir: Path
    image_tag: str
    model_name: str
    model_version: str
    fingerprint: str
    builder: str | None
    message: str
    build_log: Path | None = None
    build_seconds: float | None = None
    context_seconds: float = 0.0


# -- small pure helpers -----------------------------------------------------------------------
def default_tag(model_name: str, version: str) -> str:
    """``<model name lowercased>:<version>`` (image references must be lowercase)."""
    repo = re.sub(r"[^a-z0-9._-]+", "-", model_name.lower()).strip("._-") or "loopline-model"
    return f"{repo}:{version}"


def check_tag(tag: str) -> str:
    """``tag`` if it is a valid image reference (``[host[:port]/]name[:tag]``)."""
    rest = tag
    host = _REGISTRY_HOST.match(tag)
    if host and ("." in host.group(0) or ":" in host.group(0) or host.group(0) == "localhost/"):
        rest = tag[host.end() :]
    if not _TAG.fullmatch(rest):
        raise ValueError(f"invalid image tag {tag!r}: lowercase name[:tag] expected")
    return tag


def manual_build_hint(context: Path, tag: str) -> str:
    return f"docker build -t {tag} {context}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_hashes(root: Path, skip: Iterable[str] = ()) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root`` (sorted)."""
    skip = set(skip)
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and relative not in skip:
            out[relative] = _sha256(path)
    return out


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# -- registry -----------------------------------------------------------------------------------
def _resolve_version(registry: Any, version_or_alias: str) -> Any:
    """The RegisteredVersion for a version number or an alias, or a clear error."""
    from loopline.registry.mlflow_registry import RegistryError

    text = str(version_or_alias).strip()
    try:
        version = registry._resolve(text)
        return registry.get_version(version)
    except (RegistryError, ValueError) as exc:
        raise UnknownModelVersionError(
            f"cannot package {registry.name!r} {text!r}: {exc} ({_known(registry)})"
        ) from exc


def _known(registry: Any) -> str:
    """``versions: 1, 2; aliases: champion=1`` for error messages (best effort)."""
    from loopline.registry.mlflow_registry import _aliases_of

    try:
        versions = [v.version for v in registry.list_versions()]
        with registry._uris():
            model = registry._registered_model()
        aliases = _aliases_of(model) if model is not None else {}
    except Exception:
        return "versions: unknown"
    alias_text = ", ".join(f"{k}={v}" for k, v in sorted(aliases.items())) or "none"
    return f"versions: {', '.join(versions) or 'none'}; aliases: {alias_text}"


def _download_mlflow_model(registry: Any, version: str, dst: Path) -> Path:
    """The registered MLflow model (MLmodel, python_model, artifacts) into ``dst``."""
    import mlflow.artifacts

    with registry._uris(), tempfile.TemporaryDirectory(dir=dst.parent, prefix=".mlflow-") as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{registry.name}/{version}",
                dst_path=tmp,
                tracking_uri=registry.tracking_uri,
                registry_uri=registry.registry_uri,
            )
        )
        if not (local / "MLmodel").is_file():
            found = next(local.rglob("MLmodel"), None)
            if found is None:
                raise PackagingError(f"models:/{registry.name}/{version} has no MLmodel file")
            local = found.parent
        shutil.move(str(local), str(dst))
    return dst


def _mlflow_hf_folder(mlflow_model: Path) -> Path | None:
    conf = yaml.safe_load((mlflow_model / "MLmodel").read_text(encoding="utf-8")) or {}
    try:
        rel = conf["flavors"]["python_function"]["artifacts"]["hf_model"]["path"]
    except (KeyError, TypeError):
        return None
    return mlflow_model / rel


# -- project files ------------------------------------------------------------------------------
def find_source_dir(start: Path | None = None) -> Path:
    """The checkout that contains the ``loopline`` package's ``pyproject.toml``."""
    import loopline

    here = (start or Path(loopline.__file__)).resolve()
    for parent in [here, *here.parents]:
        candidate = parent / "pyproject.toml"
        if candidate.is_file() and re.search(
            r'(?m)^name\s*=\s*"loopline"\s*$', candidate.read_text(encoding="utf-8")
        ):
            return parent
    raise PackagingError(
        "cannot find the Loopline source checkout (pyproject.toml) to build the wheel; "
        "pass source_dir="
    )


def _run(cmd: Sequence[str], cwd: Path, what: str, timeout: float) -> None:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "UV_NO_PROGRESS": "1"}
    proc = subprocess.run(
        list(cmd), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise PackagingError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")


def _uv() -> str | None:
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def build_wheel(source_dir: Path, dst: Path, timeout: float = 600.0) -> Path:
    """Build the Loopline wheel into ``dst`` (``uv build`` if present, else ``pip wheel``)."""
    dst.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="loopline-wheel-") as tmp:
        uv = _uv()
        if uv:
            cmd = [uv, "build", "--wheel", "--quiet", "--out-dir", tmp, str(source_dir)]
        else:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "-q",
                "-w",
                tmp,
                str(source_dir),
            ]
        _run(cmd, source_dir, "building the Loopline wheel", timeout)
        wheels = sorted(Path(tmp).glob("loopline-*.whl"))
        if len(wheels) != 1:
            raise PackagingError(f"expected one Loopline wheel from {cmd[0]}, got {wheels}")
        target = dst / wheels[0].name
        shutil.move(str(wheels[0]), target)
    return target


def vendor_requirements(requirements: Path, dst: Path, timeout: float = 1800.0) -> None:
    """Put a wheel for every pinned requirement into ``dst`` (``pip wheel --no-deps``), so the
    image builds with ``--no-index`` (no registry access from inside the build)."""
    cmd = [
        sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
        "-r", str(requirements), "-w", str(dst),
    ]  # fmt: skip
    _run(cmd, dst, "collecting wheels for requirements.txt", timeout)


def copy_project_files(root: Path, dst: Path) -> list[str]:
    """Copy ``configs/loopline.yaml``, ``configs/envs/*.yaml`` and ``params.yaml``."""
    copied = []
    base = root / BASE_FILE
    if not base.is_file():
        raise PackagingError(f"project configuration not found: {base}")
    for source in [base, *sorted((root / ENV_DIR).glob("*.yaml")), root / PARAMS_FILE]:
        if source.is_file():
            relative = source.relative_to(root)
            target = dst / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            copied.append(relative.as_posix())
    return copied


# -- out_dir handling ---------------------------------------------------------------------------
def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise OutDirNotEmptyError(f"output path exists and is not a directory: {out_dir}")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise OutDirNotEmptyError(
            f"output directory is not empty: {out_dir} (choose another or pass overwrite=True)"
        )


def normalize_modes(root: Path) -> None:
    """Directories 0755, files 0644 (0755 if executable): the image's non-root user must read
    everything the Dockerfile copies, whatever modes the downloads were written with."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o755)
        else:
            path.chmod(0o755 if path.stat().st_mode & 0o111 else 0o644)


def _install(tmp: Path, out_dir: Path) -> None:
    """Move the finished context ``tmp`` to ``out_dir``, replacing what was there."""
    old: Path | None = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        out_dir.rename(old)
    try:
        tmp.rename(out_dir)
    except BaseException:
        if old is not None:
            old.rename(out_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# -- the package --------------------------------------------------------------------------------
def build_package(
    settings: Settings,
    version_or_alias: str,
    out_dir: Path,
    *,
    tag: str | None = None,
    build: bool = True,
    builder: str = "auto",
    overwrite: bool = False,
    base_image: str = DEFAULT_BASE_IMAGE,
    vendor_wheels: bool = False,
    extra_wheels: Sequence[Path] = (),
    source_dir: Path | None = None,
    storage_driver: str | None = "vfs",
    isolation: str | None = "chroot",
    network: str | None = None,
    build_timeout: float = 3600.0,
    detected: Detected | None = None,
) -> PackageResult:
    """Write a build context for a registered model version to ``out_dir`` and build it.

    ``version_or_alias``: a version number or an alias (``champion``). ``builder``: ``auto``
    (Engine API, then Podman, then Buildah), one of those names, or ``none``.
    ``vendor_wheels``: also put a wheel for every requirement into ``wheels/`` and install
    with ``--no-index`` (offline builds). ``extra_wheels``: wheel files (or folders of wheels)
    copied into ``wheels/``, e.g. a local CPU build of torch. ``storage_driver`` and
    ``isolation`` apply to Podman and Buildah only (``vfs``/``chroot`` work without a daemon
    or kernel overlay support). ``detected`` replaces probing the machine for builders.
    """
    from loopline import __version__
    from loopline.registry.mlflow_registry import ModelRegistry, RegistryError

    start = time.perf_counter()
    out_dir = Path(out_dir).absolute()
    _check_out_dir(out_dir, overwrite)
    if builder not in ("auto", "none", "docker-api", "podman", "buildah"):
        raise ValueError(f"unknown builder {builder!r}")
    registry = ModelRegistry(settings)
    mv = _resolve_version(registry, version_or_alias)
    version = mv.version
    expected = mv.tags.get(FINGERPRINT_TAG, "")
    if not is_fingerprint(expected):
        raise FingerprintMismatchError(
            f"version {version} of {registry.name!r} has no {FINGERPRINT_TAG} tag: "
            "its model cannot be verified, so it is not packaged"
        )
    image_tag = check_tag(tag or default_tag(registry.name, version))
    chosen: str | None = None
    found = Detected()
    if build:
        found = detected if detected is not None else detect()
        try:
            chosen = select_builder(found, builder)
        except BuilderError as exc:
            raise ImageBuildError(str(exc)) from exc

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        # model/ (download_model verifies the fingerprint) and MODEL_CHECKSUM
        try:
            registry.download_model(version, tmp / "model")
        except RegistryError as exc:
            if "fingerprint" in str(exc):
                raise FingerprintMismatchError(str(exc)) from exc
            raise PackagingError(f"downloading version {version}: {exc}") from exc
        actual = model_fingerprint(tmp / "model")
        if actual != expected:
            raise FingerprintMismatchError(
                f"model of version {version} has fingerprint {actual}, registered {expected}"
            )
        _write_text(tmp / CHECKSUM_FILE, expected + "\n")

        # mlflow-model/: the registered pyfunc model, its HF folder checked as well
        _download_mlflow_model(registry, version, tmp / "mlflow-model")
        hf = _mlflow_hf_folder(tmp / "mlflow-model")
        if hf is not None and hf.is_dir() and model_fingerprint(hf) != expected:
            raise FingerprintMismatchError(
                f"the MLflow model of version {version} holds a model folder whose "
                f"fingerprint differs from the registered {expected}"
            )

        # app/: the project's configuration
        app_files = copy_project_files(Path(settings.root), tmp / "app")

        # requirements.txt and wheels/
        pinned: PinnedRequirements = pin_requirements()
        _write_text(tmp / "requirements.txt", pinned.text())
        wheel = build_wheel(source_dir or find_source_dir(), tmp / "wheels")
        for extra in map(Path, extra_wheels):
            for item in sorted(extra.glob("*.whl")) if extra.is_dir() else [extra]:
                shutil.copy2(item, tmp / "wheels" / item.name)
        if vendor_wheels:
            vendor_requirements(tmp / "requirements.txt", tmp / "wheels")

        # Dockerfile, .dockerignore, manifest.json
        created = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        spec = DockerfileSpec(
            model_name=registry.name,
            model_version=version,
            fingerprint=expected,
            wheel=wheel.name,
            loopline_version=__version__,
            env_name=settings.env,
            base_image=base_image,
            offline=vendor_wheels,
            created=created,
            revision=mv.tags.get(f"{TAG_PREFIX}git_commit", ""),
            license=settings.model.license,
        )
        _write_text(tmp / "Dockerfile", render_dockerfile(spec))
        _write_text(tmp / ".dockerignore", render_dockerignore())
        manifest = {
            "format": MANIFEST_FORMAT,
            "created": created,
            "loopline_version": __version__,
            "model": {
                "name": registry.name,
                "version": version,
                "requested": str(version_or_alias),
                "aliases": list(mv.aliases),
                "fingerprint": expected,
                "uri": mv.model_uri,
                "run_id": mv.run_id,
                "lineage": mv.lineage_tags,
            },
            "image": {
                "tag": image_tag,
                "base_image": base_image,
                "entrypoint": spec.serve_command(),
                "labels": spec.labels(),
            },
            "builder": chosen,
            "project": {"env": settings.env, "files": app_files},
            "requirements": {
                "sha256": pinned.sha256,
                "count": len(pinned.pins),
                "installed": pinned.installed,
                "not_installed": list(pinned.skipped),
                "vendored": vendor_wheels,
            },
            "wheel": wheel.name,
            "python": platform.python_version(),
            "platform": f"{sys.platform}-{platform.machine()}",
            "files": file_hashes(tmp, skip={MANIFEST_FILE}),
        }
        _write_text(tmp / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        normalize_modes(tmp)
        _install(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    context_seconds = time.perf_counter() - start
    logger.info("package context for %s v%s at %s", registry.name, version, out_dir)

    def result(
        chosen_builder: str | None,
        message: str,
        log: Path | None = None,
        seconds: float | None = None,
    ) -> PackageResult:
        return PackageResult(
            context_dir=out_dir,
            image_tag=image_tag,
            model_name=registry.name,
            model_version=version,
            fingerprint=expected,
            builder=chosen_builder,
            message=message,
            build_log=log,
            build_seconds=seconds,
            context_seconds=context_seconds,
        )

    hint = manual_build_hint(out_dir, image_tag)
    if not build:
        return result(None, f"context ready at {out_dir}; build it with: {hint}")
    if chosen is None:
        return result(
            None,
            f"context ready at {out_dir}; no Docker engine, Podman or Buildah found; "
            f"build it with: {hint}",
        )
    log_path = out_dir / BUILD_LOG
    request = BuildRequest(
        context=out_dir,
        tag=image_tag,
        log_path=log_path,
        build_args={"BASE_IMAGE": base_image},
        exclude=DOCKERIGNORE,
        storage_driver=storage_driver,
        isolation=isolation,
        network=network,
        timeout=build_timeout,
    )
    build_start = time.perf_counter()
    try:
        run_build(chosen, found, request)
    except BuilderError as exc:
        raise ImageBuildError(f"context ready at {out_dir}, but {exc}") from exc
    seconds = time.perf_counter() - build_start
    return result(
        chosen,
        f"built {image_tag} with {chosen} in {seconds:.0f} s from {out_dir}",
        log_path,
        seconds,
    )
