"""A self-contained HTML cost report: spend over time with the forecast band, budgets, alerts.

Pure: :func:`render_report` returns a string and never reads or writes files; matplotlib is
imported inside the drawing function, so importing this module stays cheap. The caller
(:mod:`loopline.cost.operations`) decides where the HTML goes.

What is shown
-------------
1. **Header**: title and the caller's context (environment, window, sources, MLflow run).
2. **Spend over time**: spend per hour of each scope (the largest groups of the report's
   grouping, the rest as ``other``) and the total, followed by the forecast of the total with
   its prediction band. A dashed vertical line marks the report time.
3. **Budgets**: spend in the current period against each budget, the projected period-end
   spend with its interval, the state and every alert (an alert *before* a breach comes from
   the projection), and what enforcement would do (not performed by this report).
4. **Spend by day**: the numbers behind the chart, per scope and day, exact to the
   nano-dollar; the rows add up to the total.
5. **Spend by dimension**: the window's total split along every attribution dimension.
6. **Notes**: how the ledger was built (assumptions, lines skipped).

Determinism: the figure is a :class:`matplotlib.figure.Figure` on an Agg canvas (no pyplot),
saved as SVG without date or metadata, with a fixed ``svg.hashsalt``, text kept as text and
mathtext off; the rcParams are set under a module lock. The same inputs render the same
string. Every piece of text from the inputs is HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from loopline.cost.budget import BudgetStatus, EnforcementDecision
from loopline.htmlreport import COLORS, bullet_list, esc, html_table, page, svg_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["DailyTable", "SpendChart", "render_report"]


@dataclass(frozen=True)
class SpendChart:
    """Hourly spend per scope over the report window, and the forecast of the total.

    ``series`` holds ``(label, spend per bucket)`` with one value per ``starts`` entry;
    ``total`` is their sum. The forecast (``forecast_*``, one value per ``forecast_starts``
    entry) is optional; ``level`` is the two-sided coverage of its band.
    """

    starts: tuple[datetime, ...]
    series: tuple[tuple[str, tuple[float, ...]], ...]
    total: tuple[float, ...]
    now: datetime
    forecast_starts: tuple[datetime, ...] = ()
    forecast_mean: tuple[float, ...] = ()
    forecast_lower: tuple[float, ...] = ()
    forecast_upper: tuple[float, ...] = ()
    level: float = 0.9
    method: str = ""


@dataclass(frozen=True)
class DailyTable:
    """Spend per day (rows) and scope (columns); ``totals[i]`` is row i's sum."""

    columns: tuple[str, ...]
    days: tuple[date, ...]
    amounts: tuple[tuple[Decimal, ...], ...]
    totals: tuple[Decimal, ...]


# --------------------------------------------------------------------------- formatting


def usd(amount: Decimal | float) -> str:
    """Dollars with six decimals (token lines are fractions of a cent)."""
    return f"{Decimal(str(amount)).quantize(Decimal('0.000001')):,}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _when(t: datetime | None) -> str:
    return "—" if t is None else t.strftime("%Y-%m-%d %H:%M UTC")


# --------------------------------------------------------------------------- figure


def _days(times: Sequence[datetime]) -> list[float]:
    """Matplotlib date numbers of UTC wall-clock times (labelled as written, in UTC)."""
    from matplotlib.dates import date2num

    return [float(date2num(t.replace(tzinfo=None))) for t in times]


def _draw(fig: Figure, chart: SpendChart) -> None:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    ax = fig.add_subplot()
    x = _days(chart.starts)
    if len(chart.series) > 1:  # underneath, so that a scope carrying everything stays visible
        ax.step(x, chart.total, where="post", lw=3.0, color="#c8c8c8", label="total")
    for i, (label, values) in enumerate(chart.series):
        ax.step(x, values, where="post", lw=1.1, color=COLORS[i % len(COLORS)], label=label)
    if chart.forecast_starts:
        fx = _days(chart.forecast_starts)
        ax.fill_between(
            fx,
            chart.forecast_lower,
            chart.forecast_upper,
            step="post",
            color="grey",
            alpha=0.25,
            lw=0,
            label=f"forecast, {100 * chart.level:.0f} % interval",
        )
        ax.step(
            fx,
            chart.forecast_mean,
            where="post",
            lw=1.4,
            ls="--",
            color="black",
            label=f"forecast ({chart.method})",
        )
    ax.axvline(_days([chart.now])[0], color="#555555", ls=":", lw=1)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_ylabel("USD per hour")
    ax.set_xlabel("time (UTC)")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    if chart.series or chart.forecast_starts:
        ax.legend(loc="upper left", frameon=False, ncols=2)


def _svg(chart: SpendChart, label: str) -> str:
    return svg_figure(lambda fig: _draw(fig, chart), (8.0, 3.6), label, salt="loopline-cost")


# --------------------------------------------------------------------------- sections


def _scope(scope: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(scope.items())) or "everything"


def _budgets(statuses: Sequence[BudgetStatus], decisions: Sequence[EnforcementDecision]) -> str:
    if not statuses:
        return (
            '<section id="budgets"><h2>Budgets</h2>'
            '<p class="muted">No budgets configured (cost.budgets).</p></section>'
        )
    rows = []
    for s in statuses:
        p = s.projection
        projected = (
            "—"
            if p is None
            else f"{usd(p.expected_total)} [{usd(p.lower_total)}, {usd(p.upper_total)}]"
        )
        rows.append(
            [
                esc(s.budget.name),
                esc(_scope(s.budget.scope)),
                esc(f"{s.budget.period} from {s.period_start:%Y-%m-%d}"),
                esc(usd(s.spent)),
                esc(usd(s.budget.amount)),
                esc(_pct(s.fraction_used)),
                esc(projected),
                f'<span class="badge {esc(s.state)}">{esc(s.state)}</span>',
            ]
        )
    table = html_table(
        ["budget", "scope", "period", "spent", "budget", "used", "projected period end", "state"],
        rows,
        {3, 4, 5, 6},
    )
    alert_rows = [
        [
            esc(a.budget),
            f'<span class="badge {"critical" if a.severity == "critical" else "warning"}">'
            f"{esc(a.kind)}</span>",
            esc("before the breach" if a.before_breach else "breached"),
            esc(_when(a.expected_breach_at)),
            esc(_when(a.earliest_breach_at)),
            esc(a.message),
        ]
        for s in statuses
        for a in s.alerts
    ]
    alerts = (
        html_table(
            ["budget", "alert", "when", "expected breach", "earliest breach", "message"],
            alert_rows,
            set(),
        )
        if alert_rows
        else '<p class="muted">No alerts.</p>'
    )
    enforcement = [
        f"{d.budget}: {d.action}" + (f" ({'; '.join(d.reasons)})" if d.reasons else "")
        for d in decisions
        if d.action != "none"
    ]
    reasons = [r for s in statuses for r in s.reasons]
    return (
        '<section id="budgets"><h2>Budgets</h2>'
        '<p class="muted">Spend in the current period; the projection is the expected '
        "period-end spend with its prediction interval. A <i>projected</i> alert fires before "
        "the breach, when the interval's upper bound reaches a threshold.</p>"
        f"{table}<h3>Alerts</h3>{alerts}"
        "<h3>Enforcement (what the policy would do; not performed by this report)</h3>"
        f"{bullet_list(enforcement)}<h3>Reasons</h3>{bullet_list(reasons)}</section>"
    )


def _daily(daily: DailyTable) -> str:
    rows = [
        [esc(f"{day:%Y-%m-%d}"), *(esc(usd(a)) for a in amounts), esc(usd(total))]
        for day, amounts, total in zip(daily.days, daily.amounts, daily.totals, strict=True)
    ]
    total_row = [
        "<b>total</b>",
        *(
            f"<b>{esc(usd(sum((r[i] for r in daily.amounts), Decimal(0))))}</b>"
            for i in range(len(daily.columns))
        ),
        f"<b>{esc(usd(sum(daily.totals, Decimal(0))))}</b>",
    ]
    header = ["day (UTC)", *daily.columns, "total"]
    table = html_table(header, [*rows, total_row], set(range(1, len(header))))
    return (
        '<section id="daily"><h2>Spend by day</h2>'
        '<p class="muted">USD per UTC day and scope; today is partial.</p>'
        f"{table}</section>"
    )


def _breakdowns(breakdowns: Mapping[str, Mapping[str, Decimal]]) -> str:
    parts = ['<section id="dimensions"><h2>Spend by dimension</h2>']
    for dim, values in breakdowns.items():
        rows = [[esc(k), esc(usd(v))] for k, v in sorted(values.items(), key=lambda kv: -kv[1])]
        parts.append(f"<h3>{esc(dim)}</h3>" + html_table([dim, "spend"], rows, {1}))
    parts.append("</section>")
    return "".join(parts)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:70rem;padding:0 1rem;color:#222}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
h3{font-size:1rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#666;font-size:.85rem}figure{margin:0}svg{max-width:100%;height:auto}
.badge{padding:.05rem .4rem;border-radius:.3rem;font-weight:600}
.ok{background:#e3f4e3}.warning{background:#fff1c2}.critical{background:#fbd5d5}
.big{font-size:1.3rem;font-weight:600}
"""


def render_report(
    *,
    title: str,
    total: Decimal,
    chart: SpendChart,
    daily: DailyTable,
    statuses: Sequence[BudgetStatus] = (),
    decisions: Sequence[EnforcementDecision] = (),
    breakdowns: Mapping[str, Mapping[str, Decimal]] | None = None,
    forecast_text: str = "",
    context: Mapping[str, str] | None = None,
    notes: Sequence[str] = (),
) -> str:
    """A complete HTML5 document (see the module docstring); the same inputs give the same
    string, and every input text is escaped."""
    head = [f"<header><h1>{esc(title)}</h1>"]
    if context:
        head.append(
            html_table(["context", "value"], [[esc(k), esc(v)] for k, v in context.items()], set())
        )
    head.append(f'<p class="big">Spend in the window: {esc(usd(total))} USD</p>')
    if forecast_text:
        head.append(f'<p class="muted">{esc(forecast_text)}</p>')
    head.append("</header>")
    svg = _svg(chart, "spend per hour by scope, with the forecast of the total")
    sections = [
        "".join(head),
        '<section id="spend"><h2>Spend over time</h2>'
        '<p class="muted">Spend per hour of each scope and in total; after the dotted line, '
        "the forecast of the total with its prediction band.</p>"
        f"<figure>{svg}</figure></section>",
        _budgets(statuses, decisions),
        _daily(daily),
    ]
    if breakdowns:
        sections.append(_breakdowns(breakdowns))
    sections.append(f'<section id="notes"><h2>Notes</h2>{bullet_list(notes)}</section>')
    body = "\n".join(sections)
    return page(title, _CSS, body, "loopline.cost.report")
