"""The committed Prometheus, Alertmanager and Grafana files: the real tools check them
(promtool, amtool), the rule unit tests run, and the dashboards equal the generator's output."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from loopline.monitoring import dashboards as dash
from tests.monitoring.promstack import (
    ALERTMANAGER_YML,
    DASHBOARDS_DIR,
    INFRA,
    PROMETHEUS_YML,
    REPO_ROOT,
    RULE_TESTS_DIR,
    RULES_DIR,
    load_yaml,
    require,
)

pytestmark = pytest.mark.timeout(120)

SEVERITIES = {"page", "ticket"}
# The contract with the monitor's webhook: what each alert asks it to do.
REMEDIATION = {
    "LooplineHighErrorRate": "rollback",
    "LooplineLatencySLOBurn": "rollback",
    "LooplineInputDrift": "retrain",
    "LooplineEmbeddingDrift": "retrain",
    "LooplineQualityDrop": "retrain",
}
REQUIRED_ALERTS = {
    *REMEDIATION,
    "LooplineBudgetBurn",
    "LooplineNoTraffic",
    "LooplineServerDown",
    "LooplineMonitorStale",
}
# Grafana's own variables, and the values a test gives them (Grafana would send these).
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__range": "1h", "__interval": "15s"}


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def alert_rules() -> list[dict[str, Any]]:
    doc = load_yaml(RULES_DIR / "alerts.yml")
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def recording_rules() -> list[dict[str, Any]]:
    doc = load_yaml(RULES_DIR / "recording.yml")
    return [rule for group in doc["groups"] for rule in group["rules"]]


def rule_test_files() -> list[Path]:
    return sorted(RULE_TESTS_DIR.glob("*.yml"))


def grafana_values(board: dict[str, Any]) -> dict[str, str]:
    """What Grafana substitutes for every variable of ``board`` with "All" selected."""
    values = dict(GRAFANA_BUILTINS)
    for var in board["templating"]["list"]:
        values[var["name"]] = var.get("allValue") or ".*"
    return values


# -- promtool and amtool ---------------------------------------------------------------------------
def test_promtool_accepts_the_config_and_the_rules() -> None:
    promtool = require("promtool")["promtool"]
    checked = run([promtool, "check", "config", str(PROMETHEUS_YML)])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # check config loads the rule files it names: both must be there
    assert "2 rule files found" in checked.stdout + checked.stderr
    rules = run([promtool, "check", "rules", *map(str, sorted(RULES_DIR.glob("*.yml")))])
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    promtool = require("promtool")["promtool"]
    files = rule_test_files()
    assert files
    # One process per file: the two cores share the work.
    procs = [
        subprocess.Popen(
            [promtool, "test", "rules", str(f)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for f in files
    ]
    failures = []
    for f, proc in zip(files, procs, strict=True):
        out, _ = proc.communicate(timeout=60)
        if proc.returncode != 0:
            failures.append(f"{f.name}:\n{out}")
    assert not failures, "\n".join(failures)


def test_rule_unit_tests_cover_every_alert_and_recording_rule() -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    exprs: list[str] = []
    for path in rule_test_files():
        doc = load_yaml(path)
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
            exprs += [check["expr"] for check in case.get("promql_expr_test", [])]
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fires == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested staying silent"
    used = " ".join(exprs)
    untested = [r["record"] for r in recording_rules() if r["record"] not in used]
    assert untested == []


def test_amtool_accepts_the_alertmanager_config() -> None:
    amtool = require("amtool")["amtool"]
    checked = run([amtool, "check-config", str(ALERTMANAGER_YML)])
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_remediation_reaches_the_monitor_webhook() -> None:
    amtool = require("amtool")["amtool"]
    config = load_yaml(ALERTMANAGER_YML)
    receivers = {r["name"]: r for r in config["receivers"]}
    hooks = receivers["loopline"]["webhook_configs"]
    assert [h["url"] for h in hooks] == ["http://127.0.0.1:9410/alerts"]
    assert all(h["send_resolved"] for h in hooks)
    assert {"alertname", "version"} <= set(config["route"]["group_by"])
    routes = {}
    for route in config["route"]["routes"]:
        matched = re.fullmatch(r'remediation="(\w+)"', route["matchers"][0])
        assert matched, route
        routes[matched.group(1)] = route
    for rule in alert_rules():
        labels = rule["labels"]
        route = routes[labels["remediation"]]
        assert route["receiver"] == "loopline"
        # amtool agrees on where the alert goes
        tested = run(
            [
                amtool,
                "config",
                "routes",
                "test",
                f"--config.file={ALERTMANAGER_YML}",
                f"alertname={rule['alert']}",
                f"remediation={labels['remediation']}",
                f"severity={labels['severity']}",
            ]
        )
        assert tested.returncode == 0 and tested.stdout.strip() == "loopline", tested
    # the automated rollback is notified faster than anything else
    waits = {name: _seconds(route["group_wait"]) for name, route in routes.items()}
    assert waits["rollback"] < min(w for name, w in waits.items() if name != "rollback")
    inhibited = {
        (tuple(i["source_matchers"]), tuple(i["target_matchers"])) for i in config["inhibit_rules"]
    }
    assert (('alertname="LooplineServerDown"',), ('alertname="LooplineNoTraffic"',)) in inhibited


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", duration)
    assert parts, duration
    return sum(int(n) * units[u] for n, u in parts)


# -- the alerts themselves -------------------------------------------------------------------------
def test_every_alert_has_severity_remediation_and_annotations() -> None:
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} >= REQUIRED_ALERTS
    docs = (REPO_ROOT / "docs" / "observability.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in docs.splitlines()
        if line.startswith("#")
    }
    for rule in rules:
        name, labels, notes = rule["alert"], rule["labels"], rule["annotations"]
        assert labels["severity"] in SEVERITIES, name
        assert labels["remediation"] == REMEDIATION.get(name, "notify"), name
        for key in ("summary", "description", "runbook"):
            assert notes.get(key, "").strip(), f"{name}: no {key}"
        page, _, anchor = notes["runbook"].partition("#")
        assert page == "docs/observability.md" and anchor in anchors, f"{name}: {anchor}"
        assert "for" in rule, f"{name} has no for: duration"


def test_serving_alerts_keep_the_version_they_are_about() -> None:
    """An alert over the per-version recording rules must not aggregate the version away:
    the webhook rolls back the version named in the alert."""
    for rule in alert_rules():
        expr = rule["expr"]
        if "variant_version:" in expr:
            assert not re.search(r"\b(sum|max|min|avg|count)\b", expr), rule["alert"]
            assert re.findall(r"on \(([^)]*)\)", expr) == ["variant, version"] * len(
                re.findall(r"\bon \(", expr)
            ), rule["alert"]


def test_dashboard_thresholds_equal_the_alert_thresholds() -> None:
    rules = {rule["alert"] + rule["labels"]["severity"]: rule["expr"] for rule in alert_rules()}
    recording = (RULES_DIR / "recording.yml").read_text()
    assert f'le="{dash.LATENCY_SLO_SECONDS:g}"' in recording
    high_error = rules["LooplineHighErrorRatepage"]
    assert f"ratio_rate5m > {dash.ERROR_RATIO_MAX:g}" in high_error
    budget = f"{dash.LATENCY_ERROR_BUDGET:g}"
    assert f"({dash.FAST_BURN_RATE:g} * {budget})" in rules["LooplineLatencySLOBurnpage"]
    assert f"({dash.SLOW_BURN_RATE:g} * {budget})" in rules["LooplineLatencySLOBurnticket"]
    assert "loopline_quality_floor" in rules["LooplineQualityDroppage"]  # the monitor's own


# -- dashboards ------------------------------------------------------------------------------------
def test_committed_dashboards_equal_the_generator_output(tmp_path: Path) -> None:
    boards = dash.build_dashboards()
    committed = {p.name: p.read_text(encoding="utf-8") for p in DASHBOARDS_DIR.glob("*.json")}
    assert set(committed) == set(boards), "regenerate: python -m loopline.monitoring.dashboards"
    for name, board in boards.items():
        assert committed[name] == dash.render(board), f"{name} is stale: regenerate it"
    assert dash.main(["--out", str(DASHBOARDS_DIR), "--check"]) == 0
    # the entry point writes exactly these files, and --check notices a changed one
    assert dash.main(["--out", str(tmp_path)]) == 0
    assert {p.name: p.read_text() for p in tmp_path.glob("*.json")} == committed
    first = sorted(committed)[0]
    (tmp_path / first).write_text(committed[first].replace('"refresh": "30s"', '"refresh": ""'))
    assert dash.main(["--out", str(tmp_path), "--check"]) == 1


def test_dashboards_cover_the_required_views() -> None:
    titles = {board["title"] for board in dash.build_dashboards().values()}
    for view in ("Service health", "Latency", "Tokens and cost", "Drift", "Experiments"):
        assert any(view in t for t in titles), view
    assert any("Releases" in t for t in titles)


def test_every_panel_has_a_prometheus_query_and_a_place_on_the_grid() -> None:
    for name, board in dash.build_dashboards().items():
        assert board["schemaVersion"] >= 36 and board["uid"] and board["title"]
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        cells: set[tuple[int, int]] = set()
        panels = list(dash.iter_panels(board))
        assert panels, name
        for panel in board["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= dash.GRID_WIDTH
            area = {
                (x, y)
                for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])
            }
            assert not area & cells, f"{name}: {panel['title']} overlaps another panel"
            cells |= area
        for panel in panels:
            targets = panel["targets"]
            assert any(t.get("expr", "").strip() for t in targets), f"{name}: {panel['title']}"
            refs = [t["refId"] for t in targets]
            assert len(refs) == len(set(refs)) and all(refs), panel["title"]
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert all(t["datasource"] == panel["datasource"] for t in targets)
        # every variable an expression uses is defined (or one of Grafana's own)
        values = grafana_values(board)
        for where, expr in dash.iter_exprs(board):
            dash.expand_expr(expr, values)  # raises KeyError on an undefined variable
            assert where


def test_every_dashboard_expression_parses_as_promql(tmp_path: Path) -> None:
    """promtool parses each expression (as a recording rule); the live test evaluates them."""
    promtool = require("promtool")["promtool"]
    rules = []
    for name, board in dash.build_dashboards().items():
        values = grafana_values(board)
        for i, (_, expr) in enumerate(dash.iter_exprs(board)):
            rules.append(
                {"record": f"dashboard:{Path(name).stem.replace('-', '_')}:{i}", "expr": expr}
            )
            rules[-1]["expr"] = dash.expand_expr(expr, values)
    path = tmp_path / "dashboards.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    checked = run([promtool, "check", "rules", str(path)])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(rules)} rules found" in checked.stdout


def test_expand_expr_substitutes_like_grafana() -> None:
    values = {"variant": ".*", "__rate_interval": "2m", "datasource": "x"}
    expr = 'rate(m{variant=~"$variant"}[$__rate_interval]) and on() n{a="${variant}"}'
    assert dash.expand_expr(expr, values) == ('rate(m{variant=~".*"}[2m]) and on() n{a=".*"}')
    with pytest.raises(KeyError):
        dash.expand_expr('m{version=~"$version"}', values)


def test_grafana_provisioning_points_at_the_generated_dashboards() -> None:
    prov = INFRA / "grafana" / "provisioning"
    sources = load_yaml(prov / "datasources" / "loopline.yml")
    assert sources["apiVersion"] == 1
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"]
    prom = load_yaml(PROMETHEUS_YML)
    serving = next(j for j in prom["scrape_configs"] if j["job_name"] == "loopline-serving")
    assert source["jsonData"]["timeInterval"] == serving["scrape_interval"]
    providers = load_yaml(prov / "dashboards" / "loopline.yml")
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "${LOOPLINE_GRAFANA_DASHBOARDS}"
