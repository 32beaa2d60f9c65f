"""A small synchronous client of the router's admin API."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from loopline.routing.state import RouterState
from loopline.routing.stats import ARMS

__all__ = ["ArmRecords", "RouterAdmin", "RouterError", "RouterState"]


class RouterError(RuntimeError):
    """An admin call failed; the message names the operation and the router's reason."""


@dataclass(frozen=True, eq=False)
class ArmRecords:
    """One arm's request records, oldest first (``quality`` is NaN where there was none)."""

    t: np.ndarray
    ok: np.ndarray
    status: np.ndarray
    latency_ms: np.ndarray
    quality: np.ndarray

    def __len__(self) -> int:
        return len(self.t)

    @classmethod
    def from_json(cls, data: dict[str, list[Any]]) -> ArmRecords:
        return cls(
            t=np.asarray(data["t"], dtype=np.float64),
            ok=np.asarray(data["ok"], dtype=np.bool_),
            status=np.asarray(data["status"], dtype=np.int64),
            latency_ms=np.asarray(data["latency_ms"], dtype=np.float64),
            quality=np.asarray(
                [np.nan if q is None else q for q in data["quality"]], dtype=np.float64
            ),
        )


class RouterAdmin:
    """Typed calls to the admin API at ``base_url`` (e.g. ``http://127.0.0.1:9001``)."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RouterAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, operation: str, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RouterError(
                f"{operation}: router at {self.base_url} unreachable: {type(exc).__name__} {exc}"
            ) from exc
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text.strip() or response.reason_phrase
            raise RouterError(f"{operation}: HTTP {response.status_code}: {message}")
        try:
            return response.json()
        except ValueError as exc:
            raise RouterError(f"{operation}: the router sent invalid JSON ({exc})") from exc

    def health(self) -> bool:
        """Whether the router answers its health check (never raises)."""
        try:
            return self._http.get("/healthz").json().get("ok") is True
        except (httpx.HTTPError, ValueError, AttributeError):
            return False

    def state(self) -> RouterState:
        return RouterState.from_dict(self._call("state", "GET", "/state"))

    def set_backends(self, stable: str, candidate: str | None) -> RouterState:
        """Point the arms at new URLs; a ``None`` candidate also zeroes weight and mirror."""
        body = {"stable": stable, "candidate": candidate}
        return RouterState.from_dict(self._call("set_backends", "PUT", "/backends", json=body))

    def set_weight(self, pct: float) -> RouterState:
        """Send ``pct`` % of live traffic to the candidate (the rest to stable)."""
        body = {"candidate_weight": pct}
        return RouterState.from_dict(self._call("set_weight", "PUT", "/weights", json=body))

    def set_mirror(self, pct: float) -> RouterState:
        """Mirror ``pct`` % of requests to the candidate (0 stops)."""
        body = {"mirror_percent": pct}
        return RouterState.from_dict(self._call("set_mirror", "PUT", "/mirror", json=body))

    def switch(self, stable: str, candidate: str | None) -> RouterState:
        """Swap both arms in one step, resetting weight and mirror to 0 (blue/green)."""
        body = {"stable": stable, "candidate": candidate}
        return RouterState.from_dict(self._call("switch", "PUT", "/switch", json=body))

    def stats_raw(self, since: float = 0.0, arms: Iterable[str] = ARMS) -> dict[str, Any]:
        """The ``/stats`` answer as JSON (includes ``dropped_mirrors`` and ``total``)."""
        params = {"since": repr(float(since)), "arms": ",".join(arms)}
        return dict(self._call("stats", "GET", "/stats", params=params))

    def stats(self, since: float = 0.0, arms: Iterable[str] = ARMS) -> dict[str, ArmRecords]:
        """Per-arm records completed at or after ``since`` (unix time)."""
        arms = tuple(arms)
        data = self.stats_raw(since, arms)
        return {arm: ArmRecords.from_json(data[arm]) for arm in arms}
