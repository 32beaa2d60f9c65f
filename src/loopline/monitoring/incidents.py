"""Incident records: an append-only JSONL timeline per state directory.

Every line is one event of one incident: ``opened``, ``alert``, ``decision``,
``action_started`` (the decision claimed an action), ``action_running`` (an executor took
it), ``action_finished``, ``escalated``, ``resolved``. Incidents are folded
from their events, so the file is the whole history (alert → decision → action → outcome)
and nothing is ever rewritten. Writers hold an exclusive ``flock`` for the read-decide-append
step of :meth:`IncidentStore.record_alert`, which makes claiming an action atomic across
processes: two receivers of the same alert cannot both start a rollback.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from loopline.monitoring.policy import RemediationPolicy
from loopline.monitoring.remediation import (
    ACTIONS,
    Alert,
    Incident,
    RemediationDecision,
    decide_after_outcome,
    decide_remediation,
)


@dataclass(frozen=True)
class Recorded:
    """What :meth:`IncidentStore.record_alert` did with one alert."""

    alert: Alert
    incident: Incident | None
    decision: RemediationDecision


class IncidentStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock_path.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _append(self, events: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(e, sort_keys=True, default=str) + "\n" for e in events)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    def events(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        out: list[dict[str, Any]] = []
        for line in self.path.read_text("utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line from a crash
        return out

    def incidents(self) -> dict[str, Incident]:
        """Every incident by id, folded from the timeline (oldest first)."""
        found: dict[str, Incident] = {}
        for e in self.events():
            iid, kind, ts = e["incident_id"], e["event"], float(e["ts"])
            inc = found.get(iid)
            if kind == "opened":
                found[iid] = Incident(iid, e["key"], "open", ts, timeline=(e,))
                continue
            if inc is None:
                continue
            inc = replace(inc, timeline=(*inc.timeline, e))
            if kind == "action_started":
                inc = replace(
                    inc,
                    status="remediating",
                    attempts=inc.attempts + 1,
                    last_action=e["action"],
                    last_action_at=ts,
                )
            elif kind == "action_finished":
                ok = bool(e["succeeded"])
                inc = replace(
                    inc,
                    status="mitigated" if ok else "open",
                    last_outcome="succeeded" if ok else "failed",
                )
            elif kind == "escalated":
                inc = replace(inc, status="escalated")
            elif kind == "resolved":
                inc = replace(inc, status="resolved")
            found[iid] = inc
        return found

    def get(self, incident_id: str) -> Incident:
        try:
            return self.incidents()[incident_id]
        except KeyError:
            raise KeyError(f"no incident {incident_id!r} in {self.path}") from None

    def open_incidents(self) -> list[Incident]:
        return [i for i in self.incidents().values() if i.active]

    def _last_action_at(self, incidents: dict[str, Incident]) -> dict[str, float]:
        last: dict[str, float] = {}
        for inc in incidents.values():
            for e in inc.timeline:
                if e["event"] == "action_started" and e["action"] in ACTIONS:
                    last[e["action"]] = max(last.get(e["action"], 0.0), float(e["ts"]))
        return last

    def record_alert(
        self,
        alert: Alert,
        policy: RemediationPolicy,
        now: float | None = None,
        *,
        champion: str | None = None,
    ) -> Recorded:
        """Attach ``alert`` to its open incident (opening one for a new firing alert), decide,
        and append the decision; an actionable decision is claimed (``action_started``).
        ``champion``: the champion version now (retrain alerts about others are stale)."""
        now = time.time() if now is None else now
        with self._locked():
            incidents = self.incidents()
            current = next((i for i in incidents.values() if i.active and i.key == alert.key), None)
            events: list[dict[str, Any]] = []
            if current is None and alert.status == "firing":
                stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
                iid = f"inc-{stamp}-{uuid.uuid4().hex[:6]}"
                events.append({"incident_id": iid, "event": "opened", "ts": now, "key": alert.key})
                current = Incident(iid, alert.key, "open", now)
            running = {
                i.last_action: i.id
                for i in incidents.values()
                if i.status == "remediating" and i.last_action
            }
            escalated = {
                (i.last_action, i.key.rpartition(":")[2] if ":" in i.key else ""): i.id
                for i in incidents.values()
                if i.status == "escalated" and i.last_action
            }
            decision = decide_remediation(
                alert,
                current,
                self._last_action_at(incidents),
                policy,
                now,
                running=running,
                escalated=escalated,
                champion=champion,
            )
            if current is None:  # a resolved alert with no open incident: nothing to record
                return Recorded(alert, None, decision)
            base = {"incident_id": current.id, "ts": now}
            events.append({**base, "event": "alert", "alert": alert.to_dict()})
            events.append(
                {
                    **base,
                    "event": "decision",
                    "action": decision.action,
                    "reason": decision.reason,
                    "attempt": decision.attempt,
                }
            )
            if decision.actionable:
                events.append(
                    {
                        **base,
                        "event": "action_started",
                        "action": decision.action,
                        "attempt": decision.attempt,
                    }
                )
            elif decision.action == "escalate":
                events.append({**base, "event": "escalated", "reason": decision.reason})
            elif alert.status == "resolved" and current.status != "remediating":
                events.append({**base, "event": "resolved", "reason": decision.reason})
            self._append(events)
        return Recorded(alert, self.get(current.id), decision)

    def take(self, incident_id: str, now: float | None = None) -> bool:
        """Take the incident's claimed action for execution: true for exactly one caller
        (an ``action_running`` event), false when it is already taken or finished."""
        now = time.time() if now is None else now
        with self._locked():
            inc = self.get(incident_id)
            kinds = [e["event"] for e in inc.timeline]
            if "action_started" not in kinds:
                return False
            last = len(kinds) - 1 - kinds[::-1].index("action_started")
            if any(k in ("action_running", "action_finished") for k in kinds[last + 1 :]):
                return False
            started = inc.timeline[last]
            self._append(
                [
                    {
                        "incident_id": incident_id,
                        "ts": now,
                        "event": "action_running",
                        "action": started["action"],
                        "attempt": started["attempt"],
                    }
                ]
            )
        return True

    def finish_action(
        self,
        incident_id: str,
        action: str,
        succeeded: bool,
        policy: RemediationPolicy,
        *,
        details: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> Incident:
        """Record an action's outcome; a failure that used the last attempt escalates."""
        now = time.time() if now is None else now
        with self._locked():
            inc = self.get(incident_id)
            base = {"incident_id": incident_id, "ts": now}
            events: list[dict[str, Any]] = [
                {
                    **base,
                    "event": "action_finished",
                    "action": action,
                    "succeeded": succeeded,
                    "details": details or {},
                }
            ]
            after = decide_after_outcome(inc, succeeded, policy)
            if after == "escalate":
                events.append(
                    {
                        **base,
                        "event": "escalated",
                        "reason": f"{action} failed on attempt {inc.attempts} "
                        f"of {policy.max_attempts}",
                    }
                )
            self._append(events)
        return self.get(incident_id)

    def resolve(self, incident_id: str, reason: str, now: float | None = None) -> Incident:
        now = time.time() if now is None else now
        with self._locked():
            self._append(
                [{"incident_id": incident_id, "ts": now, "event": "resolved", "reason": reason}]
            )
        return self.get(incident_id)


def incident_store(state_dir: Path) -> IncidentStore:
    return IncidentStore(state_dir / "incidents.jsonl")
