"""Lineage of a model version: code (git), data (DVC), configuration and the model's own bytes.

Everything here is read-only. ``collect_lineage`` gathers a :class:`Lineage`; ``as_tags`` turns
it into MLflow tags under the ``loopline.`` prefix, and ``Lineage.from_tags`` reads them back.

- git: ``git rev-parse HEAD`` and ``git status --porcelain`` in the project root; outside a
  repository (or without git) the commit is ``"unknown"`` and the dirty flag ``None``.
- data: ``dvc.lock`` is read as YAML (DVC is not imported); every stage's deps and outs that
  carry an md5 are recorded by path. A path listed by several stages takes the hash of the
  stage that produces it (its ``outs``).
- config: sha256 of the canonical JSON of the Settings, without ``root`` (where the project
  happens to be checked out is not configuration).
- model: sha256 over the folder's files in sorted relative-path order, each contributing its
  path, its size and its bytes; independent of the filesystem's listing order and of mtimes.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from loopline.config import Settings

TAG_PREFIX = "loopline."
UNKNOWN = "unknown"
_CHUNK = 1 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")
_UNSAFE = re.compile(r"[^\w.\- ]")


class LineageError(ValueError):
    """A lineage source exists but cannot be read (e.g. a malformed dvc.lock)."""


@dataclass(frozen=True)
class Lineage:
    git_commit: str
    git_dirty: bool | None
    data_hashes: Mapping[str, str]
    config_hash: str
    model_fingerprint: str
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def data_version(self) -> str:
        """One hash naming the whole data state: sha256 over the sorted ``tag:md5`` pairs.

        Keyed by tag name, so a Lineage read back with ``from_tags`` has the same data version.
        """
        if not self.data_hashes:
            return UNKNOWN
        pairs = sorted((data_tag(p), h) for p, h in self.data_hashes.items())
        text = "\n".join(f"{t}:{h}" for t, h in pairs)
        return hashlib.sha256(text.encode()).hexdigest()

    def as_tags(self) -> dict[str, str]:
        tags = {
            f"{TAG_PREFIX}git_commit": self.git_commit,
            f"{TAG_PREFIX}git_dirty": _dirty_text(self.git_dirty),
            f"{TAG_PREFIX}config_hash": self.config_hash,
            f"{TAG_PREFIX}model_fingerprint": self.model_fingerprint,
            f"{TAG_PREFIX}data_version": self.data_version,
        }
        for path, md5 in sorted(self.data_hashes.items()):
            tags[data_tag(path)] = md5
        for key, value in sorted(self.extra.items()):
            tags[f"{TAG_PREFIX}{key}"] = value
        return tags

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Lineage:
        """Read a Lineage back from tags written by ``as_tags`` (data paths as tag names)."""
        known = {"git_commit", "git_dirty", "config_hash", "model_fingerprint", "data_version"}
        data: dict[str, str] = {}
        extra: dict[str, str] = {}
        for key, value in tags.items():
            if not key.startswith(TAG_PREFIX):
                continue
            short = key[len(TAG_PREFIX) :]
            if short.startswith("data.") and short.endswith("_md5"):
                data[short[len("data.") : -len("_md5")]] = value
            elif short not in known:
                extra[short] = value
        dirty = tags.get(f"{TAG_PREFIX}git_dirty", UNKNOWN)
        return cls(
            git_commit=tags.get(f"{TAG_PREFIX}git_commit", UNKNOWN),
            git_dirty=True if dirty == "true" else False if dirty == "false" else None,
            data_hashes=data,
            config_hash=tags.get(f"{TAG_PREFIX}config_hash", UNKNOWN),
            model_fingerprint=tags.get(f"{TAG_PREFIX}model_fingerprint", UNKNOWN),
            extra=extra,
        )


def _dirty_text(dirty: bool | None) -> str:
    return UNKNOWN if dirty is None else str(dirty).lower()


def data_tag(path: str) -> str:
    """Tag name for a DVC-tracked path: ``data/prepared`` -> ``loopline.data.prepared_md5``.

    A leading ``data/`` is dropped (it is where the data lives by convention); other paths keep
    their full name, e.g. ``artifacts/model`` -> ``loopline.data.artifacts/model_md5``.
    """
    name = path.strip("/")
    if name.startswith("data/"):
        name = name[len("data/") :]
    return f"{TAG_PREFIX}data.{safe_key(name)}_md5"


def safe_key(name: str) -> str:
    """``name`` with characters MLflow refuses in tag, param and metric names replaced by ``_``."""
    parts = [_UNSAFE.sub("_", part) for part in name.split("/") if part not in ("", ".", "..")]
    return "/".join(parts) or "_"


# -- git -------------------------------------------------------------------------------------
def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def git_state(root: str | Path) -> tuple[str, bool | None]:
    """``(commit, dirty)`` of the repository containing ``root``; ``("unknown", None)`` if none."""
    root = Path(root)
    if not root.is_dir():
        return UNKNOWN, None
    head = _git(root, "rev-parse", "--verify", "HEAD")
    if head is None:
        return UNKNOWN, None
    status = _git(root, "status", "--porcelain", "--untracked-files=normal")
    dirty = None if status is None else bool(status.strip())
    return head.strip(), dirty


# -- DVC -------------------------------------------------------------------------------------
def _entry_md5(entry: Any) -> tuple[str, str] | None:
    if not isinstance(entry, Mapping):
        return None
    path = entry.get("path")
    md5 = entry.get("md5")
    if not isinstance(path, str) or not isinstance(md5, str):
        return None
    return path, md5


def dvc_hashes(lock_file: str | Path) -> dict[str, str]:
    """``{path: md5}`` of the data in ``dvc.lock``: every stage output, plus external inputs
    (dependencies no stage produces). Source code is left out: the git commit pins it.
    Empty if the file does not exist.

    Directory hashes keep DVC's ``.dir`` suffix, so they can be looked up in the DVC cache.
    """
    lock_file = Path(lock_file)
    if not lock_file.exists():
        return {}
    try:
        loaded = yaml.safe_load(lock_file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise LineageError(f"{lock_file}: not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, Mapping) or not isinstance(loaded.get("stages", {}), Mapping):
        raise LineageError(f"{lock_file}: expected a mapping with a 'stages' mapping")
    produced: dict[str, str] = {}
    consumed: dict[str, str] = {}
    for stage in loaded.get("stages", {}).values():
        if not isinstance(stage, Mapping):
            continue
        for kind, target in (("outs", produced), ("deps", consumed)):
            for entry in stage.get(kind) or ():
                found = _entry_md5(entry)
                if found is not None:
                    target[found[0]] = found[1]
    external = {p: h for p, h in consumed.items() if not _is_source(p)}
    return {**external, **produced}


def _is_source(path: str) -> bool:
    return path.startswith("src/") or path.endswith(".py")


# -- configuration and model -----------------------------------------------------------------
def config_hash(settings: Settings) -> str:
    data = settings.model_dump(mode="json", exclude={"root"})
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def model_fingerprint(model_dir: str | Path) -> str:
    """Content hash of a model folder: relative paths and bytes of every file, sorted by path."""
    root = Path(model_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"model folder not found: {root}")
    files = sorted(
        (p for p in root.rglob("*") if p.is_file()),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    if not files:
        raise ValueError(f"model folder is empty: {root}")
    digest = hashlib.sha256()
    for path in files:
        rel = path.relative_to(root).as_posix().encode("utf-8")
        digest.update(len(rel).to_bytes(8, "big"))
        digest.update(rel)
        digest.update(path.stat().st_size.to_bytes(8, "big"))
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def is_fingerprint(text: str) -> bool:
    return bool(_HEX64.fullmatch(text))


def collect_lineage(
    settings: Settings,
    model_dir: str | Path,
    *,
    root: str | Path | None = None,
    extra: Mapping[str, str] | None = None,
) -> Lineage:
    """Lineage of ``model_dir`` trained in the project at ``root`` (default ``settings.root``)."""
    project = Path(root) if root is not None else Path(settings.root)
    commit, dirty = git_state(project)
    return Lineage(
        git_commit=commit,
        git_dirty=dirty,
        data_hashes=dvc_hashes(project / "dvc.lock"),
        config_hash=config_hash(settings),
        model_fingerprint=model_fingerprint(model_dir),
        extra=dict(extra or {}),
    )
