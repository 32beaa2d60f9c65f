"""Ledger: costs add up from requests to reports; nothing lost or counted twice."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from loopline.cost.catalog import load_catalog, load_price_book
from loopline.cost.ledger import (
    Attribution,
    ComputeUsage,
    CostLine,
    Ledger,
    LedgerError,
    RequestUsage,
    StorageUsage,
    allocate,
    compute_line,
    money,
    storage_line,
    token_line,
)
from loopline.cost.policy import ATTRIBUTION_DIMENSIONS

T0 = datetime(2026, 11, 2, tzinfo=UTC)
CATALOG = load_catalog()
BOOK = load_price_book()
TEAMS = ("search", "support")
ENVS = ("prod", "staging")
MODELS = (("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-3-5-haiku"))


def random_ledger(seed: int, n: int = 300) -> tuple[Ledger, list[RequestUsage]]:
    rng = random.Random(seed)
    lines: list[CostLine] = []
    requests: list[RequestUsage] = []
    for i in range(n):
        who = Attribution(
            version=rng.choice(("1", "2")),
            variant=rng.choice(("control", "treatment")),
            team=rng.choice(TEAMS),
            environment=rng.choice(ENVS),
        )
        kind = rng.random()
        start = T0 + timedelta(minutes=rng.randrange(0, 3 * 24 * 60))
        if kind < 0.6:
            provider, model = rng.choice(MODELS)
            usage = RequestUsage(
                f"r{i}",
                start,
                provider,
                model,
                rng.randrange(0, 4000),
                rng.randrange(0, 1500),
                who,
                cached=rng.random() < 0.1,
            )
            requests.append(usage)
            lines.append(token_line(usage, BOOK))
        elif kind < 0.9:
            offer = rng.choice(CATALOG.offers)
            end = start + timedelta(minutes=rng.randrange(1, 36 * 60))
            lines.append(
                compute_line(
                    ComputeUsage(
                        f"c{i}",
                        offer.key,
                        rng.choice(("spot", "on_demand")),
                        rng.randrange(0, 5),
                        start,
                        end,
                        who,
                    ),
                    CATALOG,
                )
            )
        else:
            end = start + timedelta(hours=rng.randrange(1, 100))
            lines.append(
                storage_line(
                    StorageUsage(
                        f"s{i}",
                        Decimal(rng.randrange(1, 500)),
                        Decimal("0.023"),
                        start,
                        end,
                        "aws",
                        who,
                    )
                )
            )
    return Ledger(tuple(lines)), requests


def test_line_builders_price_exactly() -> None:
    who = Attribution(team="search", environment="prod")
    t = token_line(RequestUsage("a", T0, "openai", "gpt-4o", 1000, 500, who), BOOK)
    assert t.amount == Decimal("0.0075") and t.kind == "tokens" and t.attribution.model == "gpt-4o"
    cached = token_line(
        RequestUsage("b", T0, "openai", "gpt-4o", 1000, 500, who, cached=True), BOOK
    )
    assert cached.amount == 0 and "cache hit" in cached.detail
    g5 = CATALOG.get("aws/us-east-1/g5.xlarge")
    c = compute_line(
        ComputeUsage("d", g5.key, "spot", 3, T0, T0 + timedelta(minutes=90), who), CATALOG
    )
    assert c.amount == money(3 * g5.spot_hourly * Decimal("1.5"))
    assert c.quantity == Decimal("4.5") and c.provider == "aws"
    s = storage_line(
        StorageUsage("e", Decimal(100), Decimal("0.023"), T0, T0 + timedelta(hours=730), "aws")
    )
    assert s.amount == Decimal("2.300000000")
    with pytest.raises(LedgerError, match="timezone"):
        token_line(RequestUsage("x", datetime(2026, 1, 1), "openai", "gpt-4o", 1, 1), BOOK)


@pytest.mark.parametrize("seed", range(5))
def test_every_grouping_adds_up_to_the_total(seed: int) -> None:
    ledger, _ = random_ledger(seed)
    total = ledger.total
    dims = (*ATTRIBUTION_DIMENSIONS, "kind", "provider")
    for r in range(1, 4):
        for by in itertools.combinations(dims, r):
            agg = ledger.aggregate(by)
            assert agg.total == total
            assert sum(row.amount for row in agg.rows) == total
            assert sum(row.lines for row in agg.rows) == len(ledger)
    # filtering partitions the ledger
    parts = [ledger.filter({"team": t, "environment": e}).total for t in TEAMS for e in ENVS]
    assert sum(parts) == total


@pytest.mark.parametrize("seed", range(5))
def test_time_buckets_and_windows_partition_the_spend(seed: int) -> None:
    ledger, _ = random_ledger(seed)
    start, end = T0 - timedelta(hours=3), T0 + timedelta(days=8)  # covers every line
    hourly = ledger.by_period(start, end, "hour")
    daily = ledger.by_period(start, end, "day")
    assert hourly.total == daily.total == ledger.window(start, end).total == ledger.total
    mid = T0 + timedelta(hours=37, minutes=13)
    left, right = ledger.window(start, mid), ledger.window(mid, end)
    assert left.total + right.total == ledger.total
    # a window in the middle equals the sum of its hourly buckets
    a, b = T0 + timedelta(hours=5), T0 + timedelta(hours=29)
    assert ledger.by_period(a, b, "hour").total == ledger.window(a, b).total
    assert len(hourly.amounts) == 24 * 8 + 3


def test_unit_costs_add_up_from_requests_to_the_report() -> None:
    ledger, requests = random_ledger(11, n=500)
    tokens = ledger.filter({"kind": "tokens"})
    expected: dict[tuple[str, str], Decimal] = {}
    for r in requests:
        if r.cached:
            continue
        price = BOOK.price(r.provider, r.model)
        cost = (r.input_tokens * price.input_per_1k + r.output_tokens * price.output_per_1k) / 1000
        key = (r.attribution.team, r.model)
        expected[key] = expected.get(key, Decimal(0)) + cost
    report = tokens.aggregate(("team", "model")).as_dict()
    assert {k: v for k, v in report.items() if v} == {k: money(v) for k, v in expected.items() if v}
    assert len(tokens) == len(requests)


def test_no_line_is_counted_twice() -> None:
    ledger, _ = random_ledger(3, n=50)
    line = ledger.lines[0]
    with pytest.raises(LedgerError, match="counted twice"):
        ledger.add(line)
    assert ledger.merge(ledger).total == ledger.total  # re-importing the same bill
    changed = CostLine(
        line.line_id,
        line.kind,
        line.amount + 1,
        line.start,
        line.end,
        line.attribution,
        line.provider,
        line.quantity,
        line.unit,
    )
    with pytest.raises(LedgerError, match="conflicts"):
        ledger.merge([changed])


def test_allocate_is_exact_for_any_weights() -> None:
    rng = random.Random(0)
    for _ in range(500):
        amount = money(Decimal(rng.randrange(-(10**6), 10**6)) / Decimal(997))
        weights = [rng.randrange(0, 50) for _ in range(rng.randrange(1, 9))]
        parts = allocate(amount, weights)
        assert sum(parts) == amount
        if sum(weights):
            for p, w in zip(parts, weights, strict=True):
                exact = amount * w / sum(weights)
                assert abs(p - exact) <= Decimal("1e-9")


def test_records_carry_every_attribution_dimension() -> None:
    ledger, _ = random_ledger(1, n=20)
    rows = ledger.to_records()
    assert len(rows) == 20
    assert all(set(ATTRIBUTION_DIMENSIONS) <= set(row) for row in rows)
    assert sum(row["amount"] for row in rows) == ledger.total


def test_hourly_buckets_add_up_to_daily_buckets() -> None:
    ledger, _ = random_ledger(4)
    start = T0
    hourly = ledger.by_period(start, start + timedelta(days=5), "hour")
    daily = ledger.by_period(start, start + timedelta(days=5), "day")
    for d, amount in enumerate(daily.amounts):
        assert sum(hourly.amounts[24 * d : 24 * (d + 1)]) == amount


def test_an_estimated_line_stays_estimated_when_clipped_and_in_records() -> None:
    line = CostLine(
        "bill:1",
        "compute",
        Decimal("48"),
        T0,
        T0 + timedelta(days=2),
        Attribution(team="search"),
        "aws",
        Decimal(48),
        "hours",
        estimated=True,
    )
    assert not CostLine(
        "x", "compute", Decimal(1), T0, T0, Attribution(), "aws", Decimal(1), "h"
    ).estimated
    clipped = Ledger((line,)).window(T0, T0 + timedelta(days=1))
    assert clipped.lines[0].estimated and clipped.total == Decimal("24")
    assert Ledger((line,)).to_records()[0]["estimated"] is True
