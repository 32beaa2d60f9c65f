"""Prometheus metrics of one model server (its own registry, exposed on ``/metrics``).

Names follow Prometheus conventions (``_total`` counters, base units: seconds, dollars).
``variant`` is the label the router sets (``stable``, ``candidate``, ``shadow``) or the
server's own ``--variant``; ``version`` is the registered model version served.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TOKEN_BUCKETS = (1, 4, 16, 32, 64, 128, 256, 512, 1024, 4096)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
COST_BUCKETS = (1e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2)


class ServingMetrics:
    def __init__(self, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.version = version
        self.requests = Counter(
            "loopline_requests_total",
            "Completion requests by endpoint, HTTP status and variant.",
            ["endpoint", "status", "variant", "version"],
            registry=r,
        )
        self.latency = Histogram(
            "loopline_request_latency_seconds",
            "Wall time from request to response.",
            ["endpoint", "variant", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "loopline_time_to_first_token_seconds",
            "Time from request to the first generated token (queue wait plus prefill).",
            ["variant", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "loopline_tokens_total",
            "Tokens processed, by direction (prompt, completion).",
            ["direction", "variant", "version"],
            registry=r,
        )
        self.request_tokens = Histogram(
            "loopline_request_tokens",
            "Tokens per request, by direction.",
            ["direction", "version"],
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "loopline_batch_size",
            "Requests decoded together in one model call.",
            ["version"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "loopline_batch_seconds",
            "Wall time of one model call (a whole batch).",
            ["version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "loopline_queue_depth", "Requests waiting for the model thread.", registry=r
        )
        self.cache_hits = Counter(
            "loopline_cache_hits_total", "Requests answered from the response cache.", registry=r
        )
        self.cache_misses = Counter(
            "loopline_cache_misses_total",
            "Cacheable requests not found in the response cache.",
            registry=r,
        )
        self.cost = Counter(
            "loopline_cost_dollars_total",
            "Token cost of served requests at the configured price per 1k tokens.",
            ["variant", "version"],
            registry=r,
        )
        self.request_cost = Histogram(
            "loopline_request_cost_dollars",
            "Token cost per request.",
            ["variant", "version"],
            buckets=COST_BUCKETS,
            registry=r,
        )
        self.rejected = Counter(
            "loopline_rejected_total",
            "Requests refused before reaching the model, by reason.",
            ["reason"],
            registry=r,
        )
        self.info = Gauge(
            "loopline_model_info",
            "The served model (value 1).",
            ["version", "fingerprint", "name"],
            registry=r,
        )
        self.ready = Gauge("loopline_ready", "1 when the model is loaded and serving.", registry=r)
