"""Benchmark the built-in traffic router against the fake OpenAI backend.

    python benchmarks/routing.py [--requests N] [--split-requests N]

In one run, with real processes on 127.0.0.1 (the router process between a raw HTTP/1.1
load generator and ``loopline.routing.fakebackend`` processes):

* split accuracy: candidate share at 5 / 25 / 50 % over ``--split-requests`` requests
  (counted from the ``x-loopline-arm`` reply headers and from the router's stats);
* added latency and throughput: p50 / p99 latency and requests/s at concurrency 1 and 16,
  direct to the backend versus through the router (weight 0), and their ratios.

The load generator (``loopline.routing.loadgen``) is deliberately cheap so that on a small
machine it does not compete with the router for CPU; all processes share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from loopline.routing.client import RouterAdmin
from loopline.routing.loadgen import run_load
from loopline.routing.process import free_port, start_router, stop_router

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "where is my refund"}]}


def start_backend(name: str, log_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with (log_dir / f"{name}.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "loopline.routing.fakebackend",
                "--port",
                str(port),
                "--name",
                name,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/v1/models", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"backend {name} did not start")


def measure(url: str, n: int, concurrency: int) -> dict[str, float]:
    asyncio.run(run_load(url, min(200, n), concurrency=concurrency, payload=CHAT))  # warm up
    replies, elapsed = asyncio.run(run_load(url, n, concurrency=concurrency, payload=CHAT))
    bad = sum(r.status != 200 for r in replies)
    if bad:
        raise RuntimeError(f"{bad} failed requests against {url}")
    lat = np.array([r.latency_ms for r in replies])
    return {
        "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)),
        "rps": n / elapsed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per latency measurement")
    parser.add_argument("--split-requests", type=int, default=2000, help="per split weight")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="loopline-routing-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    router = None
    try:
        stable_proc, stable = start_backend("stable", tmp)
        candidate_proc, candidate = start_backend("candidate", tmp)
        procs += [stable_proc, candidate_proc]
        port, admin_port = free_port(), free_port()
        router = start_router(port, admin_port, stable, candidate, log_path=tmp / "router.log")
        router_url = f"http://127.0.0.1:{port}"
        admin = RouterAdmin(f"http://127.0.0.1:{admin_port}")

        print(f"Split accuracy ({args.split_requests} requests each, concurrency 8)")
        print(f"{'weight %':>9} {'candidate':>10} {'share %':>8} {'error pp':>9} {'stats':>6}")
        for weight in (5.0, 25.0, 50.0):
            admin.set_weight(weight)
            since = time.time()
            replies, _ = asyncio.run(
                run_load(router_url, args.split_requests, concurrency=8, payload=CHAT)
            )
            n_cand = sum(r.headers.get("x-loopline-arm") == "candidate" for r in replies)
            share = 100.0 * n_cand / len(replies)
            recorded = len(admin.stats(since, arms=("candidate",))["candidate"])
            print(
                f"{weight:>9.1f} {n_cand:>10d} {share:>8.2f} {share - weight:>+9.2f} {recorded:>6d}"
            )
        admin.set_weight(0)

        print(f"\nLatency and throughput ({args.requests} requests each, chat completions)")
        header = (
            f"{'conc':>4} {'path':>7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}   "
            f"{'added p50':>9} {'added p99':>9} {'rps ratio':>9}"
        )
        print(header)
        for concurrency in (1, 16):
            direct = measure(stable, args.requests, concurrency)
            routed = measure(router_url, args.requests, concurrency)
            for name, m in (("direct", direct), ("router", routed)):
                line = (
                    f"{concurrency:>4} {name:>7} {m['p50']:>8.2f} {m['p99']:>8.2f} {m['rps']:>8.0f}"
                )
                if name == "router":
                    line += (
                        f"   {routed['p50'] - direct['p50']:>+9.2f} "
                        f"{routed['p99'] - direct['p99']:>+9.2f} "
                        f"{routed['rps'] / direct['rps']:>9.2f}"
                    )
                print(line)
        admin.close()
    finally:
        if router is not None:
            stop_router(router)
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
