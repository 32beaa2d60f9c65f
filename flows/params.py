"""Flow parameters shared by the flows."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ProjectParams(BaseModel):
    """Which checkout and environment a flow run works on."""

    model_config = ConfigDict(extra="forbid")

    project_root: str = Field(".", description="Checkout holding configs/, params.yaml, dvc.yaml")
    env: str = Field("local", description="Environment overlay: configs/envs/<env>.yaml")
    push_data: bool = Field(True, description="Push DVC outputs to the remote after the stages")


class ReleaseParams(ProjectParams):
    """A release of a registry version against the running local deployment."""

    strategy: str = Field("canary", pattern="^(canary|blue-green|blue_green|shadow)$")
    model: str = Field("challenger", description="Alias or version to release")
    candidate_set: list[str] = Field(
        default_factory=list, description="Settings for the candidate server only (drills)"
    )
    poll_seconds: float = Field(1.0, gt=0, description="Seconds between analyses")


class MonitorParams(ProjectParams):
    """One monitor run over the last ``monitoring.window_minutes`` of served traffic."""

    probes: bool = Field(True, description="Send golden probes to the stable server")
    remediate: str = Field(
        "inline",
        pattern="^(inline|events|off)$",
        description="inline: run remediations in this flow; events: emit events for "
        "automations (prefect.yaml triggers); off: report only (alerts come from "
        "Prometheus on the exported gauges)",
    )


class RemediateParams(ProjectParams):
    """Perform the action an incident claimed."""

    incident_id: str = Field(..., min_length=1, description="Incident whose action to run")


class ExperimentParams(ProjectParams):
    """Analyse the running experiments, act on their decisions and advance flag rollouts."""

    experiments: list[str] = Field(
        default_factory=list, description="Experiments to analyse (empty: every running one)"
    )
    apply: bool = Field(True, description="Perform the decisions (ship, stop, roll back)")
    rollouts: bool = Field(True, description="Advance guarded flag rollouts")


class CostParams(ProjectParams):
    """The weekly cost run: report, dry-run capacity plan, savings recommendations."""

    days: int = Field(7, ge=1, le=366, description="Days of spend the report covers")
    forecast_days: int = Field(7, ge=1, le=366, description="Days of spend to forecast")
    plan: bool = Field(True, description="Write a dry-run capacity plan for the next week")
    recommend: bool = Field(True, description="Write savings recommendations")
