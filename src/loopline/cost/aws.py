"""AWS adapter: the bill from Cost Explorer, catalog prices from the Pricing and EC2 APIs.

The only module of the cost package that talks to AWS. boto3 is imported inside the functions
that need it, so ``import loopline.cost`` stays light and works without it. Functions take
ready boto3 clients (make them with :func:`aws_client`; point ``endpoint_url`` at an emulator
in tests); parsing is split from calling, so the parsers also read saved API responses.

Billing import
--------------
:func:`import_cost_and_usage` calls Cost Explorer ``get_cost_and_usage`` page by page
(``NextPageToken``) and turns each result into a :class:`~loopline.cost.ledger.CostLine`:

* one line per time period and group (``ResultsByTime[].Groups[]``), or one per period for an
  ungrouped query (``ResultsByTime[].Total``); ``[start, end)`` is the result's ``TimePeriod``;
* the amount is the metric's ``Amount`` string read as a :class:`~decimal.Decimal` (never a
  float). The ledger books whole nano-dollars, so the up to ten decimals Cost Explorer returns
  are rounded half-even to nine; the line's ``detail`` then keeps the exact figure;
* a ``Unit`` other than USD raises :class:`AwsImportError` naming the period and the group;
* ``Estimated`` is kept in :attr:`CostLine.estimated <loopline.cost.ledger.CostLine.estimated>`;
* tag and cost-category group keys (``team$research``) set attribution dimensions through
  ``tag_dimensions`` (``team`` → team, ``env`` → environment, ...); an empty value
  (``team$``, untagged spend) stays unattributed; dimension groups (``SERVICE``, ...) go into
  the detail, and ``SERVICE`` also chooses the line's kind (:data:`SERVICE_KINDS`);
* line ids are ``aws-ce:<start>/<end>:<group>``, so importing the same bill twice merges
  without double counting (:meth:`Ledger.merge <loopline.cost.ledger.Ledger.merge>`), and a
  revised estimate for the same period and group is reported as a conflict. Import one grouping
  per period into a ledger: two groupings of the same spend would count it twice.

Catalog refresh
---------------
:func:`on_demand_prices` reads the Price List Query API (``pricing`` ``get_products``, shared
tenancy Linux without pre-installed software, ``terms.OnDemand.*.priceDimensions.*
.pricePerUnit.USD``); :func:`spot_prices` reads ``describe_spot_price_history`` through its
paginator. :func:`refresh_aws_offers` then replaces the prices of the AWS offers the catalog
already has and keeps everything else; :func:`~loopline.cost.catalog.render_catalog` and
:func:`~loopline.cost.catalog.write_catalog` write the dated CSV back.

Spot price of a pool (region, instance type): the **median over availability zones of each
zone's time-weighted mean price** over the window ``[start, end)``. A history record is a price
change: it holds from its timestamp until the zone's next record (the record before ``start``,
which the API returns, holds from ``start``). Weighting by time keeps a short spike from
counting like a week-long price; the median over zones is what a diversified fleet in the
region pays, not the cheapest zone alone. ``method="latest"`` takes each zone's latest price
instead (the median over zones again). Prices are rounded to 1e-6 USD per hour.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, Literal

from loopline.cost.catalog import Catalog, CatalogError, FileHeader, Offer, catalog_file_name
from loopline.cost.ledger import UNATTRIBUTED, Attribution, CostKind, CostLine, money
from loopline.cost.policy import ATTRIBUTION_DIMENSIONS

Granularity = Literal["DAILY", "MONTHLY", "HOURLY"]
SpotMethod = Literal["time-weighted", "latest"]
PoolKey = tuple[str, str]
"""``(region, instance_type)``: a spot pool of one cloud, the catalog's price key for AWS."""

COST_EXPLORER_REGION = "us-east-1"
PRICING_REGION = "us-east-1"
"""The Price List Query API answers in us-east-1 (also eu-central-1, ap-south-1)."""

LINUX_SPOT_PRODUCTS: tuple[str, ...] = ("Linux/UNIX", "Linux/UNIX (Amazon VPC)")
SPOT_QUANTUM = Decimal("0.000001")

DEFAULT_TAG_DIMENSIONS: Mapping[str, str] = {
    "team": "team",
    "env": "environment",
    "environment": "environment",
    "model": "model",
    "version": "version",
    "variant": "variant",
}
"""Cost-allocation tag (or cost category) name → attribution dimension."""

SERVICE_KINDS: tuple[tuple[str, CostKind], ...] = (
    ("Bedrock", "tokens"),
    ("Simple Storage Service", "storage"),
    ("Glacier", "storage"),
    ("Elastic File System", "storage"),
    ("FSx", "storage"),
    ("AWS Backup", "storage"),
)
"""Cost Explorer ``SERVICE`` values (by substring) booked as tokens or storage; any other service
gets the import's ``default_kind`` (compute)."""

_GROUP_TYPES = {"tag": "TAG", "cost-category": "COST_CATEGORY"}
_LABEL_PREFIX = {"TAG": "tag:", "COST_CATEGORY": "cost-category:", "DIMENSION": ""}


class AwsImportError(ValueError):
    """An AWS response cannot be booked: the message names the period, group or product."""


# --------------------------------------------------------------------------- clients


def aws_client(
    service: str,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    session: Any | None = None,
    profile: str | None = None,
) -> Any:
    """A boto3 client for ``service`` (``ce``, ``pricing``, ``ec2``) from ``session`` (or a new
    one for ``profile``). Cost Explorer and Pricing default to us-east-1, where they answer."""
    import boto3

    if session is None:
        session = boto3.session.Session(profile_name=profile)
    if region is None and service in ("ce", "pricing"):
        region = COST_EXPLORER_REGION if service == "ce" else PRICING_REGION
    return session.client(service, region_name=region, endpoint_url=endpoint_url)


def credentials_available(session: Any | None = None, profile: str | None = None) -> bool:
    """Whether boto3's credential chain (environment, shared files, SSO, container or instance
    role) finds credentials. Never raises: any failure, a missing boto3 included, is ``False``."""
    try:
        import boto3

        if session is None:
            session = boto3.session.Session(profile_name=profile)
        credentials = session.get_credentials()
        if credentials is None:
            return False
        frozen = credentials.get_frozen_credentials()
        return bool(frozen.access_key and frozen.secret_key)
    except Exception:
        return False


# --------------------------------------------------------------------------- Cost Explorer


@dataclass(frozen=True)
class _Group:
    type: str  # DIMENSION, TAG or COST_CATEGORY
    key: str


def group_definitions(group_by: Sequence[str]) -> list[dict[str, str]]:
    """Cost Explorer ``GroupBy`` for ``group_by``: ``"SERVICE"`` (a dimension), ``"tag:team"``
    (a cost-allocation tag), ``"cost-category:unit"``. At most two, as the API allows."""
    if len(group_by) > 2:
        raise AwsImportError(f"Cost Explorer groups by at most two keys, got {list(group_by)}")
    out: list[dict[str, str]] = []
    for spec in group_by:
        prefix, sep, key = spec.partition(":")
        if not sep:
            out.append({"Type": "DIMENSION", "Key": spec})
            continue
        group_type = _GROUP_TYPES.get(prefix.lower())
        if group_type is None or not key:
            raise AwsImportError(
                f"group {spec!r}: use a dimension (SERVICE), 'tag:NAME' or 'cost-category:NAME'"
            )
        out.append({"Type": group_type, "Key": key})
    return out


def _bound(raw: Any, what: str) -> datetime:
    text = str(raw or "")
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise AwsImportError(f"TimePeriod {what} {text!r} is not a date or time") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _hours(start: datetime, end: datetime) -> Decimal:
    seconds = int((end - start).total_seconds())
    return Decimal(seconds) / Decimal(3600)


def service_kind(service: str, default: CostKind = "compute") -> CostKind:
    """The ledger kind of a Cost Explorer ``SERVICE`` value (see :data:`SERVICE_KINDS`)."""
    for needle, kind in SERVICE_KINDS:
        if needle in service:
            return kind
    return default


def _parse_amount(metric: Mapping[str, Any], name: str, where: str, currency: str) -> Decimal:
    unit = metric.get("Unit")
    if unit != currency:
        raise AwsImportError(
            f"{where}: {name} is in {unit!r}, not {currency}; the ledger books {currency} only "
            "(convert before importing)"
        )
    raw = metric.get("Amount")
    try:
        amount = Decimal(str(raw))
    except InvalidOperation:
        amount = Decimal("NaN")
    if raw is None or not amount.is_finite():
        raise AwsImportError(f"{where}: {name} amount {raw!r} is not a number")
    return amount


@dataclass(frozen=True)
class _Period:
    span: str  # 'Start/End' as the API wrote them
    start: datetime
    end: datetime
    estimated: bool


@dataclass
class _CostParser:
    metric: str
    requested: list[_Group]
    tag_dimensions: Mapping[str, str]
    default_kind: CostKind
    source: str
    currency: str
    lines: dict[str, CostLine] = field(default_factory=dict)

    def page(self, page: Mapping[str, Any]) -> None:
        definitions = [
            _Group(str(d.get("Type", "DIMENSION")), str(d.get("Key", "")))
            for d in page.get("GroupDefinitions") or []
        ] or self.requested
        for result in page.get("ResultsByTime") or []:
            self.result(result, definitions)

    def result(self, result: Mapping[str, Any], definitions: list[_Group]) -> None:
        time_period = result.get("TimePeriod") or {}
        raw_start, raw_end = str(time_period.get("Start", "")), str(time_period.get("End", ""))
        span = f"{raw_start}/{raw_end}"
        period = _Period(
            span,
            _bound(raw_start, "Start"),
            _bound(raw_end, "End"),
            bool(result.get("Estimated", False)),
        )
        groups = result.get("Groups") or []
        if groups:
            for group in groups:
                keys = [str(k) for k in group.get("Keys") or []]
                if len(keys) != len(definitions):
                    raise AwsImportError(
                        f"period {span}: group keys {keys} do not match the grouping "
                        f"{[f'{d.type}:{d.key}' for d in definitions]}"
                    )
                self.add(period, definitions, keys, group.get("Metrics"))
        elif not definitions:
            self.add(period, [], [], result.get("Total"))
        # a grouped query's period without groups has no spend in it

    def add(
        self,
        period: _Period,
        definitions: list[_Group],
        keys: list[str],
        metrics: Mapping[str, Any] | None,
    ) -> None:
        labels: list[str] = []
        who: dict[str, str] = {}
        kind = self.default_kind
        for definition, key in zip(definitions, keys, strict=True):
            if definition.type == "DIMENSION":
                value = key
                if definition.key == "SERVICE":
                    kind = service_kind(value, self.default_kind)
            else:  # TAG and COST_CATEGORY keys read 'name$value'
                _, sep, value = key.partition("$")
                value = value if sep else key
                dimension = self.tag_dimensions.get(definition.key)
                if dimension and value:
                    who[dimension] = value
            labels.append(f"{_LABEL_PREFIX.get(definition.type, '')}{definition.key}={value}")
        label = "|".join(labels) or "total"
        where = f"period {period.span}, group {label}"
        metric = (metrics or {}).get(self.metric)
        if metric is None:
            raise AwsImportError(f"{where}: the result has no {self.metric}")
        exact = _parse_amount(metric, self.metric, where, self.currency)
        amount = money(exact)
        detail = f"Cost Explorer {self.metric}; {label}"
        if amount != exact:
            detail += f"; exact {metric.get('Amount')} {self.currency}"
        line = CostLine(
            line_id=f"{self.source}:{period.span}:{label}",
            kind=kind,
            amount=amount,
            start=period.start,
            end=period.end,
            attribution=Attribution(
                **{d: who.get(d, UNATTRIBUTED) for d in ATTRIBUTION_DIMENSIONS}
            ),
            provider="aws",
            quantity=_hours(period.start, period.end),
            unit="hours",
            detail=detail,
            estimated=period.estimated,
        )
        old = self.lines.get(line.line_id)
        if old is not None and old != line:
            raise AwsImportError(f"{where}: reported twice with different amounts")
        self.lines[line.line_id] = line


def parse_cost_and_usage(
    pages: Iterable[Mapping[str, Any]],
    *,
    group_by: Sequence[str] = ("SERVICE",),
    metric: str = "UnblendedCost",
    tag_dimensions: Mapping[str, str] = DEFAULT_TAG_DIMENSIONS,
    default_kind: CostKind = "compute",
    source: str = "aws-ce",
    currency: str = "USD",
) -> list[CostLine]:
    """Cost lines from ``get_cost_and_usage`` response pages (see the module docstring).

    ``group_by`` is the query's grouping, used when a page lacks ``GroupDefinitions``;
    ``source`` prefixes line ids (use one per account when importing several).
    """
    requested = [_Group(d["Type"], d["Key"]) for d in group_definitions(group_by)]
    unknown = [d for d in tag_dimensions.values() if d not in ATTRIBUTION_DIMENSIONS]
    if unknown:
        raise AwsImportError(f"tag_dimensions map to unknown dimensions {unknown}")
    parser = _CostParser(metric, requested, tag_dimensions, default_kind, source, currency)
    for page in pages:
        parser.page(page)
    return list(parser.lines.values())


def _period_text(t: date | datetime, granularity: Granularity) -> str:
    if granularity == "HOURLY":
        moment = t if isinstance(t, datetime) else datetime.combine(t, time(), tzinfo=UTC)
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return (t.date() if isinstance(t, datetime) else t).isoformat()


def cost_and_usage_pages(
    client: Any, request: Mapping[str, Any], max_pages: int = 10_000
) -> Iterator[dict[str, Any]]:
    """Every page of ``get_cost_and_usage(**request)``, following ``NextPageToken`` (boto3 has
    no paginator for this operation)."""
    params = dict(request)
    seen: set[str] = set()
    for _ in range(max_pages):
        page: dict[str, Any] = client.get_cost_and_usage(**params)
        yield page
        token = page.get("NextPageToken")
        if not token:
            return
        if token in seen:
            raise AwsImportError(f"Cost Explorer returned page token {token!r} twice")
        seen.add(token)
        params["NextPageToken"] = token
    raise AwsImportError(f"Cost Explorer still had pages after {max_pages}")


def import_cost_and_usage(
    client: Any,
    start: date | datetime,
    end: date | datetime,
    *,
    granularity: Granularity = "DAILY",
    group_by: Sequence[str] = ("SERVICE",),
    metric: str = "UnblendedCost",
    filter_expression: Mapping[str, Any] | None = None,
    tag_dimensions: Mapping[str, str] = DEFAULT_TAG_DIMENSIONS,
    default_kind: CostKind = "compute",
    source: str = "aws-ce",
) -> list[CostLine]:
    """The AWS bill over ``[start, end)`` as cost lines, one per period and group.

    ``client`` is a Cost Explorer client (``aws_client("ce")``). ``group_by`` takes up to two of
    ``"SERVICE"`` (any Cost Explorer dimension), ``"tag:NAME"`` and ``"cost-category:NAME"``;
    ``()`` imports the ungrouped totals. ``filter_expression`` is passed on as Cost Explorer's
    ``Filter`` expression. HOURLY granularity needs hourly data enabled in the account.
    """
    if granularity not in ("DAILY", "MONTHLY", "HOURLY"):
        raise AwsImportError(f"granularity {granularity!r} is not DAILY, MONTHLY or HOURLY")
    start_text, end_text = _period_text(start, granularity), _period_text(end, granularity)
    if end_text <= start_text:
        raise AwsImportError(f"empty period {start_text} to {end_text}: end must be after start")
    request: dict[str, Any] = {
        "TimePeriod": {"Start": start_text, "End": end_text},
        "Granularity": granularity,
        "Metrics": [metric],
    }
    definitions = group_definitions(group_by)
    if definitions:
        request["GroupBy"] = definitions
    if filter_expression:
        request["Filter"] = dict(filter_expression)
    return parse_cost_and_usage(
        cost_and_usage_pages(client, request),
        group_by=group_by,
        metric=metric,
        tag_dimensions=tag_dimensions,
        default_kind=default_kind,
        source=source,
    )


# --------------------------------------------------------------------------- spot prices


@dataclass(frozen=True)
class SpotPricePoint:
    """One record of the spot price history: the price from ``timestamp`` on."""

    region: str
    availability_zone: str
    instance_type: str
    product_description: str
    price: Decimal
    timestamp: datetime


def _utc(t: Any, what: str) -> datetime:
    if isinstance(t, str):
        t = datetime.fromisoformat(t)
    if not isinstance(t, datetime):
        raise AwsImportError(f"{what} {t!r} is not a time")
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def spot_price_history(
    client: Any,
    instance_types: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    availability_zone: str | None = None,
    product_descriptions: Sequence[str] = LINUX_SPOT_PRODUCTS,
) -> list[SpotPricePoint]:
    """The spot price history of ``instance_types`` in the EC2 ``client``'s region over
    ``[start, end)`` (plus the change in force at ``start``), all pages."""
    if not instance_types:
        return []
    region = str(client.meta.region_name)
    wanted, products = set(instance_types), set(product_descriptions)
    kwargs: dict[str, Any] = {
        "InstanceTypes": sorted(wanted),
        "ProductDescriptions": list(product_descriptions),
        "StartTime": _utc(start, "start"),
        "EndTime": _utc(end, "end"),
    }
    if availability_zone:
        kwargs["AvailabilityZone"] = availability_zone
    points: list[SpotPricePoint] = []
    for page in client.get_paginator("describe_spot_price_history").paginate(**kwargs):
        for item in page.get("SpotPriceHistory") or []:
            # filter again: emulators (moto) ignore ProductDescriptions and AvailabilityZone
            if (
                item.get("InstanceType") not in wanted
                or item.get("ProductDescription") not in products
                or (availability_zone and item.get("AvailabilityZone") != availability_zone)
            ):
                continue
            where = f"{region} {item.get('AvailabilityZone')} {item.get('InstanceType')}"
            try:
                price = Decimal(str(item["SpotPrice"]))
            except (KeyError, InvalidOperation):
                raise AwsImportError(f"{where}: spot price {item.get('SpotPrice')!r}") from None
            if not price.is_finite() or price <= 0:
                raise AwsImportError(f"{where}: spot price {price} is not positive")
            points.append(
                SpotPricePoint(
                    region=region,
                    availability_zone=str(item.get("AvailabilityZone", "")),
                    instance_type=str(item["InstanceType"]),
                    product_description=str(item["ProductDescription"]),
                    price=price,
                    timestamp=_utc(item.get("Timestamp"), f"{where}: timestamp"),
                )
            )
    return points


def _median(values: Sequence[Decimal]) -> Decimal:
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


def _zone_price(
    points: Sequence[SpotPricePoint], start: datetime, end: datetime, method: SpotMethod
) -> Decimal | None:
    ordered = sorted(points, key=lambda p: p.timestamp)
    if method == "latest":
        before = [p for p in ordered if p.timestamp < end]
        return before[-1].price if before else None
    weighted, seconds = Decimal(0), 0
    for i, point in enumerate(ordered):
        held_from = max(point.timestamp, start)
        held_to = min(ordered[i + 1].timestamp, end) if i + 1 < len(ordered) else end
        span = int((held_to - held_from).total_seconds())
        if span > 0:
            weighted += point.price * span
            seconds += span
    return weighted / seconds if seconds else None


def summarize_spot(
    points: Iterable[SpotPricePoint],
    start: datetime,
    end: datetime,
    method: SpotMethod = "time-weighted",
) -> dict[PoolKey, Decimal]:
    """One spot price per ``(region, instance_type)``: the median over availability zones (and
    product descriptions) of each zone's time-weighted mean over ``[start, end)``, or of its
    latest price with ``method="latest"``; rounded to 1e-6 USD/h. Pools without a price in the
    window are left out."""
    if method not in ("time-weighted", "latest"):
        raise ValueError(f"spot method {method!r} is not 'time-weighted' or 'latest'")
    start, end = _utc(start, "start"), _utc(end, "end")
    if end <= start:
        raise ValueError(f"empty spot window {start} to {end}")
    series: dict[tuple[str, str, str, str], list[SpotPricePoint]] = {}
    for p in points:
        key = (p.region, p.instance_type, p.availability_zone, p.product_description)
        series.setdefault(key, []).append(p)
    zone_prices: dict[PoolKey, list[Decimal]] = {}
    for (region, instance_type, _, _), history in series.items():
        price = _zone_price(history, start, end, method)
        if price is not None:
            zone_prices.setdefault((region, instance_type), []).append(price)
    return {
        pool: _median(prices).quantize(SPOT_QUANTUM, rounding=ROUND_HALF_EVEN)
        for pool, prices in sorted(zone_prices.items())
    }


def spot_prices(
    client: Any,
    instance_types: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    availability_zone: str | None = None,
    method: SpotMethod = "time-weighted",
) -> dict[PoolKey, Decimal]:
    """Spot price per ``(region, instance_type)`` in the EC2 ``client``'s region (see
    :func:`summarize_spot` for the aggregation)."""
    history = spot_price_history(
        client, instance_types, start, end, availability_zone=availability_zone
    )
    return summarize_spot(history, start, end, method)


# --------------------------------------------------------------------------- on-demand prices


def product_filters(instance_type: str, region: str) -> list[dict[str, str]]:
    """``get_products`` filters for the on-demand Linux price of one instance type in a region:
    shared tenancy, no pre-installed software, ordinary (used) capacity, no licence."""
    fields = {
        "instanceType": instance_type,
        "regionCode": region,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
        "licenseModel": "No License required",
    }
    return [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in fields.items()]


def _plain_linux(product: Mapping[str, Any], attributes: Mapping[str, Any]) -> bool:
    checks = {
        "operatingSystem": ("Linux",),
        "tenancy": ("Shared",),
        "preInstalledSw": ("NA",),
        "capacitystatus": ("Used", None),
        "licenseModel": ("No License required", None),
        "marketoption": ("OnDemand", None),
    }
    if not str(product.get("productFamily", "")).startswith("Compute Instance"):
        return False
    return all(attributes.get(name) in allowed for name, allowed in checks.items())


def parse_price_list(items: Iterable[str | Mapping[str, Any]]) -> dict[PoolKey, Decimal]:
    """On-demand USD per hour per ``(region, instance_type)`` from ``get_products`` ``PriceList``
    entries (JSON strings, or already decoded documents).

    Only shared-tenancy Linux compute instances without pre-installed software count, whatever
    the query's filters were; their ``terms.OnDemand.*.priceDimensions.*`` in hours
    (``unit`` ``Hrs``) give ``pricePerUnit.USD``. Two different prices left for one pool raise
    :class:`AwsImportError` naming the SKUs.
    """
    found: dict[PoolKey, dict[Decimal, list[str]]] = {}
    for raw in items:
        try:
            doc = json.loads(raw) if isinstance(raw, str | bytes) else raw
        except json.JSONDecodeError as error:
            raise AwsImportError(f"a PriceList entry is not JSON: {error}") from None
        product = doc.get("product") or {}
        attributes = product.get("attributes") or {}
        sku = str(product.get("sku", "?"))
        if not _plain_linux(product, attributes):
            continue
        region, instance_type = attributes.get("regionCode"), attributes.get("instanceType")
        if not region or not instance_type:
            raise AwsImportError(f"product {sku} names no regionCode or instanceType")
        for term in ((doc.get("terms") or {}).get("OnDemand") or {}).values():
            for dimension in (term.get("priceDimensions") or {}).values():
                usd = (dimension.get("pricePerUnit") or {}).get("USD")
                if dimension.get("unit") != "Hrs" or usd is None:
                    continue
                try:
                    price = Decimal(str(usd))
                except InvalidOperation:
                    raise AwsImportError(f"product {sku}: price {usd!r} is not a number") from None
                if price.is_finite() and price > 0:
                    pool = (str(region), str(instance_type))
                    found.setdefault(pool, {}).setdefault(price, []).append(sku)
    out: dict[PoolKey, Decimal] = {}
    for pool, options in sorted(found.items()):
        if len(options) > 1:
            listed = "; ".join(f"{p} ({', '.join(s)})" for p, s in sorted(options.items()))
            raise AwsImportError(f"{pool[0]} {pool[1]}: several on-demand prices: {listed}")
        out[pool] = next(iter(options))
    return out


def on_demand_prices(
    client: Any, instance_types: Sequence[str], regions: Sequence[str]
) -> dict[PoolKey, Decimal]:
    """On-demand Linux price per ``(region, instance_type)`` from the Pricing ``client``
    (``aws_client("pricing")``), one paginated ``get_products`` query per pool."""
    paginator = client.get_paginator("get_products")
    out: dict[PoolKey, Decimal] = {}
    for region in regions:
        for instance_type in instance_types:
            entries: list[str] = []
            for page in paginator.paginate(
                ServiceCode="AmazonEC2",
                Filters=product_filters(instance_type, region),
                FormatVersion="aws_v1",
            ):
                entries.extend(page.get("PriceList") or [])
            price = parse_price_list(entries).get((region, instance_type))
            if price is not None:
                out[(region, instance_type)] = price
    return out


# --------------------------------------------------------------------------- catalog refresh


@dataclass(frozen=True)
class AwsPrices:
    """Refreshed AWS prices per ``(region, instance_type)`` and the sources they came from."""

    on_demand: Mapping[PoolKey, Decimal] = field(default_factory=dict)
    spot: Mapping[PoolKey, Decimal] = field(default_factory=dict)
    sources: tuple[str, ...] = ()


def fetch_aws_prices(
    catalog: Catalog,
    *,
    ec2_client: Callable[[str], Any] | None,
    pricing_client: Any | None,
    start: datetime,
    end: datetime,
    method: SpotMethod = "time-weighted",
) -> AwsPrices:
    """Current prices of the catalog's AWS offers: on-demand from ``pricing_client`` and spot
    (over ``[start, end)``) from ``ec2_client(region)``, each skipped when ``None``."""
    offers = [o for o in catalog.offers if o.cloud == "aws"]
    regions = sorted({o.region for o in offers})
    by_region = {r: sorted({o.instance_type for o in offers if o.region == r}) for r in regions}
    fetched = _utc(end, "end").date().isoformat()
    on_demand: dict[PoolKey, Decimal] = {}
    spot: dict[PoolKey, Decimal] = {}
    sources: list[str] = []
    if pricing_client is not None:
        for region, types in by_region.items():
            on_demand.update(on_demand_prices(pricing_client, types, [region]))
        sources.append(
            "AWS Price List Query API, Pricing get_products for AmazonEC2 (Linux, shared "
            f"tenancy, no pre-installed software), on-demand, fetched {fetched}"
        )
    if ec2_client is not None:
        for region, types in by_region.items():
            spot.update(spot_prices(ec2_client(region), types, start, end, method=method))
        how = "time-weighted mean" if method == "time-weighted" else "latest price"
        sources.append(
            "AWS EC2 DescribeSpotPriceHistory (Linux/UNIX), median over availability zones of "
            f"the {how} from {_utc(start, 'start'):%Y-%m-%d %H:%M} to "
            f"{_utc(end, 'end'):%Y-%m-%d %H:%M} UTC"
        )
    return AwsPrices(on_demand, spot, tuple(sources))


def refresh_aws_offers(catalog: Catalog, prices: AwsPrices, as_of: date) -> Catalog:
    """``catalog`` with the on-demand and spot prices of its AWS offers replaced by ``prices``.

    Every other field and every GCP and Azure offer stay as they are; no offer is added (a new
    offer needs vCPU, memory and GPU figures the price APIs do not give). The header is dated
    ``as_of``, names the new sources and notes how many prices were refreshed and from which
    date the rest are. A refreshed spot price above the on-demand price raises
    :class:`~loopline.cost.catalog.CatalogError` naming the offer. Nothing to refresh returns
    ``catalog`` unchanged.
    """
    offers: list[Offer] = []
    refreshed_on_demand = refreshed_spot = 0
    for offer in catalog.offers:
        pool = (offer.region, offer.instance_type)
        if offer.cloud != "aws" or (pool not in prices.on_demand and pool not in prices.spot):
            offers.append(offer)
            continue
        on_demand = prices.on_demand.get(pool, offer.on_demand_hourly)
        spot = prices.spot.get(pool, offer.spot_hourly)
        refreshed_on_demand += pool in prices.on_demand
        refreshed_spot += pool in prices.spot
        if not (0 < spot <= on_demand):
            raise CatalogError(
                f"offer {offer.key}: refreshed prices give spot {spot} and on-demand {on_demand}"
                " (spot must be positive and at most on-demand)"
            )
        offers.append(replace(offer, on_demand_hourly=on_demand, spot_hourly=spot))
    if not refreshed_on_demand and not refreshed_spot:
        return catalog
    total = sum(1 for o in catalog.offers if o.cloud == "aws")
    note = (
        f"AWS prices refreshed {as_of.isoformat()}: {refreshed_on_demand} on-demand and "
        f"{refreshed_spot} spot prices of the {total} AWS offers come from the APIs named in the"
        f" sources; the other figures are as of {catalog.as_of.isoformat()}."
    )
    old = catalog.header
    header = FileHeader(
        as_of=as_of,
        currency=old.currency,
        approximate=old.approximate,
        unit=old.unit,
        notes=(" ".join([*old.notes, note]),),
        sources=tuple(dict.fromkeys([*old.sources, *prices.sources])),
        refresh=old.refresh,
    )
    return Catalog(header, tuple(offers), catalog_file_name(as_of))


__all__ = [
    "DEFAULT_TAG_DIMENSIONS",
    "LINUX_SPOT_PRODUCTS",
    "SERVICE_KINDS",
    "AwsImportError",
    "AwsPrices",
    "SpotPricePoint",
    "aws_client",
    "cost_and_usage_pages",
    "credentials_available",
    "fetch_aws_prices",
    "group_definitions",
    "import_cost_and_usage",
    "on_demand_prices",
    "parse_cost_and_usage",
    "parse_price_list",
    "product_filters",
    "refresh_aws_offers",
    "service_kind",
    "spot_price_history",
    "spot_prices",
    "summarize_spot",
]
