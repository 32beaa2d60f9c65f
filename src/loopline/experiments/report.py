"""A self-contained HTML report of an A/B experiment analysis, with plots as inline SVG.

Pure: the functions return strings and never read or write files; matplotlib is imported
lazily (inside the functions that draw), so ``import loopline.experiments`` stays fast, and
no Prefect or MLflow is involved. The caller decides where the HTML goes (an MLflow
artifact, a file, an HTTP response).

What is shown, and why
----------------------
1. **Header**: title and the caller's context (creation time, analysis time, run id, …).
2. **Decision** (when given): the action of
   :func:`~loopline.experiments.decision.decide_experiment`, its reasons and alerts, whether
   the data was trustworthy, and every variant's verdict: the report explains the action.
3. **Sample-ratio mismatch**: observed units per arm against the configured shares with the
   χ² statistic and p-value. It comes before the effects because an SRM means the
   assignment or the logging is broken and every effect below is suspect.
4. **Forest plot**: one row per metric, one marker per treatment, the *relative improvement*
   (:attr:`~loopline.experiments.analysis.MetricResult.improvement`) with its interval.
   Improvement is direction-aware, so right of the zero line is better for every metric
   (a latency drop and a resolution-rate gain both point right) and all metrics share one
   axis. The label names the kind of interval (sequential, fixed or bootstrap). Infinite or
   undefined bounds (a sequential test before its minimum sample, a control mean of zero)
   are clipped to the axis and drawn as an arrow marked "unbounded"; finite bounds beyond
   ±1000 % (or beyond the largest point estimate) are clipped the same way, marked
   "off scale", so one wild interval does not flatten the others.
5. **Results table**: the numbers behind the plot (values per arm, relative difference with
   its interval, raw and multiplicity-adjusted p-values, method, Bayesian chance to beat
   control and expected loss, CUPED variance reduction).
6. **Sequential timelines** (:func:`sequential_timeline`): for a metric and a treatment, the
   difference over cumulative looks with its always-valid confidence sequence (a band), and
   below it the always-valid p-value on a log scale against α. The first look where the
   p-value reaches α is marked: it is where a team monitoring continuously could have
   stopped without inflating the false-positive rate. The band shows how the uncertainty
   shrank and whether the effect was stable over time (novelty effects, drifts).

Timelines are computed on the **raw** metric values: CUPED is not applied (the CUPED θ is
estimated on the full sample, so applying it to early looks would use future data). For a
metric with a covariate the timeline therefore differs from the analysed interval; for a
metric without one its last look equals :func:`~loopline.experiments.analysis.analyze_experiment`'s
sequential interval. Each look's interval is that look's confidence sequence (not the
running intersection), which is what the analysis reports for the full sample.

Determinism and thread safety
-----------------------------
Figures are :class:`matplotlib.figure.Figure` objects drawn without pyplot (no global figure
manager, Agg canvas), saved as SVG without date or metadata, with a fixed ``svg.hashsalt``,
text kept as text (``svg.fonttype = "none"``; mathtext off, so names with ``$`` print as
written) and element ids prefixed per figure so several SVGs can share one HTML document.
The same input therefore renders byte-identical HTML. The rcParams are set with
:func:`matplotlib.rc_context`, which mutates matplotlib's global parameters while a figure
is drawn; a module lock serialises that section between threads of this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from loopline.experiments._common import FloatArray, IntArray
from loopline.experiments.analysis import ExperimentResult, MetricResult
from loopline.experiments.decision import Decision
from loopline.experiments.policy import AnalysisConfig, MetricSpec
from loopline.experiments.sequential import resolve_mixing_sd, sequential_path
from loopline.htmlreport import COLORS, bullet_list, esc, html_table, page, svg_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["Timeline", "TimelinePoint", "render_report", "sequential_timeline"]


# --------------------------------------------------------------------------- timeline


@dataclass(frozen=True)
class TimelinePoint:
    """One look of the sequential analysis of one metric for one treatment.

    ``units`` counts every row of the table up to this look (all arms); ``time`` is the
    value of the ordering column at the look (unix seconds) when it is a number or a
    timestamp. ``lower``/``upper`` are −inf/+inf before the test monitors (fewer than
    ``min_units_per_variant`` units in an arm); ``difference`` is NaN while an arm is
    empty. ``p_value`` is the always-valid p-value (running minimum over looks).
    """

    units: int
    time: float | None
    difference: float
    lower: float
    upper: float
    p_value: float


@dataclass(frozen=True)
class Timeline:
    """The looks of :func:`sequential_timeline` for one metric and one treatment."""

    metric: str
    variant: str
    control: str
    alpha: float
    points: tuple[TimelinePoint, ...]

    @property
    def first_rejection(self) -> int | None:
        """Index of the first look whose always-valid p-value is ≤ α (``None``: never)."""
        for i, point in enumerate(self.points):
            if point.p_value <= self.alpha:
                return i
        return None


def _look_ends(n_rows: int, looks: int) -> IntArray:
    """Row counts of the cumulative prefixes: evenly spaced, the last one all rows."""
    k = np.arange(1, looks + 1, dtype=np.int64)
    ends = (k * n_rows + looks - 1) // looks  # ceil(k·N/looks), exact in integers
    return np.unique(ends[ends > 0])


def _cumulative_moments(
    columns: Sequence[FloatArray], segment: IntArray, n_segments: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Cumulative n, means (m, S) and co-moments Σ(x−x̄)(y−ȳ) (m, m, S) over segments.

    Per segment the moments are two-pass sums by ``np.bincount`` (one pass over the rows
    per moment); segments are then merged in order with the pairwise update of Chan, Golub
    and LeVeque, so the variance keeps its precision when the mean is large.
    """
    m = len(columns)
    n_seg = np.bincount(segment, minlength=n_segments).astype(np.float64)
    safe = np.where(n_seg > 0, n_seg, 1.0)
    mean_seg = np.stack(
        [np.bincount(segment, weights=x, minlength=n_segments) / safe for x in columns]
    )
    dev = [x - mean_seg[i][segment] for i, x in enumerate(columns)]
    co_seg = np.empty((m, m, n_segments), dtype=np.float64)
    for i in range(m):
        for j in range(i, m):
            co = np.bincount(segment, weights=dev[i] * dev[j], minlength=n_segments)
            co_seg[i, j] = co_seg[j, i] = co
    n_cum = np.cumsum(n_seg)
    mean_cum = np.empty((m, n_segments), dtype=np.float64)
    co_cum = np.empty((m, m, n_segments), dtype=np.float64)
    n_acc, mean_acc, co_acc = 0.0, np.zeros(m), np.zeros((m, m))
    for s in range(n_segments):
        nb = n_seg[s]
        if nb > 0:
            total = n_acc + nb
            delta = mean_seg[:, s] - mean_acc
            mean_acc = mean_acc + delta * (nb / total)
            co_acc = co_acc + co_seg[:, :, s] + np.outer(delta, delta) * (n_acc * nb / total)
            n_acc = total
        mean_cum[:, s] = mean_acc if n_acc > 0 else np.nan
        co_cum[:, :, s] = co_acc
    return n_cum, mean_cum, co_cum


def _arm_path(
    columns: Sequence[FloatArray], segment: IntArray, n_segments: int, ratio: bool
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Cumulative (mean, per-unit variance, n) of one arm at every look.

    For a ratio metric the mean is Σnum/Σden and the per-unit variance is the delta-method
    one, (σ²_N − 2Rσ_ND + R²σ²_D)/μ_D², so that variance/n is Var(R̂) exactly as in the
    analysis.
    """
    n, mean, co = _cumulative_moments(columns, segment, n_segments)
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = co / (n - 1.0)
        if not ratio:
            return mean[0], cov[0, 0], n
        r = mean[0] / mean[1]
        var = (cov[0, 0] - 2.0 * r * cov[0, 1] + r * r * cov[1, 1]) / mean[1] ** 2
    return r, var, n


def _order_positions(frame: pd.DataFrame, order: str) -> tuple[IntArray, FloatArray | None]:
    """Row positions sorted by ``order`` (stable, missing last) and the sorted order values
    as unix seconds when the column holds numbers or timestamps (else ``None``)."""
    if order not in frame.columns:
        raise ValueError(f"order column {order!r} is not in the table")
    column = frame[order].reset_index(drop=True)
    seconds: FloatArray | None = None
    if pd.api.types.is_datetime64_any_dtype(column):
        stamps = pd.to_datetime(column, utc=True)
        delta = stamps - pd.Timestamp(0, tz="UTC")
        seconds = np.asarray(delta / pd.Timedelta(seconds=1), dtype=np.float64)
    elif pd.api.types.is_numeric_dtype(column):
        seconds = column.to_numpy(np.float64)
    if seconds is None:
        ordered = column.sort_values(kind="stable", na_position="last").index
        return np.asarray(ordered, dtype=np.int64), None
    positions = np.argsort(seconds, kind="stable").astype(np.int64)  # NaN sorts last
    return positions, seconds[positions]


def sequential_timeline(
    units: pd.DataFrame,
    spec: MetricSpec,
    *,
    control: str,
    variant: str,
    config: AnalysisConfig,
    order: str | None = None,
    looks: int = 30,
    variant_column: str = "variant",
    n_treatments: int | None = None,
) -> Timeline:
    """The mSPRT of one metric for one treatment over ``looks`` cumulative looks.

    ``units`` is the per-unit table given to
    :func:`~loopline.experiments.analysis.analyze_experiment`. Rows are ordered by the
    column ``order`` (e.g. first exposure; ``None`` keeps the row order) and the looks are
    cumulative prefixes evenly spaced in rows, the last one every row. Each look uses the
    cumulative per-arm mean, variance and count of the metric on the **raw** values (no
    CUPED; see the module docstring); ratio metrics use the delta-method variance of
    Σnum/Σden, as the analysis does.

    α is the analysis α, divided by the number of treatments when
    ``config.split_alpha_across_variants``; that number is ``n_treatments`` or, by default,
    the number of distinct non-control variants in the table. The cost is linear in the
    rows (per-look moments by ``np.bincount``), plus a sort when ``order`` is given.

    Raises ``ValueError`` when ``config.sequential`` is ``None``, when ``control`` or
    ``variant`` has no rows, or when the metric has missing or infinite values in them.
    """
    if config.sequential is None:
        raise ValueError("sequential_timeline needs config.sequential (an mSPRT configuration)")
    if looks < 1:
        raise ValueError(f"looks must be at least 1, got {looks}")
    if control == variant:
        raise ValueError("control and variant must differ")
    n_rows = len(units)
    codes, uniques = pd.factorize(units[variant_column])  # missing labels: code −1
    arm_names = list(uniques)
    for name in (control, variant):
        if name not in arm_names:
            raise ValueError(f"variant {name!r} has no rows in the table")
    codes = np.asarray(codes, dtype=np.int64)
    times: FloatArray | None = None
    positions: IntArray | None = None
    if order is not None:
        positions, times = _order_positions(units, order)
        codes = codes[positions]
    is_c = codes == arm_names.index(control)
    is_t = codes == arm_names.index(variant)
    if n_treatments is None:
        n_treatments = max(1, len(arm_names) - 1)
    if n_treatments < 1:
        raise ValueError(f"n_treatments must be at least 1, got {n_treatments}")
    alpha = config.alpha / n_treatments if config.split_alpha_across_variants else config.alpha
    ratio = spec.kind == "ratio"
    if ratio:
        assert spec.numerator is not None and spec.denominator is not None
        names = [spec.numerator, spec.denominator]
    else:
        names = [spec.value_column]
    columns = []
    for name in names:
        values = units[name].to_numpy(np.float64)
        if positions is not None:
            values = values[positions]
        if not np.all(np.isfinite(values[is_c | is_t])):
            raise ValueError(f"column {name!r} of metric {spec.name!r} has missing values")
        columns.append(values)
    ends = _look_ends(n_rows, looks)
    segment = np.searchsorted(ends, np.arange(n_rows, dtype=np.int64), side="right")
    n_seg = int(ends.size)
    mean_c, var_c, n_c = _arm_path([x[is_c] for x in columns], segment[is_c], n_seg, ratio)
    mean_t, var_t, n_t = _arm_path([x[is_t] for x in columns], segment[is_t], n_seg, ratio)
    with np.errstate(all="ignore"):
        path = sequential_path(
            mean_c=mean_c,
            var_c=var_c,
            n_c=n_c,
            mean_t=mean_t,
            var_t=var_t,
            n_t=n_t,
            alpha=alpha,
            mixing_sd=resolve_mixing_sd(config.sequential, alpha),
            min_units_per_variant=config.sequential.min_units_per_variant,
        )
        bounded = np.isfinite(path.half_width)
        lower = np.where(bounded, path.difference - path.half_width, -np.inf)
        upper = np.where(bounded, path.difference + path.half_width, np.inf)
    look_times: list[float | None]
    if times is None:
        look_times = [None] * n_seg
    else:
        look_times = [float(t) if math.isfinite(t) else None for t in times[ends - 1]]
    points = tuple(
        TimelinePoint(
            units=int(ends[i]),
            time=look_times[i],
            difference=float(path.difference[i]),
            lower=float(lower[i]),
            upper=float(upper[i]),
            p_value=float(path.p_value[i]),
        )
        for i in range(n_seg)
    )
    return Timeline(spec.name, variant, control, alpha, points)


# --------------------------------------------------------------------------- formatting

_MINUS = "−"


def _num(x: float | None) -> str:
    if x is None:
        return "—"
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "+∞" if x > 0 else f"{_MINUS}∞"
    return f"{x:.4g}".replace("-", _MINUS)


def _pct(x: float, signed: bool = True) -> str:
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "+∞" if x > 0 else f"{_MINUS}∞"
    text = f"{100 * x:+.2f} %" if signed else f"{100 * x:.2f} %"
    return text.replace("-", _MINUS)


def _p(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return f"{p:.2e}" if p < 1e-4 else f"{p:.4f}"


# --------------------------------------------------------------------------- figures

_MARKERS = ("o", "s", "D", "^", "v", "P", "X")
_WIDTH = 7.0


def _svg(draw: Callable[[Figure], None], size: tuple[float, float], index: int, label: str) -> str:
    """Draw a figure with ``draw`` and return it as inline SVG markup (see module docstring)."""
    return svg_figure(draw, size, label, index=index, salt="loopline")


def _forest_limits(points: Sequence[float], bounds: Sequence[float]) -> tuple[float, float]:
    finite_points = [p for p in points if math.isfinite(p)]
    cap = max([10.0, *(abs(p) for p in finite_points)])
    values = [0.0, *finite_points, *(b for b in bounds if math.isfinite(b) and abs(b) <= cap)]
    lo, hi = min(values), max(values)
    pad = 0.05 if hi - lo < 1e-12 else 0.08 * (hi - lo)
    return lo - pad, hi + pad


def _draw_forest(fig: Figure, result: ExperimentResult) -> None:
    from matplotlib.ticker import PercentFormatter

    metrics = list(dict.fromkeys(m.metric for m in result.metrics))
    treatments = list(result.treatments)
    ax: Axes = fig.add_subplot()
    rows: list[tuple[float, int, MetricResult]] = []
    spread = 0.6 / max(1, len(treatments))
    for i, name in enumerate(metrics):
        for j, variant in enumerate(treatments):
            m = result.metric(name, variant)
            if m is not None:
                rows.append((-i + (len(treatments) - 1) / 2 * spread - j * spread, j, m))
    xmin, xmax = _forest_limits(
        [m.improvement for _, _, m in rows],
        [b for _, _, m in rows for b in m.improvement_interval],
    )
    ax.axvline(0.0, color="#555555", linewidth=1.0, zorder=1)
    for y, j, m in rows:
        color, marker = COLORS[j % len(COLORS)], _MARKERS[j % len(_MARKERS)]
        point = m.improvement
        lo, hi = m.improvement_interval
        lo_open = not (math.isfinite(lo) and lo >= xmin)
        hi_open = not (math.isfinite(hi) and hi <= xmax)
        if not math.isfinite(point) and not math.isfinite(lo) and not math.isfinite(hi):
            ax.text(0.0, y, " undefined", color=color, fontsize=7, va="center", ha="left")
            continue
        ax.hlines(y, xmin if lo_open else lo, xmax if hi_open else hi, color=color, lw=1.6)
        if math.isfinite(point):
            ax.plot([point], [y], marker=marker, color=color, markersize=6, zorder=3)
        else:
            ax.text(0.0, y, " n/a", color=color, fontsize=7, va="center", ha="left")
        if lo_open:
            word = " off scale" if math.isfinite(lo) else " unbounded"
            ax.plot([xmin], [y], marker="<", color=color, markersize=6, clip_on=False)
            ax.text(xmin, y + 0.07, word, color=color, fontsize=6, ha="left")
        if hi_open:
            word = "off scale " if math.isfinite(hi) else "unbounded "
            ax.plot([xmax], [y], marker=">", color=color, markersize=6, clip_on=False)
            ax.text(xmax, y + 0.07, word, color=color, fontsize=6, ha="right")
    labels = []
    for name in metrics:
        kinds = sorted({m.interval for m in result.metrics if m.metric == name})
        labels.append(f"{name}\n({'/'.join(kinds)})")
    ax.set_yticks([-i for i in range(len(metrics))], labels)
    ax.set_ylim(-(len(metrics) - 1) - 0.6, 0.6)
    ax.set_xlim(xmin, xmax)
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.set_xlabel("relative improvement vs control (right = better)")
    ax.set_title(f"{result.experiment}: relative improvement over {result.control}")
    for j, variant in enumerate(treatments):
        ax.plot(
            [],
            [],
            marker=_MARKERS[j % len(_MARKERS)],
            color=COLORS[j % len(COLORS)],
            label=(variant),
        )
    if treatments:
        fig.legend(loc="outside lower center", ncols=min(len(treatments), 4), frameon=False)


def _draw_timeline(fig: Figure, timeline: Timeline) -> None:
    import matplotlib.dates as mdates
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    points = timeline.points
    use_time = all(p.time is not None for p in points)
    x: Any
    if use_time:
        micros = np.round(np.array([p.time for p in points], dtype=np.float64) * 1e6)
        x = micros.astype(np.int64).astype("datetime64[us]")
    else:
        x = np.array([p.units for p in points], dtype=np.float64)
    diff = np.array([p.difference for p in points], dtype=np.float64)
    lower = np.array([p.lower for p in points], dtype=np.float64)
    upper = np.array([p.upper for p in points], dtype=np.float64)
    lower = np.where(np.isfinite(lower), lower, np.nan)
    upper = np.where(np.isfinite(upper), upper, np.nan)
    p = np.clip(np.array([pt.p_value for pt in points], dtype=np.float64), 1e-16, 1.0)
    alpha = timeline.alpha
    ax, axp = fig.subplots(2, 1, sharex=True, height_ratios=[2.2, 1.0])
    level = f"{100 * (1.0 - alpha):.4g}%"
    ax.fill_between(x, lower, upper, color=COLORS[0], alpha=0.25, linewidth=0)
    ax.plot(x, diff, color=COLORS[0], marker="o", markersize=2.5, linewidth=1.2)
    ax.axhline(0.0, color="#555555", linewidth=0.9)
    ax.plot([], [], color=COLORS[0], marker="o", markersize=2.5, label="difference")
    ax.fill_between([], [], [], color=COLORS[0], alpha=0.25, label=f"{level} conf. sequence")
    monitored = np.flatnonzero(np.isfinite(lower))
    if monitored.size == 0:
        ax.text(
            0.01,
            0.98,
            "confidence sequence not yet defined (too few units per arm)",
            transform=ax.transAxes,
            ha="left",
            va="top",
            fontsize=8,
            color="#777777",
        )
    elif monitored[0] > 0:
        ax.axvline(x[monitored[0]], color="#999999", linestyle=":", linewidth=0.9)
    ax.set_ylabel(f"Δ {timeline.metric}")
    ax.set_title(f"{timeline.metric}: {timeline.variant} − {timeline.control}")
    ax.legend(loc="upper right", frameon=False)
    axp.plot(x, p, color="#333333", drawstyle="steps-post", linewidth=1.1, label="p-value")
    axp.axhline(alpha, color=COLORS[3], linestyle="--", linewidth=0.9, label=f"α = {alpha:.3g}")
    axp.set_yscale("log")
    axp.yaxis.set_major_locator(LogLocator(base=10.0, numticks=5))
    axp.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axp.yaxis.set_minor_locator(NullLocator())
    axp.set_ylim(min(float(p.min()), alpha) / 5.0, 1.5)
    axp.set_ylabel("always-valid p")
    first = timeline.first_rejection
    if first is not None:
        for axis in (ax, axp):
            axis.axvline(x[first], color=COLORS[3], linestyle="--", linewidth=0.8)
        axp.plot([x[first]], [p[first]], marker="*", markersize=9, color=COLORS[3])
        axp.annotate(
            f"p ≤ α at {points[first].units} units",
            (x[first], p[first]),
            xytext=(6, -2),
            textcoords="offset points",
            fontsize=7,
            color=COLORS[3],
            va="top",
        )
    axp.legend(loc="lower left", frameon=False, ncols=2)
    if use_time:
        locator = mdates.AutoDateLocator()
        axp.xaxis.set_major_locator(locator)
        axp.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        axp.set_xlabel("time of look (UTC)")
    else:
        axp.set_xlabel("units analysed (all arms)")


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5rem auto;
max-width:1100px;padding:0 1rem;color:#1d1d1f;line-height:1.4}
h1{font-size:1.5rem;margin-bottom:.3rem}h2{font-size:1.2rem;margin-top:2rem;
border-bottom:1px solid #ddd;padding-bottom:.2rem}h3{font-size:1rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f5f5f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:.3rem;font-weight:600;
font-size:.85rem;color:#fff;background:#6e6e73}
.ok{background:#1a7f37}.bad{background:#cf222e}.warn{background:#bf8700}
.box{border:1px solid #ddd;border-radius:.4rem;padding:.5rem 1rem;background:#fafafa}
.alerts li{color:#cf222e}.better{color:#1a7f37;font-weight:600}
.worse{color:#cf222e;font-weight:600}.muted{color:#6e6e73;font-size:.85rem}
figure{margin:.5rem 0}figure svg{max-width:100%;height:auto}
"""

_ACTION_CLASS = {"ship": "ok", "keep_running": "warn", "stop_for_harm": "bad", "roll_back": "bad"}
_STATUS_CLASS = {
    "winner": "ok",
    "cheaper_non_inferior": "ok",
    "harmful": "bad",
    "guardrail_breach": "bad",
}


def _header(result: ExperimentResult, title: str, context: Mapping[str, str] | None) -> str:
    facts = (
        f"control <b>{esc(result.control)}</b>; treatments "
        + ", ".join(f"<b>{esc(t)}</b>" for t in result.treatments)
        + f"; α per interval {esc(f'{result.alpha:.4g}')}; p-values adjusted by "
        f"{esc(result.correction)}"
    )
    parts = [f"<header><h1>{esc(title)}</h1>", f'<p class="muted">{facts}</p>']
    if context:
        rows = [[esc(k), esc(v)] for k, v in context.items()]
        parts.append(html_table(["context", "value"], rows, set()))
    parts.append("</header>")
    return "\n".join(parts)


def _decision_section(decision: Decision) -> str:
    badge = _ACTION_CLASS.get(decision.action, "neutral")
    valid = (
        '<span class="badge ok">data valid</span>'
        if decision.valid
        else '<span class="badge bad">data NOT valid</span>'
    )
    target = f" <b>{esc(decision.variant)}</b>" if decision.variant else ""
    affected = (
        f"<p>affected: {', '.join(f'<b>{esc(a)}</b>' for a in decision.affected)}</p>"
        if decision.affected
        else ""
    )
    verdicts = html_table(
        ["variant", "status", "reasons"],
        [
            [
                esc(v.variant),
                f'<span class="badge {_STATUS_CLASS.get(v.status, "neutral")}">'
                f"{esc(v.status)}</span>",
                bullet_list(v.reasons),
            ]
            for v in decision.verdicts
        ],
        set(),
    )
    return (
        '<section class="box" id="decision"><h2>Decision</h2>'
        f'<p><span class="badge {badge}">{esc(decision.action)}</span>{target} {valid}</p>'
        f"{affected}<h3>Reasons</h3>{bullet_list(decision.reasons)}"
        f"<h3>Alerts</h3>{bullet_list(decision.alerts, 'alerts')}"
        f"<h3>Verdicts</h3>{verdicts}</section>"
    )


def _srm_section(result: ExperimentResult) -> str:
    srm = result.srm
    names = [result.control, *result.treatments]
    if len(names) != len(srm.observed):
        names = [f"arm {i}" for i in range(len(srm.observed))]
    rows = [
        [esc(name), str(obs), _pct(share, signed=False), _pct(expected, signed=False)]
        for name, obs, share, expected in zip(
            names, srm.observed, srm.observed_share, srm.expected_share, strict=True
        )
    ]
    badge = (
        '<span class="badge bad">SRM MISMATCH</span>'
        if srm.mismatch
        else '<span class="badge ok">SRM OK</span>'
    )
    note = (
        "The arms are not split as configured: check assignment and exposure logging before "
        "trusting any effect below."
        if srm.mismatch
        else "The observed split is consistent with the configured allocation."
    )
    stats = (
        f"χ² = {esc(_num(srm.statistic))} on {srm.df} df, p = {esc(_p(srm.p_value))} "
        f"(threshold {esc(f'{srm.threshold:g}')})"
    )
    return (
        '<section id="srm"><h2>Sample-ratio mismatch</h2>'
        f'<p>{badge} {stats}</p><p class="muted">{esc(note)}</p>'
        + html_table(["arm", "units", "observed share", "expected share"], rows, {1, 2, 3})
        + "</section>"
    )


def _resultstable(result: ExperimentResult) -> str:
    rows = []
    for m in result.metrics:
        if m.significantly_better:
            css = ' class="better"'
        elif m.significantly_worse:
            css = ' class="worse"'
        else:
            css = ""
        rel = (
            f"<span{css}>{esc(_pct(m.relative_difference))}</span> "
            f"[{esc(_pct(m.relative_ci_low))}, {esc(_pct(m.relative_ci_high))}] "
            f'<span class="muted">{esc(m.interval)}</span>'
        )
        direction = "↑" if m.higher_is_better else "↓"
        reduction = m.cuped_variance_reduction
        rows.append(
            [
                f'{esc(m.metric)} <span class="muted">{direction}</span>',
                esc(m.variant),
                f'{esc(_num(m.control_value))} <span class="muted">n={m.n_control}</span>',
                f'{esc(_num(m.treatment_value))} <span class="muted">n={m.n_treatment}</span>',
                rel,
                esc(_p(m.p_value)),
                esc(_p(m.adjusted_p_value)),
                esc(m.method),
                "—" if m.prob_beat_control is None else esc(_pct(m.prob_beat_control, False)),
                esc(_num(m.expected_loss)),
                "—" if reduction is None else esc(_pct(reduction, signed=False)),
            ]
        )
    header = [
        "metric",
        "variant",
        "control",
        "treatment",
        "relative difference [interval]",
        "p-value",
        "adjusted p",
        "method",
        "P(beat control)",
        "expected loss",
        "CUPED var. reduction",
    ]
    return (
        '<section id="results"><h2>Results</h2>'
        '<p class="muted">↑/↓: the metric\'s good direction. Coloured differences are '
        "significant at the interval's level.</p>"
        + html_table(header, rows, {2, 3, 5, 6, 8, 9, 10})
        + "</section>"
    )


def _timeline_section(timeline: Timeline, index: int) -> str:
    head = f"<h3>{esc(timeline.metric)}: {esc(timeline.variant)} vs {esc(timeline.control)}</h3>"
    if not timeline.points:
        return f'<div class="timeline">{head}<p class="muted">no looks</p></div>'
    svg = _svg(
        lambda fig: _draw_timeline(fig, timeline),
        (_WIDTH, 4.0),
        index,
        f"sequential timeline of {timeline.metric} for {timeline.variant}",
    )
    first = timeline.first_rejection
    last = timeline.points[-1]
    if first is None:
        verdict = f"The always-valid p-value has not reached α = {timeline.alpha:.4g}."
    else:
        point = timeline.points[first]
        verdict = (
            f"The always-valid p-value first reached α = {timeline.alpha:.4g} at look "
            f"{first + 1} of {len(timeline.points)} ({point.units} units)."
        )
    summary = (
        f"{verdict} Last look: {last.units} units, difference {_num(last.difference)} "
        f"[{_num(last.lower)}, {_num(last.upper)}], p = {_p(last.p_value)}."
    )
    return (
        f'<div class="timeline">{head}<figure>{svg}</figure>'
        f'<p class="muted">{esc(summary)}</p></div>'
    )


def render_report(
    result: ExperimentResult,
    *,
    decision: Decision | None = None,
    timelines: Sequence[Timeline] = (),
    title: str | None = None,
    context: Mapping[str, str] | None = None,
) -> str:
    """A complete, self-contained HTML5 document reporting ``result`` (module docstring).

    One SVG figure for the forest plot (when there are metric results) and one per timeline
    with at least one look. All text from the inputs is HTML-escaped. The same inputs give
    the same string.
    """
    title = title if title is not None else f"Experiment {result.experiment}"
    sections = [_header(result, title, context)]
    if decision is not None:
        sections.append(_decision_section(decision))
    sections.append(_srm_section(result))
    if result.metrics:
        forest = _svg(
            lambda fig: _draw_forest(fig, result),
            (_WIDTH, max(2.6, 0.75 * len({m.metric for m in result.metrics}) + 1.6)),
            0,
            f"forest plot of the relative improvements in {result.experiment}",
        )
        sections.append(
            '<section id="effects"><h2>Effects</h2>'
            '<p class="muted">Relative improvement per metric and treatment with its interval; '
            "right of zero is better for every metric.</p>"
            f"<figure>{forest}</figure></section>"
        )
    else:
        sections.append('<section id="effects"><h2>Effects</h2><p>No metric results.</p></section>')
    sections.append(_resultstable(result))
    if timelines:
        parts = [
            '<section id="timelines"><h2>Sequential timelines</h2>'
            '<p class="muted">Difference (treatment − control, raw values, no CUPED) over '
            "cumulative looks with its always-valid confidence sequence, and the always-valid "
            "p-value against α. A red dashed line marks the first look where p ≤ α.</p>"
        ]
        parts.extend(_timeline_section(t, i + 1) for i, t in enumerate(timelines))
        parts.append("</section>")
        sections.append("".join(parts))
    body = "\n".join(sections)
    return page(title, _CSS, body, "loopline.experiments.report")
