"""Run a flow in this process on the local backend (what ``loopline run`` calls)."""

from __future__ import annotations

import importlib
from typing import Any

from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from flows.params import ProjectParams


def run_flow(flow_name: str, project_root: str, env: str) -> dict[str, Any]:
    module = importlib.import_module(f"flows.{flow_name}")
    params = ProjectParams(project_root=project_root, env=env)
    # Heartbeats detect crashed runs on a long-lived backend; in a short local process they
    # only add a wait at the end of each flow.
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        result: dict[str, Any] = getattr(module, flow_name)(params)
    return result
