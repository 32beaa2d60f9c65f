"""Building blocks of Loopline's self-contained HTML reports (experiments, cost).

Figures are drawn by matplotlib on a private ``Figure`` (no pyplot state) and embedded as
inline SVG: no script, stylesheet or font is loaded from anywhere. Output is deterministic
for equal input (fixed hash salt, no dates in the SVG metadata) so a report can be diffed and
tested byte for byte. matplotlib's ``rc_context`` changes process-wide settings, so drawing
is serialised by one lock. Everything user-supplied goes through :func:`esc`.
"""

from __future__ import annotations

import html
import io
import re
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.typing import RcKeyType

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
_LOCK = threading.Lock()
_RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",  # text stays text (searchable, small)
    "text.parse_math": False,  # a "$" in a variant name is printed, not typeset
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "axes.labelsize": 9.0,
    "xtick.labelsize": 8.0,
    "ytick.labelsize": 8.0,
    "legend.fontsize": 8.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_TAG = re.compile(r"<[^>]*>")
_ID_REF = re.compile(r'(\bid="|xlink:href="#|\bhref="#|url\(#)')


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _prefix_ids(svg: str, prefix: str) -> str:
    """Prefix every element id and id reference inside tags (not in text content), so that
    several inline SVGs of one page never share an id."""

    def tag(match: re.Match[str]) -> str:
        return _ID_REF.sub(lambda m: m.group(1) + prefix, match.group(0))

    return _TAG.sub(tag, svg)


def svg_figure(
    draw: Callable[[Figure], None],
    size: tuple[float, float],
    label: str,
    *,
    index: int = 0,
    salt: str = "loopline",
) -> str:
    """Draw a figure with ``draw`` and return it as inline SVG markup with an aria label."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    buffer = io.BytesIO()
    with _LOCK, matplotlib.rc_context({**_RC, "svg.hashsalt": salt}):
        fig = Figure(figsize=size, layout="constrained")
        FigureCanvasAgg(fig)
        try:
            draw(fig)
            fig.savefig(
                buffer,
                format="svg",
                metadata={"Date": None, "Creator": None, "Format": None, "Type": None},
            )
        finally:
            fig.clear()
            del fig
    text = buffer.getvalue().decode("utf-8")
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.DOTALL)
    text = _prefix_ids(text, f"ll{index}-")
    return text.replace("<svg ", f'<svg role="img" aria-label="{esc(label)}" ', 1).strip()


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]) -> str:
    """An HTML table; cells are already escaped HTML, ``numeric`` columns right-aligned."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def bullet_list(items: Sequence[str], css: str = "") -> str:
    """Escaped items as a list (``none`` when empty)."""
    if not items:
        return '<p class="muted">none</p>'
    cls = f' class="{css}"' if css else ""
    return f"<ul{cls}>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>"
