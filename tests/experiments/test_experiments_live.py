"""Experiments end to end with real processes: the router and model servers on 127.0.0.1
evaluate the serving plan per request, the request log carries the exposures, the analysis
reads the logs, MLflow holds the runs and the prompt versions, and decisions change serving.

* A model-version A/B test (champion v1 against the under-trained v2, whose replies lose
  their format) through the Prefect ``experiment`` flow: the router sends each user's
  requests to its variant's server, v2 is stopped for harm on the primary metric, the
  candidate server is stopped, the plan is empty again and the audit trail says why.
* A prompt + parameter A/B test decided from the command line: the treatment (a registered
  prompt version and a 40-token reply budget) beats a control clipped at 6 tokens on reply
  quality, is worth its extra tokens, ships and becomes everyone's default; the prompt alias
  ``production`` points at it.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from loopline.cli import app
from loopline.config import Settings, load_settings
from loopline.deploy.service import deploy, down, up
from loopline.deploy.stack import DeployError, alive, load_stack
from loopline.experiments import lifecycle
from loopline.experiments.policy import ExperimentSpec, VariantSpec
from loopline.governance.audit import AuditTrail
from loopline.serving.request_log import read_request_logs
from tests.serving.support import ServingProject

pytestmark = pytest.mark.timeout(600)

OVERLAY: dict[str, Any] = {
    "serving": {"default_max_tokens": 40, "max_tokens_limit": 64, "cache_size": 0},
    "experiments": {
        "analysis": {"sequential": {"planned_units_per_variant": 200, "min_units_per_variant": 20}},
        # The prompt test spends latency (longer replies) on quality on purpose: its policy
        # guards errors only.
        "decision": {
            "min_units_per_variant": 30,
            "max_units_per_variant": None,
            "guardrails": [{"metric": "error_rate", "max_relative_degradation": 0.0}],
        },
    },
}
PROMPTS = ["my parcel never arrived", "I was charged twice for one order",
           "please reset my password", "cancel my subscription please",
           "where can I find my invoice", "the app crashes when I log in"]  # fmt: skip


@pytest.fixture
def project(serving_project: ServingProject, tmp_path: Path) -> Iterator[Settings]:
    root = tmp_path / "p"
    shutil.copytree(
        serving_project.root, root, ignore=shutil.ignore_patterns("deploy", "serving", "*.log")
    )
    base = yaml.safe_load((root / "configs" / "loopline.yaml").read_text())
    assert base["experiments"]["metrics"], "the shipped configuration defines the metrics"
    (root / "configs" / "envs" / "local.yaml").write_text(yaml.safe_dump(OVERLAY))
    settings = load_settings(root, env="local")
    yield settings
    down(settings)


def send(url: str, model: str, users: range, rounds: int, header_every: int = 3) -> Counter[str]:
    """Each user sends ``rounds`` chat completions (user id in the body, or in the
    ``x-loopline-user`` header for every ``header_every``-th user); returns the
    ``x-loopline-experiments`` headers seen."""
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def worker(chunk: list[int]) -> None:
        with httpx.Client(base_url=url, timeout=60, trust_env=False) as http:
            for r in range(rounds):
                for u in chunk:
                    body: dict[str, Any] = {
                        "model": model,
                        "messages": [{"role": "user", "content": PROMPTS[(u + r) % len(PROMPTS)]}],
                    }
                    headers = {}
                    if u % header_every == 0:
                        headers["x-loopline-user"] = f"user-{u}"
                    else:
                        body["user"] = f"user-{u}"
                    resp = http.post("/v1/chat/completions", json=body, headers=headers)
                    assert resp.status_code == 200, resp.text
                    with lock:
                        seen[resp.headers.get("x-loopline-experiments", "")] += 1

    ids = list(users)
    threads = [threading.Thread(target=worker, args=(ids[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return seen


def router_url(settings: Settings) -> str:
    stack = load_stack(settings)
    assert stack.router is not None
    return stack.router.url


def test_model_version_ab_is_routed_by_variant_and_stopped_for_harm(
    project: Settings, prefect_harness: None
) -> None:
    from flows.experiment import experiment
    from flows.params import ExperimentParams

    up(project, progress=lambda _m: None)
    spec = ExperimentSpec(
        name="model-v2",
        variants=(
            VariantSpec(name="champion", model_version="1"),
            VariantSpec(name="v2", model_version="2"),
        ),
    )
    record = lifecycle.create(project, spec)
    stack = load_stack(project)
    assert stack.candidate is not None and stack.candidate.version == "2"
    assert record.routes == {"champion": "stable", "v2": "candidate"}
    plan = lifecycle.read_plan(project)
    assert plan is not None and [e.name for e in plan.experiments] == ["model-v2"]
    from loopline.status import collect_status, format_status

    info = collect_status(project)
    assert info["experiments"] == [
        {"name": "model-v2", "variants": ["champion", "v2"], "units": None, "last_decision": None}
    ]
    assert "experiment model-v2: champion, v2" in format_status(info)
    time.sleep(project.serving.plan_check_s + 0.5)  # servers look at the plan file every 1 s

    headers = send(router_url(project), project.model.name, range(80), rounds=2)
    assert set(headers) == {"model-v2=champion", "model-v2=v2"}, headers
    # a release cannot take the candidate slot from the running test
    with pytest.raises(DeployError, match="experiment 'model-v2' is serving"):
        deploy(project, "canary", model="3", progress=lambda _m: None)
    assert load_stack(project).candidate == stack.candidate

    # every user was answered by its variant's version, and never by the other one
    lines = [e for e in read_request_logs(project.path(project.serving.request_log_dir))]
    served = {(e["unit"], e["experiments"]["model-v2"], e["model_version"]) for e in lines}
    assert {(arm, version) for _, arm, version in served} == {("champion", "1"), ("v2", "2")}
    assert len({u for u, _, _ in served}) == 80

    out = experiment(ExperimentParams(project_root=project.root, env="local"))
    (result,) = out["experiments"]
    assert result["decision"]["action"] == "stop_for_harm", result["decision"]
    assert result["applied"]["action"] == "stop_for_harm"
    assert result["units"] == {
        "champion": pytest.approx(40, abs=15),
        "v2": pytest.approx(40, abs=15),
    }
    assert sum(result["units"].values()) == 80
    quality = next(m for m in result["metrics"] if m["metric"] == "quality")
    assert quality["relative_ci"][1] < 0  # confidently worse

    after = lifecycle.load_record(project, "model-v2")
    assert after.status == "stopped" and after.outcome is not None
    assert load_stack(project).candidate is None and not alive(stack.candidate.pid)
    plan = lifecycle.read_plan(project)
    assert plan is not None and plan.experiments == ()
    report = Path(result["report_dir"])
    html = (report / "report.html").read_text()
    assert "model-v2" in html and html.count("<svg") >= 2
    assert json.loads((report / "report.json").read_text())["decision"]["action"] == "stop_for_harm"
    actions = [e.action for e in AuditTrail.for_settings(project).entries()]
    assert actions[-2:] == ["experiment_started", "experiment_stopped"]

    # the analysis is an MLflow run under the experiment's parent run, with the report
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=project.tracking_uri)
    run = client.get_run(result["mlflow_run_id"])
    assert run.data.tags["mlflow.parentRunId"] == after.mlflow_run_id
    assert run.data.tags["decision"] == "stop_for_harm"
    assert "quality.v2.relative_difference" in run.data.metrics
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.html", "report.json", "units.csv"} <= names

    # after the stop everyone is back on the champion
    time.sleep(project.serving.plan_check_s + 0.5)
    headers = send(router_url(project), project.model.name, range(8), rounds=1)
    assert headers == Counter({"": 8})


def test_prompt_and_parameter_ab_ships_from_the_command_line(project: Settings) -> None:
    runner = CliRunner()
    root = ["--project", str(project.root)]
    res = runner.invoke(
        app,
        ["experiment", "prompt", "support", *root, "--template", "{{ message }}"],
    )
    assert res.exit_code == 0, res.output
    assert res.output.strip() == "support/1"
    bad = runner.invoke(app, ["experiment", "prompt", "support", *root, "--template", "hi"])
    assert bad.exit_code == 2 and "{{ message }}" in bad.output

    spec_file = project.state_path.parent / "replies.yaml"
    spec_file.write_text(
        yaml.safe_dump(
            {
                "variants": [
                    {"name": "clipped", "params": {"max_tokens": 6}},
                    {"name": "full", "prompt_version": "support/1", "params": {"max_tokens": 40}},
                ]
            }
        )
    )
    nope = str(Path(project.root) / "nope.yaml")
    missing = runner.invoke(app, ["experiment", "create", "replies", *root, "--file", nope])
    assert missing.exit_code == 2
    assert lifecycle.read_plan(project) is None  # nothing was published
    create = ["experiment", "create", "replies", *root, "--file", str(spec_file)]
    res = runner.invoke(app, create)
    assert res.exit_code == 0, res.output
    again = runner.invoke(app, create)
    assert again.exit_code == 2 and "already exists" in again.output

    up(project, progress=lambda _m: None)
    send(router_url(project), project.model.name, range(100), rounds=2)
    lines = list(read_request_logs(project.path(project.serving.request_log_dir)))
    full = [e for e in lines if e["experiments"].get("replies") == "full"]
    clipped = [e for e in lines if e["experiments"].get("replies") == "clipped"]
    assert full and all(e["prompt_version"] == "support/1" for e in full)
    assert clipped and all(e["completion_tokens"] <= 6 for e in clipped)
    assert max(e["completion_tokens"] for e in full) > 6

    res = runner.invoke(app, ["experiment", "decide", "replies", *root, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["decision"]["action"] == "ship", out["decision"]
    assert out["decision"]["variant"] == "full"
    plan = lifecycle.read_plan(project)
    assert plan is not None and plan.experiments == ()
    assert plan.default is not None and plan.default.params == {"max_tokens": 40}
    assert plan.default.prompt_version == "support/1"
    import mlflow

    mlflow.set_tracking_uri(project.tracking_uri)
    assert mlflow.genai.load_prompt("prompts:/support@production").version == 1
    status = runner.invoke(app, ["experiment", "status", *root, "--json"])
    (row,) = json.loads(status.output)
    assert row["status"] == "shipped" and row["last_analysis"]["action"] == "ship"
    assert [e.action for e in AuditTrail.for_settings(project).entries()][-2:] == [
        "experiment_started",
        "experiment_shipped",
    ]
