"""Charts drawn on the server as inline SVG: no script, no library, nothing fetched."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

COLOURS = {
    "bar": "#1f5f99",
    "completed": "#1f6f43",
    "missed": "#b3261e",
    "on_track": "#1f6f43",
    "at_risk": "#a15c00",
    "inactive": "#b3261e",
}
TEXT = "#1b1b1b"
GRID = "#c8c8c8"


def _svg(chart_id: str, title: str, width: int, height: int, body: list[str]) -> Markup:
    heading = f"{chart_id}-title"
    parts = [
        f'<svg id="{chart_id}" class="chart" role="img" aria-labelledby="{heading}"'
        f' viewBox="0 0 {width} {height}" preserveAspectRatio="xMinYMin meet"'
        ' xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{heading}">{escape(title)}</title>',
        *body,
        "</svg>",
    ]
    return Markup("".join(parts))


def _text(x: float, y: float, content: str, anchor: str = "start", size: int = 13) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{TEXT}"'
        f' text-anchor="{anchor}">{escape(content)}</text>'
    )


def _rect(x: float, y: float, w: float, h: float, colour: str, label: str) -> str:
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}"'
        f' fill="{colour}"><title>{escape(label)}</title></rect>'
    )


def funnel_chart(stages: Sequence[tuple[str, int]], title: str) -> Markup:
    """One horizontal bar per stage, its count written beside it."""
    width, row, label_w = 640, 34, 110
    height = row * len(stages) + 10
    top = max((n for _, n in stages), default=0) or 1
    body = []
    for i, (name, count) in enumerate(stages):
        y = 6 + i * row
        bar = (width - label_w - 60) * count / top
        body.append(_text(label_w - 8, y + 19, name, anchor="end"))
        body.append(_rect(label_w, y + 4, bar, row - 10, COLOURS["bar"], f"{name}: {count}"))
        body.append(_text(label_w + bar + 6, y + 19, str(count)))
    return _svg("chart-funnel", title, width, height, body)


def weekly_chart(
    chart_id: str,
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[int]]],
    *,
    stacked: bool,
) -> Markup:
    """Bars per week: side by side, or stacked; a legend above, week starts below."""
    width, height = 640, 260
    left, right, top_pad, bottom = 36, 8, 34, 44
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    totals = [
        sum(values[i] for _, values in series)
        if stacked
        else max((values[i] for _, values in series), default=0)
        for i in range(len(labels))
    ]
    top = max(4, -(-max(totals, default=0) // 4) * 4)  # whole numbers on the gridlines
    body = []
    for step in range(5):  # gridlines with their values
        value = top * step / 4
        y = top_pad + plot_h - plot_h * step / 4
        body.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}"'
            f' stroke="{GRID}" stroke-width="1"/>'
        )
        body.append(_text(left - 4, y + 4, f"{value:g}" if step else "0", anchor="end", size=11))
    x: float = left
    for name, _ in series:  # legend
        body.append(_rect(x, 8, 12, 12, COLOURS[name], name))
        body.append(_text(x + 16, 19, name.replace("_", " "), size=12))
        x += 24 + 8 * len(name)
    slot = plot_w / max(len(labels), 1)
    for i, label in enumerate(labels):
        x0 = left + i * slot + slot * 0.12
        bar_w = slot * 0.76
        base: float = top_pad + plot_h
        for j, (name, values) in enumerate(series):
            h = plot_h * values[i] / top
            tip = f"week of {label}, {name.replace('_', ' ')}: {values[i]}"
            if stacked:
                base -= h
                body.append(_rect(x0, base, bar_w, h, COLOURS[name], tip))
            else:
                w = bar_w / len(series)
                body.append(_rect(x0 + j * w, base - h, w, h, COLOURS[name], tip))
        if len(labels) <= 8 or i % max(1, len(labels) // 8) == 0:
            body.append(_text(x0 + bar_w / 2, height - bottom + 16, label[5:], "middle", 11))
    body.append(_text(left, height - 6, "week starting (month-day)", size=11))
    return _svg(chart_id, title, width, height, body)
