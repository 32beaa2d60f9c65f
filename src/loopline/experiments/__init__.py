"""Experimentation: assignment, feature flags, rollouts, a statistics engine and decisions.

Pure and typed; no I/O, no Prefect. The serving layer asks :mod:`.assignment` (or
:mod:`.flags`) which variant a unit gets; the experiment flow aggregates logs per unit
(:mod:`.metrics`), analyses them (:mod:`.analysis`, built on :mod:`.stats`,
:mod:`.sequential`, :mod:`.bayes`) and acts on :func:`.decision.decide_experiment`.
Planning lives in :mod:`.power`, adaptive allocation among prompt variants in :mod:`.bandit`.
Configuration models are in :mod:`.policy`.
"""

from __future__ import annotations

from loopline.experiments.analysis import ExperimentResult, MetricResult, analyze_experiment
from loopline.experiments.assignment import (
    Assignment,
    AssignmentBatch,
    Exposure,
    Layer,
    LayerBatch,
    assign,
    assign_many,
    exposure,
)
from loopline.experiments.bandit import BetaBernoulliBandit, thompson_choose
from loopline.experiments.bayes import BayesianResult, beta_binomial, normal_posterior
from loopline.experiments.decision import Decision, VariantVerdict, decide_experiment
from loopline.experiments.flags import (
    FlagEvaluation,
    RolloutDecision,
    evaluate_flag,
    next_rollout_step,
    scheduled_step,
)
from loopline.experiments.hashing import bucket, buckets
from loopline.experiments.metrics import ArmStats, RatioArmStats, UnitTable, aggregate_units
from loopline.experiments.policy import (
    AnalysisConfig,
    Condition,
    DecisionPolicy,
    ExperimentsConfig,
    ExperimentSpec,
    FlagSpec,
    GuardrailSpec,
    LayerSpec,
    MetricSpec,
    RolloutSchedule,
    SequentialConfig,
    TargetingRule,
    VariantSpec,
)
from loopline.experiments.power import (
    mde_means,
    mde_proportions,
    sample_size_means,
    sample_size_proportions,
)
from loopline.experiments.sequential import SequentialLook, sequential_look
from loopline.experiments.stats import (
    Comparison,
    SrmResult,
    bootstrap_difference,
    correct_pvalues,
    cuped,
    mann_whitney,
    ratio_test,
    srm_check,
    two_proportion_ztest,
    welch_ttest,
)

__all__ = [
    "AnalysisConfig",
    "ArmStats",
    "Assignment",
    "AssignmentBatch",
    "BayesianResult",
    "BetaBernoulliBandit",
    "Comparison",
    "Condition",
    "Decision",
    "DecisionPolicy",
    "ExperimentResult",
    "ExperimentSpec",
    "ExperimentsConfig",
    "Exposure",
    "FlagEvaluation",
    "FlagSpec",
    "GuardrailSpec",
    "Layer",
    "LayerBatch",
    "LayerSpec",
    "MetricResult",
    "MetricSpec",
    "RatioArmStats",
    "RolloutDecision",
    "RolloutSchedule",
    "SequentialConfig",
    "SequentialLook",
    "SrmResult",
    "TargetingRule",
    "UnitTable",
    "VariantSpec",
    "VariantVerdict",
    "aggregate_units",
    "analyze_experiment",
    "assign",
    "assign_many",
    "beta_binomial",
    "bootstrap_difference",
    "bucket",
    "buckets",
    "correct_pvalues",
    "cuped",
    "decide_experiment",
    "evaluate_flag",
    "exposure",
    "mann_whitney",
    "mde_means",
    "mde_proportions",
    "next_rollout_step",
    "normal_posterior",
    "ratio_test",
    "sample_size_means",
    "sample_size_proportions",
    "scheduled_step",
    "sequential_look",
    "srm_check",
    "thompson_choose",
    "two_proportion_ztest",
    "welch_ttest",
]
