"""``loopline up | deploy | rollback | down`` and the deployment part of ``loopline status``.

* :func:`up` starts the champion behind the router (idempotent: a healthy stack is kept).
* :func:`deploy` runs one release (canary, blue/green or shadow) of a registry version against
  the running stable, to the end, and returns its :class:`DeploymentRecord`.
* :func:`rollback` aborts a release in progress (the driver picks the request up within one
  poll and the strategy rolls back), or, with none in progress, switches back to the previous
  champion: instantly when it is still warm as standby (blue/green), else after starting it.
* :func:`down` stops every process of the stack.

Every release, promotion and rollback is written to the deployment log
(``deploy/records.jsonl``) and to the audit trail.
"""

from __future__ import annotations

import getpass
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from loopline.config import Settings
from loopline.deploy.driver import DriverOptions, run_release
from loopline.deploy.local_target import (
    LocalTarget,
    append_record,
    load_golden_set,
    read_records,
)
from loopline.deploy.stack import (
    DeployError,
    Stack,
    alive,
    deploy_dir,
    load_stack,
    save_stack,
    server_ready,
    stack_lock,
    start_router_proc,
    start_server,
    stop_pid,
    wait_ready,
)
from loopline.governance.audit import AuditTrail
from loopline.release.events import Action
from loopline.release.records import DeploymentRecord, ReleaseSpec
from loopline.release.strategy import ReleaseState
from loopline.routing.client import RouterAdmin

STRATEGY_ALIASES = {
    "canary": "canary",
    "blue-green": "blue_green",
    "blue_green": "blue_green",
    "shadow": "shadow",
}
Progress = Callable[[str], None]


def _registry(settings: Settings) -> Any:
    from loopline.registry.mlflow_registry import ModelRegistry

    return ModelRegistry(settings)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def abort_file(settings: Settings) -> Path:
    return deploy_dir(settings) / "abort.json"


def probe_prompts(settings: Settings, n: int = 64) -> list[str]:
    """Customer messages for warm-up probes, generated from the project's corpus."""
    from loopline.data.corpus import generate_tickets

    cfg = settings.data.model_copy(update={"n_tickets": max(n, 50), "seed": settings.data.seed + 1})
    return [str(p) for p in generate_tickets(cfg)["prompt"].head(n)]


def _healthy(stack: Stack) -> bool:
    return (
        stack.router is not None
        and alive(stack.router.pid)
        and stack.stable is not None
        and server_ready(stack.stable) is None
    )


def up(settings: Settings, *, model: str = "champion", progress: Progress = print) -> Stack:
    """Start the stable version (default: the champion) behind the router."""
    with stack_lock(settings, "start the local deployment"):
        return _up(settings, model, progress)


def _up(settings: Settings, model: str, progress: Progress) -> Stack:
    stack = load_stack(settings)
    if _healthy(stack):
        return stack
    _stop_all(stack)
    registry = _registry(settings)
    version = registry.get_version(model).version if model.isdigit() else None
    if version is None:
        found = registry.get_by_alias(model)
        if found is None:
            raise DeployError(
                f"model {registry.name!r} has no alias {model!r}: nothing to serve "
                "(train and promote a version first: loopline run)"
            )
        version = found.version
    progress(f"starting v{version} as stable")
    stable = start_server(settings, version, "stable")
    wait_ready(stable)
    router = start_router_proc(settings, stable)
    stack = save_stack(settings, Stack(router=router, stable=stable))
    progress(f"router on {router.url} (admin {router.admin_url}) -> v{version}")
    return stack


def _stop_all(stack: Stack) -> None:
    for proc in (stack.router, stack.candidate, stack.standby, stack.stable):
        if proc is not None:
            stop_pid(proc.pid)


def down(settings: Settings) -> Stack:
    with stack_lock(settings, "stop the local deployment"):
        stack = load_stack(settings)
        _stop_all(stack)
        save_stack(settings, Stack())
        return stack


def _describe(state: ReleaseState, actions: tuple[Action, ...]) -> str:
    names = ", ".join(type(a).__name__ for a in actions) or "no action"
    last = state.history[-1].reasons[0] if state.history and actions else ""
    weights = f"{state.stable_weight:g}/{state.candidate_weight:g}"
    mirror = f" mirror {state.mirror_percent:g}%" if state.mirror_percent else ""
    return f"{state.phase} step {state.step} (stable/candidate {weights}{mirror}): {names}" + (
        f" — {last}" if last else ""
    )


def deploy(
    settings: Settings,
    strategy: str,
    *,
    model: str = "challenger",
    candidate_set: Sequence[str] = (),
    requested_by: str | None = None,
    progress: Progress = print,
    options: DriverOptions | None = None,
) -> DeploymentRecord:
    """Release ``model`` (alias or version) with ``strategy`` against the running stable."""
    name = STRATEGY_ALIASES.get(strategy)
    if name is None:
        raise DeployError(f"unknown strategy {strategy!r}: use canary, blue-green or shadow")
    load_golden_set(settings)  # a bad golden set stops the release before anything changes
    with stack_lock(settings, f"{strategy} release"):
        stack = _up(settings, "champion", progress)
        stable, router_proc = stack.stable, stack.router
        assert stable is not None and router_proc is not None
        registry = _registry(settings)
        found = registry.get_version(model) if model.isdigit() else registry.get_by_alias(model)
        if found is None:
            raise DeployError(f"model {registry.name!r} has no alias {model!r} to deploy")
        if found.version == stable.version:
            raise DeployError(f"v{found.version} is already the stable version")
        from loopline.experiments.lifecycle import list_records

        pinned = [r.name for r in list_records(settings) if r.running and r.candidate_version]
        if pinned:  # the candidate slot serves an A/B test of model versions
            raise DeployError(
                f"experiment {pinned[0]!r} is serving its model variant from the candidate "
                "slot; decide or stop it first (loopline experiment decide|stop)"
            )
        if stack.candidate is not None:  # left over from a crashed driver
            stop_pid(stack.candidate.pid)
            stack = save_stack(settings, replace(stack, candidate=None))
        spec = ReleaseSpec(
            release_id=f"rel-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}",
            candidate_version=found.version,
            stable_version=stable.version,
            requested_by=requested_by or _user(),
        )
        abort_file(settings).unlink(missing_ok=True)
        save_stack(settings, replace(stack, release_id=spec.release_id))
        audit = AuditTrail.for_settings(settings)
        audit.append(
            "deployment_started",
            f"{registry.name}/v{spec.candidate_version}",
            spec.requested_by,
            {"strategy": name, "release_id": spec.release_id, "stable": spec.stable_version},
        )

        def promote_version(version: str) -> str | None:
            previous: str | None = registry.promote(version)
            audit.append(
                "promotion",
                f"{registry.name}/v{version}",
                spec.requested_by,
                {"alias": "champion", "previous": previous, "release_id": spec.release_id},
            )
            return previous

        def abort_requested() -> tuple[str, str] | None:
            path = abort_file(settings)
            if not path.is_file():
                return None
            from loopline.fsutil import read_json

            data = read_json(path)
            path.unlink(missing_ok=True)
            return str(data.get("reason", "rollback requested")), str(data.get("by", "unknown"))

        router = RouterAdmin(router_proc.admin_url)
        target = LocalTarget(
            settings,
            router,
            candidate_set=candidate_set,
            probe_prompts=probe_prompts(settings),
            promote_version=promote_version,
            keep_standby=name == "blue_green",
        )
        progress(
            f"release {spec.release_id}: {name} v{spec.stable_version} -> v{spec.candidate_version}"
        )
        try:
            record = run_release(
                settings.release,
                name,
                spec,
                target,
                options=options or DriverOptions(),
                abort_requested=abort_requested,
                report=lambda s, a: progress(_describe(s, a)),
            )
        except BaseException:
            # The driver itself failed (a bug, Ctrl-C): put traffic back on stable and stop
            # the candidate, so that no half-done release is left running.
            _restore_stable(settings, router)
            audit.append(
                "deployment_failed",
                f"{registry.name}/v{spec.candidate_version}",
                spec.requested_by,
                {"strategy": name, "release_id": spec.release_id},
            )
            raise
        finally:
            router.close()
            save_stack(settings, replace(load_stack(settings), release_id=None))
        append_record(settings, {"type": "release", "record": record.to_dict()})
        audit.append(
            f"deployment_{record.outcome}",
            f"{registry.name}/v{spec.candidate_version}",
            spec.requested_by,
            {"strategy": name, "release_id": spec.release_id, "reason": record.reason},
        )
        progress(f"release {spec.release_id}: {record.outcome} ({record.reason})")
        return record


def _restore_stable(settings: Settings, router: RouterAdmin) -> None:
    stack = load_stack(settings)
    if stack.stable is not None:
        try:
            router.set_backends(stack.stable.url, None)
        except Exception as exc:  # the router may be gone too; the candidate still stops
            print(f"could not reset the router: {exc}")
    if stack.candidate is not None:
        stop_pid(stack.candidate.pid)
        save_stack(settings, replace(stack, candidate=None))


def rollback(
    settings: Settings, *, reason: str = "manual rollback", by: str | None = None
) -> dict[str, Any]:
    """Abort the release in progress, or switch back to the previous champion."""
    stack = load_stack(settings)
    who = by or _user()
    if stack.release_id is not None:
        from loopline.fsutil import write_json

        write_json({"reason": reason, "by": who}, abort_file(settings))
        return {"action": "abort_requested", "release_id": stack.release_id}
    with stack_lock(settings, "roll back"):
        stack = load_stack(settings)
        if stack.router is None or stack.stable is None or not alive(stack.router.pid):
            raise DeployError("no local deployment is running (start one: loopline up)")
        registry = _registry(settings)
        previous = registry.get_by_alias("previous_champion")
        if previous is None:
            raise DeployError("no previous_champion to roll back to")
        standby = stack.standby
        target = standby if standby and standby.version == previous.version else None
        instant = target is not None and server_ready(target) is None
        if not instant:
            target = start_server(settings, previous.version, "stable")
            wait_ready(target)
        assert target is not None
        with RouterAdmin(stack.router.admin_url) as router:
            router.switch(target.url, None)
        old = stack.stable
        save_stack(settings, replace(stack, stable=replace(target, variant="stable"), standby=None))
        stop_pid(old.pid)
        registry.promote(previous.version)  # champion -> previous, previous_champion -> old
        entry = {
            "type": "rollback",
            "from_version": old.version,
            "to_version": previous.version,
            "instant": instant,
            "reason": reason,
            "by": who,
            "at": time.time(),
        }
        append_record(settings, entry)
        AuditTrail.for_settings(settings).append(
            "rollback", f"{registry.name}/v{previous.version}", who, entry
        )
        return {"action": "switched_back", **entry}


def deployment_status(settings: Settings, last: int = 5) -> dict[str, Any]:
    stack = load_stack(settings)
    live: dict[str, Any] = {"running": _healthy(stack)}
    if stack.router is not None:
        live["router"] = {"url": stack.router.url, "admin": stack.router.admin_url}
        if alive(stack.router.pid):
            try:
                with RouterAdmin(stack.router.admin_url, timeout=2.0) as router:
                    state = router.state()
                live["weights"] = {
                    "candidate_weight": state.candidate_weight,
                    "mirror_percent": state.mirror_percent,
                }
            except Exception as exc:
                live["router_error"] = str(exc)
    for role in ("stable", "candidate", "standby"):
        proc = getattr(stack, role)
        if proc is not None:
            live[role] = {"version": proc.version, "url": proc.url, "alive": alive(proc.pid)}
    live["release_in_progress"] = stack.release_id
    records = [r for r in read_records(settings) if r["type"] in ("release", "rollback")]
    return {"live": live, "history": records[-last:]}
