"""Small inline SVG charts for the dashboard and the printed daily report.

Why SVG strings and not a plotting library: the gateway is a mini PC with no display, the
page must print and work offline (no JavaScript, no fonts or scripts fetched from
anywhere), and a screen reader should get the chart's meaning. So each chart is a
``<svg role="img">`` with a ``<title>`` (Chinese with English beside it) and a ``<desc>``
that states the data in words, a ``<title>`` on every bar and point (hover text), axis
labels, and nothing but ``currentColor`` and a few fills so it follows the page's colours.

Output is deterministic: the same data gives the same bytes, so tests compare structure
(titles, counts of bars and points, labels) and a cache may key on the input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from html import escape

from gateway.records.reports import HourRevenue, LaneCount, OccupancyPoint
from parkguard.core.tariffs import format_yuan

__all__ = [
    "bar_chart",
    "lane_counts_chart",
    "line_chart",
    "occupancy_chart",
    "revenue_chart",
]

_PALETTE = ("#2b6cb0", "#38a169", "#c53030", "#805ad5")
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 12, 32, 44


def _num(value: float) -> str:
    """Coordinates with one decimal and no ``-0.0``: stable text for stable output."""
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def _nice_max(value: int) -> int:
    """A round axis top at or above ``value`` (1, 2, 5 × 10ⁿ), so tick labels read well."""
    if value <= 0:
        return 1
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def _chart_id(title_zh: str, title_en: str) -> str:
    digest = hashlib.sha256(f"{title_zh}|{title_en}".encode()).hexdigest()[:8]
    return f"chart-{digest}"


def _frame(width: int, height: int, title_zh: str, title_en: str, desc: str,
           chart_id: str | None) -> list[str]:
    ident = chart_id or _chart_id(title_zh, title_en)
    title = f"{title_zh} {title_en}"
    head = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{ident}-title {ident}-desc" font-family="sans-serif" '
        f'font-size="11" fill="currentColor">',
        f'<title id="{ident}-title">{escape(title)}</title>',
        f'<desc id="{ident}-desc">{escape(desc)}</desc>',
        f'<text x="{_num(width / 2)}" y="16" text-anchor="middle" font-size="13" '
        f'font-weight="bold">{escape(title)}</text>',
    ]
    return head


def _axes(width: int, height: int, x_label: str, y_label: str,
          y_tick: str) -> list[str]:
    """The two axes, the top value of the y axis and both axis labels."""
    bottom, right = height - _BOTTOM, width - _RIGHT
    mid_y = _num((_TOP + bottom) / 2)
    return [
        f'<g class="axes" stroke="currentColor" stroke-width="1">'
        f'<line x1="{_LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}"/>'
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{bottom}"/></g>',
        f'<text class="y-tick" x="{_LEFT - 4}" y="{_TOP + 4}" text-anchor="end">'
        f'{escape(y_tick)}</text>',
        f'<text class="y-tick" x="{_LEFT - 4}" y="{bottom}" text-anchor="end">0</text>',
        f'<text class="x-label" x="{_num((_LEFT + right) / 2)}" y="{height - 6}" '
        f'text-anchor="middle">{escape(x_label)}</text>',
        f'<text class="y-label" x="12" y="{mid_y}" text-anchor="middle" '
        f'transform="rotate(-90 12 {mid_y})">{escape(y_label)}</text>',
    ]


def _x_ticks(labels: Sequence[str], xs: Sequence[float], bottom: int,
             every: int) -> list[str]:
    return [f'<text class="x-tick" x="{_num(x)}" y="{bottom + 14}" text-anchor="middle">'
            f'{escape(label)}</text>'
            for index, (label, x) in enumerate(zip(labels, xs, strict=True))
            if index % every == 0]


def line_chart(points: Sequence[tuple[str, int]], *, title_zh: str, title_en: str,
               x_label: str, y_label: str, width: int = 640, height: int = 240,
               label_every: int = 1, chart_id: str | None = None) -> str:
    """A line through ``(label, value)`` points, left to right, one ``<circle>`` per point
    with its value as hover text; every ``label_every``-th label is written under the axis."""
    peak = max((value for _label, value in points), default=0)
    top = _nice_max(peak)
    first_peak = next((label for label, value in points if value == peak), None)
    desc = f"{len(points)} points, highest {peak}" + (f" at {first_peak}" if first_peak else "")
    parts = _frame(width, height, title_zh, title_en, desc, chart_id)
    parts += _axes(width, height, x_label, y_label, str(top))
    bottom, span = height - _BOTTOM, width - _LEFT - _RIGHT
    step = span / max(len(points) - 1, 1)
    xs = [_LEFT + index * step for index in range(len(points))]
    ys = [bottom - value / top * (bottom - _TOP) for _label, value in points]
    if points:
        path = " ".join(f"{_num(x)},{_num(y)}" for x, y in zip(xs, ys, strict=True))
        parts.append(f'<polyline class="series" fill="none" stroke="{_PALETTE[0]}" '
                     f'stroke-width="2" points="{path}"/>')
        parts += [f'<circle class="point" cx="{_num(x)}" cy="{_num(y)}" r="2" '
                  f'fill="{_PALETTE[0]}"><title>{escape(label)}: {value}</title></circle>'
                  for x, y, (label, value) in zip(xs, ys, points, strict=True)]
    parts += _x_ticks([label for label, _v in points], xs, bottom, max(label_every, 1))
    parts.append("</svg>")
    return "\n".join(parts)


def bar_chart(labels: Sequence[str], series: Sequence[tuple[str, Sequence[int]]], *,
              title_zh: str, title_en: str, x_label: str, y_label: str, width: int = 640,
              height: int = 240, label_every: int = 1, format_value: Callable[[int], str] = str,
              chart_id: str | None = None) -> str:
    """Grouped bars: one group per label, one bar per ``(series name, values)`` in each
    group, with a legend when there is more than one series. ``format_value`` writes a value
    for the hover text, the description and the axis top (the revenue chart passes yuan)."""
    for name, values in series:
        if len(values) != len(labels):
            raise ValueError(f"series {name!r} has {len(values)} values for {len(labels)} labels")
    peak = max((value for _name, values in series for value in values), default=0)
    top = _nice_max(peak)
    desc = "; ".join(f"{name}: total {format_value(sum(values))}"
                     for name, values in series) or "no data"
    parts = _frame(width, height, title_zh, title_en, desc, chart_id)
    parts += _axes(width, height, x_label, y_label, format_value(top))
    bottom, span = height - _BOTTOM, width - _LEFT - _RIGHT
    group = span / max(len(labels), 1)
    bar = group * 0.8 / max(len(series), 1)
    centres = [_LEFT + (index + 0.5) * group for index in range(len(labels))]
    for number, (name, values) in enumerate(series):
        colour = _PALETTE[number % len(_PALETTE)]
        parts.append(f'<g class="series" fill="{colour}" data-series="{escape(name)}">')
        for index, value in enumerate(values):
            x = _LEFT + index * group + group * 0.1 + number * bar
            tall = value / top * (bottom - _TOP)
            parts.append(f'<rect class="bar" x="{_num(x)}" y="{_num(bottom - tall)}" '
                         f'width="{_num(bar)}" height="{_num(tall)}"><title>'
                         f'{escape(labels[index])} {escape(name)}: '
                         f'{escape(format_value(value))}</title></rect>')
        parts.append("</g>")
    if len(series) > 1:
        for number, (name, _values) in enumerate(series):
            x = _LEFT + 8 + number * 110
            parts.append(f'<rect class="legend" x="{x}" y="22" width="8" height="8" '
                         f'fill="{_PALETTE[number % len(_PALETTE)]}"/>'
                         f'<text x="{x + 11}" y="30">{escape(name)}</text>')
    parts += _x_ticks(labels, centres, bottom, max(label_every, 1))
    parts.append("</svg>")
    return "\n".join(parts)


def occupancy_chart(points: Sequence[OccupancyPoint], *, width: int = 640,
                    height: int = 240) -> str:
    """Cars inside over the day (from :func:`gateway.records.reports.occupancy_over_day`)."""
    every = max(len(points) // 8, 1)
    return line_chart([(p.at.strftime("%H:%M"), p.cars) for p in points],
                      title_zh="全天在场车辆", title_en="Cars inside over the day",
                      x_label="时间 time", y_label="车辆 cars", label_every=every,
                      width=width, height=height)


def revenue_chart(hours: Sequence[HourRevenue], *, width: int = 640,
                  height: int = 240) -> str:
    """Money taken per hour (from :func:`gateway.records.reports.revenue_by_hour`), axis in yuan."""
    return bar_chart([h.hour.strftime("%H") for h in hours], [("收入 revenue",
                     [h.fen for h in hours])], title_zh="每小时收入", title_en="Revenue by hour",
                     x_label="小时 hour", y_label="元 yuan", label_every=3,
                     format_value=format_yuan, width=width, height=height)


def lane_counts_chart(counts: Sequence[LaneCount], *, width: int = 640,
                      height: int = 240) -> str:
    """Entries, exits and refusals per lane (from :func:`gateway.records.reports.lane_counts`)."""
    return bar_chart([c.lane for c in counts],
                     [("入场 entries", [c.entries for c in counts]),
                      ("出场 exits", [c.exits for c in counts]),
                      ("拒绝 refusals", [c.refusals for c in counts])],
                     title_zh="各车道通行", title_en="Traffic per lane", x_label="车道 lane",
                     y_label="车次 vehicles", width=width, height=height)
