"""DVC adapter: the data and training stages of ``dvc.yaml`` and the data remote.

DVC decides what is stale: a stage whose dependencies, parameters and outputs are unchanged
since ``dvc.lock`` was written is skipped, so a rerun with nothing changed costs a hash check.
The stage commands are ``loopline stage <name>`` (see ``loopline.stages``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from loopline.config import Settings

#: The stages of dvc.yaml in pipeline order.
STAGES = ("generate", "prepare", "validate", "train", "evaluate")


class StageError(RuntimeError):
    """A DVC stage failed; ``stage`` names it."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(f"stage '{stage}' failed: {message}")
        self.stage = stage


@dataclass(frozen=True)
class StageRun:
    stage: str
    ran: bool
    seconds: float


@contextlib.contextmanager
def _in_project(settings: Settings) -> Iterator[None]:
    """Run with cwd at the project root and this interpreter's scripts first on PATH.

    DVC runs stage commands through the shell; ``loopline`` must resolve to the same
    installation that is running now, whether or not the virtualenv is activated.
    """
    old_cwd = Path.cwd()
    old_path = os.environ.get("PATH", "")
    scripts = str(Path(sys.executable).parent)
    os.environ["PATH"] = os.pathsep.join([scripts, old_path]) if old_path else scripts
    os.environ["LOOPLINE_ENV"] = settings.env
    os.chdir(settings.root)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        os.environ["PATH"] = old_path


def ensure_repo(settings: Settings) -> None:
    """Initialise DVC at the project root if needed and point it at the configured remote.

    The remote URL and the site cache live in ``.dvc/config.local`` (not committed): they
    name machine-local paths.
    """
    from dvc.repo import Repo

    root = Path(settings.root)
    if not (root / ".dvc").is_dir():
        Repo.init(root_dir=str(root), no_scm=not (root / ".git").exists())
    site_cache = settings.state_path / "dvc-site-cache"
    site_cache.mkdir(parents=True, exist_ok=True)
    remote_url = settings.dvc_remote_url
    if "://" not in remote_url:
        Path(remote_url).mkdir(parents=True, exist_ok=True)
    repo = Repo(str(root))
    try:
        with repo.config.edit("local") as conf:
            conf["core"]["site_cache_dir"] = str(site_cache.resolve())
            conf["core"]["remote"] = settings.dvc.remote_name
            conf["remote"][settings.dvc.remote_name] = {"url": remote_url}
    finally:
        repo.close()


def reproduce(settings: Settings, stage: str) -> StageRun:
    """Bring one stage up to date (its upstream stages must already be up to date)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    start = time.perf_counter()
    with _in_project(settings):
        repo = Repo(settings.root)
        try:
            ran = repo.reproduce(stage, single_item=True)
        except DvcException as exc:
            cause = exc.__cause__ or exc
            raise StageError(stage, str(cause)) from exc
        finally:
            repo.close()
    return StageRun(stage=stage, ran=bool(ran), seconds=time.perf_counter() - start)


def push(settings: Settings) -> int:
    """Push the cached outputs to the configured remote; returns the number of files sent."""
    from dvc.repo import Repo

    with _in_project(settings):
        repo = Repo(settings.root)
        try:
            return int(repo.push(remote=settings.dvc.remote_name) or 0)
        finally:
            repo.close()
