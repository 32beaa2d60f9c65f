"""Cost operations without servers: the ledger from request-log lines in the exact shape the
model server writes (``ServingEngine.record``) and from deployment records, reports with
budgets, alerts and forecasts (real MLflow on SQLite in the throwaway project), capacity plans
written as files, recommendations, and the ``loopline cost`` commands."""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from loopline.cli import app
from loopline.config import Settings
from loopline.cost import operations as ops
from loopline.cost.ledger import money
from loopline.deploy.local_target import append_record
from loopline.deploy.stack import ServerProc, Stack, save_stack, stack_file
from loopline.experiments.lifecycle import ExperimentRecord, experiments_dir
from loopline.experiments.policy import ExperimentSpec, VariantSpec
from loopline.experiments.runtime import ServedVariant
from loopline.fsutil import write_json
from loopline.governance.audit import AuditTrail
from tests.conftest import make_project

Build = Callable[..., Settings]
runner = CliRunner()
T0 = datetime(2026, 3, 9, tzinfo=UTC)  # a Monday
NOW = T0 + timedelta(days=3, hours=12)  # Thursday noon
MODEL = "loopline-support"
# Plans on AWS only: the same MILP on a third of the catalog, faster.
FAST_COST: dict[str, Any] = {"planner": {"clouds": ["aws"]}}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised MLflow database, copied into every test's project (creating the schema
    costs seconds, copying it milliseconds)."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    uri = f"sqlite:///{path}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments()
    return path


@pytest.fixture
def project_root(tmp_path: Path, mlflow_db: Path) -> Path:
    root = make_project(tmp_path / "project")
    (root / ".loopline").mkdir()
    shutil.copy2(mlflow_db, root / ".loopline" / "mlflow.db")
    return root


@pytest.fixture
def settings(small_settings: Build) -> Settings:
    return small_settings(cost=FAST_COST)


# --------------------------------------------------------------------------- helpers


def engine_cost(settings: Settings, prompt_tokens: int, completion_tokens: int) -> float:
    """``ServingEngine.cost``: what the server logs as ``cost_usd``."""
    c = settings.serving
    return (
        prompt_tokens * c.price_per_1k_prompt_tokens
        + completion_tokens * c.price_per_1k_completion_tokens
    ) / 1000


def log_line(
    settings: Settings,
    request_id: str,
    at: datetime,
    *,
    version: str = "1",
    variant: str = "stable",
    status: int = 200,
    prompt_tokens: int = 20,
    completion_tokens: int = 30,
    cache_hit: bool = False,
    prompt: str = "where is my parcel",
    experiments: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One line as ``ServingEngine.record`` writes it (exposure fields when in experiments)."""
    ok = status == 200
    tokens = (prompt_tokens, completion_tokens) if ok else (0, 0)
    cost = 0.0 if cache_hit or not ok else engine_cost(settings, *tokens)
    line: dict[str, Any] = {
        "request_id": request_id,
        "time": at.isoformat(timespec="milliseconds"),
        "ts": at.timestamp(),
        "model": MODEL,
        "model_version": version,
        "variant": variant,
        "endpoint": "chat",
        "status": status,
        "prompt": prompt,
        "reply": "intent: track_order\nreply: on its way" if ok else None,
        "prompt_tokens": tokens[0],
        "completion_tokens": tokens[1],
        "latency_ms": 120.5,
        "ttft_ms": 30.1 if ok else None,
        "cache_hit": cache_hit,
        "batch_size": 0 if cache_hit else 1,
        "finish_reason": "stop" if ok else None,
        "cost_usd": cost,
        "stream": False,
        "error": None if ok else "internal error",
    }
    if experiments is not None:
        line.update(
            unit=f"u-{request_id}", experiments=dict(experiments), flags={}, prompt_version=None
        )
    return line


def write_log(settings: Settings, lines: Iterable[Mapping[str, Any]], version: str = "1") -> None:
    directory = settings.path(settings.serving.request_log_dir) / f"{MODEL}-v{version}"
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "requests.jsonl").open("a", encoding="utf-8") as fh:
        for line in lines:
            fh.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")


def steady_traffic(
    settings: Settings,
    start: datetime,
    end: datetime,
    *,
    every: timedelta = timedelta(minutes=10),
    version: str = "1",
    variant: str = "stable",
    seed: int = 0,
    prefix: str = "r",
) -> list[dict[str, Any]]:
    """A request every ``every``: token counts vary, every 7th is a cache hit, every 13th
    fails."""
    rng = random.Random(seed)
    lines, t, i = [], start, 0
    while t < end:
        lines.append(
            log_line(
                settings,
                f"{prefix}{i}",
                t,
                version=version,
                variant=variant,
                status=500 if i % 13 == 12 else 200,
                prompt_tokens=rng.randint(5, 60),
                completion_tokens=rng.randint(1, 80),
                cache_hit=i % 7 == 6,
                prompt=f"question {i % 5}",
            )
        )
        t += every
        i += 1
    return lines


def exact_cost(line: Mapping[str, Any], settings: Settings) -> Decimal:
    """The request's cost in exact decimal arithmetic (prices are decimal literals)."""
    if line["cache_hit"] or line["status"] != 200:
        return Decimal(0)
    c = settings.serving
    return (
        line["prompt_tokens"] * Decimal(str(c.price_per_1k_prompt_tokens))
        + line["completion_tokens"] * Decimal(str(c.price_per_1k_completion_tokens))
    ) / 1000


def hours(x: float) -> timedelta:
    return timedelta(hours=x)


# --------------------------------------------------------------------------- the ledger


def test_every_request_is_one_token_line_and_costs_add_up_to_the_report(
    settings: Settings,
) -> None:
    stable = steady_traffic(settings, T0, NOW, seed=1)
    candidate = steady_traffic(
        settings, T0 + hours(30), T0 + hours(40), version="2", variant="candidate", seed=2
    )
    # a client retrying with its own x-request-id, and a shadow copy on the candidate server
    retry = log_line(settings, stable[10]["request_id"], T0 + hours(2), prompt_tokens=7)
    shadow = log_line(
        settings, stable[200]["request_id"], T0 + hours(33.3), version="2", variant="shadow"
    )
    outside = log_line(settings, "late", NOW + hours(1))  # after the window: not booked
    write_log(settings, [*stable, retry, outside])
    write_log(settings, [*candidate, shadow], version="2")
    served = [*stable, retry, *candidate, shadow]

    ledger = ops.build_ledger(settings, T0, NOW, now=NOW)
    tokens = ledger.filter({"kind": "tokens"})
    assert len(tokens) == len(served)  # no request lost, none counted twice
    expected = sum((exact_cost(line, settings) for line in served), Decimal(0))
    assert tokens.total == expected  # exact, in Decimal
    assert tokens.total == sum((money(line["cost_usd"]) for line in served), Decimal(0))
    by_variant = tokens.aggregate(["variant"]).as_dict()
    assert set(by_variant) == {("stable",), ("candidate",), ("shadow",)}
    assert sum(by_variant.values(), Decimal(0)) == tokens.total
    assert {line.attribution.team for line in ledger} == {"support"}
    assert {line.attribution.environment for line in ledger} == {"local"}

    result = ops.report(settings, days=4, now=NOW, log_mlflow=False)
    assert result.report_dir is not None
    data = json.loads((result.report_dir / "report.json").read_text())
    window = ledger.window(datetime(2026, 3, 9, tzinfo=UTC), NOW)
    assert Decimal(data["total"]) == window.total == ledger.total
    assert Decimal(data["by"]["kind"]["tokens"]) == expected
    assert data["requests"] == len(served)
    rows = data["daily"]["rows"]
    assert [r["day"] for r in rows] == ["2026-03-09", "2026-03-10", "2026-03-11", "2026-03-12"]
    assert sum(Decimal(r["total"]) for r in rows) == window.total
    for row in rows:  # the scopes of a day add up to the day
        assert sum(Decimal(v) for v in row["scopes"].values()) == Decimal(row["total"])
    for dim, values in data["by"].items():
        assert sum(Decimal(v) for v in values.values()) == window.total, dim


def test_compute_sessions_from_the_log_records_and_the_stack(settings: Settings) -> None:
    every = timedelta(minutes=10)
    # v1: 0:00-2:00 and 7:00-8:00 (a 5 h silence is the server being down)
    first = steady_traffic(settings, T0, T0 + hours(2) + every, every=every, prefix="a")
    second = steady_traffic(settings, T0 + hours(7), T0 + hours(8) + every, every=every, prefix="b")
    write_log(settings, [*first, *second])
    # a release of v2 from 1:30 to 2:30: v2 ran as candidate, v1 as stable (extends 0:00-2:30)
    append_record(
        settings,
        {
            "type": "release",
            "record": {
                "release_id": "rel-1",
                "from_version": "1",
                "to_version": "2",
                "requested_at": (T0 + hours(1.5)).timestamp(),
                "finished_at": (T0 + hours(2.5)).timestamp(),
                "steps": [],
            },
        },
    )
    sources = ops.collect(settings, T0, T0 + hours(12), now=NOW)
    spans = [(s.version, s.variant, s.start - T0, s.end - T0) for s in sources.sessions]
    assert spans == [
        ("1", "stable", hours(0), hours(2.5)),
        ("1", "stable", hours(7), hours(8)),
        ("2", "candidate", hours(1.5), hours(2.5)),
    ]
    compute = sources.ledger.filter({"kind": "compute"})
    price = Decimal("0.2016")  # aws/us-east-1/m7i.xlarge on demand, one replica per server
    assert compute.total == money(Decimal("4.5") * price)
    assert compute.aggregate(["variant"]).as_dict() == {
        ("candidate",): money(price),
        ("stable",): money(Decimal("3.5") * price),
    }

    # windows that split sessions add up to the whole: nothing lost or booked twice at edges
    halves = [
        ops.build_ledger(settings, a, b, now=NOW).filter({"kind": "compute"}).total
        for a, b in ((T0, T0 + hours(1.75)), (T0 + hours(1.75), T0 + hours(12)))
    ]
    assert sum(halves) == compute.total

    # a live stack: the stable server runs from the stack's last change up to now
    save_stack(
        settings,
        Stack(stable=ServerProc(version="1", pid=os.getpid(), port=1, variant="stable", log="")),
    )
    changed = (T0 + hours(10)).timestamp()
    os.utime(stack_file(settings), (changed, changed))
    live = ops.collect(settings, T0, T0 + hours(12), now=T0 + hours(11))
    assert live.sessions[-2].start - T0 == hours(10)
    assert live.sessions[-2].end - T0 == hours(11)  # not beyond now
    assert "stack: stable" in live.sessions[-2].evidence[-1]


def test_price_book_pricing_and_unpriced_models(small_settings: Build) -> None:
    book_priced = small_settings(cost={"accounting": {"token_pricing": "price_book"}})
    write_log(book_priced, steady_traffic(book_priced, T0, T0 + hours(2)))
    ledger = ops.build_ledger(book_priced, T0, T0 + hours(3))
    tokens = ledger.filter({"kind": "tokens"})
    assert len(tokens) == 12 and tokens.total == 0  # self-hosted/loopline-tiny: zero per token
    assert {line.provider for line in tokens} == {"self-hosted"}

    unpriced = {MODEL: "openai/no-such-model"}
    unmapped = small_settings(
        cost={"accounting": {"token_pricing": "price_book", "price_book_models": unpriced}}
    )
    with pytest.raises(ops.CostError, match="price_book_models"):
        ops.build_ledger(unmapped, T0, T0 + hours(3))
    bad_offer = small_settings(cost={"accounting": {"server_offer": "aws/mars-1/m7i.xlarge"}})
    with pytest.raises(ops.CostError, match="server_offer"):
        ops.build_ledger(bad_offer, T0, T0 + hours(3))


def test_defaults_hold_without_a_cost_section(project_root: Path) -> None:
    from loopline.config import load_settings
    from loopline.cost.policy import CostConfig

    base = project_root / "configs" / "loopline.yaml"
    config = yaml.safe_load(base.read_text())
    del config["cost"]
    base.write_text(yaml.safe_dump(config))
    settings = load_settings(project_root, env="local")
    assert settings.cost == CostConfig()
    write_log(settings, steady_traffic(settings, T0, NOW))
    result = ops.report(settings, days=2, now=NOW, write=False)
    assert result.statuses == [] and Decimal(result.summary["total"]) > 0
    assert {line.attribution.team for line in result.ledger} == {"unattributed"}
    with pytest.raises(ops.CostError, match=r"cost\.slo is not configured"):
        ops.plan(settings, now=NOW)


def test_unreadable_lines_are_counted_not_booked(settings: Settings) -> None:
    good = steady_traffic(settings, T0, T0 + hours(1))
    broken = {**good[0], "request_id": "bad", "prompt_tokens": -3}
    write_log(settings, [*good, broken, {"request_id": "no-time"}])
    requests, scan = ops.read_requests(settings, T0, T0 + hours(2))
    assert len(requests) == len(good) and scan.read == len(good) + 2 and scan.skipped == 2
    assert any("prompt_tokens" in p for p in scan.problems)


# --------------------------------------------------------------------------- report


def test_report_alerts_before_the_breach_and_logs_an_mlflow_run(small_settings: Build) -> None:
    # about 0.20 USD of compute and 0.0004 of tokens per hour; by noon 2.4 USD spent today,
    # about 4.9 by the end of the day: a daily budget of 4 is projected to be breached
    settings = small_settings(
        cost={
            **FAST_COST,
            "budgets": [
                {"name": "daily", "amount": 4.0, "period": "daily"},
                {"name": "<candidate>", "amount": 9.0, "scope": {"variant": "candidate"}},
            ],
        }
    )
    write_log(settings, steady_traffic(settings, T0, NOW))
    result = ops.report(settings, days=4, now=NOW)
    daily = next(s for s in result.statuses if s.budget.name == "daily")
    kinds = {a.kind for a in daily.alerts}
    assert kinds == {"hard_projected", "soft_projected"}
    assert all(a.before_breach for a in daily.alerts)
    assert daily.projection is not None and daily.projection.upper_total >= 4.0
    assert float(daily.spent) < 0.8 * 4.0
    assert result.summary["state"] == "critical"
    assert result.forecast.available and result.forecast.hours == 7 * 24

    assert result.report_dir is not None
    data = json.loads((result.report_dir / "report.json").read_text())
    budgets = {b["name"]: b for b in data["budgets"]}
    assert budgets["daily"]["enforcement"]["performed"] is False
    assert any("matches no cost line" in n for n in data["notes"])  # the candidate budget
    html = (result.report_dir / "report.html").read_text()
    assert html.count("<svg") == 1 and "hard_projected" in html
    assert "&lt;candidate&gt;" in html and "<candidate>" not in html

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    exp = client.get_experiment_by_name(f"{settings.tracking.experiment}-cost")
    assert exp is not None
    run = client.get_run(data["mlflow_run_id"])
    assert run.data.metrics["spend.total"] == pytest.approx(float(data["total"]))
    assert run.data.metrics["budget.daily.fraction_used"] == pytest.approx(daily.fraction_used)
    assert run.data.tags["state"] == "critical"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"report.html", "report.json"}


def test_report_html_is_deterministic_and_escaped(settings: Settings) -> None:
    lines = steady_traffic(settings, T0, NOW, variant="<b>x</b>")
    write_log(settings, lines)
    first = ops.report(settings, days=2, now=NOW, write=False)
    second = ops.report(settings, days=2, now=NOW, write=False)
    assert first.html == second.html
    assert "&lt;b&gt;x&lt;/b&gt;" in first.html and "<b>x</b>" not in first.html


def test_forecast_needs_history_and_gives_an_interval(settings: Settings) -> None:
    write_log(settings, steady_traffic(settings, T0, T0 + hours(20)))
    short = ops.forecast_spend(settings, days=2, now=T0 + hours(20))
    assert not short.available and "fewer than the 48 needed" in short.reason

    write_log(settings, steady_traffic(settings, T0 + hours(20), NOW, prefix="more"))
    fc = ops.forecast_spend(settings, days=2, now=NOW)
    assert fc.available and fc.total is not None and len(fc.mean) == 48
    expected, lower, upper = fc.total
    assert lower <= expected <= upper
    assert expected == pytest.approx(48 * 0.2016, rel=0.15)  # compute dominates
    days = fc.daily()
    assert [d["hours"] for d in days] == [12, 24, 12]
    assert sum(d["expected"] for d in days) == pytest.approx(expected)


# --------------------------------------------------------------------------- plan


def test_plan_from_the_log_writes_the_plan_and_its_actions(settings: Settings) -> None:
    write_log(settings, steady_traffic(settings, T0, NOW, every=timedelta(minutes=2)))
    result = ops.plan(settings, now=NOW)
    assert result.plan.feasible and result.plan.hours == 168
    assert result.decision is not None and result.decision.dry_run and not result.decision.apply
    out = result.out_dir
    assert out is not None and out.parent == ops.cost_dir(settings) / "plans"
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "demand.csv",
        "hpa.yaml",
        "loopline.auto.tfvars.json",
        "node-pools.yaml",
        "plan.json",
    ]
    assert ops.read_demand_csv(out / "demand.csv") == result.demand.values  # round trip
    hpa = yaml.safe_load((out / "hpa.yaml").read_text())
    assert hpa["kind"] == "HorizontalPodAutoscaler" and hpa["metadata"]["name"] == MODEL
    assert yaml.safe_load((out / "node-pools.yaml").read_text())[0]["cloud"] == "aws"
    summary = json.loads((out / "plan.json").read_text())
    assert summary["apply"]["dry_run"] is True
    assert summary["demand"]["source"] == "request log"
    # Monday to Thursday noon observed; the other hours of the week borrow their hour of day
    assert any("predate the request log" in n for n in summary["demand"]["notes"])
    assert all(v > 0 for v in result.demand.values)
    entries = AuditTrail.for_settings(settings).entries()
    assert [e.action for e in entries] == ["cost_plan"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty demand file"),
        ("hour,demand\n0,1\n", "line 1: header"),
        ("hour,tokens_per_s\n0,1\n1,abc\n", "line 3: tokens_per_s 'abc' is not a number"),
        ("# comment\nhour,tokens_per_s\n0,1\n2,1\n", "line 4: hour '2', expected 1"),
        ("hour,tokens_per_s\n0,-1\n", "line 2: tokens_per_s '-1' must be finite"),
        ("hour,tokens_per_s\n0,nan\n", "line 2: tokens_per_s 'nan' must be finite"),
        ("hour,tokens_per_s\n0,1,2\n", "line 2: expected 2 fields"),
        ("hour,tokens_per_s\n", "no demand rows"),
    ],
)
def test_bad_demand_files_name_the_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "demand.csv"
    path.write_text(text)
    with pytest.raises(ops.CostError, match=message) as err:
        ops.read_demand_csv(path)
    assert str(path) in str(err.value)


# --------------------------------------------------------------------------- recommend


def cheaper_experiment(settings: Settings, analysed: datetime) -> None:
    """An experiment whose latest analysis found the short-reply variant non-inferior."""
    spec = ExperimentSpec(
        name="reply-length",
        variants=(
            VariantSpec(name="control"),
            VariantSpec(name="short", params={"max_tokens": 16}),
        ),
    )
    analysis = experiments_dir(settings) / "reply-length" / "analyses" / "a1"
    record = ExperimentRecord(
        name="reply-length",
        spec=spec,
        variants=(
            ServedVariant(name="control"),
            ServedVariant(name="short", params={"max_tokens": 16}),
        ),
        created_at=T0.timestamp(),
        analyses=[{"at": analysed.timestamp(), "dir": str(analysis), "action": "keep_running"}],
    )
    write_json(
        record.model_dump(mode="json"), experiments_dir(settings) / "reply-length" / "record.json"
    )
    verdict = {
        "variant": "short",
        "status": "cheaper_non_inferior",
        "primary_improvement": 0.002,
        "primary_interval": [-0.004, 0.008],
        "cost_difference": -0.00002,
        "breached_guardrails": [],
        "pending_guardrails": [],
    }
    write_json({"decision": {"verdicts": [verdict]}}, analysis / "report.json")


def test_recommendations_from_logs_and_experiments(small_settings: Build) -> None:
    settings = small_settings(cost={**FAST_COST, "recommend": {"min_monthly_savings": 0.0}})
    rng = random.Random(3)
    lines = []
    for i in range(600):  # business hours only, Monday to Wednesday
        at = T0 + timedelta(days=i // 200, hours=9 + (i % 200) / 200 * 8)
        arm = "short" if i % 2 else "control"
        lines.append(
            log_line(
                settings,
                f"x{i}",
                at,
                prompt_tokens=rng.randint(20, 40),
                completion_tokens=16 if arm == "short" else rng.randint(40, 80),
                prompt=f"question {i // 2}",  # pairs minutes apart: a cache would help
                experiments={"reply-length": arm},
            )
        )
    write_log(settings, lines)
    cheaper_experiment(settings, NOW - hours(1))

    result = ops.recommend(settings, days=7, now=NOW)
    kinds = {r.kind for r in result.items}
    assert {"routing", "cache", "scale_to_zero"} <= kinds
    routing = next(r for r in result.items if r.kind == "routing")
    assert routing.actions["route_to"] == "short" and routing.monthly_savings > 0
    savings = [r.monthly_savings for r in result.items]
    assert savings == sorted(savings, reverse=True)
    assert result.path is not None and result.path.is_file()
    assert (
        json.loads(result.path.read_text())["recommendations"][0]["title"] == result.items[0].title
    )


# --------------------------------------------------------------------------- command line


def cli(project: Path, *args: str) -> Any:
    return runner.invoke(app, ["cost", *args, "--project", str(project)])


def test_cli_report_forecast_plan_recommend(project_root: Path, small_settings: Build) -> None:
    settings = small_settings()
    (project_root / "configs" / "envs" / "local.yaml").write_text(
        yaml.safe_dump({"cost": FAST_COST})
    )
    now = datetime.now(UTC)
    write_log(
        settings, steady_traffic(settings, now - timedelta(days=3), now, every=timedelta(minutes=5))
    )

    result = cli(project_root, "report", "--days", "3")
    assert result.exit_code == 0, result.output
    assert "budget environment-monthly" in result.output and "report.html" in result.output
    data = json.loads(cli(project_root, "report", "--json").output)
    assert data["window"]["days"] == 7 and data["mlflow_run_id"]

    result = cli(project_root, "forecast", "--days", "2")
    assert result.exit_code == 0, result.output
    assert "USD expected" in result.output

    out = project_root / "plan-out"
    result = cli(project_root, "plan", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "dry run" in result.output and (out / "hpa.yaml").is_file()

    result = cli(project_root, "recommend", "--json")
    assert result.exit_code == 0, result.output
    assert "recommendations" in json.loads(result.output)


def test_cli_bad_input_exits_2_and_writes_nothing(
    project_root: Path, small_settings: Build
) -> None:
    settings = small_settings()
    bad = project_root / "demand.csv"
    bad.write_text("hour,tokens_per_s\n0,10\n1,lots\n")
    out = project_root / "never"
    result = cli(project_root, "plan", "--demand", str(bad), "--out", str(out))
    assert result.exit_code == 2
    assert f"{bad} line 3" in result.output and "lots" in result.output
    assert not out.exists() and not ops.cost_dir(settings).exists()

    assert cli(project_root, "report", "--days", "0").exit_code == 2
    result = cli(project_root, "plan", "--demand", str(project_root / "missing.csv"))
    assert result.exit_code == 2 and "no such demand file" in result.output

    result = cli(project_root, "forecast")  # an empty log: nothing to forecast from
    assert result.exit_code == 1 and "no forecast: the ledger is empty" in result.output

    (project_root / "configs" / "envs" / "local.yaml").write_text("cost:\n  slo: null\n")
    result = cli(project_root, "plan")
    assert result.exit_code == 2 and "cost.slo is not configured" in result.output
    assert not ops.cost_dir(settings).exists()
