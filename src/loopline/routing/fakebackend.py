"""A small OpenAI-shaped backend for router tests and benchmarks (no model).

    python -m loopline.routing.fakebackend --port P [--name stable] [--reply TEXT]

Serves ``POST /v1/chat/completions`` (JSON or SSE with ``stream: true``),
``POST /v1/completions`` and ``GET /v1/models``. Replies name the backend (header
``x-backend``) and echo what the router forwarded (``x-seen-variant``,
``x-seen-request-id``). ``PUT /_control`` with ``{"status": 500, "delay": 0.5}`` makes later
completions fail or slow down (``null`` resets); ``GET /_seen`` counts requests per variant.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

DEFAULT_REPLY = "intent: billing_refund\nreply: your refund is on its way and arrives in five days"


def build_app(name: str = "backend", reply: str = DEFAULT_REPLY) -> Starlette:
    """The backend app; ``reply`` is the generated text of every completion."""
    control: dict[str, Any] = {"status": None, "delay": 0.0}
    seen: Counter[str] = Counter()

    def echo_headers(request: Request) -> dict[str, str]:
        return {
            "x-backend": name,
            "x-seen-variant": request.headers.get("x-loopline-variant", ""),
            "x-seen-request-id": request.headers.get("x-request-id", ""),
        }

    async def prelude(request: Request) -> tuple[dict[str, Any], Response | None]:
        seen[request.headers.get("x-loopline-variant", "none")] += 1
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return {}, JSONResponse({"error": {"message": "bad json"}}, 400)
        if control["delay"]:
            await asyncio.sleep(control["delay"])
        if control["status"] is not None:
            error = {"error": {"message": f"{name} failing on purpose", "type": "server_error"}}
            return body, JSONResponse(error, control["status"], headers=echo_headers(request))
        return body, None

    async def chat(request: Request) -> Response:
        body, failed = await prelude(request)
        if failed is not None:
            return failed
        model = str(body.get("model", name))
        created = int(time.time())
        if body.get("stream"):

            async def events() -> AsyncIterator[bytes]:
                words = reply.split(" ")
                for i, word in enumerate(words):
                    piece = word if i == 0 else " " + word
                    chunk = {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [
                            {"index": 0, "delta": {"content": piece}, "finish_reason": None}
                        ],
                    }
                    yield f"data: {json.dumps(chunk)}\n\n".encode()
                    await asyncio.sleep(0)
                last = {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                }
                yield f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode()

            return StreamingResponse(
                events(), media_type="text/event-stream", headers=echo_headers(request)
            )
        out = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 8, "completion_tokens": 12, "total_tokens": 20},
        }
        return JSONResponse(out, headers=echo_headers(request))

    async def completions(request: Request) -> Response:
        body, failed = await prelude(request)
        if failed is not None:
            return failed
        out = {
            "id": "cmpl-fake",
            "object": "text_completion",
            "created": int(time.time()),
            "model": str(body.get("model", name)),
            "choices": [{"index": 0, "text": reply, "finish_reason": "stop", "logprobs": None}],
        }
        return JSONResponse(out, headers=echo_headers(request))

    async def models(request: Request) -> Response:
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "loopline"}]
        return JSONResponse({"object": "list", "data": data}, headers=echo_headers(request))

    async def put_control(request: Request) -> Response:
        data = json.loads(await request.body())
        control["status"] = data.get("status")
        control["delay"] = float(data.get("delay") or 0.0)
        return JSONResponse(control)

    async def get_seen(request: Request) -> Response:
        return JSONResponse(dict(seen))

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/_control", put_control, methods=["PUT"]),
            Route("/_seen", get_seen, methods=["GET"]),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loopline.routing.fakebackend")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--name", default="backend")
    p.add_argument("--reply", default=DEFAULT_REPLY)
    args = p.parse_args(argv)
    app = build_app(args.name, args.reply)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
