"""Price catalog and token price book: shipped files, validation errors naming row and field."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from loopline.cost.catalog import (
    CATALOG_COLUMNS,
    INTERRUPTION_BANDS,
    CatalogError,
    catalog_file_name,
    load_catalog,
    load_price_book,
    parse_catalog,
    parse_price_book,
    render_catalog,
    write_catalog,
)

HEADER = "# title\n# as_of: 2026-11-01\n# source: a public price page\n"
COLS = ",".join(CATALOG_COLUMNS) + "\n"
GOOD = "aws,us-east-1,m7i.xlarge,4,16,,0,0.2016,0.0832,<5%\n"


def test_shipped_catalog_covers_three_clouds_cpu_and_gpu_with_named_sources() -> None:
    catalog = load_catalog()
    assert catalog.source_file.startswith("catalog-") and catalog.source_file.endswith(".csv")
    assert catalog.header.approximate and catalog.header.currency == "USD"
    assert len(catalog.header.sources) >= 5
    assert any("Spot Instance Advisor" in s for s in catalog.header.sources)
    for cloud in ("aws", "gcp", "azure"):
        offers = catalog.filter(clouds=[cloud]).offers
        assert len({o.region for o in offers}) >= 3
        assert any(o.is_gpu for o in offers) and any(not o.is_gpu for o in offers)
    for o in catalog.offers:
        assert 0 < o.spot_hourly <= o.on_demand_hourly
        assert o.interruption_band in INTERRUPTION_BANDS
        assert 0 <= o.spot_discount < 1
    assert {o.interruption_band for o in catalog.offers} == set(INTERRUPTION_BANDS)
    g5 = catalog.get("aws/us-east-1/g5.xlarge")
    assert g5.gpu_type == "A10G" and g5.gpu_count == 1 and g5.price("spot") == g5.spot_hourly


def test_catalog_lookup_errors_name_the_offer() -> None:
    catalog = load_catalog()
    with pytest.raises(KeyError, match="aws/mars-1/x"):
        catalog.get("aws/mars-1/x")
    with pytest.raises(KeyError, match="name the region"):
        catalog.find("m7i.xlarge")
    assert catalog.find("m7i.xlarge", "eu-west-1").region == "eu-west-1"


@pytest.mark.parametrize(
    ("row", "field", "why"),
    [
        (
            "aws,us-east-1,m7i.xlarge,4,16,,0,abc,0.08,<5%",
            "on_demand_hourly",
            "expected a positive price",
        ),
        ("aws,us-east-1,m7i.xlarge,4,16,,0,0.2,-1,<5%", "spot_hourly", "expected a positive price"),
        ("aws,us-east-1,m7i.xlarge,4,16,,0,0.2,0.3,<5%", "spot_hourly", "exceeds on-demand"),
        ("aws,us-east-1,m7i.xlarge,4,16,,0,0.2,0.1,often", "interruption_band", "is not one of"),
        ("ibm,us-east-1,m7i.xlarge,4,16,,0,0.2,0.1,<5%", "cloud", "is not one of"),
        ("aws,us-east-1,m7i.xlarge,0,16,,0,0.2,0.1,<5%", "vcpu", "positive integer"),
        ("aws,us-east-1,g5.xlarge,4,16,A10G,0,1.0,0.4,<5%", "gpu_count", "does not match"),
        ("aws,us-east-1,m7i.xlarge,4,16,,2,0.2,0.1,<5%", "gpu_count", "does not match"),
        ("aws,,m7i.xlarge,4,16,,0,0.2,0.1,<5%", "region", "is empty"),
        ("aws,us-east-1,m7i.xlarge,4,nan,,0,0.2,0.1,<5%", "memory_gib", "positive number"),
    ],
)
def test_catalog_row_errors_name_file_line_row_and_field(row: str, field: str, why: str) -> None:
    text = HEADER + COLS + GOOD + row + "\n"
    with pytest.raises(CatalogError) as err:
        parse_catalog(text, "bad.csv")
    message = str(err.value)
    assert message.startswith("bad.csv line 6 (row 2), field ")
    assert f"'{field}'" in message and why in message


def test_catalog_file_level_errors() -> None:
    with pytest.raises(CatalogError, match="no 'as_of"):
        parse_catalog("# source: x\n" + COLS + GOOD, "f.csv")
    with pytest.raises(CatalogError, match="names no 'source:'"):
        parse_catalog("# as_of: 2026-01-01\n" + COLS + GOOD, "f.csv")
    with pytest.raises(CatalogError, match=r"missing \['interruption_band'\]"):
        parse_catalog(HEADER + COLS.replace(",interruption_band", "") + GOOD, "f.csv")
    with pytest.raises(CatalogError, match="repeats row 1"):
        parse_catalog(HEADER + COLS + GOOD + GOOD, "f.csv")
    with pytest.raises(CatalogError, match="no rows"):
        parse_catalog(HEADER + COLS, "f.csv")
    with pytest.raises(CatalogError, match="too many fields"):
        parse_catalog(HEADER + COLS + GOOD.strip() + ",extra\n", "f.csv")


def test_load_catalog_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "catalog-2030-01.csv"
    path.write_text(HEADER + COLS + GOOD)
    catalog = load_catalog(path)
    assert len(catalog) == 1 and catalog.as_of.year == 2026
    assert catalog.offers[0].on_demand_hourly == Decimal("0.2016")


def test_price_book_prices_requests_exactly() -> None:
    book = load_price_book()
    assert book.header.sources and book.header.approximate
    # gpt-4o: 0.0025 per 1k input, 0.01 per 1k output
    assert book.cost("openai", "gpt-4o", 1000, 500) == Decimal("0.0075")
    assert book.cost("openai", "gpt-4o-mini", 1, 1) == Decimal("0.00000075")
    assert book.cost("self-hosted", "loopline-tiny", 10_000, 10_000) == 0
    with pytest.raises(KeyError, match="openai models priced"):
        book.price("openai", "gpt-9")
    cheaper = book.with_price(
        book.price("openai", "gpt-4o").__class__(
            "openai", "gpt-4o", Decimal("0.001"), Decimal("0.002")
        )
    )
    assert cheaper.cost("openai", "gpt-4o", 1000, 1000) == Decimal("0.003")


def test_price_book_validation() -> None:
    head = "# p\n# as_of: 2026-11-01\n# source: page\nprovider,model,input_per_1k,output_per_1k\n"
    with pytest.raises(CatalogError, match=r"line 6 \(row 2\), field 'output_per_1k'"):
        parse_price_book(head + "openai,a,0.1,0.2\nopenai,b,0.1,-2\n", "p.csv")
    with pytest.raises(CatalogError, match="repeats row 1"):
        parse_price_book(head + "openai,a,0.1,0.2\nopenai,a,0.1,0.2\n", "p.csv")


def test_rendering_the_shipped_catalog_gives_back_the_shipped_file() -> None:
    catalog = load_catalog()
    shipped = (
        Path(__file__).resolve().parents[3] / "src" / "loopline" / "cost" / "data"
    ) / catalog.source_file
    text = render_catalog(catalog)
    assert text == shipped.read_text(encoding="utf-8")
    assert parse_catalog(text, catalog.source_file) == catalog


def test_write_catalog_names_the_file_by_month_and_reads_back(tmp_path: Path) -> None:
    text = (
        "# title\n# as_of: 2026-12-03\n# approximate: false\n# note: one  note\n"
        "# note: and a second\n# source: a page\n# source: another page\n"
        + COLS
        + "aws,us-east-1,p4d.24xlarge,96,1152.5,A100-40GB,8,32.77260,13.1090,>20%\n"
        + "gcp,us-central1,e2-standard-4,4,16,,0,0.134,0.04,<5%\n"
    )
    catalog = parse_catalog(text, "x.csv")
    path = write_catalog(catalog, tmp_path)
    assert path.name == catalog_file_name(catalog.as_of) == "catalog-2026-12.csv"
    back = load_catalog(path)
    assert (back.header, back.offers) == (catalog.header, catalog.offers)
    assert back.header.notes == ("one  note and a second",)
    assert "32.7726,13.109" in path.read_text() and "1152.5" in path.read_text()
