"""The router process: the data port and the admin port on one event loop.

    python -m loopline.routing --port P --admin-port A --stable URL [--candidate URL]
        [--candidate-weight PCT] [--mirror-percent PCT] [--stats-capacity N]
        [--state-file PATH] [--timeout S] [--max-mirrors N] [--host 127.0.0.1]

Prints one ``loopline-router ready ...`` line once both ports accept connections; SIGTERM or
SIGINT stops both servers gracefully (exit status 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Generator, Sequence
from pathlib import Path

import uvicorn

from loopline.routing.admin import build_admin_app
from loopline.routing.proxy import ProxyApp, Router
from loopline.routing.state import InvalidValueError, RouterState

READY_PREFIX = "loopline-router ready"


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the process (two servers share it)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loopline.routing", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="bind address of both ports")
    p.add_argument("--port", type=int, required=True, help="data port (0: any free port)")
    p.add_argument("--admin-port", type=int, required=True, help="admin API port")
    p.add_argument("--stable", required=True, help="base URL of the stable backend")
    p.add_argument("--candidate", default=None, help="base URL of the candidate backend")
    p.add_argument("--candidate-weight", type=float, default=0.0, help="percent to candidate")
    p.add_argument("--mirror-percent", type=float, default=0.0, help="percent mirrored")
    p.add_argument("--stats-capacity", type=int, default=200_000, help="records kept")
    p.add_argument("--state-file", type=Path, default=None, help="JSON file of the state")
    p.add_argument(
        "--plan-file", type=Path, default=None, help="serving plan (experiments) to route by"
    )
    p.add_argument("--timeout", type=float, default=60.0, help="upstream timeout in seconds")
    p.add_argument("--max-mirrors", type=int, default=64, help="mirrors in flight at most")
    p.add_argument("--max-connections", type=int, default=512, help="upstream pool size")
    p.add_argument("--log-level", default="warning", help="uvicorn log level")
    return p


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it Nagle + delayed ACK add ~40 ms to every response
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _config(app: object, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        lifespan="off",
        access_log=False,
        log_level=log_level,
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=5,
        backlog=2048,
    )


async def serve(args: argparse.Namespace) -> None:
    """Run the router until SIGTERM/SIGINT."""
    state = RouterState(
        stable=args.stable,
        candidate=args.candidate,
        candidate_weight=args.candidate_weight,
        mirror_percent=args.mirror_percent,
    )
    data_sock = _bind(args.host, args.port)
    admin_sock = _bind(args.host, args.admin_port)
    port, admin_port = data_sock.getsockname()[1], admin_sock.getsockname()[1]
    router = Router(
        state,
        timeout=args.timeout,
        stats_capacity=args.stats_capacity,
        max_mirrors=args.max_mirrors,
        max_connections=args.max_connections,
        state_file=args.state_file,
        plan_file=args.plan_file,
        state_extra={"pid": os.getpid(), "port": port, "admin_port": admin_port},
    )
    servers = [
        _Server(_config(ProxyApp(router), args.log_level)),
        _Server(_config(build_admin_app(router), args.log_level)),
    ]

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)

    await router.start()
    try:
        tasks = [
            asyncio.create_task(servers[0].serve(sockets=[data_sock])),
            asyncio.create_task(servers[1].serve(sockets=[admin_sock])),
        ]
        while not all(s.started for s in servers):
            if any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.01)
        else:
            print(
                f"{READY_PREFIX} data=http://{args.host}:{port} "
                f"admin=http://{args.host}:{admin_port} pid={os.getpid()}",
                flush=True,
            )
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        stop()  # one server ending (signal or failure) ends the other
        await asyncio.gather(*tasks)
    finally:
        await router.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    try:
        asyncio.run(serve(args))
    except (InvalidValueError, OSError) as exc:
        print(f"loopline-router: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0
