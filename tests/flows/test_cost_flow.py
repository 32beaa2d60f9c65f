"""The weekly ``cost`` Prefect flow: report, dry-run plan and recommendations in one run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from mlflow import MlflowClient

from flows.params import CostParams
from loopline.config import load_settings
from tests.conftest import make_project
from tests.unit.cost.test_cost_operations import FAST_COST, steady_traffic, write_log


def test_cost_flow_reports_plans_and_recommends(prefect_harness: None, tmp_path: Path) -> None:
    from flows.cost import cost

    root = make_project(tmp_path / "p")
    (root / "configs" / "envs" / "local.yaml").write_text(yaml.safe_dump({"cost": FAST_COST}))
    settings = load_settings(root, env="local")
    now = datetime.now(UTC)
    write_log(settings, steady_traffic(settings, now - timedelta(days=3), now))

    out = cost(CostParams(project_root=str(root), days=3, forecast_days=2))
    report = out["report"]
    assert Path(report["report_dir"], "report.html").is_file()
    assert report["window"]["days"] == 3 and report["forecast"]["hours"] == 48
    assert out["plan"]["plan"]["feasible"] and out["plan"]["apply"]["dry_run"]
    assert Path(out["recommendations"]["path"]).is_file()
    run = MlflowClient(tracking_uri=settings.tracking_uri).get_run(report["mlflow_run_id"])
    assert run.data.tags["loopline.kind"] == "cost-report"
