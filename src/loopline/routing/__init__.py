"""The built-in traffic router of the local release target.

An asyncio reverse proxy (its own process) in front of the stable and candidate model servers:
weighted split by smooth weighted round robin, shadow mirroring, failover from an unreachable
candidate to stable, and a per-request stats ring the canary analysis reads. Controlled through
an admin API on a separate port.

* :mod:`loopline.routing.split` - the pure splitting core.
* :mod:`loopline.routing.server` - the process (``python -m loopline.routing``).
* :mod:`loopline.routing.client` - :class:`~loopline.routing.client.RouterAdmin`, the admin client.
* :mod:`loopline.routing.process` - start a router process and wait until it is ready.
* :mod:`loopline.routing.fakebackend` - a small OpenAI-shaped backend for tests and benchmarks.
* :mod:`loopline.routing.loadgen` - a cheap HTTP/1.1 load generator for tests and benchmarks.

This package module imports nothing heavy; import the submodules you need.
"""
