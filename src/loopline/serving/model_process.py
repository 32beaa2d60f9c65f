"""Run the model in a child process: a :class:`Generator` whose ``generate`` is a pipe call.

The model thread (:mod:`loopline.serving.batcher`) still forms the batches; it hands each one
to the child and blocks on the pipe, which releases the GIL. The child has its own
interpreter, so the model's Python overhead (a small model's forward pass is mostly Python)
no longer competes with the HTTP event loop for one GIL. Measured here: see
``benchmarks/serving.py``.

The child is started with ``spawn`` (no fork of a process with threads), loads the model
itself and answers ``("generate", prompts, kwargs)`` with ``("ok", generations)`` or
``("error", type name, message)``; a ``ValueError`` in the child is raised as ``ValueError``
here so that input errors stay 4xx. If the child dies, every later call raises
``RuntimeError`` and ``/readyz`` reports it.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from loopline.models.base import Generation


def _serve(conn: Connection, spec: str, max_batch_size: int, num_threads: int | None) -> None:
    from loopline.models.base import load_generator
    from loopline.runtime import configure_environment

    configure_environment()
    try:
        generator = load_generator(spec, max_batch_size=max_batch_size, num_threads=num_threads)
    except Exception as exc:
        conn.send(("error", type(exc).__name__, str(exc)))
        return
    conn.send(("ready", generator.name))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        _, prompts, kwargs = message
        try:
            conn.send(("ok", generator.generate(prompts, **kwargs)))
        except Exception as exc:
            conn.send(("error", type(exc).__name__, str(exc)))


class ProcessGenerator:
    """A :class:`~loopline.models.base.Generator` running in a child process."""

    def __init__(
        self, spec: str, *, max_batch_size: int, num_threads: int | None, start_timeout: float = 300
    ) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_serve,
            args=(child, spec, max_batch_size, num_threads),
            name="loopline-model-process",
            daemon=True,
        )
        self._proc.start()
        child.close()
        self._lock = threading.Lock()
        if not self._conn.poll(start_timeout):
            self.close()
            raise RuntimeError(f"model process did not load {spec} within {start_timeout:g} s")
        reply = self._conn.recv()
        if reply[0] != "ready":
            self.close()
            raise ValueError(f"model process cannot load {spec}: {reply[1]}: {reply[2]}")
        self.name: str = f"{reply[1]} (model process)"

    @property
    def alive(self) -> bool:
        return self._proc.is_alive()

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[Generation]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "seed": seed,
        }
        with self._lock:
            if not self._proc.is_alive():
                raise RuntimeError(f"the model process exited ({self._proc.exitcode})")
            try:
                self._conn.send(("generate", list(prompts), kwargs))
                reply = self._conn.recv()
            except (EOFError, OSError) as exc:
                raise RuntimeError(f"the model process is gone: {exc}") from exc
        if reply[0] == "ok":
            result: list[Generation] = reply[1]
            return result
        _, kind, message = reply
        if kind in ("ValueError", "TypeError"):
            raise ValueError(message)
        raise RuntimeError(f"model process: {kind}: {message}")

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._conn.send(None)
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        self._conn.close()
