"""Cost management as operations: this environment's ledger, reports, forecasts, capacity
plans and savings recommendations.

The side-effect layer around the pure :mod:`loopline.cost` package (no Prefect here;
``tasks/cost.py`` wraps these functions for the weekly ``cost`` flow).

Where the money comes from (:func:`build_ledger`)
-------------------------------------------------
* **Tokens**: one line per request in the request log (``serving.request_log_dir``, every
  server's log), attributed to the logged model, version and variant, to
  ``cost.accounting.team`` and to the environment. A request is priced at its logged
  ``cost_usd`` (``token_pricing: log``, the default) or from the token price book
  (``price_book``, or when a line carries no ``cost_usd``); cache hits cost nothing. The line
  id is the server (model and version) and the request id; a request id repeated on the same
  server (a client retrying with its own ``x-request-id``) gets an occurrence suffix, so every
  logged request is exactly one line.
* **Compute**: every model-server process counts as ``replicas_per_server`` replicas of the
  catalog offer ``server_offer`` while it runs, ``replicas × hourly price × hours``. Neither
  the deployment records nor the stack say when a server started or stopped in general, so
  the running time is assembled from what is known: the releases in the deployment records
  (stable and candidate both run from a release's request to its end), the servers the stack
  file lists as alive now (running at least since the stack last changed, up to now), and the
  request log, where a server is taken as running from its first to its last logged request,
  a silence longer than ``session_gap_minutes`` counting as down (and a server whose last
  request is more recent than that is taken as running now). Per model version these
  intervals are merged (a union: no hour is booked twice), and each merged session is
  attributed to the role most of its requests were served as (stable or candidate). A server
  that served a single request and appears nowhere else has no measurable running time and
  books no compute.

State lives under ``<state>/cost/``:

* ``reports/<stamp>/report.json`` and ``report.html`` (:func:`report`), also logged to the
  MLflow experiment ``<tracking.experiment>-cost``;
* ``plans/<stamp>/`` (:func:`plan`): ``plan.json``, the ``demand.csv`` planned for, and the
  rendered actions ``loopline.auto.tfvars.json``, ``node-pools.yaml`` and ``hpa.yaml``, a dry
  run: nothing is applied (the decision is audited);
* ``recommendations/<stamp>/recommendations.json`` (:func:`recommend`).
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from loopline.config import Settings
from loopline.cost.budget import (
    BudgetStatus,
    EnforcementDecision,
    decide_enforcement,
    evaluate_budget,
    period_window,
)
from loopline.cost.catalog import (
    Catalog,
    CatalogError,
    Offer,
    PriceBook,
    load_catalog,
    load_price_book,
)
from loopline.cost.forecast import forecast
from loopline.cost.ledger import (
    UNATTRIBUTED,
    Attribution,
    ComputeUsage,
    CostLine,
    Ledger,
    RequestUsage,
    compute_line,
    money,
    token_line,
)
from loopline.cost.policy import SCOPE_KEYS, AlertPolicy, CapacitySLO
from loopline.fsutil import atomic_writer, read_json, write_json

if TYPE_CHECKING:
    from loopline.cost.planner import CapacityPlan
    from loopline.cost.recommend import ApplyDecision, ExperimentSummary, Recommendation

ACTOR = "loopline-cost"
SERVER_ROLES = ("stable", "candidate")
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
HOURS_PER_WEEK = 168
MAX_DEMAND_HOURS = 24 * 31  # a month of hours: the planner groups hours in O(hours²)
DEMAND_COLUMNS = ("hour", "tokens_per_s")
MAX_CHART_SERIES = 6


class CostError(ValueError):
    """A cost operation cannot proceed; the message names the file, line or setting."""


def cost_dir(settings: Settings) -> Path:
    return settings.state_path / "cost"


def _utc(t: datetime, what: str) -> datetime:
    if t.tzinfo is None:
        raise CostError(f"{what} {t.isoformat()} has no timezone; use UTC-aware datetimes")
    return t.astimezone(UTC)


def _now(now: datetime | None) -> datetime:
    return datetime.now(UTC) if now is None else _utc(now, "now")


def _floor_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def _midnight(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def _stamp(t: datetime) -> str:
    return t.strftime("%Y%m%dT%H%M%S") + f"-{t.microsecond // 1000:03d}"


def _environment(settings: Settings) -> str:
    return settings.cost.accounting.environment or settings.env


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


# --------------------------------------------------------------------------- request log


@dataclass(frozen=True)
class ServedRequest:
    """One request-log line, as far as cost is concerned."""

    request_id: str
    at: datetime
    model: str
    version: str
    variant: str
    status: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal | None
    cache_hit: bool
    prompt: str | None = None
    experiments: Mapping[str, str] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def server(self) -> tuple[str, str]:
        return self.model, self.version


@dataclass
class LogScan:
    """What reading the request log found: lines read, kept, skipped (and why)."""

    read: int = 0
    in_window: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)
    first: datetime | None = None
    last: datetime | None = None

    def note(self, problem: str) -> None:
        self.skipped += 1
        if len(self.problems) < 5:
            self.problems.append(problem)


def _count(entry: Mapping[str, Any], key: str) -> int:
    value = entry.get(key, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} {value!r} is not a non-negative integer")
    return value


def _parse(entry: Mapping[str, Any]) -> ServedRequest:
    ts = entry.get("ts")
    if isinstance(ts, int | float) and not isinstance(ts, bool) and math.isfinite(ts):
        at = datetime.fromtimestamp(float(ts), UTC)
    elif isinstance(entry.get("time"), str):
        at = _utc(datetime.fromisoformat(str(entry["time"])), "time")
    else:
        raise ValueError("no timestamp (ts or time)")
    request_id = entry.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        raise ValueError("no request_id")
    raw_cost = entry.get("cost_usd")
    cost: Decimal | None = None
    if raw_cost is not None:
        if isinstance(raw_cost, bool) or not isinstance(raw_cost, int | float):
            raise ValueError(f"cost_usd {raw_cost!r} is not a number")
        cost = Decimal(str(raw_cost))
        if not cost.is_finite() or cost < 0:
            raise ValueError(f"cost_usd {raw_cost!r} is not a non-negative amount")
    arms = entry.get("experiments")
    return ServedRequest(
        request_id=request_id,
        at=at,
        model=str(entry.get("model") or UNATTRIBUTED),
        version=str(entry.get("model_version") or UNATTRIBUTED),
        variant=str(entry.get("variant") or UNATTRIBUTED),
        status=int(entry.get("status") or 0),
        prompt_tokens=_count(entry, "prompt_tokens"),
        completion_tokens=_count(entry, "completion_tokens"),
        cost_usd=cost,
        cache_hit=bool(entry.get("cache_hit")),
        prompt=entry.get("prompt") if isinstance(entry.get("prompt"), str) else None,
        experiments={str(k): str(v) for k, v in arms.items()} if isinstance(arms, dict) else {},
    )


def read_requests(
    settings: Settings, since: datetime, until: datetime
) -> tuple[list[ServedRequest], LogScan]:
    """Requests served in ``[since, until)``, oldest first, and what the scan found.

    ``LogScan.first``/``last`` span every readable line of the log, inside the window or not.
    """
    from loopline.serving.request_log import read_request_logs

    since, until = _utc(since, "since"), _utc(until, "until")
    scan = LogScan()
    kept: list[ServedRequest] = []
    root = settings.path(settings.serving.request_log_dir)
    for entry in read_request_logs(root) if root.is_dir() else ():
        scan.read += 1
        try:
            req = _parse(entry)
        except (ValueError, TypeError, InvalidOperation) as exc:
            scan.note(f"request {entry.get('request_id', '?')}: {exc}")
            continue
        scan.first = req.at if scan.first is None else min(scan.first, req.at)
        scan.last = req.at if scan.last is None else max(scan.last, req.at)
        if since <= req.at < until:
            kept.append(req)
    kept.sort(key=lambda r: r.at)
    scan.in_window = len(kept)
    return kept, scan


# --------------------------------------------------------------------------- token lines


@dataclass(frozen=True)
class _Pricer:
    settings: Settings
    book: PriceBook

    def entry(self, model: str) -> tuple[str, str]:
        mapped = self.settings.cost.accounting.price_book_models.get(model)
        if mapped:
            provider, _, name = mapped.strip("/").partition("/")
            return provider, name
        return "self-hosted", model

    def attribution(self, req: ServedRequest, variant: str | None = None) -> Attribution:
        return Attribution(
            model=req.model,
            version=req.version,
            variant=variant or req.variant,
            team=self.settings.cost.accounting.team,
            environment=_environment(self.settings),
        )

    def line(self, req: ServedRequest, key: str) -> CostLine:
        provider, name = self.entry(req.model)
        attribution = self.attribution(req)
        if self.settings.cost.accounting.token_pricing == "log" and req.cost_usd is not None:
            return CostLine(
                line_id=f"tokens:{key}",
                kind="tokens",
                amount=money(req.cost_usd),
                start=req.at,
                end=req.at,
                attribution=attribution,
                provider=provider,
                quantity=Decimal(req.tokens),
                unit="tokens",
                detail=f"{req.prompt_tokens} in + {req.completion_tokens} out, logged cost"
                + (" (cache hit)" if req.cache_hit else ""),
            )
        usage = RequestUsage(
            request_id=key,
            timestamp=req.at,
            provider=provider,
            model=name,
            input_tokens=req.prompt_tokens,
            output_tokens=req.completion_tokens,
            attribution=attribution,
            cached=req.cache_hit,
        )
        try:
            return token_line(usage, self.book)
        except KeyError as exc:
            raise CostError(
                f"{exc.args[0]} (price book {self.book.source_file}); map model "
                f"{req.model!r} to a priced entry in cost.accounting.price_book_models"
            ) from None

    def amount(self, req: ServedRequest) -> Decimal:
        return self.line(req, req.request_id).amount


def token_lines(
    requests: Iterable[ServedRequest], settings: Settings, book: PriceBook
) -> list[CostLine]:
    """One line per request; ids ``<model>/v<version>/<request id>[#n]`` are unique."""
    pricer = _Pricer(settings, book)
    seen: Counter[str] = Counter()
    out = []
    for req in requests:
        key = f"{req.model}/v{req.version}/{req.request_id}"
        seen[key] += 1
        out.append(pricer.line(req, key if seen[key] == 1 else f"{key}#{seen[key]}"))
    return out


# --------------------------------------------------------------------------- compute lines


@dataclass(frozen=True)
class ServerSession:
    """A model-server process (model, version) running over ``[start, end)``."""

    model: str
    version: str
    variant: str
    start: datetime
    end: datetime
    requests: int
    evidence: tuple[str, ...]

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "variant": self.variant,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "hours": self.hours,
            "requests": self.requests,
            "evidence": list(self.evidence),
        }


@dataclass
class _Span:
    model: str
    version: str
    start: datetime
    end: datetime
    served_as: Counter[str] = field(default_factory=Counter)
    declared: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    evidence: set[str] = field(default_factory=set)

    def absorb(self, other: _Span) -> None:
        self.end = max(self.end, other.end)
        self.served_as.update(other.served_as)
        self.declared.update(other.declared)
        self.requests += other.requests
        self.evidence |= other.evidence

    def role(self) -> str:
        """The role most requests were served as; else what a record declared; else stable."""
        for counts in (
            Counter({r: n for r, n in self.served_as.items() if r in SERVER_ROLES}),
            self.declared,
            self.served_as,
        ):
            if counts:
                best = max(counts.values())
                tied = sorted(r for r, n in counts.items() if n == best)
                return next((r for r in SERVER_ROLES if r in tied), tied[0])
        return "stable"


def _log_spans(
    requests: Sequence[ServedRequest], gap: timedelta, now: datetime | None
) -> list[_Span]:
    """Runs of a server's requests no more than ``gap`` apart; a server whose last request
    is within ``gap`` of ``now`` is taken as still running up to ``now``."""
    by_server: dict[tuple[str, str], list[ServedRequest]] = defaultdict(list)
    for req in requests:
        by_server[req.server].append(req)
    spans: list[_Span] = []
    for (model, version), reqs in by_server.items():
        current: _Span | None = None
        for req in sorted(reqs, key=lambda r: r.at):
            if current is None or req.at - current.end > gap:
                current = _Span(model, version, req.at, req.at, evidence={"request log"})
                spans.append(current)
            current.end = req.at
            current.served_as[req.variant] += 1
            current.requests += 1
        if current is not None and now is not None and current.end <= now <= current.end + gap:
            current.end = now
    return spans


def _declared_spans(settings: Settings, until: datetime, now: datetime) -> list[_Span]:
    """Running intervals the deployment records and the live stack state outright."""
    from loopline.deploy.local_target import read_records
    from loopline.deploy.stack import alive, load_stack, stack_file

    model = settings.model.name
    spans = []
    for entry in read_records(settings):
        record = entry.get("record") if entry.get("type") == "release" else None
        if not isinstance(record, dict):
            continue
        started, finished = record.get("requested_at"), record.get("finished_at")
        if not isinstance(started, int | float) or not isinstance(finished, int | float):
            continue
        start = datetime.fromtimestamp(started, UTC)
        end = datetime.fromtimestamp(finished, UTC)
        evidence = f"release {record.get('release_id', '?')}"
        for version, role in (
            (record.get("to_version"), "candidate"),
            (record.get("from_version"), "stable"),
        ):
            if version and end > start:
                spans.append(
                    _Span(
                        model,
                        str(version),
                        start,
                        end,
                        declared=Counter({role: 1}),
                        evidence={evidence},
                    )
                )
    path = stack_file(settings)
    if path.is_file():
        stack = load_stack(settings)
        since = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        end = min(until, now)
        for role, server in (
            ("stable", stack.stable),
            ("candidate", stack.candidate),
            ("standby", stack.standby),
        ):
            if server is not None and alive(server.pid) and end > since:
                spans.append(
                    _Span(
                        model,
                        server.version,
                        since,
                        end,
                        declared=Counter({role: 1}),
                        evidence={f"stack: {role} pid {server.pid} running"},
                    )
                )
    return spans


def server_sessions(
    requests: Sequence[ServedRequest],
    declared: Sequence[_Span],
    *,
    since: datetime,
    until: datetime,
    gap: timedelta,
    now: datetime | None = None,
) -> list[ServerSession]:
    """Merged running intervals per model version, clipped to ``[since, until)``.

    Pass the requests of ``[since - gap, until + gap)``: a session running across a window
    edge is then seen as one.
    """
    by_server: dict[tuple[str, str], list[_Span]] = defaultdict(list)
    for span in [*_log_spans(requests, gap, now), *declared]:
        by_server[(span.model, span.version)].append(span)
    out = []
    for key in sorted(by_server):
        merged: list[_Span] = []
        for span in sorted(by_server[key], key=lambda s: (s.start, s.end)):
            if merged and span.start <= merged[-1].end:
                merged[-1].absorb(span)
            else:
                merged.append(
                    _Span(
                        span.model,
                        span.version,
                        span.start,
                        span.end,
                        Counter(span.served_as),
                        Counter(span.declared),
                        span.requests,
                        set(span.evidence),
                    )
                )
        for span in merged:
            start, end = max(span.start, since), min(span.end, until)
            if end <= start:
                continue
            out.append(
                ServerSession(
                    span.model,
                    span.version,
                    span.role(),
                    start,
                    end,
                    span.requests,
                    tuple(sorted(span.evidence)),
                )
            )
    return out


def _server_offer(settings: Settings, catalog: Catalog) -> Offer:
    key = settings.cost.accounting.server_offer
    try:
        return catalog.get(key)
    except KeyError:
        raise CostError(
            f"cost.accounting.server_offer {key!r} is not in the price catalog "
            f"{catalog.source_file} (use cloud/region/instance_type of a listed offer)"
        ) from None


def compute_lines(
    sessions: Iterable[ServerSession], settings: Settings, catalog: Catalog
) -> list[CostLine]:
    """``replicas × hourly price × hours`` of the server offer for every session."""
    acc = settings.cost.accounting
    offer = _server_offer(settings, catalog)
    return [
        compute_line(
            ComputeUsage(
                usage_id=f"{s.model}/v{s.version}/{s.start:%Y%m%dT%H%M%S.%f}",
                offer=offer.key,
                pricing=acc.server_pricing,
                replicas=acc.replicas_per_server,
                start=s.start,
                end=s.end,
                attribution=Attribution(
                    s.model, s.version, s.variant, acc.team, _environment(settings)
                ),
            ),
            catalog,
        )
        for s in sessions
    ]


# --------------------------------------------------------------------------- the ledger


@dataclass
class LedgerSources:
    """A ledger and what it was built from."""

    ledger: Ledger
    since: datetime
    until: datetime
    requests: list[ServedRequest]
    scan: LogScan
    sessions: list[ServerSession]
    catalog: Catalog
    book: PriceBook

    def notes(self, settings: Settings) -> list[str]:
        acc = settings.cost.accounting
        out = [
            f"{self.scan.in_window} requests logged from {self.since:%Y-%m-%d %H:%M} to "
            f"{self.until:%Y-%m-%d %H:%M} UTC ({self.scan.read} lines in the log) became one "
            f"token line each ({acc.token_pricing} pricing; price book {self.book.source_file})",
            f"compute: each model-server process counts as {acc.replicas_per_server} × "
            f"{acc.server_offer} ({acc.server_pricing}, catalog {self.catalog.source_file}); "
            "its running time comes from the deployment records and the live stack where "
            "they state it, otherwise from its first to its last logged request (silences "
            f"over {acc.session_gap_minutes:g} min count as down)",
            f"{len(self.sessions)} server sessions in that span, "
            f"{sum(s.hours for s in self.sessions):,.2f} server-hours",
        ]
        if self.scan.skipped:
            out.append(
                f"{self.scan.skipped} unreadable request-log lines were skipped: "
                + "; ".join(self.scan.problems)
            )
        return out


def collect(
    settings: Settings,
    since: datetime,
    until: datetime,
    *,
    now: datetime | None = None,
    catalog: Catalog | None = None,
    book: PriceBook | None = None,
) -> LedgerSources:
    """The ledger of ``[since, until)`` and its sources (see the module docstring)."""
    since, until = _utc(since, "since"), _utc(until, "until")
    if until <= since:
        raise CostError(f"empty window: until {until.isoformat()} is not after {since.isoformat()}")
    now = _now(now)
    try:
        catalog = catalog or load_catalog()
        book = book or load_price_book()
    except CatalogError as exc:
        raise CostError(str(exc)) from None
    gap = timedelta(minutes=settings.cost.accounting.session_gap_minutes)
    around, scan = read_requests(settings, since - gap, until + gap)
    requests = [r for r in around if since <= r.at < until]
    scan.in_window = len(requests)
    sessions = server_sessions(
        around,
        _declared_spans(settings, until, now),
        since=since,
        until=until,
        gap=gap,
        now=now,
    )
    ledger = Ledger(
        (
            *token_lines(requests, settings, book),
            *compute_lines(sessions, settings, catalog),
        )
    )
    return LedgerSources(ledger, since, until, requests, scan, sessions, catalog, book)


def build_ledger(
    settings: Settings, since: datetime, until: datetime, *, now: datetime | None = None
) -> Ledger:
    """Every cost line of this environment in ``[since, until)``: one token line per logged
    request, compute lines for the model-server processes (module docstring). ``now``
    (default: the clock) is when servers still running are counted up to."""
    return collect(settings, since, until, now=now).ledger


# --------------------------------------------------------------------------- forecast


@dataclass(frozen=True)
class SpendForecast:
    """Forecast hourly spend (all scopes) from ``start``, or why there is none.

    ``total`` is the exact interval of the sum over the horizon; a day's band in
    :meth:`daily` adds the hourly bounds, which can only be wider than the day's exact
    interval (a conservative band). Values are clipped at zero (spend is never negative).
    """

    start: datetime
    hours: int
    history_hours: int
    level: float
    method: str | None = None
    mean: tuple[float, ...] = ()
    lower: tuple[float, ...] = ()
    upper: tuple[float, ...] = ()
    total: tuple[float, float, float] | None = None
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.method is not None

    @property
    def starts(self) -> tuple[datetime, ...]:
        return tuple(self.start + i * HOUR for i in range(len(self.mean)))

    def daily(self) -> list[dict[str, Any]]:
        days: dict[date, list[float]] = {}
        for t, m, lo, hi in zip(self.starts, self.mean, self.lower, self.upper, strict=True):
            acc = days.setdefault(t.date(), [0.0, 0.0, 0.0, 0.0])
            acc[0] += m
            acc[1] += lo
            acc[2] += hi
            acc[3] += 1
        return [
            {
                "day": d.isoformat(),
                "hours": int(v[3]),
                "expected": v[0],
                "lower": v[1],
                "upper": v[2],
            }
            for d, v in days.items()
        ]

    def summary_text(self) -> str:
        if self.total is None:
            return f"no forecast: {self.reason}"
        m, lo, hi = self.total
        return (
            f"next {self.hours} h: {m:,.4f} USD expected, [{lo:,.4f}, {hi:,.4f}] at "
            f"{100 * self.level:.0f} % ({self.method} from {self.history_hours} h of history)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "hours": self.hours,
            "history_hours": self.history_hours,
            "method": self.method,
            "level": self.level,
            "reason": self.reason,
            "total": (
                None
                if self.total is None
                else dict(zip(("expected", "lower", "upper"), self.total, strict=True))
            ),
            "daily": self.daily(),
            "hourly": {
                "mean": list(self.mean),
                "lower": list(self.lower),
                "upper": list(self.upper),
            },
        }


def spend_forecast(ledger: Ledger, now: datetime, hours: int, policy: AlertPolicy) -> SpendForecast:
    """Forecast ``hours`` of total hourly spend from the current hour on, fitted to the
    complete hours of the last ``policy.history_hours`` (fewer when the ledger is younger)."""
    start = _floor_hour(_utc(now, "now"))
    spec = policy.forecast
    first = min((line.start for line in ledger), default=None)
    if first is None:
        return SpendForecast(start, hours, 0, spec.interval_level, reason="the ledger is empty")
    available = max(0, int((start - _floor_hour(first)) / HOUR))
    n = min(policy.history_hours, available)
    if n < max(policy.min_history_steps, spec.season_length + 1):
        need = max(policy.min_history_steps, spec.season_length + 1)
        return SpendForecast(
            start,
            hours,
            n,
            spec.interval_level,
            reason=f"{n} complete hours of spend history, fewer than the {need} needed",
        )
    history = ledger.by_period(start - n * HOUR, start, "hour").values()
    if n < 2 * spec.season_length:
        spec = spec.model_copy(update={"method": "seasonal_naive"})
    fc = forecast(history, hours, spec)
    expected, lower, upper = fc.total()
    # spend is never negative: a trend extrapolated below zero is shown as zero
    return SpendForecast(
        start=start,
        hours=hours,
        history_hours=n,
        level=fc.level,
        method=fc.method,
        mean=tuple(max(float(x), 0.0) for x in fc.mean),
        lower=tuple(max(float(x), 0.0) for x in fc.lower),
        upper=tuple(max(float(x), 0.0) for x in fc.upper),
        total=(max(expected, 0.0), max(lower, 0.0), max(upper, 0.0)),
    )


def forecast_spend(
    settings: Settings, *, days: int = 7, now: datetime | None = None
) -> SpendForecast:
    """Forecast this environment's spend for the next ``days`` days (no files written)."""
    if days < 1:
        raise CostError(f"days must be at least 1, got {days}")
    now = _now(now)
    policy = settings.cost.alerts
    sources = collect(settings, _floor_hour(now) - policy.history_hours * HOUR, now, now=now)
    return spend_forecast(sources.ledger, now, days * 24, policy)


# --------------------------------------------------------------------------- report


def _key(values: Sequence[str]) -> str:
    return "/".join(values)


def _scopes(window: Ledger, by: Sequence[str]) -> list[tuple[str, dict[str, str]]]:
    """The largest groups of ``by`` (label, scope), at most ``MAX_CHART_SERIES``."""
    rows = sorted(window.aggregate(by).rows, key=lambda r: (-r.amount, r.key))
    return [(_key(r.key), dict(zip(by, r.key, strict=True))) for r in rows[:MAX_CHART_SERIES]]


@dataclass
class CostReport:
    """One cost report and where it went."""

    at: datetime
    stamp: str
    summary: dict[str, Any]
    html: str
    statuses: list[BudgetStatus]
    decisions: list[EnforcementDecision]
    forecast: SpendForecast
    ledger: Ledger
    report_dir: Path | None = None
    run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary,
            "report_dir": str(self.report_dir) if self.report_dir else None,
            "mlflow_run_id": self.run_id,
        }


def _budget_dict(status: BudgetStatus, decision: EnforcementDecision) -> dict[str, Any]:
    p = status.projection
    return {
        "name": status.budget.name,
        "scope": dict(status.budget.scope),
        "period": status.budget.period,
        "period_start": status.period_start.isoformat(),
        "period_end": status.period_end.isoformat(),
        "amount": status.budget.amount,
        "spent": str(status.spent),
        "fraction_used": status.fraction_used,
        "state": status.state,
        "metrics": status.metrics(),
        "projection": None
        if p is None
        else {
            "method": p.method,
            "level": p.level,
            "history_hours": p.history_hours,
            "remaining_hours": p.remaining_hours,
            "expected_total": p.expected_total,
            "lower_total": p.lower_total,
            "upper_total": p.upper_total,
            "expected_breach_at": {
                k: v.isoformat() if v else None for k, v in p.expected_breach_at.items()
            },
            "earliest_breach_at": {
                k: v.isoformat() if v else None for k, v in p.earliest_breach_at.items()
            },
        },
        "alerts": [
            {
                "kind": a.kind,
                "severity": a.severity,
                "before_breach": a.before_breach,
                "threshold_amount": a.threshold_amount,
                "expected_breach_at": a.expected_breach_at.isoformat()
                if a.expected_breach_at
                else None,
                "earliest_breach_at": a.earliest_breach_at.isoformat()
                if a.earliest_breach_at
                else None,
                "message": a.message,
            }
            for a in status.alerts
        ],
        "enforcement": {
            "action": decision.action,
            "guard": decision.guard,
            "target_variant": decision.target_variant,
            "rate_fraction": decision.rate_fraction,
            "reasons": list(decision.reasons),
            "performed": False,
        },
        "reasons": list(status.reasons),
    }


def report(
    settings: Settings,
    *,
    days: int = 7,
    forecast_days: int = 7,
    now: datetime | None = None,
    group_by: Sequence[str] = ("kind", "variant"),
    write: bool = True,
    log_mlflow: bool = True,
) -> CostReport:
    """Spend of the last ``days`` UTC days (today included) by scope and day, the configured
    budgets with their projections and alerts, and the forecast of the next ``forecast_days``;
    written to ``<state>/cost/reports/<stamp>/`` and logged to MLflow."""
    from loopline.cost.report import DailyTable, SpendChart, render_report

    if days < 1 or forecast_days < 1:
        raise CostError(f"days and forecast_days must be at least 1, got {days}, {forecast_days}")
    unknown = [d for d in group_by if d not in SCOPE_KEYS]
    if unknown:
        raise CostError(f"cannot group by {unknown}; use {list(SCOPE_KEYS)}")
    now = _now(now)
    cfg = settings.cost
    start = _midnight(now) - (days - 1) * DAY
    since = min(
        [start, _floor_hour(now) - cfg.alerts.history_hours * HOUR]
        + [period_window(b.period, now)[0] for b in cfg.budgets]
    )
    sources = collect(settings, since, now, now=now)
    window = sources.ledger.window(start, now)
    total = window.total

    scopes = _scopes(window, group_by)
    shown = [(label, window.filter(scope)) for label, scope in scopes]
    day_total = window.by_period(start, now, "day")
    hour_total = window.by_period(start, now, "hour")
    day_parts = [(label, part.by_period(start, now, "day").amounts) for label, part in shown]
    hour_parts = [(label, part.by_period(start, now, "hour").values()) for label, part in shown]
    if len(window.aggregate(group_by).rows) > len(scopes):
        day_parts.append(
            (
                "other",
                tuple(
                    t - sum((p[i] for _, p in day_parts), Decimal(0))
                    for i, t in enumerate(day_total.amounts)
                ),
            )
        )
        rest = hour_total.values() - sum(
            (v for _, v in hour_parts), np.zeros(len(hour_total.starts))
        )
        hour_parts.append(("other", np.maximum(rest, 0.0)))

    fc = spend_forecast(sources.ledger, now, forecast_days * 24, cfg.alerts)
    statuses = [evaluate_budget(b, sources.ledger, now, cfg.alerts) for b in cfg.budgets]
    decisions = [decide_enforcement(s, cfg.enforcement) for s in statuses]
    notes = sources.notes(settings)
    for b in cfg.budgets:
        if b.scope and not sources.ledger.filter(b.scope).lines:
            notes.append(f"budget {b.name}: its scope {b.scope} matches no cost line")
    breakdowns = {
        dim: {_key(r.key): r.amount for r in window.aggregate([dim]).rows} for dim in SCOPE_KEYS
    }
    stamp = _stamp(now)
    summary: dict[str, Any] = {
        "generated_at": now.isoformat(),
        "environment": _environment(settings),
        "window": {"start": start.isoformat(), "end": now.isoformat(), "days": days},
        "currency": "USD",
        "total": str(total),
        "lines": len(window),
        "requests": sum(1 for line in window if line.kind == "tokens"),
        "by": {dim: {k: str(v) for k, v in vals.items()} for dim, vals in breakdowns.items()},
        "daily": {
            "scopes": [label for label, _ in day_parts],
            "group_by": list(group_by),
            "rows": [
                {
                    "day": t.date().isoformat(),
                    "total": str(day_total.amounts[i]),
                    "scopes": {label: str(p[i]) for label, p in day_parts},
                }
                for i, t in enumerate(day_total.starts)
            ],
        },
        "budgets": [_budget_dict(s, d) for s, d in zip(statuses, decisions, strict=True)],
        "state": max(
            (s.state for s in statuses),
            key=("ok", "warning", "critical").index,
            default="ok",
        ),
        "forecast": fc.to_dict(),
        "sessions": [s.to_dict() for s in sources.sessions if s.end > start],
        "sources": {
            "request_log": str(settings.path(settings.serving.request_log_dir)),
            "log_lines_read": sources.scan.read,
            "log_lines_skipped": sources.scan.skipped,
            "catalog": sources.catalog.source_file,
            "price_book": sources.book.source_file,
        },
        "notes": notes,
    }
    chart = SpendChart(
        starts=hour_total.starts,
        series=tuple((label, tuple(float(x) for x in v)) for label, v in hour_parts),
        total=tuple(float(x) for x in hour_total.values()),
        now=now,
        forecast_starts=fc.starts,
        forecast_mean=fc.mean,
        forecast_lower=fc.lower,
        forecast_upper=fc.upper,
        level=fc.level,
        method=fc.method or "",
    )
    daily = DailyTable(
        columns=tuple(label for label, _ in day_parts),
        days=tuple(t.date() for t in day_total.starts),
        amounts=tuple(tuple(p[i] for _, p in day_parts) for i in range(len(day_total.starts))),
        totals=day_total.amounts,
    )
    context = {
        "environment": _environment(settings),
        "window": f"{start:%Y-%m-%d %H:%M} to {now:%Y-%m-%d %H:%M} UTC ({days} days)",
        "generated at": f"{now:%Y-%m-%d %H:%M:%S} UTC",
        "grouped by": " / ".join(group_by),
        "catalog": sources.catalog.source_file,
        "price book": sources.book.source_file,
    }
    html = render_report(
        title=f"Cost report: {settings.project} ({_environment(settings)})",
        total=total,
        chart=chart,
        daily=daily,
        statuses=statuses,
        decisions=decisions,
        breakdowns=breakdowns,
        forecast_text=fc.summary_text(),
        context=context,
        notes=notes,
    )
    result = CostReport(now, stamp, summary, html, statuses, decisions, fc, window)
    if write:
        _write_report(settings, result, log_mlflow=log_mlflow)
    return result


def _write_report(settings: Settings, result: CostReport, *, log_mlflow: bool) -> None:
    out = cost_dir(settings) / "reports" / result.stamp
    out.mkdir(parents=True, exist_ok=True)
    result.report_dir = out
    html_path, json_path = out / "report.html", out / "report.json"
    with atomic_writer(html_path) as fh:
        fh.write(result.html)
    write_json(result.to_dict(), json_path)
    if log_mlflow:
        result.run_id = _log_report(settings, result, [html_path, json_path])
        write_json(result.to_dict(), json_path)


# --------------------------------------------------------------------------- MLflow


def _metric_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-/ " else "_" for c in text)


def _log_report(settings: Settings, result: CostReport, files: Sequence[Path]) -> str:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    from loopline.registry.mlflow_registry import _mlflow_uris

    ts = int(result.at.timestamp() * 1000)
    summary = result.summary
    metrics: dict[str, float] = {"spend.total": float(summary["total"])}
    for dim in ("kind", "variant", "version"):
        for key, amount in summary["by"][dim].items():
            metrics[_metric_name(f"spend.{dim}.{key}")] = float(amount)
    for status in result.statuses:
        for key, value in status.metrics().items():
            metrics[_metric_name(f"budget.{status.budget.name}.{key}")] = value
    if result.forecast.total is not None:
        for label, value in zip(("expected", "lower", "upper"), result.forecast.total, strict=True):
            metrics[f"forecast.{label}"] = value
    name = f"{settings.tracking.experiment}-cost"
    with _mlflow_uris(settings.tracking_uri, settings.registry_uri):
        client = MlflowClient(
            tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri
        )
        exp = client.get_experiment_by_name(name)
        exp_id = (
            exp.experiment_id
            if exp is not None
            else client.create_experiment(name, artifact_location=settings.artifact_location)
        )
        run = client.create_run(
            str(exp_id),
            run_name=f"cost-{result.stamp}",
            tags={"loopline.kind": "cost-report", "state": str(summary["state"])},
        )
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, ts, 0) for k, v in metrics.items() if math.isfinite(v)],
            params=[
                Param("environment", str(summary["environment"])),
                Param("window_days", str(summary["window"]["days"])),
                Param("forecast_hours", str(result.forecast.hours)),
                Param("catalog", str(summary["sources"]["catalog"])),
                Param("price_book", str(summary["sources"]["price_book"])),
            ],
            tags=[RunTag("alerts", str(sum(len(s.alerts) for s in result.statuses)))],
        )
        for path in files:
            client.log_artifact(run.info.run_id, str(path))
        client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


# --------------------------------------------------------------------------- demand


@dataclass(frozen=True)
class Demand:
    """Tokens/s per hour of the planning horizon, starting at ``start``."""

    start: datetime
    values: tuple[float, ...]
    source: str
    notes: tuple[str, ...] = ()

    @property
    def hours(self) -> int:
        return len(self.values)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(DEMAND_COLUMNS)
        for i, v in enumerate(self.values):
            writer.writerow([i, repr(float(v))])
        return out.getvalue()


def read_demand_csv(path: str | Path) -> tuple[float, ...]:
    """Hourly demand from a CSV with the header ``hour,tokens_per_s``: hours 0, 1, 2, ... in
    order, demand finite and non-negative. ``#`` lines and blank lines are ignored. Errors
    name the file and line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CostError(f"{p}: no such demand file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CostError(f"{p}: cannot read the demand file ({exc})") from None
    lines = [
        (number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise CostError(f"{p}: empty demand file; expected the header {','.join(DEMAND_COLUMNS)}")
    number, header = lines[0]
    found = tuple(c.strip() for c in next(csv.reader([header])))
    if found != DEMAND_COLUMNS:
        raise CostError(
            f"{p} line {number}: header {','.join(found)!r} is not {','.join(DEMAND_COLUMNS)!r}"
        )
    values: list[float] = []
    for number, line in lines[1:]:
        cells = [c.strip() for c in next(csv.reader([line]))]
        if len(cells) != len(DEMAND_COLUMNS):
            raise CostError(
                f"{p} line {number}: expected 2 fields (hour,tokens_per_s), got {len(cells)}"
            )
        hour, raw = cells
        if hour != str(len(values)):
            raise CostError(
                f"{p} line {number}: hour {hour!r}, expected {len(values)} (hours count from 0)"
            )
        try:
            value = float(raw)
        except ValueError:
            raise CostError(f"{p} line {number}: tokens_per_s {raw!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise CostError(f"{p} line {number}: tokens_per_s {raw!r} must be finite and >= 0")
        values.append(value)
        if len(values) > MAX_DEMAND_HOURS:
            raise CostError(f"{p} line {number}: more than {MAX_DEMAND_HOURS} hours of demand")
    if not values:
        raise CostError(f"{p}: no demand rows after the header")
    return tuple(values)


def _hour_of_week(t: datetime) -> int:
    return t.weekday() * 24 + t.hour


def week_profile(
    requests: Sequence[ServedRequest],
    *,
    first_seen: datetime | None,
    end: datetime,
    weeks: int,
) -> tuple[np.ndarray, int]:
    """Tokens/s per hour of the week (Monday 00:00 UTC first) over the ``weeks`` weeks before
    ``end`` (a whole hour): each slot takes the busiest of its observed hours. Slots never
    observed (before the log's first request) take the busiest observed hour of the same hour
    of the day, else the busiest observed hour. Returns the profile and the unobserved slots.
    """
    n = weeks * HOURS_PER_WEEK
    begin = end - n * HOUR
    tokens = np.zeros(n)
    for req in requests:
        i = int((req.at - begin) / HOUR)
        if 0 <= i < n:
            tokens[i] += req.tokens
    observed_from = _floor_hour(first_seen) if first_seen is not None else end
    profile = np.full(HOURS_PER_WEEK, np.nan)
    for i in range(n):
        t = begin + i * HOUR
        if t < observed_from:
            continue
        slot = _hour_of_week(t)
        value = tokens[i] / 3600.0
        profile[slot] = value if np.isnan(profile[slot]) else max(profile[slot], value)
    missing = np.isnan(profile)
    if missing.all():
        return np.zeros(HOURS_PER_WEEK), HOURS_PER_WEEK
    peak = float(np.nanmax(profile))
    filled = profile.copy()
    for gap in np.flatnonzero(missing):
        same_hour = profile[int(gap) % 24 :: 24]
        filled[gap] = float(np.nanmax(same_hour)) if not np.isnan(same_hour).all() else peak
    return filled, int(missing.sum())


def demand_from_log(
    settings: Settings,
    *,
    now: datetime | None = None,
    weeks: int = 4,
    hours: int = HOURS_PER_WEEK,
    requests: Sequence[ServedRequest] | None = None,
    first_seen: datetime | None = None,
) -> Demand:
    """The next ``hours`` hours of demand (tokens/s, prompt + completion), from the hour-of-week
    profile of the request log's last ``weeks`` weeks (:func:`week_profile`)."""
    now = _now(now)
    end = _floor_hour(now)
    if requests is None:
        requests, scan = read_requests(settings, end - weeks * HOURS_PER_WEEK * HOUR, end)
        first_seen = scan.first
    if not any(r.tokens for r in requests):
        raise CostError(
            "no tokens served in the request log "
            f"{settings.path(settings.serving.request_log_dir)} "
            f"in the {weeks} weeks before {end:%Y-%m-%d %H:%M} UTC: nothing to plan from "
            "(pass a demand file: --demand FILE with hour,tokens_per_s)"
        )
    profile, unobserved = week_profile(requests, first_seen=first_seen, end=end, weeks=weeks)
    start = end + HOUR
    values = tuple(float(profile[_hour_of_week(start + i * HOUR)]) for i in range(hours))
    notes = [
        f"{len(requests)} requests of the {weeks} weeks before {end:%Y-%m-%d %H:%M} UTC; each "
        "hour of the week takes its busiest observed hour (tokens/s, prompt + completion)"
    ]
    if unobserved:
        notes.append(
            f"{unobserved} of {HOURS_PER_WEEK} hours of the week predate the request log and "
            "take the busiest observed hour of the same hour of the day"
        )
    return Demand(start, values, "request log", tuple(notes))


# --------------------------------------------------------------------------- plan


def _slo(settings: Settings) -> CapacitySLO:
    slo = settings.cost.slo
    if slo is None:
        raise CostError(
            "cost.slo is not configured: set cost.slo.throughput (tokens/s one replica serves "
            "at the latency target, per instance type, GPU or vCPU) to plan capacity"
        )
    return slo


def _plan_dict(plan: CapacityPlan) -> dict[str, Any]:
    return {
        "feasible": plan.feasible,
        "summary": plan.summary,
        "hours": plan.hours,
        "expected_cost": _finite(plan.expected_cost),
        "nominal_cost": _finite(plan.nominal_cost),
        "availability_target": plan.availability_target,
        "max_spot_share_per_offer": plan.max_spot_share_per_offer,
        "baselines": [
            {
                "name": b.name,
                "description": b.description,
                "cost": _finite(b.cost),
                "savings": plan.savings(b.name),
            }
            for b in plan.baselines
        ],
        "levels": [
            {
                "index": lv.index,
                "required_tokens_per_s": lv.required,
                "replicas": lv.replicas,
                "capacity_tokens_per_s": lv.capacity,
                "cost_per_hour": lv.cost_per_hour,
                "spare_fraction": lv.spare_fraction,
                "shortfall_bound": lv.shortfall_bound,
                "status": lv.status,
                "allocations": [
                    {
                        "offer": a.offer,
                        "pricing": a.pricing,
                        "replicas": a.replicas,
                        "throughput_per_replica": a.throughput_per_replica,
                        "price_per_replica_hour": a.price_per_replica_hour,
                        "expected_cost_per_replica_hour": a.expected_cost_per_replica_hour,
                    }
                    for a in lv.allocations
                ],
            }
            for lv in plan.levels
        ],
        "hour_level": list(plan.hour_level),
        "schedule": (
            {f"{k}|{p}": list(v) for (k, p), v in plan.schedule().items()} if plan.feasible else {}
        ),
        "stats": {
            "seconds": plan.stats.seconds,
            "n_levels": plan.stats.n_levels,
            "n_milps": plan.stats.n_milps,
            "max_gap": _finite(plan.stats.max_gap),
            "eligible_offers": plan.stats.eligible_offers,
            "level_overprovision": plan.stats.level_overprovision,
        },
        "reasons": list(plan.reasons),
    }


@dataclass
class PlanResult:
    """A capacity plan, the demand it serves, the files written and the apply decision."""

    plan: CapacityPlan
    demand: Demand
    decision: ApplyDecision | None
    out_dir: Path | None = None
    files: list[Path] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "plan": _plan_dict(self.plan),
            "demand": {
                "start": self.demand.start.isoformat(),
                "hours": self.demand.hours,
                "source": self.demand.source,
                "peak_tokens_per_s": max(self.demand.values, default=0.0),
                "mean_tokens_per_s": sum(self.demand.values) / max(self.demand.hours, 1),
                "notes": list(self.demand.notes),
            },
            "apply": None
            if self.decision is None
            else {
                "apply": self.decision.apply,
                "dry_run": self.decision.dry_run,
                "reasons": list(self.decision.reasons),
            },
            "out_dir": str(self.out_dir) if self.out_dir else None,
            "files": [str(f) for f in self.files],
        }


def plan(
    settings: Settings,
    *,
    demand_csv: str | Path | None = None,
    out: str | Path | None = None,
    now: datetime | None = None,
    weeks: int = 4,
    write: bool = True,
) -> PlanResult:
    """Plan the serving fleet for the next week (or the ``demand_csv`` horizon) on the shipped
    catalog and write the plan with its rendered actions (a dry run: nothing is applied)."""
    from loopline.cost.planner import plan_capacity
    from loopline.cost.recommend import ActionPlan, decide_apply, to_yaml

    slo = _slo(settings)
    now = _now(now)
    if demand_csv is not None:
        values = read_demand_csv(demand_csv)
        demand = Demand(_floor_hour(now) + HOUR, values, f"demand file {demand_csv}")
    else:
        demand = demand_from_log(settings, now=now, weeks=weeks)
    try:
        catalog = load_catalog()
    except CatalogError as exc:
        raise CostError(str(exc)) from None
    capacity = plan_capacity(demand.values, catalog, slo, settings.cost.planner)
    name = settings.model.name
    actions = ActionPlan.from_plan(capacity, name) if capacity.feasible else None
    decision = decide_apply(actions) if actions is not None else None
    result = PlanResult(capacity, demand, decision)
    if not write:
        return result
    target = Path(out) if out is not None else cost_dir(settings) / "plans" / _stamp(now)
    target.mkdir(parents=True, exist_ok=True)
    result.out_dir = target
    demand_path = target / "demand.csv"
    with atomic_writer(demand_path) as fh:
        fh.write(demand.to_csv())
    result.files.append(demand_path)
    if actions is not None:
        tfvars = write_json(dict(actions.tfvars), target / "loopline.auto.tfvars.json")
        for file_name, obj in (
            ("node-pools.yaml", list(actions.node_pools)),
            ("hpa.yaml", actions.hpa),
        ):
            with atomic_writer(target / file_name) as fh:
                fh.write(to_yaml(obj))
            result.files.append(target / file_name)
        result.files.insert(1, tfvars)
    plan_path = target / "plan.json"
    result.files.insert(0, plan_path)
    write_json(result.summary(), plan_path)
    from loopline.governance.audit import AuditTrail

    AuditTrail.for_settings(settings).append(
        "cost_plan",
        name,
        ACTOR,
        {
            "out_dir": str(target),
            "feasible": capacity.feasible,
            "expected_cost": _finite(capacity.expected_cost),
            "applied": bool(decision and decision.apply),
            "reasons": list(decision.reasons) if decision else list(capacity.reasons),
        },
    )
    return result


# --------------------------------------------------------------------------- recommendations


@dataclass
class Recommendations:
    """Ranked savings recommendations and what could not be evaluated (``notes``)."""

    at: datetime
    items: tuple[Recommendation, ...]
    notes: list[str]
    path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "generated_at": self.at.isoformat(),
            "monthly_savings": sum(r.monthly_savings for r in self.items),
            "recommendations": [
                {
                    "kind": r.kind,
                    "subject": r.subject,
                    "title": r.title,
                    "current_monthly_cost": r.current_monthly_cost,
                    "proposed_monthly_cost": r.proposed_monthly_cost,
                    "monthly_savings": r.monthly_savings,
                    "reasons": list(r.reasons),
                    "actions": dict(r.actions),
                }
                for r in self.items
            ],
            "notes": list(self.notes),
            "path": str(self.path) if self.path else None,
        }


def _replay_hit_rate(requests: Sequence[ServedRequest], ttl_s: float) -> tuple[float, int]:
    """Share of answered requests whose prompt repeats one answered within ``ttl_s`` before:
    what an unbounded cache with that TTL would have served (generation parameters are not
    in the log, so this is an upper bound)."""
    last: dict[str, datetime] = {}
    hits = total = 0
    for req in requests:
        if req.status != 200 or req.prompt is None:
            continue
        total += 1
        seen = last.get(req.prompt)
        if seen is not None and (ttl_s <= 0 or (req.at - seen).total_seconds() <= ttl_s):
            hits += 1
        last[req.prompt] = req.at
    return (hits / total if total else 0.0), total


def _variant_model(record: Any, variant: str, model: str) -> str:
    served = next((v for v in record.variants if v.name == variant), None)
    if served is None or served.model_version is None:
        return f"{model} (serving default)"
    return f"{model} v{served.model_version}"


def experiment_summaries(
    settings: Settings,
    requests: Sequence[ServedRequest],
    *,
    requests_per_month: float,
    pricer: _Pricer,
    notes: list[str],
) -> list[ExperimentSummary]:
    """What the experiments established about cheaper variants: every treatment of each
    experiment's latest analysis, priced per request from the log (shipped variants are
    already in place and only noted)."""
    from loopline.cost.recommend import ExperimentSummary
    from loopline.experiments.lifecycle import list_records

    policy = settings.experiments.decision
    records = list_records(settings)
    if not records:
        return []
    if policy is None:
        notes.append("routing: experiments.decision is not configured")
        return []
    costs: dict[tuple[str, str], list[Decimal]] = defaultdict(list)
    for req in requests:
        for exp, arm in req.experiments.items():
            costs[(exp, arm)].append(pricer.amount(req))
    out = []
    for record in records:
        if not record.analyses:
            notes.append(f"routing: experiment {record.name} has no analysis yet")
            continue
        folder = record.analyses[-1].get("dir")
        path = Path(str(folder)) / "report.json"
        if not folder or not path.is_file():
            notes.append(f"routing: experiment {record.name}: {path} is missing")
            continue
        verdicts = read_json(path).get("decision", {}).get("verdicts")
        if verdicts is None:
            notes.append(
                f"routing: experiment {record.name}: its latest analysis predates verdicts "
                "(re-run loopline experiment analyze)"
            )
            continue
        control = record.spec.control_name
        shipped = (record.outcome or {}).get("variant") if record.status == "shipped" else None
        for verdict in verdicts:
            variant = str(verdict.get("variant"))
            if variant == control:
                continue
            if variant == shipped:
                notes.append(f"routing: experiment {record.name}: {variant} is already shipped")
                continue
            interval = verdict.get("primary_interval")
            arm_c, arm_t = costs.get((record.name, control)), costs.get((record.name, variant))
            if interval is None or not arm_c or not arm_t:
                notes.append(
                    f"routing: experiment {record.name}: {variant} has no primary interval or "
                    "no priced requests in the window"
                )
                continue
            out.append(
                ExperimentSummary(
                    experiment=record.name,
                    control_variant=control,
                    control_model=_variant_model(record, control, settings.model.name),
                    candidate_variant=variant,
                    candidate_model=_variant_model(record, variant, settings.model.name),
                    primary_metric=policy.primary_metric,
                    improvement_interval=(float(interval[0]), float(interval[1])),
                    non_inferiority_margin=policy.non_inferiority_margin,
                    guardrails_passed=not verdict.get("breached_guardrails")
                    and not verdict.get("pending_guardrails"),
                    control_cost_per_request=float(sum(arm_c) / len(arm_c)),
                    candidate_cost_per_request=float(sum(arm_t) / len(arm_t)),
                    requests_per_month=requests_per_month,
                )
            )
    return out


def recommend(
    settings: Settings, *, days: int = 14, now: datetime | None = None, write: bool = True
) -> Recommendations:
    """Savings recommendations from the last ``days`` days of logs and from the experiments:
    right-sizing, cache, routing to cheaper non-inferior variants, scale-to-zero windows and
    the capacity plan (the last two and right-sizing need ``cost.slo``)."""
    from loopline.cost.planner import plan_capacity
    from loopline.cost.recommend import (
        CacheStats,
        DeploymentUsage,
        rank,
        recommend_cache,
        recommend_capacity_plan,
        recommend_right_sizing,
        recommend_routing,
        recommend_scale_to_zero,
    )

    if days < 1:
        raise CostError(f"days must be at least 1, got {days}")
    now = _now(now)
    end = _floor_hour(now)
    weeks = max(1, math.ceil(days / 7))
    since = end - weeks * HOURS_PER_WEEK * HOUR
    sources = collect(settings, since, now, now=now)
    cfg, acc = settings.cost, settings.cost.accounting
    policy = cfg.recommend
    name = settings.model.name
    offer = _server_offer(settings, sources.catalog)
    pricer = _Pricer(settings, sources.book)
    recent = [r for r in sources.requests if r.at >= now - days * DAY]
    notes: list[str] = []
    items: list[Recommendation] = []
    if not recent:
        notes.append(f"no requests in the last {days} days: nothing to base recommendations on")
    else:
        first = max(now - days * DAY, recent[0].at)
        hours = max((now - first) / HOUR, 1.0)
        per_month = len(recent) * policy.hours_per_month / hours
        # cache
        hit_rate = sum(r.cache_hit for r in recent if r.status == 200) / max(
            sum(r.status == 200 for r in recent), 1
        )
        achievable, replayed = _replay_hit_rate(recent, settings.serving.cache_ttl_s)
        paid = [pricer.amount(r) for r in recent if r.status == 200 and not r.cache_hit]
        if paid and achievable > hit_rate:
            items += recommend_cache(
                CacheStats(
                    name=name,
                    requests_per_month=per_month,
                    hit_rate=hit_rate,
                    achievable_hit_rate=achievable,
                    cost_per_request=float(sum(paid) / len(paid)),
                    evidence=f"replay of {replayed} answered requests with the configured "
                    f"TTL {settings.serving.cache_ttl_s:g} s: {100 * achievable:.1f} % repeat "
                    "an earlier prompt (an upper bound: generation parameters are not logged)",
                ),
                policy,
            )
        # routing
        for summary in experiment_summaries(
            settings, recent, requests_per_month=per_month, pricer=pricer, notes=notes
        ):
            items += recommend_routing(summary, policy)
    # capacity: right-sizing, scale to zero, the plan
    slo = cfg.slo
    if slo is None:
        notes.append("right-sizing, scale-to-zero and the capacity plan need cost.slo")
    elif any(r.tokens for r in sources.requests):
        profile, _ = week_profile(
            sources.requests, first_seen=sources.scan.first, end=end, weeks=weeks
        )
        begin = now - days * DAY
        hourly = np.zeros(days * 24)
        for r in recent:
            hourly[min(int((r.at - begin) / HOUR), len(hourly) - 1)] += r.tokens
        busy = hourly[hourly > 0] / 3600.0
        peak = float(np.quantile(busy, 0.95)) if busy.size else 0.0
        items += recommend_right_sizing(
            [
                DeploymentUsage(
                    name=name,
                    offer=offer.key,
                    pricing=acc.server_pricing,
                    replicas=acc.replicas_per_server,
                    peak_tokens_per_s=peak,
                )
            ],
            sources.catalog,
            slo,
            policy,
        )
        idle_cost = acc.replicas_per_server * float(offer.price(acc.server_pricing))
        items += recommend_scale_to_zero(name, profile, idle_cost, policy)
        demand = demand_from_log(
            settings,
            now=now,
            weeks=weeks,
            requests=sources.requests,
            first_seen=sources.scan.first,
        )
        capacity = plan_capacity(demand.values, sources.catalog, slo, cfg.planner)
        items += recommend_capacity_plan(capacity, name, policy)
    else:
        notes.append("no tokens served: no capacity recommendations")
    result = Recommendations(now, rank(items), notes)
    if write:
        path = cost_dir(settings) / "recommendations" / _stamp(now) / "recommendations.json"
        result.path = path
        write_json(result.to_dict(), path)
    return result


__all__ = [
    "CostError",
    "CostReport",
    "Demand",
    "LedgerSources",
    "LogScan",
    "PlanResult",
    "Recommendations",
    "ServedRequest",
    "ServerSession",
    "SpendForecast",
    "build_ledger",
    "collect",
    "compute_lines",
    "cost_dir",
    "demand_from_log",
    "forecast_spend",
    "plan",
    "read_demand_csv",
    "read_requests",
    "recommend",
    "report",
    "server_sessions",
    "spend_forecast",
    "token_lines",
    "week_profile",
]
