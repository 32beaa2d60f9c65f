"""The monitor service (``loopline monitor serve``): Alertmanager webhook and the monitor's
metrics on one port.

* ``POST /alerts``: an Alertmanager webhook notification (version 4). Alerts are recorded
  in their incidents and decided at once; the answer lists the decisions. Actions run on
  the service's executor, one at a time and never in the request: ``inline`` runs
  ``loopline monitor execute`` as a child process (embedded default); ``command`` runs a
  configured command per action with ``{incident}`` and ``{action}`` substituted, e.g. a
  ``prefect deployment run`` that hands the action to a work pool in production.
* ``GET /metrics``: :mod:`loopline.monitoring.exporter`.
* ``GET /incidents``: the incidents with their timelines. ``GET /healthz``.

A malformed notification is a 400 naming the field and changes nothing.
"""

from __future__ import annotations

import json
import queue
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from loopline.monitoring.incidents import Recorded
from loopline.monitoring.remediation import Alert, AlertPayloadError

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from loopline.config import Settings

MAX_BODY = 1_000_000


class Executor:
    """Runs claimed actions one at a time on a worker thread."""

    def __init__(self, run: Callable[[Recorded], Any]) -> None:
        self._run = run
        self._queue: queue.Queue[Recorded | None] = queue.Queue()
        self.done: list[tuple[str, str]] = []  # (incident id, action) in completion order
        self._thread = threading.Thread(target=self._loop, name="remediation", daemon=True)
        self._thread.start()

    def submit(self, rec: Recorded) -> None:
        self._queue.put(rec)

    def _loop(self) -> None:
        while True:
            rec = self._queue.get()
            if rec is None:
                return
            try:
                self._run(rec)
            except Exception as exc:  # the action records its own failure; keep serving
                print(f"remediation worker: {type(exc).__name__}: {exc}", flush=True)
            finally:
                assert rec.incident is not None
                self.done.append((rec.incident.id, rec.decision.action))
                self._queue.task_done()

    def join(self) -> None:
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)


def inline_executor(settings: Settings) -> Executor:
    """Actions run as ``loopline monitor execute`` child processes of this installation: a
    retraining neither slows the webhook and ``/metrics`` nor takes the service down if it
    crashes."""
    argv = [sys.executable, "-m", "loopline", "monitor", "execute", "--project",
            str(settings.root), "--env", settings.env, "--incident", "{incident}"]  # fmt: skip
    return command_executor(settings, argv)


def command_executor(settings: Settings, template: Sequence[str]) -> Executor:
    """Each action runs ``template`` with ``{incident}``/``{action}`` filled in. The command
    records the outcome itself (``loopline monitor execute`` does) or hands the action on
    (a Prefect deployment run of ``remediate``); if it fails without having recorded one,
    the action is recorded as failed with the command's output."""
    from loopline.monitoring.actions import store_for

    def run(rec: Recorded) -> None:
        assert rec.incident is not None
        argv = [
            part.format(incident=rec.incident.id, action=rec.decision.action) for part in template
        ]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n", flush=True)
        # Exit 0: done, or handed on (a deployment run records the outcome later).
        store = store_for(settings)
        if proc.returncode != 0 and store.get(rec.incident.id).action_pending:
            store.finish_action(
                rec.incident.id,
                rec.decision.action,
                False,
                settings.monitoring.remediation,
                details={
                    "command": shlex.join(argv),
                    "exit": proc.returncode,
                    "stderr": proc.stderr[-2000:],
                },
            )

    return Executor(run)


def create_monitor_app(settings: Settings, executor: Executor | None) -> Starlette:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from loopline.monitoring.actions import handle_alerts, store_for
    from loopline.monitoring.exporter import settings_metrics

    async def alerts(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"error": f"body larger than {MAX_BODY} bytes"}, 413)
        try:
            parsed = Alert.from_alertmanager(json.loads(body))
        except AlertPayloadError as exc:
            return JSONResponse({"error": f"not an Alertmanager notification: {exc}"}, 400)
        except ValueError as exc:  # includes undecodable bytes
            return JSONResponse({"error": f"body is not JSON: {exc}"}, 400)
        recorded = handle_alerts(settings, parsed)
        for rec in recorded:
            if rec.decision.actionable and executor is not None:
                executor.submit(rec)
        return JSONResponse(
            {
                "received": len(parsed),
                "decisions": [
                    {
                        "alert": rec.alert.name,
                        "status": rec.alert.status,
                        "incident": rec.incident.id if rec.incident else None,
                        "action": rec.decision.action,
                        "reason": rec.decision.reason,
                    }
                    for rec in recorded
                ],
            }
        )

    async def metrics(_: Request) -> Response:
        return Response(settings_metrics(settings), media_type="text/plain; version=0.0.4")

    async def incidents(_: Request) -> Response:
        found = store_for(settings).incidents()
        return JSONResponse([i.to_dict() for i in found.values()])

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/alerts", alerts, methods=["POST"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/incidents", incidents, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def serve(
    settings: Settings,
    *,
    executor: str = "inline",
    command: str | None = None,
    port: int | None = None,
) -> None:
    """Run the monitor service on ``monitoring.host``:``port`` until interrupted."""
    import uvicorn

    if executor == "inline":
        ex: Executor | None = inline_executor(settings)
    elif executor == "command":
        if not command:
            raise ValueError("executor 'command' needs --command")
        ex = command_executor(settings, shlex.split(command))
    elif executor == "none":
        ex = None
    else:
        raise ValueError(f"unknown executor {executor!r}: use inline, command or none")
    app = create_monitor_app(settings, ex)
    cfg = settings.monitoring
    uvicorn.run(app, host=cfg.host, port=cfg.port if port is None else port, log_level="warning")
