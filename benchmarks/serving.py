"""Benchmark the model server against an in-process generation loop on the same model.

    python benchmarks/serving.py [--model-dir DIR] [--requests N] [--max-tokens N] [--quick]

Everything is measured in this run on this machine:

* in-process: ``Generator.generate`` called directly on batches of ``c`` prompts (c = 1, 8, 32),
  the best a server could do with that concurrency;
* server: ``loopline serve`` (a real process, cache off) under ``c`` concurrent closed-loop
  clients sending ``/v1/completions`` over keep-alive connections (a raw asyncio client, so
  that the client does not eat the CPU the server needs); throughput as a fraction of the
  in-process figure (target >= 0.85 at c = 32);
* batching gain: the same server at c = 8 with ``max_batch_size=1`` versus the default
  (target >= 3x);
* cache hits: one repeated request against a server with the cache on; p50 of the server-side
  latency (what the request log records, target <= 2 ms) and of the client's round trip.

Without ``--model-dir`` a model of the project's default shape (params.yaml) is trained first
on generated tickets (about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from loopline.config import Settings, load_settings  # noqa: E402
from loopline.routing.process import free_port  # noqa: E402
from loopline.runtime import configure_environment  # noqa: E402

CONCURRENCY = (1, 8, 32)
THROUGHPUT_TARGET = 0.85
CACHE_TARGET_MS = 2.0
BATCHING_TARGET = 3.0


def make_project(workdir: Path) -> Path:
    root = workdir / "project"
    shutil.copytree(ROOT / "configs", root / "configs")
    shutil.copy2(ROOT / "params.yaml", root / "params.yaml")
    return root


def train_default_model(settings: Settings, out: Path) -> Path:
    from loopline.data.prepare import generate_raw, prepare, prepared_dir
    from loopline.training.trainer import train_model

    generate_raw(settings)
    prepare(settings)
    train_model(settings, prepared_dir(settings), out)
    return out


def prompts_for(n: int) -> list[str]:
    from loopline.data.corpus import generate_tickets
    from loopline.data.pii import redact_text

    cfg = load_settings(ROOT, env="local").data.model_copy(update={"n_tickets": max(n, 50)})
    return [redact_text(str(p)) for p in generate_tickets(cfg)["prompt"].head(n)]


def in_process(model_dir: Path, prompts: list[str], batch: int, max_tokens: int) -> float:
    """Requests per second of direct batched generation."""
    from loopline.models.base import load_generator

    gen = load_generator(str(model_dir), max_batch_size=batch, num_threads=1)
    gen.generate(prompts[:batch], max_new_tokens=max_tokens)  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(prompts), batch):
        gen.generate(prompts[i : i + batch], max_new_tokens=max_tokens)
    return len(prompts) / (time.perf_counter() - t0)


class Server:
    def __init__(self, project: Path, model_dir: Path, checksum: str, *sets: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.request_log = Path(tempfile.mkdtemp(prefix="bench-requests-"))
        self.log_path = self.request_log.parent / f"serve-{self.port}.log"
        cmd = [
            sys.executable, "-m", "loopline.cli", "serve", "--project", str(project),
            "--model-dir", str(model_dir), "--checksum", checksum,
            "--port", str(self.port), "--request-log", str(self.request_log),
        ]  # fmt: skip
        for item in sets:
            cmd += ["--set", item]
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 180
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server not ready")
            time.sleep(0.2)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)
        shutil.rmtree(self.request_log, ignore_errors=True)
        self.log_path.unlink(missing_ok=True)


async def _load(url: str, prompts: list[str], concurrency: int, max_tokens: int) -> float:
    """Requests per second of ``concurrency`` closed-loop clients over keep-alive connections.

    The clients are raw asyncio HTTP/1.1 connections (``loopline.routing.loadgen``, ~0.3 ms
    of CPU per request): on two cores a full HTTP client library (~1.5 ms per request) would
    itself become the bottleneck of the measurement."""
    from loopline.routing.loadgen import RawConnection

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    probe = RawConnection(host, port)
    model = (await probe.request("GET", "/v1/models")).json()["data"][0]["id"]
    await probe.close()

    def body(prompt: str, tokens: int) -> bytes:
        return json.dumps({"model": model, "prompt": prompt, "max_tokens": tokens}).encode()

    async def run(items: list[bytes]) -> None:
        queue = iter(items)

        async def worker() -> None:
            conn = RawConnection(host, port)
            try:
                for payload in queue:
                    reply = await conn.request("POST", "/v1/completions", payload)
                    if reply.status != 200:
                        raise RuntimeError(f"status {reply.status}: {reply.body[:200]!r}")
            finally:
                await conn.close()

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    await run([body(p, 4) for p in prompts[: 2 * concurrency]])  # warm-up
    t0 = time.perf_counter()
    await run([body(p, max_tokens) for p in prompts])
    return len(prompts) / (time.perf_counter() - t0)


def served(server: Server, prompts: list[str], concurrency: int, max_tokens: int) -> float:
    return asyncio.run(_load(server.url, prompts, concurrency, max_tokens))


def cache_hits(server: Server, n: int) -> tuple[float, float]:
    """p50 of server-side and client round-trip latency of repeated (cached) requests, ms."""
    from loopline.routing.loadgen import RawConnection
    from loopline.serving.request_log import read_request_log

    async def run() -> list[float]:
        conn = RawConnection("127.0.0.1", server.port)
        model = (await conn.request("GET", "/v1/models")).json()["data"][0]["id"]
        body = json.dumps({"model": model, "prompt": "where is my parcel", "max_tokens": 32})
        await conn.request("POST", "/v1/completions", body.encode())  # fills the cache
        rtt = []
        for _ in range(n):
            reply = await conn.request("POST", "/v1/completions", body.encode())
            rtt.append(reply.latency_ms)
        await conn.close()
        return rtt

    rtt = asyncio.run(run())
    hits = [e["latency_ms"] for e in read_request_log(server.request_log) if e["cache_hit"]]
    return statistics.median(hits), statistics.median(rtt)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--requests", type=int, default=192)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=5, help="paired passes (c > 1)")
    parser.add_argument("--quick", action="store_true", help="fewer requests (smoke run)")
    parser.add_argument(
        "--model-process",
        action="store_true",
        help="run the model in a child process of the server (serving.model_process=true)",
    )
    args = parser.parse_args()
    configure_environment()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    n = 64 if args.quick else args.requests
    work = Path(tempfile.mkdtemp(prefix="loopline-bench-serving-"))
    try:
        project = make_project(work)
        settings = load_settings(project, env="local")
        model_dir = args.model_dir
        if model_dir is None:
            print("training a model of the default shape on generated tickets ...", flush=True)
            t0 = time.perf_counter()
            model_dir = train_default_model(settings, work / "model")
            print(f"  trained in {time.perf_counter() - t0:.0f} s", flush=True)
        from loopline.registry.lineage import model_fingerprint

        checksum = model_fingerprint(model_dir)
        prompts = prompts_for(n)
        rows: list[dict[str, Any]] = []
        mode = f"serving.model_process={'true' if args.model_process else 'false'}"
        server = Server(project, model_dir, checksum, "serving.cache_size=0", mode)
        try:
            for c in CONCURRENCY:
                # Paired passes, in-process then server, back to back; the ratio of each pair,
                # then medians: other load on a small machine moves single passes by +-20 %,
                # and a pair sees the same load. c = 1 is slow and steady: fewer requests.
                batch = prompts[: max(48, n // 4)] if c == 1 else prompts
                pairs = [
                    (
                        in_process(model_dir, batch, c, args.max_tokens),
                        served(server, batch, c, args.max_tokens),
                    )
                    for _ in range(1 if c == 1 else args.repeats)
                ]
                base = statistics.median(p[0] for p in pairs)
                got = statistics.median(p[1] for p in pairs)
                ratio = statistics.median(p[1] / p[0] for p in pairs)
                rows.append({"c": c, "in_process": base, "server": got, "ratio": ratio})
            batched_8 = next(r["server"] for r in rows if r["c"] == 8)
        finally:
            server.stop()
        unbatched = Server(
            project, model_dir, checksum, "serving.cache_size=0", "serving.max_batch_size=1", mode
        )
        try:
            unbatched_8 = served(unbatched, prompts, 8, args.max_tokens)
        finally:
            unbatched.stop()
        cached = Server(project, model_dir, checksum, "serving.cache_size=128", mode)
        try:
            hit_server_ms, hit_rtt_ms = cache_hits(cached, 200)
        finally:
            cached.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    where = "a child process of the server" if args.model_process else "a thread of the server"
    print(
        f"\nserving benchmark: {n} requests (c=1: {max(48, n // 4)}), max_tokens "
        f"{args.max_tokens}, 1 torch thread, median of {args.repeats} paired passes,"
    )
    print(f"model on {where}")
    print(f"{'concurrency':>11} | {'in-process req/s':>16} | {'server req/s':>12} | ratio (median)")
    print(f"{'-' * 11}-+-{'-' * 16}-+-{'-' * 12}-+------")
    for r in rows:
        print(f"{r['c']:>11} | {r['in_process']:>16.1f} | {r['server']:>12.1f} | {r['ratio']:.2f}")
    gain = batched_8 / unbatched_8
    ratio_32 = rows[-1]["ratio"]
    print()
    print(
        f"batching gain at c=8: {batched_8:.1f} vs {unbatched_8:.1f} req/s unbatched = {gain:.2f}x"
    )
    print(f"cache hit p50: {hit_server_ms:.2f} ms in the server, {hit_rtt_ms:.2f} ms round trip")
    print()
    checks = [
        (f"throughput ratio at c=32 >= {THROUGHPUT_TARGET}", ratio_32 >= THROUGHPUT_TARGET),
        (f"cache-hit p50 <= {CACHE_TARGET_MS} ms", hit_server_ms <= CACHE_TARGET_MS),
        (f"batching gain >= {BATCHING_TARGET}x", gain >= BATCHING_TARGET),
    ]
    for label, ok in checks:
        print(f"  {'met   ' if ok else 'MISSED'} {label}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
