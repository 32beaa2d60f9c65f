"""The admin API (its own port): read and change the routing state, read the stats.

Every bad input is a 400 whose message names the field; the state is never half-changed.
"""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from loopline.routing.proxy import Router, error_response
from loopline.routing.state import InvalidValueError, RouterState, check_percent, check_url
from loopline.routing.stats import ARMS, columns_to_json


def _bad(message: str) -> Response:
    return error_response(400, "invalid_request", message)


async def _body(request: Request, fields: tuple[str, ...]) -> dict[str, Any]:
    """The JSON object body holding exactly ``fields``."""
    raw = await request.body()
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InvalidValueError(f"body: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidValueError(f"body: expected a JSON object with {', '.join(fields)}")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InvalidValueError(f"{unknown[0]}: unknown field (expected {', '.join(fields)})")
    for name in fields:
        if name not in data:
            raise InvalidValueError(f"{name}: required")
    return data


def _optional_url(field: str, value: object) -> str | None:
    return None if value is None else check_url(field, value)


def build_admin_app(router: Router) -> Starlette:
    """The admin ASGI app for ``router``."""

    def state_json(state: RouterState) -> Response:
        return JSONResponse(state.to_dict())

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def get_state(request: Request) -> Response:
        return state_json(router.state)

    async def put_backends(request: Request) -> Response:
        data = await _body(request, ("stable", "candidate"))
        stable = check_url("stable", data["stable"])
        candidate = _optional_url("candidate", data["candidate"])

        def change(s: RouterState) -> RouterState:
            if candidate is None:
                return s.changed(
                    stable=stable, candidate=None, candidate_weight=0.0, mirror_percent=0.0
                )
            return s.changed(stable=stable, candidate=candidate)

        return state_json(await router.update(change))

    async def put_weights(request: Request) -> Response:
        data = await _body(request, ("candidate_weight",))
        weight = check_percent("candidate_weight", data["candidate_weight"])
        return state_json(await router.update(lambda s: s.changed(candidate_weight=weight)))

    async def put_mirror(request: Request) -> Response:
        data = await _body(request, ("mirror_percent",))
        percent = check_percent("mirror_percent", data["mirror_percent"])
        return state_json(await router.update(lambda s: s.changed(mirror_percent=percent)))

    async def put_switch(request: Request) -> Response:
        data = await _body(request, ("stable", "candidate"))
        stable = check_url("stable", data["stable"])
        candidate = _optional_url("candidate", data["candidate"])
        return state_json(
            await router.update(
                lambda s: s.changed(
                    stable=stable, candidate=candidate, candidate_weight=0.0, mirror_percent=0.0
                )
            )
        )

    async def get_stats(request: Request) -> Response:
        raw_since = request.query_params.get("since", "0")
        try:
            since = float(raw_since)
        except ValueError:
            raise InvalidValueError(f"since: expected a unix time, got {raw_since!r}") from None
        if math.isnan(since):
            raise InvalidValueError("since: must not be NaN")
        raw_arms = request.query_params.get("arms")
        arms = ARMS if raw_arms is None else tuple(a for a in raw_arms.split(",") if a)
        for arm in arms:
            if arm not in ARMS:
                raise InvalidValueError(f"arms: unknown arm {arm!r} (expected {', '.join(ARMS)})")
        columns = router.stats.query(since, arms)
        out: dict[str, Any] = {arm: columns_to_json(columns[arm]) for arm in arms}
        out["dropped_mirrors"] = router.dropped_mirrors
        out["total"] = router.stats.total
        return JSONResponse(out)

    async def invalid(request: Request, exc: Exception) -> Response:
        return _bad(str(exc))

    async def not_persisted(request: Request, exc: Exception) -> Response:
        message = f"the state is in effect but the state file was not written: {exc}"
        return error_response(500, "state_file_error", message)

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/state", get_state, methods=["GET"]),
            Route("/backends", put_backends, methods=["PUT"]),
            Route("/weights", put_weights, methods=["PUT"]),
            Route("/mirror", put_mirror, methods=["PUT"]),
            Route("/switch", put_switch, methods=["PUT"]),
            Route("/stats", get_stats, methods=["GET"]),
        ],
        exception_handlers={InvalidValueError: invalid, OSError: not_persisted},
    )
