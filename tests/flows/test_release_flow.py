"""The ``release`` Prefect flow drives a real shadow release on the local deployment."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from flows.params import ReleaseParams
from loopline.config import load_settings
from loopline.deploy.local_target import read_records
from loopline.deploy.service import down
from loopline.deploy.stack import load_stack
from tests.release_local.test_local_releases import OVERLAY, Traffic, router_url
from tests.serving.support import ServingProject

pytestmark = pytest.mark.timeout(600)


def test_release_flow_runs_a_shadow_release(
    prefect_harness: None, serving_project: ServingProject, tmp_path: Path
) -> None:
    from flows.release import release

    root = tmp_path / "p"
    shutil.copytree(
        serving_project.root, root, ignore=shutil.ignore_patterns("deploy", "serving", "*.log")
    )
    (root / "configs" / "envs" / "local.yaml").write_text(yaml.safe_dump(OVERLAY))
    settings = load_settings(root, env="local")
    params = ReleaseParams(project_root=str(root), strategy="shadow", model="3", poll_seconds=0.5)
    try:
        from loopline.deploy.service import up

        up(settings, progress=lambda _m: None)
        with Traffic(router_url(settings), settings.model.name) as traffic:
            record = release(params)
    finally:
        down(settings)
    assert record["strategy"] == "shadow" and record["requested_by"] == "prefect"
    assert record["outcome"] == "passed", record["reason"]  # a good candidate, compared only
    assert {v for _, _, _, v in traffic.results} == {"1"}  # users only saw stable
    assert read_records(settings)[-1]["record"]["release_id"] == record["release_id"]
    assert load_stack(settings).candidate is None
