"""What ``loopline status`` shows: champion, challenger, metrics, lineage, recent audit."""

from __future__ import annotations

from typing import Any

from loopline.config import Settings
from loopline.reporting import format_metrics


def collect_status(settings: Settings, audit_tail: int = 5) -> dict[str, Any]:
    from loopline.governance.audit import AuditTrail
    from loopline.registry.mlflow_registry import ModelRegistry

    info: dict[str, Any] = {"model": settings.model.name, "state_dir": str(settings.state_path)}
    if not (settings.state_path / "mlflow.db").exists() and settings.tracking.tracking_uri is None:
        info["registry"] = None
        info["hint"] = "nothing registered yet: run `loopline run`"
    else:
        info["registry"] = ModelRegistry(settings).status()
    trail = AuditTrail(settings.state_path / "audit.jsonl")
    entries = list(trail.entries()) if trail.path.exists() else []
    info["audit"] = [e.model_dump(mode="json") for e in entries[-audit_tail:]]
    from loopline.deploy.service import deployment_status

    info["deployment"] = deployment_status(settings)
    info["monitoring"] = monitoring_status(settings)
    info["experiments"] = experiments_status(settings)
    return info


def experiments_status(settings: Settings) -> list[dict[str, Any]]:
    """Running experiments and the last decision of each (no new analysis)."""
    from loopline.experiments.lifecycle import list_records

    out = []
    for r in list_records(settings):
        if not r.running:
            continue
        last = r.analyses[-1] if r.analyses else {}
        out.append(
            {
                "name": r.name,
                "variants": [v.name for v in r.variants],
                "units": last.get("units"),
                "last_decision": last.get("action"),
            }
        )
    return out


def monitoring_status(settings: Settings) -> dict[str, Any] | None:
    """The last monitor run and the open incidents (None before the first run)."""
    import json

    from loopline.monitoring.incidents import incident_store
    from loopline.monitoring.monitor import monitoring_dir

    state = monitoring_dir(settings)
    latest_path = state / "latest.json"
    store = incident_store(state)
    if not latest_path.is_file() and not store.path.is_file():
        return None
    latest = json.loads(latest_path.read_text("utf-8")) if latest_path.is_file() else {}
    return {
        "last_run": latest.get("run_id"),
        "drift": (latest.get("drift") or {}).get("status"),
        "findings": [f["name"] for f in latest.get("findings", []) if f["status"] == "firing"],
        "open_incidents": [
            {"id": i.id, "key": i.key, "status": i.status, "attempts": i.attempts}
            for i in store.open_incidents()
        ],
    }


def _format_deployment(dep: dict[str, Any]) -> list[str]:
    live = dep.get("live", {})
    lines = ["  deployment (local):"]
    if not live.get("running"):
        lines.append("    not running (start it: loopline up)")
    else:
        router = live.get("router", {})
        lines.append(f"    router     {router.get('url')}/v1  (admin {router.get('admin')})")
    for role in ("stable", "candidate", "standby"):
        if role in live:
            p = live[role]
            state = "up" if p["alive"] else "DOWN"
            lines.append(f"    {role:<10} v{p['version']}  {p['url']}  {state}")
    if live.get("weights"):
        w = live["weights"]
        share, mirror = w["candidate_weight"], w["mirror_percent"]
        lines.append(f"    traffic    candidate {share:g} %, mirror {mirror:g} %")
    if live.get("release_in_progress"):
        lines.append(f"    release in progress: {live['release_in_progress']}")
    for item in dep.get("history", []):
        if item["type"] == "release":
            r = item["record"]
            lines.append(
                f"    {r['release_id']} {r['strategy']} v{r['from_version']} -> "
                f"v{r['to_version']} by {r['requested_by']}: {r['outcome']} ({r['reason']})"
            )
            for step in r.get("steps", []):
                reason = "; ".join(step["reasons"])[:160]
                lines.append(
                    f"      step {step['step']} {step['kind']} at {step['candidate_weight']:g} %: "
                    f"{step['verdict']} — {reason}"
                )
        else:
            lines.append(
                f"    rollback v{item['from_version']} -> v{item['to_version']} by {item['by']}"
                f" ({'instant' if item['instant'] else 'restarted'}): {item['reason']}"
            )
    return lines


def format_status(info: dict[str, Any]) -> str:
    lines = [f"model {info['model']}  (state {info['state_dir']})"]
    registry = info.get("registry")
    if not registry:
        lines.append(f"  {info.get('hint', 'no registry')}")
        return "\n".join(lines)
    for alias in ("champion", "challenger"):
        entry = registry.get(alias)
        if not entry:
            lines.append(f"  {alias:<10} none")
            continue
        lines.append(f"  {alias:<10} version {entry['version']}  run {entry['run_id']}")
        lines.append(f"  {'':<10} {format_metrics(entry.get('metrics', {}))}")
        tags = entry.get("tags", {})
        lineage = {k: v for k, v in tags.items() if k.startswith("loopline.")}
        for key in sorted(lineage):
            lines.append(f"  {'':<10} {key} = {lineage[key]}")
    if info.get("deployment"):
        lines.extend(_format_deployment(info["deployment"]))
    mon = info.get("monitoring")
    if mon:
        firing = ", ".join(mon["findings"]) or "none"
        lines.append(f"  monitoring: last run {mon['last_run']}  drift {mon['drift']}")
        lines.append(f"    firing: {firing}")
        for inc in mon["open_incidents"]:
            lines.append(f"    incident {inc['id']} {inc['key']} {inc['status']}")
    for exp in info.get("experiments") or ():
        lines.append(
            f"  experiment {exp['name']}: {', '.join(exp['variants'])}  units {exp['units'] or '-'}"
            f"  last decision {exp['last_decision'] or '-'}"
        )
    if info.get("audit"):
        lines.append("  recent audit entries:")
        for e in info["audit"]:
            lines.append(
                f"    #{e['seq']} {e['timestamp']} {e['action']} {e['subject']} by {e['actor']}"
            )
    return "\n".join(lines)
