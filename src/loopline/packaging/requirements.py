"""Pinned runtime requirements from the distributions installed in this environment.

The closure of the project's declared dependencies (plus any extra roots) is walked through
``importlib.metadata``: every requirement whose marker holds here is followed to its
installed distribution, and each distribution is pinned as ``name==version``. Local version
labels are dropped (``torch 2.13.0+cpu`` is pinned ``torch==2.13.0``, which a CPU wheel
satisfies); the exact installed versions are returned separately for the manifest.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Iterable
from dataclasses import dataclass, field

from packaging.markers import UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

PROJECT_DIST = "loopline"
# What ``loopline serve`` needs beyond the declared dependencies (none today: the server's
# FastAPI and uvicorn are declared). Kept as a hook for packages the server alone imports.
SERVER_PACKAGES: tuple[str, ...] = ("fastapi", "uvicorn", "httpx")


class RequirementsError(RuntimeError):
    """The requirements could not be pinned (a declared dependency is not installed)."""


@dataclass(frozen=True)
class PinnedRequirements:
    """``pins``: ``name==version`` lines, sorted; ``installed``: exact installed versions."""

    pins: tuple[str, ...]
    installed: dict[str, str] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()

    def text(self) -> str:
        header = "# Pinned from the environment that built this package (loopline.packaging).\n"
        return header + "".join(f"{line}\n" for line in self.pins)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text().encode()).hexdigest()


def public_version(version: str) -> str:
    """``2.13.0+cpu`` -> ``2.13.0``: the version without its local label."""
    return version.split("+", 1)[0]


def _applies(req: Requirement, extras: Iterable[str]) -> bool:
    if req.marker is None:
        return True
    for extra in ("", *extras):
        try:
            if req.marker.evaluate({"extra": extra}):
                return True
        except UndefinedEnvironmentName:
            continue
    return False


def _requirements_of(dist: importlib.metadata.Distribution) -> list[Requirement]:
    out = []
    for line in dist.requires or []:
        try:
            out.append(Requirement(line))
        except InvalidRequirement:
            continue
    return out


def pin_requirements(
    roots: Iterable[str] = (PROJECT_DIST,),
    *,
    extra_roots: Iterable[str] = SERVER_PACKAGES,
    exclude: Iterable[str] = (PROJECT_DIST,),
) -> PinnedRequirements:
    """Pin the installed closure of ``roots`` and ``extra_roots`` (requirement strings).

    A root or a dependency whose marker holds here but which is not installed is an error
    for a root and recorded in ``skipped`` for a transitive dependency.
    """
    excluded = {canonicalize_name(n) for n in exclude}
    seen: dict[str, str] = {}
    skipped: list[str] = []
    queue: list[tuple[Requirement, bool]] = [(Requirement(r), True) for r in roots]
    queue += [(Requirement(r), True) for r in extra_roots]
    expanded: set[tuple[str, frozenset[str]]] = set()
    while queue:
        req, is_root = queue.pop()
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if key in expanded:
            continue
        expanded.add(key)
        try:
            dist = importlib.metadata.distribution(req.name)
        except importlib.metadata.PackageNotFoundError:
            if is_root:
                raise RequirementsError(
                    f"{req.name} is required but not installed in this environment"
                ) from None
            skipped.append(str(req))
            continue
        if name not in excluded:
            seen[name] = dist.version
        for dep in _requirements_of(dist):
            if _applies(dep, req.extras):
                queue.append((dep, False))
    pins = tuple(sorted(f"{n}=={public_version(v)}" for n, v in seen.items()))
    return PinnedRequirements(
        pins=pins, installed=dict(sorted(seen.items())), skipped=tuple(skipped)
    )
