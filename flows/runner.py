"""Run a flow in this process on the local backend (what ``loopline run`` calls)."""

from __future__ import annotations

import importlib
from typing import Any

from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from flows.params import ProjectParams


def run_flow(
    flow_name: str, project_root: str, env: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run ``flows.<flow_name>`` with its parameter model (the module's ``Params``, else
    ``ProjectParams``) built from the checkout, the environment and ``extra``."""
    module = importlib.import_module(f"flows.{flow_name}")
    params_cls = getattr(module, "Params", ProjectParams)
    params = params_cls(project_root=project_root, env=env, **(extra or {}))
    # Heartbeats detect crashed runs on a long-lived backend; in a short local process they
    # only add a wait at the end of each flow.
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        result: dict[str, Any] = getattr(module, flow_name)(params)
    return result
