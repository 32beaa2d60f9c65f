"""Monitoring configuration: drift thresholds, quality probes, anomaly series, remediation.

The ``monitoring`` section of ``configs/loopline.yaml``. Every threshold a monitoring
decision uses is a named field here; the decision functions take these models as arguments.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DriftPolicy(_Frozen):
    """What ``detect_drift`` calls drift.

    Per column, numeric columns use Evidently's default statistics (KS p-value below 0.05
    up to 1,000 reference rows, normalised Wasserstein distance of at least 0.1 above) and
    categorical columns a two-sample test (``categorical: two_sample``; ``evidently`` uses
    Evidently's goodness-of-fit chi-square instead). ``thresholds`` overrides a column's
    threshold by name. A dataset drifts when at least ``drift_share`` of its columns drift
    (Evidently's dataset rule). ``embedding_auc``: prompts drift when a classifier tells
    current from reference prompt embeddings with a cross-validated ROC AUC above it
    (Evidently's default embedding-drift method and threshold) that is also significant at
    ``embedding_alpha`` (a Mann-Whitney test of the out-of-fold scores); at most
    ``embedding_max_rows`` prompts per side are embedded.
    """

    categorical: Literal["two_sample", "evidently"] = "two_sample"
    thresholds: dict[str, float] = Field(default_factory=dict)
    drift_share: float = Field(0.5, gt=0, le=1)
    min_rows: int = Field(50, ge=5)
    embedding_auc: float = Field(0.55, gt=0.5, lt=1)
    embedding_alpha: float = Field(0.001, gt=0, lt=1)
    embedding_max_rows: int = Field(500, ge=20)


class QualityPolicy(_Frozen):
    """Quality checks of the served model.

    ``probes`` golden prompts per monitor run (from ``release.golden``) are sent to the
    stable server and scored by ROUGE-L against their references; without a golden set the
    label-free reply score of the logged traffic is used. Quality drops when the score falls
    more than ``max_drop`` (relative) below its baseline: the champion's own evaluation for
    probes, the reference replies' label-free score otherwise.
    """

    probes: int = Field(16, ge=0)
    max_drop: float = Field(0.1, gt=0, lt=1)
    min_samples: int = Field(8, ge=1)


class AnomalySettings(_Frozen):
    """Anomaly detection on the request log's metric series (``monitoring.anomaly``).

    The knobs of :class:`loopline.monitoring.anomaly.AnomalyPolicy` an operator changes;
    the season is one day of buckets. The defaults are the measured ones of
    docs/anomaly-detection.md (about 0.07 % of null points flagged).
    """

    bucket_seconds: int = Field(300, ge=10, le=86_400 // 2)
    history_buckets: int = Field(2016, ge=12)  # one week of 5-minute buckets
    threshold: float = Field(4.0, gt=0)
    persistence: int = Field(2, ge=1)
    min_requests: int = Field(20, ge=0)


class RemediationPolicy(_Frozen):
    """What the closed loop does about an alert.

    ``rollback_on`` / ``retrain_on``: the alert ``remediation`` labels (or alert names) that
    start a rollback or a retraining; anything else is recorded and notified only.
    ``cooldown_minutes``: after an action for a scope, further alerts for it are recorded but
    start nothing until the cooldown ends (no flapping). ``max_attempts``: remediations of one
    incident before it is escalated to people instead of tried again. ``auto``: false records
    the decision and waits for a person.
    """

    auto: bool = True
    rollback_on: tuple[str, ...] = ("rollback",)
    retrain_on: tuple[str, ...] = ("retrain",)
    cooldown_minutes: float = Field(60.0, ge=0)
    max_attempts: int = Field(1, ge=1)
    release_strategy: Literal["canary", "blue-green", "shadow"] = "canary"
    fresh_tickets: int = Field(400, ge=0)

    @model_validator(mode="after")
    def _disjoint(self) -> RemediationPolicy:
        both = set(self.rollback_on) & set(self.retrain_on)
        if both:
            raise ValueError(
                f"remediation: {sorted(both)} listed in both rollback_on and retrain_on"
            )
        return self


class MonitoringConfig(_Frozen):
    """The ``monitoring`` section: the window, the reference, and the policies above.

    The current window is the last ``window_minutes`` of the request log (at most
    ``max_rows`` requests, the newest); the reference is at most ``reference_rows`` rows of
    the champion's training split. Up to 1,000 reference rows Evidently's numeric statistic
    is the KS test, a real test at any window size; above it, the normalised Wasserstein
    distance, which flags most undrifted windows of under a few hundred requests
    (docs/drift-statistics.md). Reports and incidents live under ``state_dir``.
    ``host``/``port``: the monitor service (Alertmanager webhook and the monitor's metrics).
    ``monthly_budget_usd``: exported for the budget-burn alert.
    """

    window_minutes: float = Field(60.0, gt=0)
    max_rows: int = Field(50_000, ge=10)
    reference_rows: int = Field(1000, ge=10)
    state_dir: str = ".loopline/monitoring"
    host: str = "127.0.0.1"
    port: int = Field(9410, ge=0, le=65535)
    monthly_budget_usd: float = Field(100.0, ge=0)
    ood_neighbours: int = Field(1, ge=1)
    evidently_report: bool = True
    drift: DriftPolicy = DriftPolicy()
    quality: QualityPolicy = QualityPolicy()
    anomaly: AnomalySettings = AnomalySettings()
    remediation: RemediationPolicy = RemediationPolicy()
