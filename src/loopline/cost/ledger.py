"""The cost ledger: one list of cost lines, attributed, aggregated without loss or double count.

A :class:`CostLine` is money spent on one thing over one time span: the tokens of one request
(priced from the :class:`~loopline.cost.catalog.PriceBook`), replicas of an offer for some hours
(``replicas × hourly price × hours``, spot or on-demand, from the
:class:`~loopline.cost.catalog.Catalog`), or stored gigabytes for some hours. Each line is
attributed to a model, version, variant, team and environment.

Exactness
---------
Amounts are :class:`~decimal.Decimal` rounded once, when a line is made, to whole nano-dollars
(``1e-9`` USD). From then on all arithmetic is integer-exact, so

* the total of any grouping (:meth:`Ledger.aggregate`) equals the ledger total;
* spreading lines over time buckets (:meth:`Ledger.by_period`) or clipping them to a window
  (:meth:`Ledger.window`) books whole nano-dollars by cumulative rounding of the time elapsed,
  so the pieces of a line always add up to the line, and an interval gets the same amount in
  every partition (hourly buckets add up to the daily bucket and to the window);
* :func:`allocate` splits an amount by integer weights with the largest-remainder method;
* a line id appears at most once: :meth:`Ledger.add` rejects a repeated id, and
  :meth:`Ledger.merge` keeps one copy of an identical line (re-importing the same bill does not
  double count) and rejects a conflicting one.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from loopline.cost.catalog import Catalog, PriceBook, Pricing
from loopline.cost.policy import ATTRIBUTION_DIMENSIONS, SCOPE_KEYS

CostKind = Literal["tokens", "compute", "storage"]
Frequency = Literal["hour", "day"]

NANO = Decimal("0.000000001")
UNATTRIBUTED = "unattributed"
HOURS_PER_MONTH = Decimal(730)
_STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1)}


class LedgerError(ValueError):
    """A line is invalid or would be lost or counted twice."""


def money(value: Decimal | int | float | str) -> Decimal:
    """``value`` in USD rounded half-even to whole nano-dollars."""
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    return d.quantize(NANO, rounding=ROUND_HALF_EVEN)


def _nanos(amount: Decimal) -> int:
    return int(amount.scaleb(9).to_integral_value())


def _from_nanos(n: int) -> Decimal:
    return Decimal(n).scaleb(-9).quantize(NANO)


def _utc(t: datetime, what: str) -> datetime:
    if t.tzinfo is None:
        raise LedgerError(f"{what} {t.isoformat()} has no timezone; use UTC-aware datetimes")
    return t.astimezone(UTC)


@dataclass(frozen=True)
class Attribution:
    """Who and what a cost belongs to."""

    model: str = UNATTRIBUTED
    version: str = UNATTRIBUTED
    variant: str = UNATTRIBUTED
    team: str = UNATTRIBUTED
    environment: str = UNATTRIBUTED

    def get(self, dimension: str) -> str:
        if dimension not in ATTRIBUTION_DIMENSIONS:
            raise KeyError(f"unknown attribution dimension {dimension!r}")
        return str(getattr(self, dimension))


@dataclass(frozen=True)
class CostLine:
    """One cost: ``amount`` USD for ``quantity`` ``unit`` of ``kind`` over ``[start, end)``.

    Token lines are instants (``start == end``). ``provider`` is who bills it (``openai``,
    ``aws``, ``self-hosted``, ...). ``estimated`` marks an amount the biller may still revise
    (an imported bill for a period that is not closed yet).
    """

    line_id: str
    kind: CostKind
    amount: Decimal
    start: datetime
    end: datetime
    attribution: Attribution
    provider: str
    quantity: Decimal
    unit: str
    detail: str = ""
    estimated: bool = False

    def __post_init__(self) -> None:
        if not self.line_id:
            raise LedgerError("a cost line needs a line_id")
        if self.amount != money(self.amount):
            object.__setattr__(self, "amount", money(self.amount))
        start, end = _utc(self.start, "start"), _utc(self.end, "end")
        if end < start:
            raise LedgerError(f"line {self.line_id}: end {end} is before start {start}")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)

    def dimension(self, name: str) -> str:
        """Value of an attribution dimension, ``kind`` or ``provider``."""
        if name == "kind":
            return self.kind
        if name == "provider":
            return self.provider
        return self.attribution.get(name)

    def matches(self, scope: Mapping[str, str]) -> bool:
        return all(self.dimension(k) == v for k, v in scope.items())


# --------------------------------------------------------------------------- line builders


@dataclass(frozen=True)
class RequestUsage:
    """Tokens of one served request, as the request log records them."""

    request_id: str
    timestamp: datetime
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    attribution: Attribution = field(default_factory=Attribution)
    cached: bool = False


@dataclass(frozen=True)
class ComputeUsage:
    """Replicas of one catalog offer running over ``[start, end)``."""

    usage_id: str
    offer: str
    pricing: Pricing
    replicas: int
    start: datetime
    end: datetime
    attribution: Attribution = field(default_factory=Attribution)


@dataclass(frozen=True)
class StorageUsage:
    """Gigabytes stored over ``[start, end)`` at a monthly price per GB (730 h months)."""

    usage_id: str
    gigabytes: Decimal
    price_per_gb_month: Decimal
    start: datetime
    end: datetime
    provider: str
    attribution: Attribution = field(default_factory=Attribution)
    detail: str = ""


def _hours(start: datetime, end: datetime) -> Decimal:
    delta = _utc(end, "end") - _utc(start, "start")
    micro = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return Decimal(micro) / Decimal(3_600_000_000)


def token_line(usage: RequestUsage, book: PriceBook) -> CostLine:
    """The cost line of one request. A cache hit (``cached``) costs nothing but is recorded."""
    if usage.input_tokens < 0 or usage.output_tokens < 0:
        raise LedgerError(f"request {usage.request_id}: negative token count")
    price = book.price(usage.provider, usage.model)
    amount = Decimal(0) if usage.cached else price.cost(usage.input_tokens, usage.output_tokens)
    attribution = usage.attribution
    if attribution.model == UNATTRIBUTED:
        attribution = Attribution(
            usage.model,
            attribution.version,
            attribution.variant,
            attribution.team,
            attribution.environment,
        )
    return CostLine(
        line_id=f"tokens:{usage.request_id}",
        kind="tokens",
        amount=money(amount),
        start=usage.timestamp,
        end=usage.timestamp,
        attribution=attribution,
        provider=usage.provider,
        quantity=Decimal(usage.input_tokens + usage.output_tokens),
        unit="tokens",
        detail=(
            f"{usage.input_tokens} in + {usage.output_tokens} out"
            + (" (cache hit)" if usage.cached else "")
        ),
    )


def compute_line(usage: ComputeUsage, catalog: Catalog) -> CostLine:
    """``replicas × hourly price × hours`` of one offer at spot or on-demand pricing."""
    if usage.replicas < 0:
        raise LedgerError(f"usage {usage.usage_id}: negative replicas")
    offer = catalog.get(usage.offer)
    hours = _hours(usage.start, usage.end)
    if hours < 0:
        raise LedgerError(f"usage {usage.usage_id}: end before start")
    replica_hours = Decimal(usage.replicas) * hours
    return CostLine(
        line_id=f"compute:{usage.usage_id}",
        kind="compute",
        amount=money(replica_hours * offer.price(usage.pricing)),
        start=usage.start,
        end=usage.end,
        attribution=usage.attribution,
        provider=offer.cloud,
        quantity=replica_hours,
        unit="replica-hours",
        detail=f"{usage.replicas} × {offer.key} ({usage.pricing})",
    )


def storage_line(usage: StorageUsage) -> CostLine:
    """``gigabytes × price per GB-month × hours / 730``."""
    hours = _hours(usage.start, usage.end)
    gb_hours = Decimal(usage.gigabytes) * hours
    return CostLine(
        line_id=f"storage:{usage.usage_id}",
        kind="storage",
        amount=money(gb_hours * Decimal(usage.price_per_gb_month) / HOURS_PER_MONTH),
        start=usage.start,
        end=usage.end,
        attribution=usage.attribution,
        provider=usage.provider,
        quantity=gb_hours,
        unit="GB-hours",
        detail=usage.detail,
    )


# --------------------------------------------------------------------------- allocation


def allocate(amount: Decimal, weights: Sequence[int]) -> list[Decimal]:
    """Split ``amount`` into parts proportional to integer ``weights``, exactly.

    Whole nano-dollars by the largest-remainder method (ties to the earlier part); the parts
    always sum to ``amount``. All-zero weights put everything in the first part.
    """
    if not weights:
        raise LedgerError("nothing to allocate to")
    total_nanos = _nanos(money(amount))
    sign = -1 if total_nanos < 0 else 1
    n = abs(total_nanos)
    w_total = sum(weights)
    if w_total <= 0:
        return [_from_nanos(sign * n)] + [Decimal(0).quantize(NANO)] * (len(weights) - 1)
    base = [n * w // w_total for w in weights]
    rest = n - sum(base)
    order = sorted(range(len(weights)), key=lambda i: (-(n * weights[i] % w_total), i))
    for i in order[:rest]:
        base[i] += 1
    return [_from_nanos(sign * b) for b in base]


def _micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _split(line: CostLine, edges: Sequence[datetime]) -> list[Decimal]:
    """Parts of ``line`` in ``(-inf, e0), [e0, e1), ..., [e_last, inf)`` (len(edges) + 1).

    Cumulative rounding: the nano-dollars booked up to time t are
    ``F(t) = round(n × elapsed(t) / duration)``, and a bucket gets ``F(b) − F(a)``. Parts
    telescope, so they sum to the line for any partition, and the same interval gets the same
    amount whichever partition it belongs to (an hour's buckets add up to its window).
    """
    n = len(edges) + 1
    if line.start == line.end:  # an instant: all of it in the bucket holding it
        idx = sum(1 for e in edges if e <= line.start)
        parts = [Decimal(0).quantize(NANO)] * n
        parts[idx] = line.amount
        return parts
    total = _nanos(line.amount)
    sign, magnitude = (-1 if total < 0 else 1), abs(total)
    duration = _micros(line.end - line.start)

    def booked(t: datetime) -> int:
        elapsed = min(max(_micros(t - line.start), 0), duration)
        return (magnitude * elapsed * 2 + duration) // (2 * duration)

    marks = [0, *(booked(e) for e in edges), magnitude]
    return [_from_nanos(sign * (marks[i + 1] - marks[i])) for i in range(n)]


# --------------------------------------------------------------------------- ledger


@dataclass(frozen=True)
class AggregateRow:
    """One group of an aggregation: its key (one value per dimension), amount and line count."""

    key: tuple[str, ...]
    amount: Decimal
    lines: int


@dataclass(frozen=True)
class Aggregation:
    """Spend grouped by ``dimensions``; ``total`` equals the sum of the rows exactly."""

    dimensions: tuple[str, ...]
    rows: tuple[AggregateRow, ...]
    total: Decimal

    def as_dict(self) -> dict[tuple[str, ...], Decimal]:
        return {r.key: r.amount for r in self.rows}

    def amount(self, *key: str) -> Decimal:
        for r in self.rows:
            if r.key == key:
                return r.amount
        return Decimal(0).quantize(NANO)


@dataclass(frozen=True)
class SpendSeries:
    """Spend per time bucket: ``starts[i]`` opens bucket i of length ``step``."""

    starts: tuple[datetime, ...]
    amounts: tuple[Decimal, ...]
    step: timedelta

    @property
    def total(self) -> Decimal:
        return sum(self.amounts, Decimal(0)).quantize(NANO)

    def values(self) -> npt.NDArray[np.float64]:
        """Amounts as floats, for forecasting."""
        return np.array([float(a) for a in self.amounts], dtype=float)


@dataclass(frozen=True)
class Ledger:
    """An immutable, id-unique collection of cost lines."""

    lines: tuple[CostLine, ...] = ()

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for line in self.lines:
            if line.line_id in seen:
                raise LedgerError(f"line {line.line_id} appears twice: it would be counted twice")
            seen.add(line.line_id)

    def __len__(self) -> int:
        return len(self.lines)

    def __iter__(self) -> Iterator[CostLine]:
        return iter(self.lines)

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal(0)).quantize(NANO)

    def add(self, *lines: CostLine) -> Ledger:
        """A ledger with ``lines`` appended; a repeated id raises :class:`LedgerError`."""
        return Ledger((*self.lines, *lines))

    def merge(self, other: Ledger | Iterable[CostLine]) -> Ledger:
        """Union by line id: identical repeats are kept once, conflicting repeats raise."""
        index = {line.line_id: line for line in self.lines}
        added: list[CostLine] = []
        for line in other:
            old = index.get(line.line_id)
            if old is None:
                index[line.line_id] = line
                added.append(line)
            elif old != line:
                raise LedgerError(
                    f"line {line.line_id} conflicts: {old.amount} vs {line.amount} "
                    f"({old.detail!r} vs {line.detail!r})"
                )
        return Ledger((*self.lines, *added))

    def filter(self, scope: Mapping[str, str] | None = None) -> Ledger:
        """Lines whose dimensions match every ``scope`` entry."""
        if not scope:
            return self
        unknown = [k for k in scope if k not in SCOPE_KEYS]
        if unknown:
            raise KeyError(f"unknown scope keys {unknown}; use {list(SCOPE_KEYS)}")
        return Ledger(tuple(line for line in self.lines if line.matches(scope)))

    def window(self, start: datetime, end: datetime) -> Ledger:
        """The parts of every line inside ``[start, end)``, prorated by time exactly."""
        start, end = _utc(start, "start"), _utc(end, "end")
        kept: list[CostLine] = []
        for line in self.lines:
            if line.start == line.end:
                if start <= line.start < end:
                    kept.append(line)
                continue
            if line.start >= end or line.end <= start:
                continue
            if start <= line.start and line.end <= end:
                kept.append(line)
                continue
            lo, hi = max(line.start, start), min(line.end, end)
            share = Decimal(_micros(hi - lo)) / Decimal(_micros(line.end - line.start))
            kept.append(
                CostLine(
                    line_id=line.line_id,
                    kind=line.kind,
                    amount=_split(line, [start, end])[1],
                    start=lo,
                    end=hi,
                    attribution=line.attribution,
                    provider=line.provider,
                    quantity=line.quantity * share,
                    unit=line.unit,
                    detail=line.detail,
                    estimated=line.estimated,
                )
            )
        return Ledger(tuple(kept))

    def aggregate(self, by: Sequence[str]) -> Aggregation:
        """Total spend per combination of ``by`` dimensions (attribution, kind, provider)."""
        dims = tuple(by)
        unknown = [d for d in dims if d not in SCOPE_KEYS]
        if unknown:
            raise KeyError(f"unknown dimensions {unknown}; use {list(SCOPE_KEYS)}")
        sums: dict[tuple[str, ...], int] = {}
        counts: dict[tuple[str, ...], int] = {}
        for line in self.lines:
            key = tuple(line.dimension(d) for d in dims)
            sums[key] = sums.get(key, 0) + _nanos(line.amount)
            counts[key] = counts.get(key, 0) + 1
        rows = tuple(AggregateRow(key, _from_nanos(sums[key]), counts[key]) for key in sorted(sums))
        return Aggregation(dims, rows, _from_nanos(sum(sums.values())))

    def by_period(self, start: datetime, end: datetime, freq: Frequency = "hour") -> SpendSeries:
        """Spend per hour or day over ``[start, end)``; lines are spread over buckets by time.

        The series total equals ``self.window(start, end).total`` exactly.
        """
        start, end = _utc(start, "start"), _utc(end, "end")
        step = _STEP[freq]
        n = max(0, -(-_micros(end - start) // _micros(step)))
        edges = [start + i * step for i in range(n + 1)]
        edges[-1] = min(edges[-1], end)
        buckets = [0] * n
        for line in self.lines:
            if line.end < start or line.start >= end:
                continue
            # only the edges inside the line matter: the buckets it overlaps
            lo = max(bisect_right(edges, line.start) - 1, 0)
            hi = min(max(bisect_left(edges, line.end) + 1, lo + 2), n + 1)
            parts = _split(line, edges[lo:hi])
            for k, part in enumerate(parts[1:-1]):
                buckets[lo + k] += _nanos(part)
        return SpendSeries(tuple(edges[:n]), tuple(_from_nanos(b) for b in buckets), step)

    def to_records(self) -> list[dict[str, Any]]:
        """Plain rows (for a DataFrame or a report)."""
        return [
            {
                "line_id": line.line_id,
                "kind": line.kind,
                "amount": line.amount,
                "start": line.start,
                "end": line.end,
                "provider": line.provider,
                "quantity": line.quantity,
                "unit": line.unit,
                "detail": line.detail,
                "estimated": line.estimated,
                **{d: line.attribution.get(d) for d in ATTRIBUTION_DIMENSIONS},
            }
            for line in self.lines
        ]
