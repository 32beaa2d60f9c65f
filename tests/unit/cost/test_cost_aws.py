"""AWS adapter, the parts that need no AWS endpoint: Price List parsing, spot aggregation,
catalog refresh and the credential check. The calls themselves run against the moto server in
tests/integration/test_cost_aws_moto.py.

moto 5 has no Pricing service (``get_products`` gets HTTP 500, "Unable to find appropriate
backend for pricing"), so the Price List parser is tested on documents written here in the
response shape AWS documents for ``GetProducts``: each ``PriceList`` entry a JSON string with
``product.attributes`` and ``terms.OnDemand.<offer>.priceDimensions.<rate>.pricePerUnit.USD``.
They are test data for a parser, not a stand-in server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from loopline.cost.aws import (
    AwsImportError,
    AwsPrices,
    SpotPricePoint,
    credentials_available,
    group_definitions,
    parse_price_list,
    product_filters,
    refresh_aws_offers,
    service_kind,
    summarize_spot,
)
from loopline.cost.catalog import CatalogError, load_catalog, parse_catalog, write_catalog

T0 = datetime(2026, 11, 24, tzinfo=UTC)
WEEK = timedelta(days=7)


def price_list_entry(
    instance_type: str, region: str, usd: str, sku: str = "SKU1", **attributes: str
) -> str:
    """One ``PriceList`` string as GetProducts returns it (AmazonEC2, format aws_v1)."""
    attrs = {
        "servicecode": "AmazonEC2",
        "instanceType": instance_type,
        "regionCode": region,
        "location": "US East (N. Virginia)",
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
        "licenseModel": "No License required",
        "usagetype": f"BoxUsage:{instance_type}",
        "operation": "RunInstances",
        "vcpu": "4",
        "memory": "16 GiB",
        "marketoption": "OnDemand",
        **attributes,
    }
    rate = f"{sku}.JRTCKXETXF.6YS6EN2CT7"
    return json.dumps(
        {
            "product": {"productFamily": "Compute Instance", "attributes": attrs, "sku": sku},
            "serviceCode": "AmazonEC2",
            "terms": {
                "OnDemand": {
                    f"{sku}.JRTCKXETXF": {
                        "priceDimensions": {
                            rate: {
                                "unit": "Hrs",
                                "endRange": "Inf",
                                "description": f"${usd} per On Demand Linux {instance_type}",
                                "appliesTo": [],
                                "rateCode": rate,
                                "beginRange": "0",
                                "pricePerUnit": {"USD": usd},
                            }
                        },
                        "sku": sku,
                        "effectiveDate": "2026-11-01T00:00:00Z",
                        "offerTermCode": "JRTCKXETXF",
                        "termAttributes": {},
                    }
                },
                "Reserved": {
                    f"{sku}.4NA7Y494T4": {
                        "priceDimensions": {
                            f"{sku}.4NA7Y494T4.6YS6EN2CT7": {
                                "unit": "Hrs",
                                "pricePerUnit": {"USD": "0.1270000000"},
                            }
                        },
                        "termAttributes": {"LeaseContractLength": "1yr"},
                    }
                },
            },
            "version": "20261101000000",
            "publicationDate": "2026-11-01T00:00:00Z",
        }
    )


def test_price_list_gives_the_shared_linux_on_demand_price_exactly() -> None:
    entries = [
        price_list_entry("m7i.xlarge", "us-east-1", "0.2016000000"),
        price_list_entry("m7i.xlarge", "eu-west-1", "0.2238000000", sku="SKU2"),
        # the same instance type that must not count: another OS, tenancy, software, capacity
        price_list_entry("m7i.xlarge", "us-east-1", "0.3856", sku="W", operatingSystem="Windows"),
        price_list_entry("m7i.xlarge", "us-east-1", "0.2218", sku="D", tenancy="Dedicated"),
        price_list_entry("m7i.xlarge", "us-east-1", "0.7016", sku="S", preInstalledSw="SQL Std"),
        price_list_entry(
            "m7i.xlarge", "us-east-1", "0.2016", sku="U", capacitystatus="UnusedCapacityReservation"
        ),
        price_list_entry("m7i.xlarge", "us-east-1", "0.0000000000", sku="Z"),
    ]
    prices = parse_price_list(entries)
    assert prices == {
        ("eu-west-1", "m7i.xlarge"): Decimal("0.2238"),
        ("us-east-1", "m7i.xlarge"): Decimal("0.2016"),
    }
    assert all(isinstance(p, Decimal) for p in prices.values())
    assert parse_price_list([json.loads(entries[0])]) == {
        ("us-east-1", "m7i.xlarge"): Decimal("0.2016")
    }


def test_price_list_with_two_prices_for_one_pool_names_the_skus() -> None:
    entries = [
        price_list_entry("g5.xlarge", "us-east-1", "1.006", sku="A"),
        price_list_entry("g5.xlarge", "us-east-1", "1.106", sku="B"),
    ]
    with pytest.raises(AwsImportError, match=r"us-east-1 g5\.xlarge: several .*\(A\).*\(B\)"):
        parse_price_list(entries)
    with pytest.raises(AwsImportError, match="not JSON"):
        parse_price_list(["{"])


def test_product_filters_ask_for_plain_linux_in_one_region() -> None:
    filters = {f["Field"]: f["Value"] for f in product_filters("g6.xlarge", "us-west-2")}
    assert filters == {
        "instanceType": "g6.xlarge",
        "regionCode": "us-west-2",
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
        "licenseModel": "No License required",
    }


def point(zone: str, price: str, at: datetime, instance_type: str = "g5.xlarge") -> SpotPricePoint:
    return SpotPricePoint(
        "us-east-1", zone, instance_type, "Linux/UNIX", Decimal(price), at.astimezone(UTC)
    )


def test_spot_price_is_the_median_over_zones_of_the_time_weighted_mean() -> None:
    points = [
        # zone a: 0.40 in force at the start, 0.70 for the last day: (6 × 0.40 + 0.70) / 7
        point("us-east-1a", "0.40", T0 - timedelta(days=3)),
        point("us-east-1a", "0.70", T0 + 6 * timedelta(days=1)),
        # zone b: a one-hour spike barely moves a week's mean
        point("us-east-1b", "0.30", T0),
        point("us-east-1b", "3.00", T0 + timedelta(days=2)),
        point("us-east-1b", "0.30", T0 + timedelta(days=2, hours=1)),
        # zone c: after the window only; zone d: one price all week
        point("us-east-1c", "9.00", T0 + WEEK + timedelta(hours=1)),
        point("us-east-1d", "0.50", T0 - timedelta(days=30)),
        point("us-east-1a", "0.10", T0, instance_type="m7i.xlarge"),
    ]
    weighted = summarize_spot(points, T0, T0 + WEEK)
    zone_a = (6 * Decimal("0.40") + Decimal("0.70")) / 7
    zone_b = (167 * Decimal("0.30") + Decimal("3.00")) / 168
    assert weighted[("us-east-1", "g5.xlarge")] == zone_a.quantize(Decimal("0.000001"))
    assert zone_b < zone_a < Decimal("0.50")  # the median of the three zones with a price
    assert weighted[("us-east-1", "m7i.xlarge")] == Decimal("0.100000")
    latest = summarize_spot(points, T0, T0 + WEEK, method="latest")
    assert latest[("us-east-1", "g5.xlarge")] == Decimal("0.500000")  # median of .70, .30, .50
    even = summarize_spot(points[:5], T0, T0 + WEEK, method="latest")
    assert even[("us-east-1", "g5.xlarge")] == Decimal("0.500000")  # (0.70 + 0.30) / 2
    assert summarize_spot(points[5:6], T0, T0 + WEEK) == {}
    with pytest.raises(ValueError, match="empty spot window"):
        summarize_spot(points, T0, T0)


SMALL_CATALOG = (
    "# Loopline price catalog: test\n# as_of: 2026-11-01\n# approximate: true\n"
    "# note: Approximate figures.\n# source: a public page\n"
    "cloud,region,instance_type,vcpu,memory_gib,gpu_type,gpu_count,on_demand_hourly,"
    "spot_hourly,interruption_band\n"
    "aws,us-east-1,g5.xlarge,4,16,A10G,1,1.006,0.4102,15-20%\n"
    "aws,us-east-1,m7i.xlarge,4,16,,0,0.2016,0.0832,<5%\n"
    "aws,eu-west-1,m7i.xlarge,4,16,,0,0.2238,0.0932,<5%\n"
    "gcp,us-central1,g2-standard-4,4,16,L4,1,0.7068,0.2808,10-15%\n"
    "azure,eastus,Standard_D4s_v5,4,16,,0,0.192,0.0384,<5%\n"
)


def test_refresh_replaces_aws_prices_only_and_round_trips_through_the_csv(tmp_path: Path) -> None:
    catalog = parse_catalog(SMALL_CATALOG, "catalog-2026-11.csv")
    prices = AwsPrices(
        on_demand={("us-east-1", "g5.xlarge"): Decimal("1.0060000000")},
        spot={
            ("us-east-1", "g5.xlarge"): Decimal("0.391234"),
            ("us-east-1", "m7i.xlarge"): Decimal("0.079"),
            ("us-west-2", "m7i.xlarge"): Decimal("0.08"),  # no such offer: not added
        },
        sources=("AWS Price List Query API (test)", "AWS EC2 DescribeSpotPriceHistory (test)"),
    )
    refreshed = refresh_aws_offers(catalog, prices, date(2026, 12, 1))
    assert refreshed.as_of == date(2026, 12, 1)
    assert refreshed.source_file == "catalog-2026-12.csv"
    g5 = refreshed.get("aws/us-east-1/g5.xlarge")
    assert (g5.on_demand_hourly, g5.spot_hourly) == (Decimal("1.006"), Decimal("0.391234"))
    assert refreshed.get("aws/us-east-1/m7i.xlarge").spot_hourly == Decimal("0.079")
    assert refreshed.get("aws/eu-west-1/m7i.xlarge") == catalog.get("aws/eu-west-1/m7i.xlarge")
    for key in ("gcp/us-central1/g2-standard-4", "azure/eastus/Standard_D4s_v5"):
        assert refreshed.get(key) == catalog.get(key)
    assert len(refreshed) == len(catalog)
    header = refreshed.header
    assert header.sources == ("a public page", *prices.sources)
    assert header.notes[0].startswith("Approximate figures. AWS prices refreshed 2026-12-01: 1")
    assert "as of 2026-11-01" in header.notes[0]

    path = write_catalog(refreshed, tmp_path)
    back = load_catalog(path)
    assert path.name == "catalog-2026-12.csv"
    assert (back.header, back.offers) == (refreshed.header, refreshed.offers)


def test_refresh_rejects_spot_above_on_demand_and_leaves_a_catalog_without_news() -> None:
    catalog = parse_catalog(SMALL_CATALOG, "catalog-2026-11.csv")
    high = AwsPrices(spot={("us-east-1", "m7i.xlarge"): Decimal("0.25")})
    with pytest.raises(CatalogError, match=r"aws/us-east-1/m7i\.xlarge.*spot 0\.25"):
        refresh_aws_offers(catalog, high, date(2026, 12, 1))
    gcp_only = AwsPrices(spot={("us-central1", "g2-standard-4"): Decimal("0.1")})
    assert refresh_aws_offers(catalog, gcp_only, date(2026, 12, 1)) is catalog


def test_the_shipped_catalog_refreshes_without_touching_gcp_or_azure() -> None:
    catalog = load_catalog()
    spot = {(o.region, o.instance_type): o.spot_hourly / 2 for o in catalog if o.cloud == "aws"}
    refreshed = refresh_aws_offers(catalog, AwsPrices(spot=spot), date(2026, 12, 1))
    for old, new in zip(catalog, refreshed, strict=True):
        if old.cloud == "aws":
            assert new.spot_hourly == old.spot_hourly / 2
            assert new.on_demand_hourly == old.on_demand_hourly
        else:
            assert new == old


def test_group_specs_become_cost_explorer_group_definitions() -> None:
    assert group_definitions(["SERVICE", "tag:team"]) == [
        {"Type": "DIMENSION", "Key": "SERVICE"},
        {"Type": "TAG", "Key": "team"},
    ]
    assert group_definitions(["cost-category:unit"]) == [{"Type": "COST_CATEGORY", "Key": "unit"}]
    with pytest.raises(AwsImportError, match="at most two"):
        group_definitions(["SERVICE", "REGION", "tag:team"])
    with pytest.raises(AwsImportError, match="'label:x'"):
        group_definitions(["label:x"])


def test_service_kinds() -> None:
    assert service_kind("Amazon Simple Storage Service") == "storage"
    assert service_kind("Amazon Bedrock") == "tokens"
    assert service_kind("Amazon Elastic Compute Cloud - Compute") == "compute"
    assert service_kind("Amazon SageMaker") == "compute"


def _no_aws_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-role lookup


def test_credentials_available_is_false_without_any_and_never_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _no_aws_config(monkeypatch)
    assert credentials_available() is False
    assert credentials_available(profile="no-such-profile") is False

    class Broken:
        def get_credentials(self) -> Any:
            raise RuntimeError("credential process failed")

    assert credentials_available(session=Broken()) is False


def test_credentials_available_finds_environment_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_aws_config(monkeypatch)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert credentials_available() is True


def test_importing_the_adapter_does_not_load_boto3() -> None:
    code = (
        "import sys, loopline.cost, loopline.cost.aws;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
