"""An exact-match response cache: LRU with a time to live, keyed by everything that shapes
the reply (model version, endpoint, prompt, max_tokens, temperature, seed, stop).

Only deterministic requests are cached (``temperature == 0``, or a fixed ``seed``); a sampled
request without a seed must not get someone else's sample.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

V = TypeVar("V")


def cache_key(**parts: Any) -> str:
    """A stable digest of ``parts`` (JSON with sorted keys)."""
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResponseCache(Generic[V]):
    """Thread-safe LRU of at most ``size`` entries, each valid for ``ttl_s`` seconds.

    ``size == 0`` disables the cache; ``ttl_s == 0`` means entries never expire.
    """

    def __init__(
        self, size: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if size < 0 or ttl_s < 0:
            raise ValueError("cache size and ttl must be >= 0")
        self.size = size
        self.ttl_s = ttl_s
        self._clock = clock
        self._data: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.size > 0

    def get(self, key: str) -> V | None:
        if not self.size:
            return None
        now = self._clock()
        with self._lock:
            item = self._data.get(key)
            if item is None or (self.ttl_s and now - item[0] > self.ttl_s):
                if item is not None:
                    del self._data[key]
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return item[1]

    def put(self, key: str, value: V) -> None:
        if not self.size:
            return
        with self._lock:
            self._data[key] = (self._clock(), value)
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
