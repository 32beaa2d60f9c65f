"""Grafana dashboards for Loopline, generated from code (pure; Grafana 10 JSON model).

``build_dashboards()`` returns every dashboard as a JSON-ready dict keyed by its file name;
``render`` turns one into the exact text committed under ``infra/grafana/dashboards/``.
Regenerate the committed files after a change here with::

    python -m loopline.monitoring.dashboards --out infra/grafana/dashboards

(``--check`` only compares and exits 1 when a file differs). Every panel queries Prometheus
through the ``$datasource`` template variable, mostly through the recording rules in
``infra/prometheus/rules/recording.yml``; ``expand_expr`` substitutes Grafana's variables so a
test can evaluate each expression against a real Prometheus.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopline.fsutil import atomic_writer

# Grafana 10.0-10.2 write this schema version; newer releases migrate it on load.
SCHEMA_VERSION = 38
GRID_WIDTH = 24
DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}
TAGS = ("loopline",)

# The thresholds drawn on panels: the same values as the alerts in rules/alerts.yml.
LATENCY_SLO_SECONDS = 2.5  # the latency SLO: LATENCY_SLO_OBJECTIVE of requests under this
LATENCY_SLO_OBJECTIVE = 0.99
LATENCY_ERROR_BUDGET = round(1 - LATENCY_SLO_OBJECTIVE, 6)
FAST_BURN_RATE = 14.4  # page: 2 % of a 30-day budget in one hour
SLOW_BURN_RATE = 6.0  # ticket: 5 % of a 30-day budget in six hours
ERROR_RATIO_MAX = 0.05  # LooplineHighErrorRate

# Metrics the monitor process exports (job loopline-monitor); every other loopline_* metric
# comes from the model servers (job loopline-serving).
MONITOR_METRICS = frozenset(
    {
        "loopline_drift_detected",
        "loopline_drift_share",
        "loopline_drift_column_score",
        "loopline_embedding_drift_score",
        "loopline_embedding_drift_threshold",
        "loopline_quality_score",
        "loopline_quality_baseline",
        "loopline_anomaly",
        "loopline_anomaly_score",
        "loopline_budget_dollars",
        "loopline_monitor_last_run_timestamp_seconds",
        "loopline_monitor_window_requests",
        "loopline_incidents_open",
        "loopline_remediations_total",
        "loopline_deployments_total",
        "loopline_champion_info",
    }
)

# Label filter of the serving dashboards (multi-value template variables, regex match).
SEL = 'variant=~"$variant", version=~"$version"'
VERSION_SEL = 'version=~"$version"'
RATE = "$__rate_interval"
BY_VERSION = "{{variant}} v{{version}}"


@dataclass(frozen=True)
class Query:
    """One PromQL target of a panel."""

    expr: str
    legend: str = ""
    instant: bool = False
    fmt: str = "time_series"  # time_series | table | heatmap


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    kind: str = "timeseries"  # timeseries | stat | table | heatmap | state-timeline | bargauge
    unit: str = "short"
    width: int = 12
    height: int = 8
    description: str = ""
    # (value, color) steps above the base colour; `base` is the colour below the first step.
    thresholds: tuple[tuple[float, str], ...] = ()
    base: str = "green"
    min: float | None = None
    max: float | None = None
    stack: bool = False
    mappings: tuple[tuple[str, str, str], ...] = ()  # (value, text, color)
    decimals: int | None = None
    text_mode: str = "auto"  # stat panels: auto | value_and_name | name


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    query: str  # a Grafana label_values(...) query


@dataclass(frozen=True)
class DashboardSpec:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    variables: tuple[Variable, ...] = ()
    tags: tuple[str, ...] = ()
    annotations: tuple[tuple[str, str, str, str], ...] = ()  # (name, expr, title, color)
    time_from: str = "now-3h"


VARIANT_VAR = Variable("variant", "Variant", "label_values(loopline_requests_total, variant)")
VERSION_VAR = Variable("version", "Version", "label_values(loopline_requests_total, version)")
SERVING_VARS = (VARIANT_VAR, VERSION_VAR)


def _q(expr: str, legend: str = "", *, instant: bool = False, fmt: str = "time_series") -> Query:
    return Query(" ".join(expr.split()), legend, instant, fmt)


def _weighted_error_ratio(by: str) -> str:
    """The 5xx ratio aggregated over versions, weighted by each version's traffic."""
    rate = f"variant_version:loopline_requests:rate5m{{{SEL}}}"
    ratio = f"variant_version:loopline_requests_5xx:ratio_rate5m{{{SEL}}}"
    return f"sum by ({by}) ({rate} * {ratio}) / sum by ({by}) ({rate})"


def _quantile(q: float, by: str, bucket_rate: str) -> str:
    return f"histogram_quantile({q:g}, sum by ({by}, le) ({bucket_rate}))"


def _ratio_of_rates(num: str, den: str, by: str, selector: str, window: str = RATE) -> str:
    return (
        f"sum by ({by}) (rate({num}{{{selector}}}[{window}])) "
        f"/ sum by ({by}) (rate({den}{{{selector}}}[{window}]))"
    )


# -- the dashboards -------------------------------------------------------------------------------
def service_health() -> DashboardSpec:
    now = Row(
        "Now",
        (
            Panel(
                "Requests/s",
                (_q(f"sum(variant_version:loopline_requests:rate1m{{{SEL}}})", "requests/s"),),
                kind="stat",
                unit="reqps",
                width=4,
                height=4,
            ),
            Panel(
                "Server errors (5xx, 5 min)",
                (
                    _q(
                        f"sum(variant_version:loopline_requests:rate5m{{{SEL}}}"
                        f" * variant_version:loopline_requests_5xx:ratio_rate5m{{{SEL}}})"
                        f" / sum(variant_version:loopline_requests:rate5m{{{SEL}}})",
                        "5xx",
                    ),
                ),
                kind="stat",
                unit="percentunit",
                width=4,
                height=4,
                thresholds=((ERROR_RATIO_MAX, "red"),),
                decimals=2,
            ),
            Panel(
                "p95 latency (worst version)",
                (
                    _q(
                        f"max(variant_version:loopline_request_latency_seconds:p95_5m{{{SEL}}})",
                        "p95",
                    ),
                ),
                kind="stat",
                unit="s",
                width=4,
                height=4,
                thresholds=((LATENCY_SLO_SECONDS, "red"),),
            ),
            Panel(
                "Ready servers",
                (_q("sum(loopline_ready)", "ready"),),
                kind="stat",
                width=4,
                height=4,
                thresholds=((1, "green"),),
                base="red",
            ),
            Panel(
                "Scrape targets up",
                (_q('sum by (job) (up{job=~"loopline-serving|loopline-monitor"})', "{{job}}"),),
                kind="stat",
                width=4,
                height=4,
                thresholds=((1, "green"),),
                base="red",
            ),
            Panel(
                "Queue depth",
                (_q("sum(loopline_queue_depth)", "waiting"),),
                kind="stat",
                width=4,
                height=4,
                thresholds=((32, "orange"),),
            ),
        ),
    )
    traffic = Row(
        "Traffic and errors",
        (
            Panel(
                "Requests by status",
                (
                    _q(
                        f"sum by (status) (rate(loopline_requests_total{{{SEL}}}[{RATE}]))",
                        "{{status}}",
                    ),
                ),
                unit="reqps",
                stack=True,
            ),
            Panel(
                "Server error ratio (5 min)",
                (_q(f"variant_version:loopline_requests_5xx:ratio_rate5m{{{SEL}}}", BY_VERSION),),
                unit="percentunit",
                thresholds=((ERROR_RATIO_MAX, "red"),),
                min=0,
                description="LooplineHighErrorRate fires above the red line for 2 minutes.",
            ),
            Panel(
                "Refusals",
                (
                    _q(
                        f'sum by (status) (rate(loopline_requests_total{{status=~"4..", {SEL}}}'
                        f"[{RATE}]))",
                        "HTTP {{status}}",
                    ),
                    _q(f"sum by (reason) (rate(loopline_rejected_total[{RATE}]))", "{{reason}}"),
                ),
                unit="reqps",
                description="Client errors by status, and requests refused before the model "
                "(queue full, timeout, model error).",
            ),
            Panel(
                "Requests/s by version",
                (_q(f"variant_version:loopline_requests:rate1m{{{SEL}}}", BY_VERSION),),
                unit="reqps",
            ),
        ),
    )
    servers = Row(
        "Servers",
        (
            Panel(
                "Queue depth",
                (_q("loopline_queue_depth", "{{instance}}"),),
                width=8,
            ),
            Panel(
                "Batch size (mean)",
                (
                    _q(
                        _ratio_of_rates(
                            "loopline_batch_size_sum",
                            "loopline_batch_size_count",
                            "version",
                            VERSION_SEL,
                        ),
                        "v{{version}}",
                    ),
                ),
                width=8,
            ),
            Panel(
                "Cache hit ratio",
                (
                    _q(
                        f"sum by (instance) (rate(loopline_cache_hits_total[{RATE}]))"
                        f" / (sum by (instance) (rate(loopline_cache_hits_total[{RATE}]))"
                        f" + sum by (instance) (rate(loopline_cache_misses_total[{RATE}])))",
                        "{{instance}}",
                    ),
                ),
                unit="percentunit",
                width=8,
                min=0,
                max=1,
            ),
            Panel(
                "Served models",
                (_q("loopline_model_info", instant=True, fmt="table"),),
                kind="table",
                width=12,
            ),
            Panel(
                "Scrape targets",
                (_q('up{job=~"loopline-serving|loopline-monitor"}', "{{job}} {{instance}}"),),
                width=12,
                min=0,
                max=1,
            ),
        ),
    )
    return DashboardSpec(
        uid="loopline-service-health",
        title="Loopline / Service health",
        description="Traffic, errors, readiness and queues of the Loopline model servers.",
        rows=(now, traffic, servers),
        variables=SERVING_VARS,
        tags=("serving",),
    )


def latency() -> DashboardSpec:
    bucket_rate = f"rate(loopline_request_latency_seconds_bucket{{{SEL}}}[{RATE}])"
    slo_row_title = (
        f"Latency SLO: {LATENCY_SLO_OBJECTIVE:.0%} of requests under {LATENCY_SLO_SECONDS:g} s"
    )
    misses = "variant_version:loopline_request_latency_slo_misses"
    requests = Row(
        "Request latency",
        (
            Panel(
                "Latency p50 / p95 / p99 (5 min)",
                tuple(
                    _q(
                        f"variant_version:loopline_request_latency_seconds:{p}_5m{{{SEL}}}",
                        f"{p} {BY_VERSION}",
                    )
                    for p in ("p50", "p95", "p99")
                ),
                unit="s",
                thresholds=((LATENCY_SLO_SECONDS, "red"),),
            ),
            Panel(
                "Mean latency (5 min)",
                (
                    _q(
                        f"variant_version:loopline_request_latency_seconds:mean5m{{{SEL}}}",
                        BY_VERSION,
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Latency distribution",
                (_q(f"sum by (le) ({bucket_rate})", "{{le}}", fmt="heatmap"),),
                kind="heatmap",
                unit="s",
            ),
            Panel(
                "p95 latency by endpoint",
                (_q(_quantile(0.95, "endpoint", bucket_rate), "{{endpoint}}"),),
                unit="s",
            ),
        ),
    )
    first_token = Row(
        "Time to first token and batches",
        (
            Panel(
                "Time to first token p50 / p95 (5 min)",
                tuple(
                    _q(
                        f"variant_version:loopline_time_to_first_token_seconds:{p}_5m{{{SEL}}}",
                        f"{p} {BY_VERSION}",
                    )
                    for p in ("p50", "p95")
                ),
                unit="s",
                description="Queue wait plus prefill, measured at the model.",
            ),
            Panel(
                "Model call time p95 (a whole batch)",
                (
                    _q(
                        _quantile(
                            0.95,
                            "version",
                            f"rate(loopline_batch_seconds_bucket{{{VERSION_SEL}}}[{RATE}])",
                        ),
                        "v{{version}}",
                    ),
                ),
                unit="s",
            ),
        ),
    )
    slo = Row(
        slo_row_title,
        (
            Panel(
                "Requests within the objective (6 h)",
                (_q(f"1 - {misses}:ratio_rate6h{{{SEL}}}", BY_VERSION),),
                kind="stat",
                unit="percentunit",
                width=8,
                thresholds=((LATENCY_SLO_OBJECTIVE, "green"),),
                base="red",
                decimals=2,
            ),
            Panel(
                "Error budget burn rate",
                tuple(
                    _q(
                        f"{misses}:ratio_rate{w}{{{SEL}}} / {LATENCY_ERROR_BUDGET:g}",
                        f"{w} {BY_VERSION}",
                    )
                    for w in ("5m", "1h", "6h")
                ),
                width=16,
                thresholds=((SLOW_BURN_RATE, "orange"), (FAST_BURN_RATE, "red")),
                min=0,
                description=(
                    "1 spends the 30-day budget in exactly 30 days. LooplineLatencySLOBurn "
                    f"pages above {FAST_BURN_RATE:g} (1 h and 5 min windows) and opens a ticket "
                    f"above {SLOW_BURN_RATE:g} (6 h and 30 min windows)."
                ),
            ),
        ),
    )
    return DashboardSpec(
        uid="loopline-latency",
        title="Loopline / Latency",
        description="Request latency, time to first token and the latency SLO.",
        rows=(requests, first_token, slo),
        variables=SERVING_VARS,
        tags=("serving", "slo"),
    )


def tokens_and_cost() -> DashboardSpec:
    tokens = Row(
        "Tokens",
        (
            Panel(
                "Tokens/s",
                (
                    _q(
                        f"variant_version_direction:loopline_tokens:rate5m{{{SEL}}}",
                        "{{direction}} " + BY_VERSION,
                    ),
                ),
                unit="short",
            ),
            Panel(
                "Tokens per request p50 / p95",
                tuple(
                    _q(
                        _quantile(
                            q,
                            "direction",
                            f"rate(loopline_request_tokens_bucket{{{VERSION_SEL}}}[{RATE}])",
                        ),
                        f"p{round(q * 100)} {{{{direction}}}}",
                    )
                    for q in (0.5, 0.95)
                ),
            ),
        ),
    )
    cost = Row(
        "Cost",
        (
            Panel(
                "Spend rate",
                (
                    _q(
                        f"sum(variant_version:loopline_cost_dollars:hourly_rate5m{{{SEL}}})",
                        "$/h",
                    ),
                ),
                kind="stat",
                unit="currencyUSD",
                width=6,
                decimals=4,
            ),
            Panel(
                "Projected month (last hour's rate)",
                (_q("loopline:cost_dollars:projected_month", "projected"),),
                kind="stat",
                unit="currencyUSD",
                width=6,
                decimals=2,
            ),
            Panel(
                "Monthly budget",
                (_q('loopline_budget_dollars{period="month"}', "budget"),),
                kind="stat",
                unit="currencyUSD",
                width=6,
            ),
            Panel(
                "Cache hits/s (requests that cost nothing)",
                (_q(f"sum(rate(loopline_cache_hits_total[{RATE}]))", "hits/s"),),
                kind="stat",
                unit="reqps",
                width=6,
            ),
            Panel(
                "Spend rate by version ($/h)",
                (_q(f"variant_version:loopline_cost_dollars:hourly_rate5m{{{SEL}}}", BY_VERSION),),
                unit="currencyUSD",
                stack=True,
            ),
            Panel(
                "Cost per request (mean, p95)",
                (
                    _q(
                        f"variant_version:loopline_request_cost_dollars:mean5m{{{SEL}}}",
                        "mean " + BY_VERSION,
                    ),
                    _q(
                        _quantile(
                            0.95,
                            "variant, version",
                            f"rate(loopline_request_cost_dollars_bucket{{{SEL}}}[{RATE}])",
                        ),
                        "p95 " + BY_VERSION,
                    ),
                ),
                unit="currencyUSD",
            ),
            Panel(
                "Projected monthly spend against the budget",
                (
                    _q("loopline:cost_dollars:projected_month", "projected"),
                    _q('loopline_budget_dollars{period="month"}', "budget"),
                ),
                unit="currencyUSD",
                width=24,
                description="LooplineBudgetBurn fires when the projection stays above the "
                "budget for 30 minutes.",
            ),
        ),
    )
    return DashboardSpec(
        uid="loopline-tokens-cost",
        title="Loopline / Tokens and cost",
        description="Token throughput, spend by version and the monthly budget.",
        rows=(tokens, cost),
        variables=SERVING_VARS,
        tags=("serving", "cost"),
    )


def drift() -> DashboardSpec:
    detected = (("0", "no drift", "green"), ("1", "drift", "red"))
    data = Row(
        "Data drift",
        (
            Panel(
                "Input drift",
                (_q('max(loopline_drift_detected{dataset="inputs"})', "inputs"),),
                kind="stat",
                width=6,
                height=5,
                mappings=detected,
            ),
            Panel(
                "Output drift",
                (_q('max(loopline_drift_detected{dataset="outputs"})', "outputs"),),
                kind="stat",
                width=6,
                height=5,
                mappings=detected,
            ),
            Panel(
                "Embedding drift score",
                (
                    _q("loopline_embedding_drift_score", "score"),
                    _q("loopline_embedding_drift_threshold", "threshold"),
                ),
                width=12,
                height=5,
            ),
            Panel(
                "Share of drifted columns",
                (_q("loopline_drift_share", "{{dataset}}"),),
                unit="percentunit",
                min=0,
                max=1,
            ),
            Panel(
                "Column drift statistics",
                (_q("loopline_drift_column_score", instant=True, fmt="table"),),
                kind="table",
                description="The statistic of each column's test: a p-value or a distance, "
                "as the method column says (docs/drift-statistics.md).",
            ),
        ),
    )
    quality = Row(
        "Quality",
        (
            Panel(
                "Quality score against the baseline",
                (
                    _q("loopline_quality_score", "{{source}} score"),
                    _q("loopline_quality_baseline", "{{source}} baseline"),
                    _q("loopline_quality_floor", "{{source}} floor"),
                ),
                width=24,
                min=0,
                max=1,
                description="LooplineQualityDrop fires when a score stays under its "
                "floor (monitoring.quality.max_drop below the baseline) for 15 minutes.",
            ),
        ),
    )
    anomalies = Row(
        "Anomalies",
        (
            Panel(
                "Anomalies",
                (_q("loopline_anomaly", "{{series}}"),),
                kind="state-timeline",
                mappings=(("0", "normal", "green"), ("1", "anomaly", "red")),
            ),
            Panel("Anomaly scores", (_q("loopline_anomaly_score", "{{series}}"),)),
        ),
    )
    monitor = Row(
        "Monitor and remediation",
        (
            Panel(
                "Since the last monitor run",
                (_q("time() - loopline_monitor_last_run_timestamp_seconds", "age"),),
                kind="stat",
                unit="s",
                width=6,
                height=5,
                thresholds=((1800, "red"),),
            ),
            Panel(
                "Requests in the monitoring window",
                (_q("loopline_monitor_window_requests", "requests"),),
                kind="stat",
                width=6,
                height=5,
            ),
            Panel(
                "Open incidents",
                (_q("loopline_incidents_open", "open"),),
                kind="stat",
                width=6,
                height=5,
                thresholds=((1, "red"),),
            ),
            Panel(
                "Remediations in range",
                (
                    _q(
                        "sum by (action, outcome) (increase(loopline_remediations_total"
                        "[$__range]))",
                        "{{action}} {{outcome}}",
                        instant=True,
                    ),
                ),
                kind="bargauge",
                width=6,
                height=5,
            ),
            Panel(
                "Firing Loopline alerts",
                (
                    _q(
                        'ALERTS{alertstate="firing", alertname=~"Loopline.*"}',
                        instant=True,
                        fmt="table",
                    ),
                ),
                kind="table",
                width=24,
            ),
        ),
    )
    return DashboardSpec(
        uid="loopline-drift",
        title="Loopline / Drift and quality",
        description="Data and embedding drift, reply quality, anomalies and remediations "
        "(from the monitor).",
        rows=(data, quality, anomalies, monitor),
        tags=("monitor",),
        time_from="now-24h",
    )


def experiments() -> DashboardSpec:
    rate = f"variant_version:loopline_requests:rate5m{{{SEL}}}"
    bucket = f"variant_version_le:loopline_request_latency_seconds_bucket:rate5m{{{SEL}}}"
    ttft = f"variant_version_le:loopline_time_to_first_token_seconds_bucket:rate5m{{{SEL}}}"
    row = Row(
        "Per variant",
        (
            Panel(
                "Requests/s by variant",
                (_q(f"sum by (variant) ({rate})", "{{variant}}"),),
                unit="reqps",
            ),
            Panel(
                "Share of user traffic",
                (
                    _q(
                        f"sum by (variant) (variant_version:loopline_requests:share5m{{{SEL}}})",
                        "{{variant}}",
                    ),
                ),
                unit="percentunit",
                stack=True,
                min=0,
                max=1,
                description="Mirrored (shadow) requests are not user traffic.",
            ),
            Panel(
                "Server error ratio by variant",
                (_q(_weighted_error_ratio("variant"), "{{variant}}"),),
                unit="percentunit",
                thresholds=((ERROR_RATIO_MAX, "red"),),
                min=0,
            ),
            Panel(
                "p95 latency by variant",
                (_q(_quantile(0.95, "variant", bucket), "{{variant}}"),),
                unit="s",
                thresholds=((LATENCY_SLO_SECONDS, "red"),),
            ),
            Panel(
                "p95 time to first token by variant",
                (_q(_quantile(0.95, "variant", ttft), "{{variant}}"),),
                unit="s",
            ),
            Panel(
                "Cost per request by variant",
                (
                    _q(
                        _ratio_of_rates(
                            "loopline_request_cost_dollars_sum",
                            "loopline_request_cost_dollars_count",
                            "variant",
                            SEL,
                        ),
                        "{{variant}}",
                    ),
                ),
                unit="currencyUSD",
            ),
            Panel(
                "Completion tokens per answered request by variant",
                (
                    _q(
                        "sum by (variant) (rate(loopline_tokens_total"
                        f'{{direction="completion", {SEL}}}[{RATE}]))'
                        " / sum by (variant) (rate(loopline_request_cost_dollars_count"
                        f"{{{SEL}}}[{RATE}]))",
                        "{{variant}}",
                    ),
                ),
            ),
            Panel(
                "Spend rate by variant ($/h)",
                (
                    _q(
                        "sum by (variant) "
                        f"(variant_version:loopline_cost_dollars:hourly_rate5m{{{SEL}}})",
                        "{{variant}}",
                    ),
                ),
                unit="currencyUSD",
            ),
        ),
    )
    return DashboardSpec(
        uid="loopline-experiments",
        title="Loopline / Experiments",
        description="Traffic, errors, latency and cost of each variant (stable, candidate, "
        "shadow) side by side.",
        rows=(row,),
        variables=SERVING_VARS,
        tags=("experiments",),
    )


def releases() -> DashboardSpec:
    rate = f"variant_version:loopline_requests:rate5m{{{SEL}}}"
    bucket = f"variant_version_le:loopline_request_latency_seconds_bucket:rate5m{{{SEL}}}"
    versions = Row(
        "Per version",
        (
            Panel(
                "Share of user traffic by version",
                (
                    _q(
                        f"sum by (version) (variant_version:loopline_requests:share5m{{{SEL}}})",
                        "v{{version}}",
                    ),
                ),
                unit="percentunit",
                stack=True,
                min=0,
                max=1,
            ),
            Panel(
                "Requests/s by version",
                (_q(f"sum by (version) ({rate})", "v{{version}}"),),
                unit="reqps",
            ),
            Panel(
                "Server error ratio by version",
                (_q(_weighted_error_ratio("version"), "v{{version}}"),),
                unit="percentunit",
                thresholds=((ERROR_RATIO_MAX, "red"),),
                min=0,
            ),
            Panel(
                "Latency p95 / p99 by version",
                tuple(
                    _q(_quantile(q, "version", bucket), f"p{round(q * 100)} v{{{{version}}}}")
                    for q in (0.95, 0.99)
                ),
                unit="s",
                thresholds=((LATENCY_SLO_SECONDS, "red"),),
            ),
            Panel(
                "Cost per request by version",
                (
                    _q(
                        _ratio_of_rates(
                            "loopline_request_cost_dollars_sum",
                            "loopline_request_cost_dollars_count",
                            "version",
                            SEL,
                        ),
                        "v{{version}}",
                    ),
                ),
                unit="currencyUSD",
            ),
            Panel(
                "Served versions",
                (_q("loopline_model_info", instant=True, fmt="table"),),
                kind="table",
            ),
        ),
    )
    deployments = Row(
        "Deployments",
        (
            Panel(
                "Champion",
                (_q("loopline_champion_info", "v{{version}}"),),
                kind="stat",
                text_mode="name",
                width=6,
                height=6,
            ),
            Panel(
                "Deployments in range",
                (
                    _q(
                        "sum by (strategy, outcome) (increase(loopline_deployments_total"
                        "[$__range]))",
                        "{{strategy}} {{outcome}}",
                        instant=True,
                    ),
                ),
                kind="bargauge",
                width=9,
                height=6,
            ),
            Panel(
                "Remediations in range",
                (
                    _q(
                        "sum by (action, outcome) (increase(loopline_remediations_total"
                        "[$__range]))",
                        "{{action}} {{outcome}}",
                        instant=True,
                    ),
                ),
                kind="bargauge",
                width=9,
                height=6,
            ),
        ),
    )
    return DashboardSpec(
        uid="loopline-releases",
        title="Loopline / Releases",
        description="Each model version's traffic share, errors and latency; deployments, "
        "remediations and the champion.",
        rows=(versions, deployments),
        variables=SERVING_VARS,
        tags=("releases",),
        annotations=(
            (
                "Deployments",
                "sum by (strategy, outcome) (increase(loopline_deployments_total[2m])) > 0",
                "{{strategy}}: {{outcome}}",
                "purple",
            ),
            (
                "New champion",
                "loopline_champion_info unless loopline_champion_info offset 2m",
                "champion v{{version}}",
                "green",
            ),
        ),
        time_from="now-24h",
    )


SPECS = (service_health, latency, tokens_and_cost, drift, experiments, releases)


# -- the Grafana JSON model -----------------------------------------------------------------------
def _target(query: Query, ref: str) -> dict[str, Any]:
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": query.expr,
        "format": query.fmt,
        "instant": query.instant,
        "legendFormat": query.legend or "__auto",
        "range": not query.instant,
        "refId": ref,
    }


def _field_defaults(panel: Panel) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": panel.base, "value": None}]
    steps += [{"color": color, "value": value} for value, color in panel.thresholds]
    defaults: dict[str, Any] = {
        "color": {"mode": "thresholds" if panel.kind == "stat" else "palette-classic"},
        "mappings": [],
        "thresholds": {"mode": "absolute", "steps": steps},
        "unit": panel.unit,
    }
    if panel.mappings:
        defaults["mappings"] = [
            {
                "type": "value",
                "options": {
                    value: {"color": color, "index": i, "text": text}
                    for i, (value, text, color) in enumerate(panel.mappings)
                },
            }
        ]
        defaults["color"] = {"mode": "thresholds"}
    for key in ("min", "max", "decimals"):
        value = getattr(panel, key)
        if value is not None:
            defaults[key] = value
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "fillOpacity": 10,
            "lineWidth": 1,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"group": "A", "mode": "normal" if panel.stack else "none"},
            "thresholdsStyle": {"mode": "line" if panel.thresholds else "off"},
        }
    return defaults


def _options(panel: Panel) -> dict[str, Any]:
    reduce = {"calcs": ["lastNotNull"], "fields": "", "values": False}
    if panel.kind == "timeseries":
        return {
            "legend": {
                "calcs": ["lastNotNull", "max"],
                "displayMode": "table",
                "placement": "bottom",
                "showLegend": True,
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    if panel.kind == "stat":
        return {
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": reduce,
            "textMode": panel.text_mode,
        }
    if panel.kind == "bargauge":
        return {
            "displayMode": "gradient",
            "orientation": "horizontal",
            "reduceOptions": reduce,
            "showUnfilled": True,
        }
    if panel.kind == "state-timeline":
        return {
            "alignValue": "left",
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "mergeValues": True,
            "rowHeight": 0.9,
            "showValue": "never",
        }
    if panel.kind == "heatmap":
        return {
            "calculate": False,
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
            "yAxis": {"axisPlacement": "left", "unit": panel.unit},
        }
    if panel.kind == "table":
        return {"cellHeight": "sm", "showHeader": True}
    raise ValueError(f"unknown panel kind {panel.kind!r}")


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "datasource": DATASOURCE,
        "description": panel.description,
        "fieldConfig": {"defaults": _field_defaults(panel), "overrides": []},
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "id": panel_id,
        "options": _options(panel),
        "targets": [_target(q, chr(ord("A") + i)) for i, q in enumerate(panel.queries)],
        "title": panel.title,
        "type": panel.kind,
    }
    if panel.kind == "table":
        # Instant table queries carry a Time column nobody needs.
        out["transformations"] = [{"id": "organize", "options": {"excludeByName": {"Time": True}}}]
    return out


def _layout(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Rows top to bottom; in a row, panels left to right, wrapping at the grid width."""
    panels: list[dict[str, Any]] = []
    y = 0
    next_id = 1
    for row in rows:
        panels.append(
            {
                "collapsed": False,
                "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y},
                "id": next_id,
                "panels": [],
                "title": row.title,
                "type": "row",
            }
        )
        next_id += 1
        y += 1
        x, line_height = 0, 0
        for panel in row.panels:
            if not 0 < panel.width <= GRID_WIDTH:
                raise ValueError(f"panel {panel.title!r}: width {panel.width} out of 1..24")
            if x + panel.width > GRID_WIDTH:
                y += line_height
                x, line_height = 0, 0
            panels.append(_panel_json(panel, next_id, x, y))
            next_id += 1
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    return panels


def _variable(var: Variable) -> dict[str, Any]:
    return {
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "datasource": DATASOURCE,
        "definition": var.query,
        "hide": 0,
        "includeAll": True,
        "label": var.label,
        "multi": True,
        "name": var.name,
        "options": [],
        "query": var.query,
        "refresh": 2,  # on time range change: new versions appear during a release
        "regex": "",
        "skipUrlSync": False,
        "sort": 3,  # numerical ascending (versions are numbers)
        "type": "query",
    }


def _datasource_variable() -> dict[str, Any]:
    return {
        "current": {},
        "hide": 0,
        "includeAll": False,
        "label": "Data source",
        "multi": False,
        "name": "datasource",
        "options": [],
        "query": "prometheus",
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
        "type": "datasource",
    }


def _annotations(spec: DashboardSpec) -> list[dict[str, Any]]:
    builtin: dict[str, Any] = {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }
    return [builtin] + [
        {
            "datasource": DATASOURCE,
            "enable": True,
            "expr": expr,
            "iconColor": color,
            "name": name,
            "step": "60s",
            "textFormat": "",
            "titleFormat": title,
            "useValueForTime": False,
        }
        for name, expr, title, color in spec.annotations
    ]


def dashboard_json(spec: DashboardSpec) -> dict[str, Any]:
    """The Grafana dashboard JSON model of ``spec`` (import it, or provision the file)."""
    return {
        "annotations": {"list": _annotations(spec)},
        "description": spec.description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,  # shared crosshair
        "id": None,
        "links": [
            {
                "asDropdown": True,
                "icon": "external link",
                "includeVars": True,
                "keepTime": True,
                "tags": list(TAGS),
                "targetBlank": False,
                "title": "Loopline",
                "type": "dashboards",
            }
        ],
        "liveNow": False,
        "panels": _layout(spec.rows),
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": [*TAGS, *spec.tags],
        "templating": {"list": [_datasource_variable(), *(_variable(v) for v in spec.variables)]},
        "time": {"from": spec.time_from, "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": spec.title,
        "uid": spec.uid,
        "version": 1,
        "weekStart": "",
    }


def build_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard, keyed by its file name (``<uid>.json``)."""
    out: dict[str, dict[str, Any]] = {}
    for make in SPECS:
        board = dashboard_json(make())
        out[f"{board['uid']}.json"] = board
    return out


def render(dashboard: Mapping[str, Any]) -> str:
    """The committed text of a dashboard: stable key order, two-space indent, final newline."""
    return json.dumps(dashboard, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# -- reading the JSON back (tests, docs) -----------------------------------------------------------
def iter_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that queries data (rows, also collapsed rows' children, are skipped)."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def iter_exprs(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, expr) for every PromQL expression: panel targets and annotations."""
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            yield f"{panel['title']} [{target['refId']}]", target["expr"]
    for ann in dashboard.get("annotations", {}).get("list", []):
        if "expr" in ann:
            yield f"annotation {ann['name']}", ann["expr"]


_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def expand_expr(expr: str, values: Mapping[str, str]) -> str:
    """Substitute Grafana variables (``$name``, ``${name}``, ``$__rate_interval``, ...) the
    way Grafana does before it sends a query; an unknown variable is an error."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no value for Grafana variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(sub, expr)


# -- command line ---------------------------------------------------------------------------------
def write_dashboards(out_dir: Path) -> list[Path]:
    """Write every dashboard into ``out_dir`` (atomically, one file each)."""
    written = []
    for name, board in build_dashboards().items():
        path = out_dir / name
        with atomic_writer(path) as handle:
            handle.write(render(board))
        path.chmod(0o644)  # the temporary file was private; Grafana may run as another user
        written.append(path)
    return written


def stale_files(out_dir: Path) -> list[str]:
    """Names of generated dashboards missing from ``out_dir`` or different there."""
    stale = []
    for name, board in build_dashboards().items():
        path = out_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != render(board):
            stale.append(name)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loopline.monitoring.dashboards",
        description="Generate Loopline's Grafana dashboards.",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("infra/grafana/dashboards"), help="output directory"
    )
    parser.add_argument(
        "--check", action="store_true", help="compare only; exit 1 if a file differs"
    )
    args = parser.parse_args(argv)
    out: Path = args.out
    if args.check:
        stale = stale_files(out)
        for name in stale:
            print(f"out of date: {out / name}", file=sys.stderr)
        if stale:
            print(f"regenerate: python -m loopline.monitoring.dashboards --out {out}",
                  file=sys.stderr)  # fmt: skip
        return 1 if stale else 0
    for path in write_dashboards(out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
