"""Deterministic hashing of unit ids into buckets.

A unit (user, session, conversation, API key) is mapped to one of ``n_buckets`` buckets by
hashing the UTF-8 bytes of ``"<len(salt)>:<salt>:<unit_id>"`` with BLAKE2b (64-bit digest)
and reducing the big-endian integer modulo ``n_buckets``. The length prefix makes the
encoding unambiguous (salt ``"a:b"`` with id ``"c"`` differs from salt ``"a"`` with id
``"b:c"``).

Properties the assignment and flag code rely on:

* **Deterministic and sticky**: the same (salt, unit) always gives the same bucket, on any
  machine and in any process (Python's ``hash()`` is randomised per process and is never
  used).
* **Uniform**: BLAKE2b output is indistinguishable from uniform; the modulo bias of reducing
  a 64-bit integer to 10,000 buckets is below 10⁻¹⁵.
* **Independent across salts**: buckets under two different salts behave like independent
  uniform draws, so experiments with different salts are not correlated.

The vectorised :func:`buckets` hashes each *distinct* id once (hashing is done by the C
implementation in :mod:`hashlib`; the digests are decoded in one ``np.frombuffer`` call) and
broadcasts the result back to the input order.
"""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import blake2b
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from loopline.experiments._common import IntArray

UnitIds = Iterable[str | int] | npt.NDArray[Any]
"""Unit ids accepted by the vectorised functions: any iterable of str/int, or an array."""

DEFAULT_BUCKETS = 10_000
"""Bucket count used by experiments and flags unless configured otherwise (0.01 % steps)."""


def _key(salt: str, unit_id: str) -> bytes:
    return f"{len(salt)}:{salt}:{unit_id}".encode()


def hash64(salt: str, unit_id: str | int) -> int:
    """The unsigned 64-bit BLAKE2b hash of ``unit_id`` under ``salt``."""
    digest = blake2b(_key(salt, str(unit_id)), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def bucket(salt: str, unit_id: str | int, n_buckets: int = DEFAULT_BUCKETS) -> int:
    """The bucket in ``[0, n_buckets)`` of one unit under ``salt``."""
    if n_buckets < 1:
        raise ValueError(f"n_buckets must be positive, got {n_buckets}")
    return hash64(salt, unit_id) % n_buckets


def as_id_array(unit_ids: UnitIds) -> npt.NDArray[Any]:
    """Unit ids as a one-dimensional array (no copy when already an array)."""
    ids = unit_ids if isinstance(unit_ids, np.ndarray) else np.asarray(list(unit_ids))
    if ids.ndim != 1:
        raise ValueError(f"unit_ids must be one-dimensional, got shape {ids.shape}")
    return ids


def buckets(salt: str, unit_ids: UnitIds, n_buckets: int = DEFAULT_BUCKETS) -> IntArray:
    """Buckets of many units at once; ``buckets(s, ids)[i] == bucket(s, ids[i])``.

    Integer ids hash as their decimal string, exactly as in :func:`bucket`.
    """
    if n_buckets < 1:
        raise ValueError(f"n_buckets must be positive, got {n_buckets}")
    ids = as_id_array(unit_ids)
    if ids.size == 0:
        return np.zeros(0, dtype=np.int64)
    codes, uniques = pd.factorize(ids)
    # Hash the salt prefix once and extend a copy per id: same digest as hashing the whole key.
    prefix = blake2b(_key(salt, ""), digest_size=8)

    def digest(unit_id: object) -> bytes:
        h = prefix.copy()
        h.update(str(unit_id).encode())
        return h.digest()

    digests = b"".join(map(digest, uniques.tolist()))
    hashed = np.frombuffer(digests, dtype=">u8").astype(np.uint64)
    per_unique = (hashed % np.uint64(n_buckets)).astype(np.int64)
    return np.asarray(per_unique[codes], dtype=np.int64)
