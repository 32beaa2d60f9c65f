"""Price catalog of compute offers and the token price book: dated data files, validated loaders.

Two shipped CSV files under ``loopline/cost/data/``, each with a ``#`` header that names its
date (``as_of``), currency, whether the figures are approximate, free-text notes and the public
pages the figures come from (``source``):

* ``catalog-YYYY-MM.csv``: one row per compute offer (cloud, region, instance type) with vCPU,
  memory, GPU type and count, on-demand and spot price per instance-hour and the spot
  interruption-frequency band (``<5%``, ``5-10%``, ``10-15%``, ``15-20%``, ``>20%``).
* ``token-prices-YYYY-MM.csv``: USD per 1,000 input and output tokens per provider and model,
  including external APIs (OpenAI, Anthropic, ...). Self-hosted models price at zero: their cost
  is the compute they run on.

Loaders validate every row and raise :class:`CatalogError` naming the file, line, row number and
field (``catalog-2026-11.csv line 23 (row 5), field 'spot_hourly': ...``). Prices are read into
:class:`~decimal.Decimal` so that ledger arithmetic stays exact. Pure apart from reading the file.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Literal, TypeVar

Cloud = Literal["aws", "gcp", "azure"]
Pricing = Literal["spot", "on_demand"]

CLOUDS: tuple[Cloud, ...] = ("aws", "gcp", "azure")
INTERRUPTION_BANDS: tuple[str, ...] = ("<5%", "5-10%", "10-15%", "15-20%", ">20%")
"""Spot interruption-frequency bands, lowest risk first (AWS Spot Instance Advisor's buckets)."""

CATALOG_COLUMNS: tuple[str, ...] = (
    "cloud",
    "region",
    "instance_type",
    "vcpu",
    "memory_gib",
    "gpu_type",
    "gpu_count",
    "on_demand_hourly",
    "spot_hourly",
    "interruption_band",
)
PRICE_BOOK_COLUMNS: tuple[str, ...] = ("provider", "model", "input_per_1k", "output_per_1k")

_CATALOG_FILE = re.compile(r"^catalog-(\d{4})-(\d{2})\.csv$")
_PRICE_BOOK_FILE = re.compile(r"^token-prices-(\d{4})-(\d{2})\.csv$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/+-]*$")


class CatalogError(ValueError):
    """A data file is malformed; the message names the file, line, row and field."""


@dataclass(frozen=True)
class Offer:
    """One purchasable compute offer: an instance type in a region of a cloud.

    Prices are USD per instance-hour. ``interruption_band`` is the spot interruption-frequency
    band; a spot *pool* is the (cloud, region, instance type) triple, identified by :attr:`key`.
    """

    cloud: Cloud
    region: str
    instance_type: str
    vcpu: int
    memory_gib: float
    gpu_type: str | None
    gpu_count: int
    on_demand_hourly: Decimal
    spot_hourly: Decimal
    interruption_band: str

    @property
    def key(self) -> str:
        """``cloud/region/instance_type``: unique within a catalog."""
        return f"{self.cloud}/{self.region}/{self.instance_type}"

    @property
    def is_gpu(self) -> bool:
        return self.gpu_count > 0

    def price(self, pricing: Pricing) -> Decimal:
        """Hourly price for ``spot`` or ``on_demand``."""
        return self.spot_hourly if pricing == "spot" else self.on_demand_hourly

    @property
    def spot_discount(self) -> float:
        """Fraction saved by spot against on-demand (0.6 = 60 % cheaper)."""
        return 1.0 - float(self.spot_hourly / self.on_demand_hourly)


@dataclass(frozen=True)
class FileHeader:
    """The ``#`` header of a data file: date, currency, notes and named sources."""

    as_of: date
    currency: str
    approximate: bool
    unit: str = ""
    notes: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    refresh: tuple[str, ...] = ()


@dataclass(frozen=True)
class Catalog:
    """A dated, validated set of offers. Lookup by :attr:`Offer.key` with :meth:`get`."""

    header: FileHeader
    offers: tuple[Offer, ...]
    source_file: str = ""
    _index: Mapping[str, Offer] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, Offer] = {}
        for offer in self.offers:
            if offer.key in index:
                raise CatalogError(f"duplicate offer {offer.key} in catalog {self.source_file}")
            index[offer.key] = offer
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.offers)

    def __iter__(self) -> Iterator[Offer]:
        return iter(self.offers)

    @property
    def as_of(self) -> date:
        return self.header.as_of

    def get(self, key: str) -> Offer:
        """The offer with ``key`` (``cloud/region/instance_type``); ``KeyError`` names it."""
        try:
            return self._index[key]
        except KeyError:
            raise KeyError(f"offer {key!r} is not in the catalog ({self.source_file})") from None

    def find(self, instance_type: str, region: str | None = None) -> Offer:
        """The offer of ``instance_type`` (in ``region`` when several regions carry it)."""
        hits = [
            o
            for o in self.offers
            if o.instance_type == instance_type and (region is None or o.region == region)
        ]
        if len(hits) != 1:
            where = f" in {region}" if region else ""
            raise KeyError(
                f"{len(hits)} offers of {instance_type!r}{where} in the catalog; "
                "name the region or use the offer key"
            )
        return hits[0]

    def filter(
        self,
        clouds: Sequence[str] | None = None,
        regions: Sequence[str] | None = None,
        instance_types: Sequence[str] | None = None,
        exclude_instance_types: Sequence[str] = (),
        gpu: bool | None = None,
    ) -> Catalog:
        """A catalog restricted to the named clouds, regions and instance types."""
        kept = tuple(
            o
            for o in self.offers
            if (clouds is None or o.cloud in clouds)
            and (regions is None or o.region in regions)
            and (instance_types is None or o.instance_type in instance_types)
            and o.instance_type not in exclude_instance_types
            and (gpu is None or o.is_gpu == gpu)
        )
        return Catalog(self.header, kept, self.source_file)


@dataclass(frozen=True)
class TokenPrice:
    """USD per 1,000 input and per 1,000 output tokens of one model at one provider."""

    provider: str
    model: str
    input_per_1k: Decimal
    output_per_1k: Decimal

    def cost(self, input_tokens: int, output_tokens: int) -> Decimal:
        """Exact cost of a request with these token counts."""
        return (
            Decimal(input_tokens) * self.input_per_1k + Decimal(output_tokens) * self.output_per_1k
        ) / Decimal(1000)


@dataclass(frozen=True)
class PriceBook:
    """Token prices by ``(provider, model)``."""

    header: FileHeader
    prices: tuple[TokenPrice, ...]
    source_file: str = ""
    _index: Mapping[tuple[str, str], TokenPrice] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        index: dict[tuple[str, str], TokenPrice] = {}
        for p in self.prices:
            if (p.provider, p.model) in index:
                raise CatalogError(
                    f"duplicate price for {p.provider}/{p.model} in {self.source_file}"
                )
            index[(p.provider, p.model)] = p
        object.__setattr__(self, "_index", index)

    def price(self, provider: str, model: str) -> TokenPrice:
        """The price of ``model`` at ``provider``; ``KeyError`` names what is missing."""
        try:
            return self._index[(provider, model)]
        except KeyError:
            known = sorted(m for (p, m) in self._index if p == provider)
            hint = f"; {provider} models priced: {', '.join(known)}" if known else ""
            raise KeyError(f"no token price for {provider}/{model}{hint}") from None

    def cost(self, provider: str, model: str, input_tokens: int, output_tokens: int) -> Decimal:
        """Exact USD cost of one request."""
        return self.price(provider, model).cost(input_tokens, output_tokens)

    def with_price(self, price: TokenPrice) -> PriceBook:
        """A copy with ``price`` added or replaced (e.g. a negotiated rate)."""
        rest = tuple(
            p for p in self.prices if (p.provider, p.model) != (price.provider, price.model)
        )
        return PriceBook(self.header, (*rest, price), self.source_file)


# --------------------------------------------------------------------------- parsing

T = TypeVar("T")


class _Row:
    """One CSV row with the location used in error messages."""

    def __init__(self, file: str, line: int, number: int, values: Mapping[str, str]) -> None:
        self.file, self.line, self.number, self.values = file, line, number, values

    def fail(self, name: str, why: str) -> CatalogError:
        return CatalogError(
            f"{self.file} line {self.line} (row {self.number}), field {name!r}: {why}"
        )

    def text(self, name: str, allow_empty: bool = False) -> str:
        raw = (self.values.get(name) or "").strip()
        if not raw and not allow_empty:
            raise self.fail(name, "is empty")
        if raw and not _NAME.match(raw):
            raise self.fail(name, f"{raw!r} is not a valid name")
        return raw

    def parse(self, name: str, convert: Callable[[str], T], what: str) -> T:
        raw = (self.values.get(name) or "").strip()
        try:
            return convert(raw)
        except (ValueError, InvalidOperation):
            raise self.fail(name, f"expected {what}, got {raw!r}") from None


def _decimal(raw: str) -> Decimal:
    value = Decimal(raw)
    if not value.is_finite() or value < 0:
        raise ValueError(raw)
    return value


def _positive_decimal(raw: str) -> Decimal:
    value = _decimal(raw)
    if value <= 0:
        raise ValueError(raw)
    return value


def _count(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError(raw)
    return value


def _positive_int(raw: str) -> int:
    value = _count(raw)
    if value == 0:
        raise ValueError(raw)
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(raw)
    return value


def _read(text: str, file: str, columns: tuple[str, ...]) -> tuple[FileHeader, list[_Row]]:
    header_lines: list[tuple[int, str]] = []
    body: list[str] = []
    body_start = 0
    for i, line in enumerate(text.splitlines(), start=1):
        if not body and line.startswith("#"):
            header_lines.append((i, line[1:].strip()))
        elif not body and not line.strip():
            continue
        else:
            if not body:
                body_start = i
            body.append(line)
    meta: dict[str, list[str]] = {}
    for i, entry in header_lines:
        if ":" not in entry:
            if not meta:  # the title line
                continue
            raise CatalogError(f"{file} line {i}: header line {entry!r} is not 'key: value'")
        key, _, value = entry.partition(":")
        meta.setdefault(key.strip(), []).append(value.strip())
    if "as_of" not in meta:
        raise CatalogError(f"{file}: header has no 'as_of: YYYY-MM-DD' line")
    try:
        as_of = date.fromisoformat(meta["as_of"][0])
    except ValueError:
        raise CatalogError(f"{file}: header as_of {meta['as_of'][0]!r} is not a date") from None
    if not meta.get("source"):
        raise CatalogError(f"{file}: header names no 'source:' for its figures")
    header = FileHeader(
        as_of=as_of,
        currency=meta.get("currency", ["USD"])[0],
        approximate=meta.get("approximate", ["false"])[0].lower() == "true",
        unit=meta.get("unit", [""])[0],
        notes=(" ".join(meta["note"]),) if meta.get("note") else (),
        sources=tuple(meta.get("source", [])),
        refresh=tuple(meta.get("refresh", [])),
    )
    reader = csv.DictReader(io.StringIO("\n".join(body)))
    found = tuple(reader.fieldnames or ())
    if found != columns:
        missing = [c for c in columns if c not in found]
        extra = [c for c in found if c not in columns]
        raise CatalogError(
            f"{file} line {body_start}: columns {list(found)} do not match {list(columns)}"
            f" (missing {missing}, unexpected {extra})"
        )
    rows: list[_Row] = []
    for number, values in enumerate(reader, start=1):
        if None in values:
            raise CatalogError(f"{file} line {body_start + number} (row {number}): too many fields")
        rows.append(_Row(file, body_start + number, number, values))
    if not rows:
        raise CatalogError(f"{file}: no rows")
    return header, rows


def _offer(row: _Row) -> Offer:
    cloud = row.text("cloud").lower()
    if cloud not in CLOUDS:
        raise row.fail("cloud", f"{cloud!r} is not one of {', '.join(CLOUDS)}")
    gpu_type = row.text("gpu_type", allow_empty=True) or None
    gpu_count = row.parse("gpu_count", _count, "a non-negative integer")
    if (gpu_type is None) != (gpu_count == 0):
        raise row.fail("gpu_count", f"{gpu_count} GPUs does not match gpu_type {gpu_type!r}")
    on_demand = row.parse("on_demand_hourly", _positive_decimal, "a positive price")
    spot = row.parse("spot_hourly", _positive_decimal, "a positive price")
    if spot > on_demand:
        raise row.fail("spot_hourly", f"spot price {spot} exceeds on-demand {on_demand}")
    band = (row.values.get("interruption_band") or "").strip()
    if band not in INTERRUPTION_BANDS:
        raise row.fail(
            "interruption_band", f"{band!r} is not one of {', '.join(INTERRUPTION_BANDS)}"
        )
    return Offer(
        cloud=cloud,
        region=row.text("region"),
        instance_type=row.text("instance_type"),
        vcpu=row.parse("vcpu", _positive_int, "a positive integer"),
        memory_gib=row.parse("memory_gib", _positive_float, "a positive number"),
        gpu_type=gpu_type,
        gpu_count=gpu_count,
        on_demand_hourly=on_demand,
        spot_hourly=spot,
        interruption_band=band,
    )


def _token_price(row: _Row) -> TokenPrice:
    return TokenPrice(
        provider=row.text("provider"),
        model=row.text("model"),
        input_per_1k=row.parse("input_per_1k", _decimal, "a non-negative price"),
        output_per_1k=row.parse("output_per_1k", _decimal, "a non-negative price"),
    )


def parse_catalog(text: str, file: str = "<catalog>") -> Catalog:
    """Parse catalog CSV text (header + rows); raises :class:`CatalogError`."""
    header, rows = _read(text, file, CATALOG_COLUMNS)
    offers: list[Offer] = []
    seen: dict[str, int] = {}
    for row in rows:
        offer = _offer(row)
        if offer.key in seen:
            raise row.fail("instance_type", f"{offer.key} repeats row {seen[offer.key]}")
        seen[offer.key] = row.number
        offers.append(offer)
    return Catalog(header, tuple(offers), file)


def parse_price_book(text: str, file: str = "<price book>") -> PriceBook:
    """Parse token price book CSV text; raises :class:`CatalogError`."""
    header, rows = _read(text, file, PRICE_BOOK_COLUMNS)
    prices: list[TokenPrice] = []
    seen: dict[tuple[str, str], int] = {}
    for row in rows:
        price = _token_price(row)
        key = (price.provider, price.model)
        if key in seen:
            raise row.fail("model", f"{price.provider}/{price.model} repeats row {seen[key]}")
        seen[key] = row.number
        prices.append(price)
    return PriceBook(header, tuple(prices), file)


CATALOG_TITLE = "Loopline price catalog: CPU and GPU instance offers for AWS, GCP and Azure."
_HEADER_WIDTH = 96
_BREAK = re.compile(r"(?<=\S) (?=\S)")


def catalog_file_name(as_of: date) -> str:
    """The dated file name of a catalog as of ``as_of``: ``catalog-YYYY-MM.csv``."""
    return f"catalog-{as_of:%Y-%m}.csv"


def _plain(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros (``0.2016``, ``55.04``, ``100``)."""
    return format(value.normalize(), "f")


def _plain_float(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _wrapped(key: str, text: str) -> list[str]:
    """``# key: ...`` lines holding ``text``; the parser's join of them gives ``text`` back.

    Lines break only at a single space between two non-space characters, so joining the
    pieces with one space restores the text exactly.
    """
    lines: list[str] = []
    current = ""
    for piece in _BREAK.split(text):
        if current and len(key) + len(current) + len(piece) + 4 > _HEADER_WIDTH:
            lines.append(f"# {key}: {current}")
            current = piece
        else:
            current = f"{current} {piece}" if current else piece
    if current:
        lines.append(f"# {key}: {current}")
    return lines


def render_catalog(catalog: Catalog, title: str = CATALOG_TITLE) -> str:
    """The catalog as a dated CSV data file that :func:`parse_catalog` reads back unchanged.

    The ``#`` header names ``as_of``, currency, unit, whether figures are approximate, the notes
    (several notes are joined into one, as the parser joins ``note:`` lines), every source and
    every refresh route; rows follow in catalog order with prices written exactly.
    """
    h = catalog.header
    lines = [f"# {title}", f"# as_of: {h.as_of.isoformat()}", f"# currency: {h.currency}"]
    if h.unit:
        lines.append(f"# unit: {h.unit}")
    lines.append(f"# approximate: {'true' if h.approximate else 'false'}")
    note = " ".join(n.strip() for n in h.notes if n.strip())
    if note:
        lines += _wrapped("note", note)
    lines += [f"# source: {source}" for source in h.sources]
    lines += [f"# refresh: {route}" for route in h.refresh]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CATALOG_COLUMNS)
    for o in catalog.offers:
        writer.writerow(
            [
                o.cloud,
                o.region,
                o.instance_type,
                o.vcpu,
                _plain_float(o.memory_gib),
                o.gpu_type or "",
                o.gpu_count,
                _plain(o.on_demand_hourly),
                _plain(o.spot_hourly),
                o.interruption_band,
            ]
        )
    return "\n".join(lines) + "\n" + out.getvalue()


def write_catalog(catalog: Catalog, folder: str | Path) -> Path:
    """Write ``catalog`` to ``folder/catalog-YYYY-MM.csv`` (its ``as_of`` month) and return the
    path, after checking that the text parses back to the same header and offers."""
    name = catalog_file_name(catalog.as_of)
    text = render_catalog(catalog)
    back = parse_catalog(text, name)
    h = catalog.header
    expected_notes = tuple(n for n in (" ".join(x.strip() for x in h.notes if x.strip()),) if n)
    if back.offers != catalog.offers or back.header != FileHeader(
        h.as_of, h.currency, h.approximate, h.unit, expected_notes, h.sources, h.refresh
    ):
        raise CatalogError(f"{name}: the rendered catalog does not read back identically")
    path = Path(folder) / name
    path.write_text(text, encoding="utf-8")
    return path


def _latest(pattern: re.Pattern[str]) -> tuple[str, str]:
    folder = resources.files("loopline.cost") / "data"
    names = sorted(
        (entry.name for entry in folder.iterdir() if pattern.match(entry.name)),
        key=lambda n: tuple(int(g) for g in pattern.findall(n)[0]),
    )
    if not names:
        raise CatalogError(f"no shipped data file matches {pattern.pattern}")
    return names[-1], (folder / names[-1]).read_text(encoding="utf-8")


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load the catalog at ``path``, or the newest shipped ``catalog-YYYY-MM.csv``."""
    if path is None:
        name, text = _latest(_CATALOG_FILE)
        return parse_catalog(text, name)
    p = Path(path)
    return parse_catalog(p.read_text(encoding="utf-8"), p.name)


def load_price_book(path: str | Path | None = None) -> PriceBook:
    """Load the price book at ``path``, or the newest shipped ``token-prices-YYYY-MM.csv``."""
    if path is None:
        name, text = _latest(_PRICE_BOOK_FILE)
        return parse_price_book(text, name)
    p = Path(path)
    return parse_price_book(p.read_text(encoding="utf-8"), p.name)
