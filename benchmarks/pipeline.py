"""Benchmark the spine: cold `loopline run`, a rerun with nothing changed, orchestration share.

    python benchmarks/pipeline.py [--quick]

Works on a throwaway copy of this checkout (configs, params, dvc.yaml, sources), so the
checkout's own .loopline/ state is untouched. Measured in the same run:

* cold    - `loopline run` on an empty state (data, training, evaluation, registration)
* rerun   - `loopline run` again with nothing changed (DVC skips every stage, the version is
            found by fingerprint); target: under 15 % of cold
* baseline- the same rerun without Prefect (`--no-prefect`), to show what the orchestrator adds
* retrain - `loopline run` after a parameter change (training.seed) on existing state:
            training and evaluation re-run, the data stages are skipped
* outside - the share of a Prefect run's wall time not spent inside task bodies, i.e.
            process start, imports, the local Prefect backend and flow bookkeeping; task body
            times are Prefect's own task-run durations read back from its database.
            Target: under 15 %. Reported for the cold run, which also pays the one-time
            creation of Prefect's database (its migrations), and for the retrain.

``--quick`` uses a small corpus and a few training steps (for a smoke check of the harness).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
QUICK = {
    "data": {"n_tickets": 400},
    "training": {"max_steps": 30, "batch_size": 16},
    "evaluation": {"max_examples": 24},
}


def make_copy(dest: Path, quick: bool) -> Path:
    for name in ("configs", "src"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("params.yaml", "dvc.yaml", ".dvcignore", "pyproject.toml"):
        shutil.copy2(REPO / name, dest / name)
    if quick:
        sys.path.insert(0, str(REPO / "src"))
        from loopline.config import deep_merge

        params = yaml.safe_load((dest / "params.yaml").read_text())
        (dest / "params.yaml").write_text(yaml.safe_dump(deep_merge(params, QUICK)))
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@example.com"}
    env |= {"GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@example.com"}
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "bench"]):
        subprocess.run(cmd, cwd=dest, check=True, env=env)
    return dest


def timed_run(project: Path, *extra: str) -> tuple[float, dict[str, Any]]:
    loopline = Path(sys.executable).parent / "loopline"
    out = project / f"summary-{time.monotonic_ns()}.json"
    env = {**os.environ, "PREFECT_HOME": str(project / ".loopline" / "prefect")}
    start = time.perf_counter()
    proc = subprocess.run(
        [str(loopline), "run", "--project", str(project), "--json", str(out), *extra],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"loopline run failed ({proc.returncode})")
    return wall, json.loads(out.read_text())


def task_body_seconds(project: Path) -> list[float]:
    """Task-run durations of the latest `pipeline` flow run, from Prefect's own records."""
    os.environ["PREFECT_HOME"] = str(project / ".loopline" / "prefect")
    from loopline.runtime import configure_environment

    configure_environment()  # telemetry off before Prefect is imported
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        flow_runs = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=50)
        # The latest top-level `pipeline` run and every flow run it started (the train subflow).
        top = next(fr for fr in flow_runs if fr.parent_task_run_id is None and fr.start_time)
        ids = [fr.id for fr in flow_runs if fr.start_time and fr.start_time >= top.start_time]
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids))
        )
    # Subflow runs appear as task runs too; count only real task bodies.
    return [
        tr.total_run_time.total_seconds()
        for tr in task_runs
        if tr.state and tr.state.is_completed() and not tr.task_key.startswith("train")
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small corpus, few steps")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway project")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="loopline-bench-"))
    project = make_copy(tmp / "project", args.quick)
    try:
        cold, cold_summary = timed_run(project)
        bodies = task_body_seconds(project)
        rerun, rerun_summary = timed_run(project)
        plain, _ = timed_run(project, "--no-prefect")
        params = yaml.safe_load((project / "params.yaml").read_text())
        params["training"]["seed"] += 1
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        retrain, _ = timed_run(project)
        retrain_bodies = task_body_seconds(project)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    body = sum(bodies)
    outside = max(cold - body, 0.0)
    r_body = sum(retrain_bodies)
    r_outside = max(retrain - r_body, 0.0)
    ran = [s for s, i in rerun_summary["stages"].items() if i["ran"]]
    rows = [
        ("cold loopline run (s)", f"{cold:.1f}", "1.00", ""),
        ("rerun, nothing changed (s)", f"{rerun:.1f}", f"{rerun / cold:.3f}", "target < 0.15"),
        ("rerun without Prefect (s)", f"{plain:.1f}", f"{plain / cold:.3f}", "baseline"),
        ("cold: inside task bodies (s)", f"{body:.1f}", f"{body / cold:.3f}", ""),
        (
            "cold: outside task bodies (s)",
            f"{outside:.1f}",
            f"{outside / cold:.3f}",
            "target < 0.15",
        ),
        ("retrain on existing state (s)", f"{retrain:.1f}", f"{retrain / cold:.3f}", ""),
        (
            "retrain: inside task bodies (s)",
            f"{r_body:.1f}",
            f"{r_body / retrain:.3f}",
            "of retrain",
        ),
        (
            "retrain: outside task bodies (s)",
            f"{r_outside:.1f}",
            f"{r_outside / retrain:.3f}",
            "of retrain; target < 0.15",
        ),
    ]
    print(
        f"\nLoopline pipeline benchmark ({'quick' if args.quick else 'default'} config, "
        f"{os.cpu_count()} cores)"
    )
    print(f"{'measure':<32}{'value':>10}{'vs cold':>10}  note")
    for name, value, ratio, note in rows:
        print(f"{name:<32}{value:>10}{ratio:>10}  {note}")
    m = cold_summary["metrics"]
    print(
        f"\nmodel v{cold_summary['version']} decision={cold_summary['decision']} "
        + " ".join(f"{k}={v:.3f}" for k, v in m.items())
    )
    print(
        f"stages re-run on the rerun: {ran or 'none'}; "
        f"version reused: {rerun_summary['reused_version']}"
    )


if __name__ == "__main__":
    main()
