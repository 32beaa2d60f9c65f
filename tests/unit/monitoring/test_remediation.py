"""The remediation decision (pure), alert parsing and the incident timeline."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from loopline.monitoring.incidents import IncidentStore
from loopline.monitoring.policy import RemediationPolicy
from loopline.monitoring.remediation import (
    Alert,
    AlertPayloadError,
    Incident,
    action_for,
    decide_after_outcome,
    decide_remediation,
)

POLICY = RemediationPolicy(cooldown_minutes=30, max_attempts=2)
NOW = 1_800_000_000.0


def alert(name: str = "LooplineHighErrorRate", status: str = "firing", **labels: str) -> Alert:
    base = {"alertname": name, "remediation": "rollback", "severity": "page", "version": "3"}
    return Alert(name, status, {**base, **labels}, "5xx ratio 40 %", NOW - 60)  # type: ignore[arg-type]


def incident(**kw: Any) -> Incident:
    return Incident(**{"id": "inc-1", "key": "LooplineHighErrorRate:3", "status": "open",
                       "opened_at": NOW - 600, **kw})  # fmt: skip


def test_actions_follow_the_remediation_label_or_the_alert_name() -> None:
    assert action_for(alert(), POLICY) == "rollback"
    assert action_for(alert("LooplineInputDrift", remediation="retrain"), POLICY) == "retrain"
    assert action_for(alert("LooplineNoTraffic", remediation="notify"), POLICY) == "notify"
    by_name = RemediationPolicy(rollback_on=("LooplineLatencySLOBurn",))
    assert action_for(alert("LooplineLatencySLOBurn", remediation="x"), by_name) == "rollback"
    with pytest.raises(ValueError, match="both rollback_on and retrain_on"):
        RemediationPolicy(rollback_on=("a",), retrain_on=("a",))


def test_a_new_firing_alert_is_acted_on() -> None:
    d = decide_remediation(alert(), None, {}, POLICY, NOW)
    assert (d.action, d.attempt, d.actionable) == ("rollback", 1, True)


@pytest.mark.parametrize(
    ("inc", "last", "expected", "why"),
    [
        (incident(status="escalated"), {}, "none", "already escalated"),
        (incident(status="remediating", last_action="rollback"), {}, "none", "still running"),
        (incident(attempts=2, last_outcome="failed"), {}, "escalate", "after 2 rollback"),
        (incident(attempts=1, last_outcome="succeeded"), {"rollback": NOW - 600}, "none",
         "cooldown"),
        (incident(attempts=1, last_outcome="failed"), {"rollback": NOW - 1900}, "rollback", "→"),
        (None, {"retrain": NOW - 10}, "rollback", "→"),  # cooldowns are per action
    ],
)  # fmt: skip
def test_decision_rules(
    inc: Incident | None, last: dict[str, float], expected: str, why: str
) -> None:
    d = decide_remediation(alert(), inc, last, POLICY, NOW)
    assert d.action == expected
    assert why in d.reason


def test_resolved_notify_and_manual_mode_start_nothing() -> None:
    assert decide_remediation(alert(status="resolved"), None, {}, POLICY, NOW).action == "none"
    notify = alert("LooplineNoTraffic", remediation="notify")
    assert decide_remediation(notify, None, {}, POLICY, NOW).action == "notify"
    manual = RemediationPolicy(auto=False)
    d = decide_remediation(alert(), None, {}, manual, NOW)
    assert d.action == "notify" and "automatic remediation is off" in d.reason


def test_a_failure_escalates_only_when_it_used_the_last_attempt() -> None:
    assert decide_after_outcome(incident(attempts=1), False, POLICY) == "retry_later"
    assert decide_after_outcome(incident(attempts=2), False, POLICY) == "escalate"
    assert decide_after_outcome(incident(attempts=2), True, POLICY) == "mitigated"


def webhook(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "version": "4",
        "status": "firing",
        "receiver": "loopline",
        "groupKey": '{}:{alertname="LooplineHighErrorRate"}',
        "commonLabels": {"alertname": "LooplineHighErrorRate"},
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "LooplineHighErrorRate",
                    "remediation": "rollback",
                    "severity": "page",
                    "version": "2",
                },
                "annotations": {"summary": "5xx ratio 42 %"},
                "startsAt": "2026-11-27T08:00:00.123Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": "abc",
            }
        ],
    }
    body.update(over)
    return body


def test_alertmanager_payloads_parse_and_bad_ones_name_the_field() -> None:
    [a] = Alert.from_alertmanager(webhook())
    assert (a.name, a.status, a.remediation, a.key) == (
        "LooplineHighErrorRate", "firing", "rollback", "LooplineHighErrorRate:2"
    )  # fmt: skip
    assert a.summary == "5xx ratio 42 %" and a.starts_at == pytest.approx(
        datetime(2026, 11, 27, 8, 0, 0, 123000, tzinfo=UTC).timestamp()
    )
    cases = [
        ([], "body: expected a JSON object"),
        (webhook(version="3"), "version: expected '4'"),
        (webhook(alerts={}), "alerts: expected a list"),
        (
            webhook(commonLabels={}, alerts=[{"status": "firing", "labels": {}}]),
            "alerts[0].labels.alertname",
        ),
        (webhook(alerts=[{"status": "odd", "labels": {"alertname": "X"}}]), "alerts[0].status"),
        (webhook(alerts=[{"status": "firing", "labels": {"alertname": 3}}]), "alerts[0].labels"),
        (
            webhook(
                alerts=[{"status": "firing", "labels": {"alertname": "X"}, "startsAt": "yesterday"}]
            ),
            "alerts[0].startsAt",
        ),
    ]
    for body, message in cases:
        with pytest.raises(AlertPayloadError) as err:
            Alert.from_alertmanager(body)
        assert message in str(err.value)


def test_incident_timeline_from_alert_to_escalation(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.jsonl")
    policy = RemediationPolicy(cooldown_minutes=0, max_attempts=1)
    first = store.record_alert(alert(), policy, NOW)
    assert first.decision.action == "rollback" and first.incident is not None
    iid = first.incident.id
    assert store.take(iid) and not store.take(iid)  # exactly one executor runs it
    # The same alert again while the rollback runs is attached to the same incident.
    again = store.record_alert(alert(), policy, NOW + 1)
    assert again.incident is not None and again.incident.id == iid
    assert again.decision.action == "none"
    after = store.finish_action(iid, "rollback", False, policy, details={"error": "x"}, now=NOW + 2)
    assert after.status == "escalated" and after.last_outcome == "failed"
    events = [e["event"] for e in after.timeline]
    assert events == ["opened", "alert", "decision", "action_started", "action_running", "alert",
                      "decision", "action_finished", "escalated"]  # fmt: skip
    # Resolution closes it; a new firing alert then opens a new incident.
    store.record_alert(alert(status="resolved"), policy, NOW + 3)
    assert store.get(iid).status == "resolved"
    fresh = store.record_alert(alert(), policy, NOW + 4)
    assert fresh.incident is not None and fresh.incident.id != iid


def test_a_resolved_alert_without_an_incident_records_nothing(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.jsonl")
    rec = store.record_alert(alert(status="resolved"), POLICY, NOW)
    assert rec.incident is None and store.events() == []


def test_concurrent_receivers_claim_an_action_once(tmp_path: Path) -> None:
    """Two webhook receivers get the same alert at once: one rollback starts, not two."""
    store = IncidentStore(tmp_path / "incidents.jsonl")
    decisions: list[str] = []
    barrier = threading.Barrier(8)

    def receive() -> None:
        barrier.wait()
        decisions.append(
            IncidentStore(store.path).record_alert(alert(), POLICY, NOW).decision.action
        )

    threads = [threading.Thread(target=receive) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(decisions) == ["none"] * 7 + ["rollback"]
    assert len(store.incidents()) == 1


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.jsonl")
    store.record_alert(alert(), POLICY, NOW)
    with store.path.open("a") as fh:
        fh.write('{"incident_id": "inc-x", "ev')
    assert len(store.incidents()) == 1


def test_one_retrain_answers_several_alerts_and_stale_versions_wait() -> None:
    drift = alert("LooplineEmbeddingDrift", remediation="retrain", version="1")
    busy = decide_remediation(drift, None, {}, POLICY, NOW, running={"retrain": "inc-7"})
    assert busy.action == "none" and "already running (incident inc-7)" in busy.reason
    # A rollback is not held up by a running retrain.
    assert decide_remediation(alert(), None, {}, POLICY, NOW, running={"retrain": "x"}).action == (
        "rollback"
    )
    stale = decide_remediation(drift, None, {}, POLICY, NOW, champion="2")
    assert stale.action == "none" and "v2 is champion now" in stale.reason
    assert decide_remediation(drift, None, {}, POLICY, NOW, champion="1").action == "retrain"
    # A rollback alert about a candidate version (not the champion) still acts.
    assert decide_remediation(alert(version="5"), None, {}, POLICY, NOW, champion="4").action == (
        "rollback"
    )


def test_the_store_passes_running_actions_to_the_decision(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.jsonl")
    policy = RemediationPolicy(cooldown_minutes=0)
    first = store.record_alert(alert("LooplineInputDrift", remediation="retrain"), policy, NOW)
    second = store.record_alert(alert("LooplineEmbeddingDrift", remediation="retrain"), policy, NOW)
    assert first.decision.action == "retrain"
    assert second.decision.action == "none" and first.incident is not None
    assert first.incident.id in second.decision.reason


def test_a_failed_and_escalated_action_is_not_retried_under_another_alert_name() -> None:
    drift = alert("LooplineInputDrift", remediation="retrain", version="1")
    held = decide_remediation(drift, None, {}, POLICY, NOW, escalated={("retrain", "1"): "inc-3"})
    assert held.action == "none" and "already failed and escalated (incident inc-3)" in held.reason
    # Another version is another problem.
    other = alert("LooplineInputDrift", remediation="retrain", version="2")
    assert (
        decide_remediation(
            other, None, {}, POLICY, NOW, escalated={("retrain", "1"): "inc-3"}
        ).action
        == "retrain"
    )


def test_the_store_holds_retrains_after_an_escalation(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "incidents.jsonl")
    policy = RemediationPolicy(cooldown_minutes=0, max_attempts=1)
    emb = store.record_alert(alert("LooplineEmbeddingDrift", remediation="retrain"), policy, NOW)
    assert emb.incident is not None and store.take(emb.incident.id)
    store.finish_action(emb.incident.id, "retrain", False, policy, now=NOW + 1)
    later = store.record_alert(alert("LooplineInputDrift", remediation="retrain"), policy, NOW + 2)
    assert later.decision.action == "none" and emb.incident.id in later.decision.reason
    store.resolve(emb.incident.id, "fixed by hand", now=NOW + 3)  # people closed it
    again = store.record_alert(alert("LooplineInputDrift", remediation="retrain"), policy, NOW + 4)
    assert again.decision.action == "retrain"
