"""The serving parts on their own: response cache, durable request log, batching model thread."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from loopline.models.base import Generation
from loopline.serving.batcher import ModelWorker, QueueFullError
from loopline.serving.cache import ResponseCache, cache_key
from loopline.serving.request_log import (
    RequestLog,
    RequestLogError,
    log_files,
    open_server_log,
    read_request_log,
    read_request_logs,
)


class EchoGenerator:
    """A Generator (Loopline's own protocol) that echoes and records its batch sizes."""

    name = "echo"

    def __init__(self, delay_s: float = 0.02) -> None:
        self.delay_s = delay_s
        self.batches: list[int] = []
        self.calls: list[tuple[int, float, int | None]] = []

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[Generation]:
        self.batches.append(len(prompts))
        self.calls.append((max_new_tokens, temperature, seed))
        time.sleep(self.delay_s)
        return [
            Generation(f"echo:{p}", len(p), max_new_tokens, self.delay_s, 0.001) for p in prompts
        ]


# -- cache ------------------------------------------------------------------------------------
def test_cache_is_lru_with_ttl() -> None:
    now = [0.0]
    cache: ResponseCache[str] = ResponseCache(2, ttl_s=10, clock=lambda: now[0])
    cache.put("a", "A")
    cache.put("b", "B")
    assert cache.get("a") == "A"  # a is now the most recent
    cache.put("c", "C")  # evicts b, the least recently used
    assert cache.get("b") is None
    assert cache.get("a") == "A" and cache.get("c") == "C"
    now[0] = 10.5
    assert cache.get("a") is None  # expired
    assert (cache.hits, cache.misses) == (3, 2)


def test_cache_disabled_and_keys_cover_every_part() -> None:
    off: ResponseCache[str] = ResponseCache(0, 10)
    off.put("a", "A")
    assert off.get("a") is None and not off.enabled
    base = {"version": "1", "prompt": "p", "max_tokens": 8, "temperature": 0.0, "seed": None}
    keys = {cache_key(**base)}
    for field, other in [("version", "2"), ("prompt", "q"), ("max_tokens", 9), ("seed", 1)]:
        keys.add(cache_key(**{**base, field: other}))
    assert len(keys) == 5
    with pytest.raises(ValueError):
        ResponseCache(-1, 0)


# -- request log ------------------------------------------------------------------------------
def test_request_log_group_commits_every_entry_exactly_once(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "log", max_bytes=4096)  # small: forces several rotations
    ids = [f"r{i}" for i in range(400)]

    def writer(chunk: list[str]) -> None:
        for rid in chunk:
            log.write({"request_id": rid, "pad": "x" * 40})

    threads = [threading.Thread(target=writer, args=(ids[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    got = [e["request_id"] for e in read_request_log(tmp_path / "log")]
    assert sorted(got) == sorted(ids)
    assert len(log_files(tmp_path / "log")) > 3  # rotated by size
    assert all(p.stat().st_size <= 4096 for p in log_files(tmp_path / "log"))
    assert log.commits < len(ids)  # concurrent writers shared fsyncs


def test_request_log_skips_a_torn_last_line_and_refuses_a_second_writer(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "log")
    log.write({"request_id": "a"})
    with pytest.raises(RequestLogError, match="in use by another server"):
        RequestLog(tmp_path / "log")
    other = open_server_log(tmp_path, "log", max_bytes=4096)  # falls back to log-<pid>
    assert other.directory.name.startswith("log-")
    other.write({"request_id": "b"})
    other.close()
    log.close()
    with (tmp_path / "log" / "requests.jsonl").open("ab") as fh:
        fh.write(json.dumps({"request_id": "torn"}).encode()[:-3])
    assert [e["request_id"] for e in read_request_log(tmp_path / "log")] == ["a"]
    assert sorted(e["request_id"] for e in read_request_logs(tmp_path)) == ["a", "b"]
    with pytest.raises(RequestLogError, match="closed"):
        log.append({"request_id": "late"})


# -- model thread -----------------------------------------------------------------------------
def test_worker_batches_concurrent_requests_and_keeps_results_apart() -> None:
    gen = EchoGenerator(delay_s=0.05)
    worker = ModelWorker(gen, max_batch_size=8, max_wait_s=0.02, max_queue=64)
    worker.start()
    futures = [worker.submit(f"p{i}", max_tokens=4) for i in range(24)]
    results = [f.result(10) for f in futures]
    worker.stop()
    assert [r.generation.text for r in results] == [f"echo:p{i}" for i in range(24)]
    assert max(gen.batches) == 8 and sum(gen.batches) == 24
    assert len(gen.batches) <= 5  # batched, not one call per request


def test_worker_groups_by_settings_and_runs_seeded_samples_alone() -> None:
    gen = EchoGenerator(delay_s=0.01)
    worker = ModelWorker(gen, max_batch_size=16, max_wait_s=0.05, max_queue=64)
    futures = [
        worker.submit("a", max_tokens=4),
        worker.submit("b", max_tokens=8),
        worker.submit("c", max_tokens=4),
        worker.submit("d", max_tokens=4, temperature=0.7, seed=1),
        worker.submit("e", max_tokens=4, temperature=0.7, seed=1),
    ]
    worker.start()  # everything is queued before the first batch is taken
    for f in futures:
        f.result(10)
    worker.stop()
    assert sorted(zip(gen.batches, gen.calls, strict=True)) == sorted(
        [(2, (4, 0.0, None)), (1, (8, 0.0, None)), (1, (4, 0.7, 1)), (1, (4, 0.7, 1))]
    )


def test_worker_queue_is_bounded_and_cancelled_requests_are_skipped() -> None:
    gen = EchoGenerator(delay_s=0.01)
    worker = ModelWorker(gen, max_batch_size=4, max_wait_s=0.0, max_queue=3)
    futures = [worker.submit(str(i), max_tokens=4) for i in range(3)]
    with pytest.raises(QueueFullError, match="3 requests are already waiting"):
        worker.submit("overflow", max_tokens=4)
    assert futures[1].cancel()
    worker.start()
    assert futures[0].result(10).generation.text == "echo:0"
    assert futures[2].result(10).generation.text == "echo:2"
    worker.stop()
    assert sum(gen.batches) == 2


def test_worker_hands_generator_errors_to_every_waiting_request() -> None:
    class Broken(EchoGenerator):
        def generate(self, prompts: Sequence[str], **kw: object) -> list[Generation]:
            raise ValueError("max_new_tokens does not fit")

    worker = ModelWorker(Broken(), max_batch_size=4, max_wait_s=0.01, max_queue=8)
    futures = [worker.submit("x", max_tokens=4) for _ in range(3)]
    worker.start()
    for f in futures:
        with pytest.raises(ValueError, match="does not fit"):
            f.result(10)
    worker.stop()


# -- engine -----------------------------------------------------------------------------------
def make_engine(tmp_path: Path, gen: EchoGenerator, **serving: object) -> Any:
    from loopline.config import ServingConfig
    from loopline.serving.engine import ServingEngine
    from loopline.serving.model_store import ServedModel

    config = ServingConfig.model_validate({"max_wait_ms": 1, **serving})
    model = ServedModel("m", "1", "0" * 64, tmp_path)
    engine = ServingEngine(config, model, gen, RequestLog(tmp_path / "log"))
    engine.start()
    return engine


def test_engine_times_out_caches_and_injects_faults(tmp_path: Path) -> None:
    import asyncio

    from loopline.serving.engine import ApiError, CompletionParams

    engine = make_engine(tmp_path, EchoGenerator(delay_s=0.3), request_timeout_s=0.05)
    with pytest.raises(ApiError) as slow:
        asyncio.run(engine.complete(CompletionParams("hi", 4), variant="stable"))
    assert slow.value.status == 504
    engine.stop()

    engine = make_engine(tmp_path / "b", EchoGenerator(delay_s=0.0), cache_size=8)
    first = asyncio.run(engine.complete(CompletionParams("hi", 4), variant="stable"))
    again = asyncio.run(engine.complete(CompletionParams("hi", 4), variant="stable"))
    sampled = asyncio.run(engine.complete(CompletionParams("hi", 4, 0.7), variant="stable"))
    assert (first.cache_hit, again.cache_hit, sampled.cache_hit) == (False, True, False)
    assert again.text == first.text and again.cost_usd == 0 and first.cost_usd > 0
    with pytest.raises(ApiError, match="max_tokens must be between 1 and 256"):
        asyncio.run(engine.complete(CompletionParams("hi", 999), variant="stable"))
    engine.stop()

    engine = make_engine(
        tmp_path / "c", EchoGenerator(0.0), cache_size=0, faults={"error_rate": 0.5, "seed": 1}
    )
    outcomes = []
    for _ in range(40):
        try:
            asyncio.run(engine.complete(CompletionParams("hi", 4), variant="stable"))
            outcomes.append(200)
        except ApiError as err:
            outcomes.append(err.status)
    assert set(outcomes) == {200, 500} and 10 <= outcomes.count(500) <= 30
    engine.stop()

    engine = make_engine(tmp_path / "d", EchoGenerator(0.0), faults={"garble_rate": 1.0})
    garbled = asyncio.run(engine.complete(CompletionParams("hi", 4), variant="stable"))
    assert garbled.text.startswith("sorry sorry")
    engine.stop()
