"""The AWS adapter against moto in server mode: a real HTTP server on 127.0.0.1, real boto3
clients pointed at it with ``endpoint_url``, dummy credentials. Never real AWS.

* Cost Explorer: moto tracks no spend, so each test queues the results the service returns
  through moto's own API (``POST /moto-api/static/ce/cost-and-usage-results``); a request takes
  the next queued result and a repeated request gets the same one again. The results are
  written in the response shape AWS documents, pagination tokens included.
* EC2 ``describe_spot_price_history``: moto answers for the instance types it offers in each
  zone of the region, one record per zone at a fixed price (0.00001) and timestamp, on a single
  page.
* Pricing ``get_products`` is not in moto 5 (HTTP 500): the Price List parser is tested on
  documented response documents in tests/unit/cost/test_cost_aws.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from loopline.cost.aws import (
    AwsImportError,
    aws_client,
    credentials_available,
    fetch_aws_prices,
    import_cost_and_usage,
    refresh_aws_offers,
    spot_price_history,
    spot_prices,
)
from loopline.cost.catalog import load_catalog, write_catalog
from loopline.cost.ledger import UNATTRIBUTED, Ledger

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

EC2 = "Amazon Elastic Compute Cloud - Compute"
S3 = "Amazon Simple Storage Service"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def fake_account(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials, no shared config files, and a fresh emulator state per test."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    httpx.post(f"{moto_url}/moto-api/reset", timeout=10).raise_for_status()


def queue_cost_results(url: str, *results: dict[str, Any]) -> None:
    response = httpx.post(
        f"{url}/moto-api/static/ce/cost-and-usage-results",
        json={"results": list(results)},
        timeout=10,
    )
    assert response.status_code == 201


def usd(amount: str, unit: str = "USD") -> dict[str, Any]:
    return {"UnblendedCost": {"Amount": amount, "Unit": unit}}


def day(start: str, end: str, groups: list[dict[str, Any]], estimated: bool) -> dict[str, Any]:
    return {
        "TimePeriod": {"Start": start, "End": end},
        "Total": {},
        "Groups": groups,
        "Estimated": estimated,
    }


GROUPING = [{"Type": "DIMENSION", "Key": "SERVICE"}, {"Type": "TAG", "Key": "team"}]
PAGE_1 = {
    "GroupDefinitions": GROUPING,
    "ResultsByTime": [
        day(
            "2026-11-01",
            "2026-11-02",
            [
                {"Keys": [EC2, "team$research"], "Metrics": usd("123.4567891234")},
                {"Keys": [S3, "team$research"], "Metrics": usd("0.0200000000")},
            ],
            estimated=False,
        )
    ],
    "DimensionValueAttributes": [],
    "NextPageToken": "page-2",
}
PAGE_2 = {
    "GroupDefinitions": GROUPING,
    "ResultsByTime": [
        # the same day goes on on the next page, then the next day
        day(
            "2026-11-01",
            "2026-11-02",
            [{"Keys": [EC2, "team$"], "Metrics": usd("7.1")}],
            estimated=False,
        ),
        day(
            "2026-11-02",
            "2026-11-03",
            [{"Keys": [EC2, "team$search"], "Metrics": usd("99.99")}],
            estimated=True,
        ),
    ],
    "DimensionValueAttributes": [],
    "NextPageToken": "page-3",
}
PAGE_3 = {
    "GroupDefinitions": GROUPING,
    "ResultsByTime": [day("2026-11-03", "2026-11-04", [], estimated=True)],
    "DimensionValueAttributes": [],
}


def test_grouped_bill_over_three_pages_books_exact_attributed_lines(moto_url: str) -> None:
    queue_cost_results(moto_url, PAGE_1, PAGE_2, PAGE_3)
    ce = aws_client("ce", endpoint_url=moto_url)
    lines = import_cost_and_usage(
        ce, date(2026, 11, 1), date(2026, 11, 4), group_by=("SERVICE", "tag:team")
    )
    by_id = {line.line_id: line for line in lines}
    assert sorted(by_id) == [
        f"aws-ce:2026-11-01/2026-11-02:SERVICE={EC2}|tag:team=",
        f"aws-ce:2026-11-01/2026-11-02:SERVICE={EC2}|tag:team=research",
        f"aws-ce:2026-11-01/2026-11-02:SERVICE={S3}|tag:team=research",
        f"aws-ce:2026-11-02/2026-11-03:SERVICE={EC2}|tag:team=search",
    ]
    research = by_id[f"aws-ce:2026-11-01/2026-11-02:SERVICE={EC2}|tag:team=research"]
    # ten decimals from Cost Explorer, nine in the ledger; the detail keeps the exact figure
    assert research.amount == Decimal("123.456789123")
    assert "exact 123.4567891234 USD" in research.detail
    assert research.attribution.team == "research" and research.provider == "aws"
    assert research.kind == "compute" and not research.estimated
    assert research.start == datetime(2026, 11, 1, tzinfo=UTC)
    assert research.end == datetime(2026, 11, 2, tzinfo=UTC)
    assert research.quantity == Decimal(24) and research.unit == "hours"
    storage = by_id[f"aws-ce:2026-11-01/2026-11-02:SERVICE={S3}|tag:team=research"]
    assert storage.kind == "storage" and storage.amount == Decimal("0.02")
    untagged = by_id[f"aws-ce:2026-11-01/2026-11-02:SERVICE={EC2}|tag:team="]
    assert untagged.attribution.team == UNATTRIBUTED and untagged.amount == Decimal("7.1")
    search = by_id[f"aws-ce:2026-11-02/2026-11-03:SERVICE={EC2}|tag:team=search"]
    assert search.estimated and search.attribution.team == "search"
    assert all(isinstance(line.amount, Decimal) for line in lines)

    ledger = Ledger(tuple(lines))
    assert ledger.total.quantize(Decimal("0.01")) == Decimal("230.57")
    by_team = ledger.aggregate(["team"]).as_dict()
    assert by_team[("research",)] == Decimal("123.476789123")
    assert by_team[(UNATTRIBUTED,)] == Decimal("7.1")
    # the same request again gets the same bill: re-importing merges without double counting
    again = import_cost_and_usage(
        ce, date(2026, 11, 1), date(2026, 11, 4), group_by=("SERVICE", "tag:team")
    )
    assert ledger.merge(again).total == ledger.total


def test_ungrouped_hourly_totals(moto_url: str) -> None:
    hours = [
        {
            "TimePeriod": {
                "Start": f"2026-11-05T{h:02d}:00:00Z",
                "End": f"2026-11-05T{h + 1:02d}:00:00Z",
            },
            "Total": usd(amount),
            "Groups": [],
            "Estimated": True,
        }
        for h, amount in enumerate(("1.25", "0", "0.0049999999"))
    ]
    queue_cost_results(moto_url, {"ResultsByTime": hours, "DimensionValueAttributes": []})
    ce = aws_client("ce", endpoint_url=moto_url)
    lines = import_cost_and_usage(
        ce,
        datetime(2026, 11, 5, tzinfo=UTC),
        datetime(2026, 11, 5, 3, tzinfo=UTC),
        granularity="HOURLY",
        group_by=(),
    )
    assert [line.amount for line in lines] == [
        Decimal("1.25"),
        Decimal("0"),
        Decimal("0.005000000"),
    ]
    first = lines[0]
    assert first.line_id == "aws-ce:2026-11-05T00:00:00Z/2026-11-05T01:00:00Z:total"
    assert first.start == datetime(2026, 11, 5, tzinfo=UTC) and first.quantity == Decimal(1)
    assert first.attribution.team == UNATTRIBUTED and first.estimated
    assert Ledger(tuple(lines)).total == Decimal("1.255")


def test_a_bill_in_another_currency_is_refused_naming_period_and_group(moto_url: str) -> None:
    page = {
        "GroupDefinitions": [{"Type": "DIMENSION", "Key": "SERVICE"}],
        "ResultsByTime": [
            day("2026-11-01", "2026-11-02", [{"Keys": [EC2], "Metrics": usd("1", "EUR")}], False)
        ],
        "DimensionValueAttributes": [],
    }
    queue_cost_results(moto_url, page)
    ce = aws_client("ce", endpoint_url=moto_url)
    with pytest.raises(AwsImportError) as err:
        import_cost_and_usage(ce, date(2026, 11, 1), date(2026, 11, 2))
    message = str(err.value)
    assert "period 2026-11-01/2026-11-02" in message
    assert f"group SERVICE={EC2}" in message and "'EUR'" in message


def test_a_page_token_that_comes_back_stops_the_import(moto_url: str) -> None:
    looping = {"ResultsByTime": [], "DimensionValueAttributes": [], "NextPageToken": "same"}
    queue_cost_results(moto_url, looping, looping)
    ce = aws_client("ce", endpoint_url=moto_url)
    with pytest.raises(AwsImportError, match="token 'same' twice"):
        import_cost_and_usage(ce, date(2026, 11, 1), date(2026, 11, 2), group_by=())


def test_an_empty_account_imports_nothing(moto_url: str) -> None:
    ce = aws_client("ce", endpoint_url=moto_url)  # nothing queued: moto's default answer
    assert import_cost_and_usage(ce, date(2026, 11, 1), date(2026, 11, 8)) == []
    with pytest.raises(AwsImportError, match="empty period"):
        import_cost_and_usage(ce, date(2026, 11, 8), date(2026, 11, 8))


def test_spot_history_parses_records_per_zone_and_summarizes_per_pool(moto_url: str) -> None:
    ec2 = aws_client("ec2", region="eu-west-1", endpoint_url=moto_url)
    end = datetime(2026, 11, 24, tzinfo=UTC)
    start = end - timedelta(days=7)
    types = ["m7i.xlarge", "g5.xlarge", "no-such.type"]
    history = spot_price_history(ec2, types, start, end)
    assert history, "moto offers m7i.xlarge and g5.xlarge in eu-west-1"
    assert {p.instance_type for p in history} == {"m7i.xlarge", "g5.xlarge"}
    assert {p.region for p in history} == {"eu-west-1"}
    assert all(p.availability_zone.startswith("eu-west-1") for p in history)
    assert len({p.availability_zone for p in history}) >= 2
    assert all(p.price == Decimal("0.00001") for p in history)
    assert all(p.timestamp.tzinfo is not None for p in history)
    assert spot_prices(ec2, types, start, end) == {
        ("eu-west-1", "g5.xlarge"): Decimal("0.000010"),
        ("eu-west-1", "m7i.xlarge"): Decimal("0.000010"),
    }
    one_zone = spot_price_history(ec2, types, start, end, availability_zone="eu-west-1b")
    assert {p.availability_zone for p in one_zone} == {"eu-west-1b"}


def test_catalog_refresh_from_the_emulator_round_trips(moto_url: str, tmp_path: Path) -> None:
    catalog = load_catalog()
    end = datetime(2026, 12, 1, tzinfo=UTC)

    def ec2(region: str) -> Any:
        return aws_client("ec2", region=region, endpoint_url=moto_url)

    prices = fetch_aws_prices(
        catalog, ec2_client=ec2, pricing_client=None, start=end - timedelta(days=7), end=end
    )
    assert prices.spot and not prices.on_demand
    assert any("DescribeSpotPriceHistory" in s for s in prices.sources)
    refreshed = refresh_aws_offers(catalog, prices, date(2026, 12, 1))
    changed = [o for o, n in zip(catalog, refreshed, strict=True) if o != n]
    assert changed and all(o.cloud == "aws" for o in changed)
    for old, new in zip(catalog, refreshed, strict=True):
        assert new.on_demand_hourly == old.on_demand_hourly
        if (old.region, old.instance_type) in prices.spot:
            assert new.spot_hourly == Decimal("0.00001")
        else:
            assert new == old
    back = load_catalog(write_catalog(refreshed, tmp_path))
    assert (back.header, back.offers) == (refreshed.header, refreshed.offers)


def test_credentials_are_found_for_the_dummy_account() -> None:
    assert credentials_available()
