"""prefect.yaml: every deployment names a real flow with valid parameters; schedules and
event triggers are what Prefect itself accepts."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter

REPO = Path(__file__).resolve().parents[2]


def deployments() -> list[dict[str, Any]]:
    return list(yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"])


@pytest.mark.parametrize("deployment", deployments(), ids=lambda d: d["name"])
def test_deployment_entrypoint_and_parameters(deployment: dict[str, Any]) -> None:
    from flows.params import ProjectParams

    path, name = deployment["entrypoint"].split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    flow = getattr(module, name)
    assert flow.name == name
    params_cls = getattr(module, "Params", ProjectParams)
    params_cls(**deployment["parameters"]["params"])  # raises on a bad parameter


def test_monitor_schedule_and_remediation_triggers() -> None:
    from prefect.events.schemas.deployment_triggers import DeploymentTriggerTypes

    by_name = {d["name"]: d for d in deployments()}
    monitor = by_name["monitor-every-15-min"]
    assert monitor["schedules"][0]["cron"] == "*/15 * * * *"
    assert monitor["parameters"]["params"]["remediate"] == "events"
    adapter = TypeAdapter(list[DeploymentTriggerTypes])
    for name, events, action in [
        ("retrain-on-drift", {"loopline.drift.detected", "loopline.quality.dropped"}, "retrain"),
        ("rollback-on-alert", {"loopline.remediation.rollback"}, "rollback"),
    ]:
        [trigger] = adapter.validate_python(by_name[name]["triggers"])
        assert set(trigger.expect) == events
        assert trigger.match.model_dump()["loopline.action"] == action
        assert trigger.parameters is not None
        assert trigger.parameters["params"]["incident_id"] == "{{ event.payload.incident_id }}"


def test_the_events_the_monitor_emits_match_the_triggers() -> None:
    """The names tasks.monitoring emits are the ones the deployments wait for."""
    from tasks.monitoring import EVENTS

    expected = {e for d in deployments() for t in d.get("triggers", []) for e in t["expect"]}
    emitted = set(EVENTS.values()) | {"loopline.remediation.rollback"}
    assert expected == emitted


def test_schedules_are_valid_crons_and_cost_runs_weekly() -> None:
    from prefect.client.schemas.schedules import CronSchedule

    for deployment in deployments():
        for schedule in deployment.get("schedules", []):
            CronSchedule(**schedule)  # raises on an invalid cron or timezone
    [weekly] = {d["name"]: d for d in deployments()}["cost-weekly"]["schedules"]
    assert weekly["cron"].split()[2:] == ["*", "*", "1"]  # Mondays
