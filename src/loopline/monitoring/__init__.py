"""Monitoring and the closed loop: what the served model sees, turned into alerts and actions.

* ``dataset``: the monitoring dataset (per-request descriptors) from the request log, and the
  reference window from the champion's training data.
* ``stats``: per-column drift statistics (the values Evidently computes, vectorised) and a
  two-sample test for categorical columns.
* ``drift``: ``detect_drift(reference, current, policy) -> DriftVerdict`` (pure), embedding
  drift, and the Evidently HTML report for people.
* ``anomaly``: robust (seasonal where history allows) anomaly detection on metric series.
* ``remediation``: ``decide_remediation`` (pure), incident records, cooldowns, escalation.
* ``exporter`` / ``service``: the monitor's Prometheus metrics and the Alertmanager webhook.
"""
