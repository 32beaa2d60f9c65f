"""Alerts, incidents and the remediation decision (pure).

An :class:`Alert` comes from Alertmanager's webhook (``Alert.from_alertmanager``) or from the
monitor's own findings. Alerts are grouped into an :class:`Incident` by key (the alert name
and the model version it names, if any). ``decide_remediation`` says what to do about one
alert given its incident, the time of the last action of each kind and the policy:

* resolved alert → ``none`` (the incident store closes the incident);
* ``remediation`` label (or alert name) in ``rollback_on`` / ``retrain_on`` → that action,
  anything else → ``notify``;
* automatic remediation off → ``notify``;
* incident already escalated, or an action of it still running → ``none``;
* an action of the same kind running for another incident → ``none`` (input drift, embedding
  drift and a quality drop are often one problem: one retraining answers all of them);
* the same action for the same version already failed and escalated in another incident
  that is still open → ``none`` (people have it; another alert name is not a new problem);
* a retrain alert about a version that is no longer the champion → ``none`` (stale: the
  model it judged has been replaced);
* ``max_attempts`` actions already tried for this incident → ``escalate`` (a remediation that
  failed, or did not make the alert go away, goes to people instead of looping);
* another action of the same kind within ``cooldown_minutes`` → ``none`` (no flapping).

``decide_after_outcome`` says whether a finished action's incident escalates now.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from loopline.monitoring.policy import RemediationPolicy

Action = Literal["rollback", "retrain", "notify", "escalate", "none"]
IncidentStatus = Literal["open", "remediating", "mitigated", "escalated", "resolved"]
ACTIONS: tuple[str, ...] = ("rollback", "retrain")


class AlertPayloadError(ValueError):
    """An Alertmanager webhook body that is not the documented format (version 4)."""


def _timestamp(text: Any, where: str) -> float:
    if text in (None, "", "0001-01-01T00:00:00Z"):
        return 0.0
    if not isinstance(text, str):
        raise AlertPayloadError(f"{where}: expected an RFC 3339 time string, got {text!r}")
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise AlertPayloadError(f"{where}: {text!r} is not an RFC 3339 time") from None


@dataclass(frozen=True)
class Alert:
    name: str
    status: Literal["firing", "resolved"]
    labels: Mapping[str, str]
    summary: str = ""
    starts_at: float = 0.0
    source: str = "alertmanager"

    @property
    def remediation(self) -> str:
        return self.labels.get("remediation", "notify")

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "ticket")

    @property
    def key(self) -> str:
        """Incident grouping key: alert name plus the model version it is about."""
        version = self.labels.get("version", "")
        return f"{self.name}:{version}" if version else self.name

    @property
    def fingerprint(self) -> str:
        text = "\x1f".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        return hashlib.sha256(f"{self.name}\x1e{text}".encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "labels": dict(self.labels), "key": self.key}

    @classmethod
    def from_alertmanager(cls, body: Any) -> list[Alert]:
        """The alerts of one Alertmanager webhook notification; ``AlertPayloadError`` names
        the first field that does not match the format."""
        if not isinstance(body, dict):
            raise AlertPayloadError(f"body: expected a JSON object, got {type(body).__name__}")
        if str(body.get("version", "")) != "4":
            raise AlertPayloadError(f"version: expected '4', got {body.get('version')!r}")
        items = body.get("alerts")
        if not isinstance(items, list):
            raise AlertPayloadError("alerts: expected a list")
        common = body.get("commonLabels") or {}
        if not isinstance(common, dict):
            raise AlertPayloadError("commonLabels: expected an object")
        out: list[Alert] = []
        for i, item in enumerate(items):
            where = f"alerts[{i}]"
            if not isinstance(item, dict):
                raise AlertPayloadError(f"{where}: expected an object")
            labels = item.get("labels")
            if not isinstance(labels, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
            ):
                raise AlertPayloadError(f"{where}.labels: expected an object of strings")
            labels = {**{str(k): str(v) for k, v in common.items()}, **labels}
            name = labels.get("alertname")
            if not name:
                raise AlertPayloadError(f"{where}.labels.alertname: missing")
            status = item.get("status", body.get("status"))
            if status not in ("firing", "resolved"):
                raise AlertPayloadError(f"{where}.status: expected firing|resolved, got {status!r}")
            notes = item.get("annotations") or {}
            if not isinstance(notes, dict):
                raise AlertPayloadError(f"{where}.annotations: expected an object")
            out.append(
                cls(
                    name=name,
                    status=status,
                    labels=labels,
                    summary=str(notes.get("summary", "")),
                    starts_at=_timestamp(item.get("startsAt"), f"{where}.startsAt"),
                )
            )
        return out


@dataclass(frozen=True)
class Incident:
    """An incident folded from its timeline (see :mod:`loopline.monitoring.incidents`)."""

    id: str
    key: str
    status: IncidentStatus
    opened_at: float
    attempts: int = 0
    last_action: str | None = None
    last_action_at: float | None = None
    last_outcome: str | None = None
    timeline: tuple[Mapping[str, Any], ...] = field(default=())

    @property
    def active(self) -> bool:
        return self.status not in ("resolved",)

    @property
    def action_pending(self) -> bool:
        """A claimed action has no recorded outcome yet."""
        kinds = [e["event"] for e in self.timeline]
        return kinds.count("action_started") > kinds.count("action_finished")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "timeline": [dict(e) for e in self.timeline]}


@dataclass(frozen=True)
class RemediationDecision:
    action: Action
    reason: str
    attempt: int = 0

    @property
    def actionable(self) -> bool:
        return self.action in ACTIONS


def action_for(alert: Alert, policy: RemediationPolicy) -> Action:
    """The action an alert asks for under ``policy``: rollback, retrain or notify."""
    if alert.remediation in policy.rollback_on or alert.name in policy.rollback_on:
        return "rollback"
    if alert.remediation in policy.retrain_on or alert.name in policy.retrain_on:
        return "retrain"
    return "notify"


def decide_remediation(
    alert: Alert,
    incident: Incident | None,
    last_action_at: Mapping[str, float],
    policy: RemediationPolicy,
    now: float,
    *,
    running: Mapping[str, str] | None = None,
    escalated: Mapping[tuple[str, str], str] | None = None,
    champion: str | None = None,
) -> RemediationDecision:
    """What to do about ``alert`` now (see the module docstring for the rules).

    ``running`` maps an action kind to the incident whose action of that kind is running;
    ``escalated`` maps (action, version) to an open escalated incident whose action failed;
    ``champion`` is the version serving as champion now, when known.
    """
    if alert.status == "resolved":
        return RemediationDecision("none", f"{alert.name} resolved")
    wanted = action_for(alert, policy)
    if wanted == "notify":
        return RemediationDecision("notify", f"{alert.name} asks for no automatic action")
    if not policy.auto:
        return RemediationDecision(
            "notify", f"{alert.name} would {wanted}, but automatic remediation is off"
        )
    if incident is not None and incident.status == "escalated":
        return RemediationDecision("none", f"incident {incident.id} is already escalated")
    if incident is not None and incident.status == "remediating":
        return RemediationDecision(
            "none", f"incident {incident.id}: {incident.last_action} still running"
        )
    other = (running or {}).get(wanted)
    if other is not None and (incident is None or other != incident.id):
        return RemediationDecision("none", f"a {wanted} is already running (incident {other})")
    version = alert.labels.get("version")
    failed = (escalated or {}).get((wanted, version or ""))
    if failed is not None and (incident is None or failed != incident.id):
        return RemediationDecision(
            "none", f"a {wanted} for this version already failed and escalated (incident {failed})"
        )
    if wanted == "retrain" and champion is not None and version and version != champion:
        return RemediationDecision(
            "none", f"{alert.name} concerns v{version}, but v{champion} is champion now"
        )
    attempts = incident.attempts if incident is not None else 0
    if attempts >= policy.max_attempts:
        outcome = incident.last_outcome if incident is not None else None
        return RemediationDecision(
            "escalate",
            f"{alert.name} still firing after {attempts} {wanted} attempt(s) "
            f"(last outcome: {outcome or 'unknown'}); max_attempts={policy.max_attempts}",
            attempts,
        )
    last = last_action_at.get(wanted)
    cooldown_s = policy.cooldown_minutes * 60.0
    if last is not None and now - last < cooldown_s:
        return RemediationDecision(
            "none",
            f"{wanted} cooldown: last {wanted} {now - last:.0f} s ago "
            f"(< {policy.cooldown_minutes:g} min)",
            attempts,
        )
    return RemediationDecision(wanted, f"{alert.name} → {wanted}", attempts + 1)


def decide_after_outcome(
    incident: Incident, succeeded: bool, policy: RemediationPolicy
) -> Literal["escalate", "mitigated", "retry_later"]:
    """After an action finished: escalate a failure that used the last attempt."""
    if succeeded:
        return "mitigated"
    return "escalate" if incident.attempts >= policy.max_attempts else "retry_later"


def firing(alerts: Sequence[Alert]) -> list[Alert]:
    return [a for a in alerts if a.status == "firing"]
