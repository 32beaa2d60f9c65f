"""The router's routing state (immutable) and validation of the values the admin API accepts.

A change builds a new :class:`RouterState` and swaps it in with one assignment, so a request
sees either the old or the new state, never a mix.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any
from urllib.parse import urlsplit


class InvalidValueError(ValueError):
    """A bad admin value; the message names the field."""


@dataclass(frozen=True)
class RouterState:
    """Where live traffic goes: ``candidate_weight`` % to the candidate, the rest to stable;
    ``mirror_percent`` % of requests are also copied to the candidate (shadow)."""

    stable: str
    candidate: str | None = None
    candidate_weight: float = 0.0
    mirror_percent: float = 0.0
    generation: int = 0

    def __post_init__(self) -> None:
        check_url("stable", self.stable)
        if self.candidate is not None:
            check_url("candidate", self.candidate)
        check_percent("candidate_weight", self.candidate_weight)
        check_percent("mirror_percent", self.mirror_percent)
        if self.candidate is None:
            if self.candidate_weight > 0:
                raise InvalidValueError("candidate_weight: no candidate is set")
            if self.mirror_percent > 0:
                raise InvalidValueError("mirror_percent: no candidate is set")
        if self.candidate_weight > 0 and self.mirror_percent > 0:
            raise InvalidValueError(
                "mirror_percent and candidate_weight cannot both be positive "
                "(mirroring keeps all live traffic on stable); set one to 0 first"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RouterState:
        return cls(
            stable=data["stable"],
            candidate=data.get("candidate"),
            candidate_weight=float(data.get("candidate_weight", 0.0)),
            mirror_percent=float(data.get("mirror_percent", 0.0)),
            generation=int(data.get("generation", 0)),
        )

    def changed(self, **changes: Any) -> RouterState:
        """A copy with ``changes`` applied and the generation incremented."""
        return replace(self, generation=self.generation + 1, **changes)


def check_url(field: str, value: object) -> str:
    """``value`` if it is an absolute http(s) URL with a host, else :class:`InvalidValueError`."""
    if not isinstance(value, str) or not value:
        raise InvalidValueError(f"{field}: expected an http(s) URL string, got {value!r}")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise InvalidValueError(f"{field}: not a valid URL {value!r} ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidValueError(f"{field}: expected an http(s) URL with a host, got {value!r}")
    if parts.query or parts.fragment:
        raise InvalidValueError(f"{field}: a backend URL takes no query or fragment, got {value!r}")
    return value


def check_percent(field: str, value: object) -> float:
    """``value`` as a float if it is a finite number within [0, 100]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValueError(f"{field}: expected a number within [0, 100], got {value!r}")
    out = float(value)
    if not math.isfinite(out) or not 0.0 <= out <= 100.0:
        raise InvalidValueError(f"{field}: must be within [0, 100], got {value!r}")
    return out
