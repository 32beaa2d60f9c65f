"""One dedicated model thread with dynamic batching.

Every model call runs on this one thread: torch keeps one OpenMP pool warm, and requests that
arrive within ``max_wait_s`` of the first waiting one are decoded together (up to
``max_batch_size``), which multiplies throughput on a CPU. The queue is bounded: when
``max_queue`` requests wait, :meth:`ModelWorker.submit` raises :class:`QueueFullError` and the
server answers 503 with ``Retry-After``.

A batch closes when it is full, or after ``max_wait_s`` without a new arrival while nothing
is on its way through the HTTP layer (``pending()``) and at least as many requests wait as
the previous batch held, and at the latest ``max_delay_s`` after its first request arrived
(see :meth:`ModelWorker._take`).

Requests in one batch share ``max_new_tokens`` and temperature, so a batch is split into
groups of equal settings; a seeded sampled request runs alone so that its sample does not
depend on its neighbours. A caller that gave up (timeout) cancels its future and the worker
skips it if it has not started.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from loopline.models.base import Generation, Generator


class QueueFullError(RuntimeError):
    """The model queue is full; retry later."""


@dataclass(frozen=True)
class JobResult:
    generation: Generation
    batch_size: int
    queue_s: float


@dataclass
class _Job:
    prompt: str
    max_tokens: int
    temperature: float
    seed: int | None
    enqueued: float
    future: Future[JobResult] = field(default_factory=Future)

    @property
    def group(self) -> tuple[int, float, int | None, int]:
        solo = id(self) if self.seed is not None and self.temperature > 0 else 0
        return (self.max_tokens, self.temperature, self.seed, solo)


BatchObserver = Callable[[int, float], None]
"""Called after each model call with (batch size, seconds)."""


class ModelWorker:
    def __init__(
        self,
        generator: Generator,
        *,
        max_batch_size: int = 32,
        max_wait_s: float = 0.005,
        max_queue: int = 256,
        max_delay_s: float | None = None,
        pending: Callable[[], int] = lambda: 0,
        on_batch: BatchObserver | None = None,
    ) -> None:
        self.generator = generator
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.max_delay_s = max_delay_s if max_delay_s is not None else 10 * max_wait_s
        self.pending = pending
        self.on_batch = on_batch
        self._queue: deque[_Job] = deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="loopline-model", daemon=True)
        self.batches = 0
        self._last_end = 0.0
        self._last_size = 0
        self.running = 0  # requests in the batch being decoded

    def start(self) -> None:
        self._thread.start()

    @property
    def depth(self) -> int:
        return len(self._queue)

    def submit(
        self, prompt: str, *, max_tokens: int, temperature: float = 0.0, seed: int | None = None
    ) -> Future[JobResult]:
        job = _Job(prompt, max_tokens, temperature, seed, time.perf_counter())
        with self._cv:
            if self._stopping:
                raise QueueFullError("the server is shutting down")
            if len(self._queue) >= self.max_queue:
                raise QueueFullError(f"{len(self._queue)} requests are already waiting")
            self._queue.append(job)
            self._cv.notify()
        return job.future

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the queued work, then stop the thread."""
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the model thread ---------------------------------------------------------------------
    def _take(self) -> list[_Job] | None:
        with self._cv:
            while not self._queue and not self._stopping:
                self._cv.wait()
            if not self._queue:
                return None
            # A batch closes when it is full, or when no request arrived for max_wait_s (counted
            # from the later of the last arrival and the end of the previous batch) and no
            # request is on its way through the HTTP layer (``pending``: being parsed, or
            # being answered, whose client is likely to send its next one at once). Without
            # that, closed-loop clients split into cohorts that alternate in small batches.
            # ``max_delay_s`` bounds the wait of the first request in any case.
            first = self._queue[0].enqueued
            while len(self._queue) < self.max_batch_size and not self._stopping:
                now = time.perf_counter()
                if now >= first + self.max_delay_s:
                    break
                quiet_until = max(self._queue[-1].enqueued, self._last_end) + self.max_wait_s
                if now < quiet_until:
                    self._cv.wait(min(quiet_until, first + self.max_delay_s) - now)
                elif self.pending() > 0 or len(self._queue) < self._last_size:
                    # Requests are on their way, or fewer than the previous batch's clients
                    # are back yet: closed-loop clients return within a few ms of each other.
                    self._cv.wait(0.001)
                else:
                    break
            n = min(len(self._queue), self.max_batch_size)
            return [self._queue.popleft() for _ in range(n)]

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if jobs is None:
                return
            live = [j for j in jobs if j.future.set_running_or_notify_cancel()]
            self.running = len(live)
            groups: dict[tuple[int, float, int | None, int], list[_Job]] = {}
            for job in live:
                groups.setdefault(job.group, []).append(job)
            for group in groups.values():
                self._generate(group)
            self._last_end = time.perf_counter()
            self._last_size = len(live)
            self.running = 0

    def _generate(self, group: list[_Job]) -> None:
        first = group[0]
        started = time.perf_counter()
        try:
            generations = self.generator.generate(
                [j.prompt for j in group],
                max_new_tokens=first.max_tokens,
                temperature=first.temperature,
                seed=first.seed,
            )
        except Exception as exc:  # handed to every waiting request
            for job in group:
                job.future.set_exception(exc)
            return
        elapsed = time.perf_counter() - started
        self.batches += 1
        if self.on_batch is not None:
            self.on_batch(len(group), elapsed)
        for job, gen in zip(group, generations, strict=True):
            job.future.set_result(JobResult(gen, len(group), started - job.enqueued))
