"""Fixtures of the router tests: real backend and router processes on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from loopline.routing.process import stop_router
from tests.routing.router_harness import (
    CANDIDATE_REPLY,
    STABLE_REPLY,
    Backend,
    RouterProc,
    launch_router,
    spawn_backend,
    stop_backend,
    wait_ready,
)


@pytest.fixture(scope="session")
def routing_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("routing")


@pytest.fixture(scope="session")
def backends(routing_tmp: Path) -> Iterator[tuple[Backend, Backend]]:
    """A stable and a candidate backend shared by the session (never killed)."""
    pair = (
        spawn_backend("stable", STABLE_REPLY, routing_tmp),
        spawn_backend("candidate", CANDIDATE_REPLY, routing_tmp),
    )
    try:
        yield pair
    finally:
        for b in pair:
            stop_backend(b)


@pytest.fixture(scope="session")
def shared_router(routing_tmp: Path, backends: tuple[Backend, Backend]) -> Iterator[RouterProc]:
    """One router process in front of :func:`backends`, shared by the session."""
    stable, candidate = backends
    router = launch_router(routing_tmp, stable.url, candidate.url)
    try:
        for b in backends:
            wait_ready(b)
        yield router
    finally:
        router.admin.close()
        stop_router(router.proc)


@pytest.fixture
def router(shared_router: RouterProc, backends: tuple[Backend, Backend]) -> RouterProc:
    """The shared router reset to stable + candidate, no weight, no mirror, healthy backends."""
    stable, candidate = backends
    for b in backends:
        b.control(None)
    shared_router.admin.switch(stable.url, candidate.url)
    return shared_router


@pytest.fixture
def backend_factory(routing_tmp: Path) -> Iterator[Callable[[str, str], Backend]]:
    """Start extra backends the test may kill; all are stopped afterwards."""
    started: list[Backend] = []

    def make(name: str, reply: str) -> Backend:
        b = wait_ready(spawn_backend(name, reply, routing_tmp))
        started.append(b)
        return b

    yield make
    for b in started:
        stop_backend(b)
