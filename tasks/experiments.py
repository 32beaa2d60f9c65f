"""Experiment tasks: thin wrappers over ``loopline.experiments.lifecycle``."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from loopline.config import Settings
from loopline.experiments import lifecycle
from loopline.experiments.lifecycle import Analysis


@task(name="running-experiments", cache_policy=NONE)
def running(settings: Settings, names: list[str]) -> list[str]:
    live = [r.name for r in lifecycle.list_records(settings) if r.running]
    unknown = sorted(set(names) - {r.name for r in lifecycle.list_records(settings)})
    if unknown:
        raise lifecycle.ExperimentError(f"unknown experiments: {unknown}")
    return [n for n in live if not names or n in names]


@task(name="analyze-experiment", cache_policy=NONE, retries=1, retry_delay_seconds=5)
def analyze(settings: Settings, name: str) -> Analysis:
    analysis = lifecycle.analyze(settings, name)
    logger = get_run_logger()
    logger.info("%s: %s (units %s)", name, analysis.decision.summary, dict(analysis.result.units))
    logger.info("report: %s", analysis.report_dir)
    return analysis


@task(name="apply-decision", cache_policy=NONE)
def apply_decision(settings: Settings, analysis: Analysis) -> dict[str, Any]:
    applied = lifecycle.apply_decision(settings, analysis)
    for change in applied.changes:
        get_run_logger().info("%s: %s", analysis.record.name, change)
    return applied.to_dict()


@task(name="advance-rollouts", cache_policy=NONE)
def advance_rollouts(settings: Settings) -> list[dict[str, Any]]:
    moves = lifecycle.advance_rollouts(settings)
    for move in moves:
        get_run_logger().info("rollout %s: %s", move["flag"], move["reason"])
    return moves
