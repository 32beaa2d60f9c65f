"""Flow parameters shared by the flows."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ProjectParams(BaseModel):
    """Which checkout and environment a flow run works on."""

    model_config = ConfigDict(extra="forbid")

    project_root: str = Field(".", description="Checkout holding configs/, params.yaml, dvc.yaml")
    env: str = Field("local", description="Environment overlay: configs/envs/<env>.yaml")
    push_data: bool = Field(True, description="Push DVC outputs to the remote after the stages")
