"""Which model a server loads, fetched and checksum-verified before anything is loaded.

Two sources:

* the registry: ``--model champion`` (an alias) or ``--model 3`` (a version). The version's
  folder is downloaded once into ``serving.model_cache_dir`` and its content fingerprint is
  compared with the registered ``loopline.model_fingerprint`` tag on *every* start, so a
  cached folder changed on disk is refused as well as a corrupted download;
* a folder (``--model-dir``, the container case, no registry): the expected checksum is
  ``--checksum`` or the ``MODEL_CHECKSUM`` file beside the folder (a package writes it).

A mismatch raises :class:`ChecksumMismatchError` and the server does not start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from loopline.config import Settings

CHECKSUM_FILE = "MODEL_CHECKSUM"
FINGERPRINT_TAG = "loopline.model_fingerprint"


class ServingError(RuntimeError):
    """The server cannot start (the message says what is wrong and where)."""


class ChecksumMismatchError(ServingError):
    """The model folder's content differs from what was registered or packaged."""


@dataclass(frozen=True)
class ServedModel:
    name: str
    version: str
    fingerprint: str
    path: Path

    @property
    def model_ids(self) -> tuple[str, ...]:
        """Names a client may send as ``model``: the model name, and ``name:version``."""
        return (self.name, f"{self.name}:{self.version}")


def verify_checksum(folder: Path, expected: str, what: str) -> str:
    """Raise unless the folder's fingerprint equals ``expected``; returns it."""
    from loopline.registry.lineage import is_fingerprint, model_fingerprint

    expected = expected.strip().lower().removeprefix("sha256:")
    if not is_fingerprint(expected):
        raise ServingError(f"{what}: expected checksum {expected!r} is not a sha256 hex digest")
    try:
        actual = model_fingerprint(folder)
    except (FileNotFoundError, ValueError) as exc:
        raise ServingError(f"{what}: {exc}") from exc
    if actual != expected:
        raise ChecksumMismatchError(
            f"{what}: model folder {folder} has checksum {actual}, expected {expected}; "
            "refusing to load a model that is not the one registered"
        )
    return actual


def from_folder(
    folder: str | Path, checksum: str | None, *, name: str, version: str | None = None
) -> ServedModel:
    """A model folder with its expected checksum (argument or ``MODEL_CHECKSUM`` beside it)."""
    path = Path(folder).expanduser().resolve()
    if not path.is_dir():
        raise ServingError(f"--model-dir {path} is not a directory")
    if checksum is None:
        for candidate in (path.parent / CHECKSUM_FILE, path / CHECKSUM_FILE):
            if candidate.is_file():
                checksum = candidate.read_text(encoding="utf-8").strip()
                break
    if checksum is None:
        raise ServingError(
            f"no checksum for {path}: pass --checksum <sha256> or put a {CHECKSUM_FILE} file "
            "beside the folder (a model is never loaded unverified)"
        )
    fingerprint = verify_checksum(path, checksum, f"--model-dir {path}")
    return ServedModel(name=name, version=version or "local", fingerprint=fingerprint, path=path)


def from_registry(settings: Settings, model: str) -> ServedModel:
    """Resolve an alias or version, download it once into the cache, verify it."""
    from loopline.registry.mlflow_registry import ModelRegistry, RegistryError

    registry = ModelRegistry(settings)
    try:
        version = registry.get_version(model) if model.isdigit() else registry.get_by_alias(model)
    except (RegistryError, ValueError) as exc:
        raise ServingError(f"--model {model!r}: {exc}") from exc
    if version is None:
        raise ServingError(
            f"--model {model!r}: model {registry.name!r} has no alias {model!r} in "
            f"{settings.registry_uri} (train and promote one first: loopline run)"
        )
    expected = version.tags.get(FINGERPRINT_TAG)
    if not expected:
        raise ServingError(
            f"version {version.version} of {registry.name!r} has no {FINGERPRINT_TAG} tag; "
            "it cannot be verified and will not be served"
        )
    cache = settings.path(settings.serving.model_cache_dir)
    folder = cache / f"{registry.name}-v{version.version}-{expected[:12]}"
    if not folder.is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / f".{folder.name}.{os.getpid()}"
        try:
            registry.download_model(version.version, tmp)
            os.replace(tmp, folder)
        except OSError:
            if not folder.is_dir():
                raise
        finally:
            if tmp.exists():
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
    fingerprint = verify_checksum(folder, expected, f"version {version.version} (cache {folder})")
    return ServedModel(
        name=registry.name, version=version.version, fingerprint=fingerprint, path=folder
    )
