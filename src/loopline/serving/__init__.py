"""Model serving: an OpenAI-compatible HTTP API over one dedicated, batching model thread.

:mod:`.app` (HTTP), :mod:`.engine` (limits, cache, faults, accounting), :mod:`.batcher`
(the model thread), :mod:`.cache`, :mod:`.metrics` (Prometheus), :mod:`.request_log`
(durable JSONL, the input of monitoring, experiments and cost), :mod:`.model_store` (which
model, checksum-verified), :mod:`.quality` (reference-free reply scores), :mod:`.server`
(``loopline serve``).
"""
