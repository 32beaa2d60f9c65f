"""Peak resident memory of a benchmark run, shared by the benchmarks that report it.

``PeakRss().start()`` takes the baseline after a garbage collection and ``malloc_trim`` (so
reused heap pages count as new memory) and resets the kernel's high-water mark through
``/proc/self/clear_refs``; ``stop()`` returns the MB above the baseline from ``VmHWM``. Where
resetting is not allowed, RSS is sampled every 5 ms instead (``method`` says which).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import threading


def status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def release_free_heap() -> None:
    """Give freed heap pages back to the OS, so that reusing them counts as new memory."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakRss:
    """Peak RSS above the baseline at start(): the kernel's reset high-water mark, or sampling."""

    def __init__(self) -> None:
        self.baseline = 0
        self._sampled = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.method = "VmHWM reset via /proc/self/clear_refs"

    def start(self) -> None:
        gc.collect()
        release_free_heap()
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            self.method = "RSS sampled every 5 ms"
            self._thread = threading.Thread(target=self._sample, daemon=True)
        self.baseline = status_kb("VmRSS")
        self._sampled = self.baseline
        if self._thread is not None:
            self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._sampled = max(self._sampled, status_kb("VmRSS"))

    def stop(self) -> float:
        """MB above the baseline."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            peak = max(self._sampled, status_kb("VmRSS"))
        else:
            peak = status_kb("VmHWM")
        return max(0, peak - self.baseline) / 1024
