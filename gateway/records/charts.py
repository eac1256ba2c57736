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
    "y_ticks",
]

_PALETTE = ("#2b6cb0", "#38a169", "#c53030", "#805ad5")
#: Margins: room on the left for the y tick labels and the rotated axis label beside them,
#: at the top for the title and a legend under it, at the bottom for x ticks and the label.
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 14, 50, 46
_FONT = 12


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


def y_ticks(top: int, *, unit: int = 1) -> list[int]:
    """Values of the y ticks from 0 to ``top`` (a :func:`_nice_max`): four or five steps of
    1, 2 or 5 × 10ⁿ, never finer than ``unit`` (whole cars; 100 fen for whole yuan)."""
    leading = int(str(top)[0])
    step = top // 4 if leading == 2 else top // 5
    step = max(step, unit)
    if top % step:  # small tops: 1 or 2 cars, 1 yuan
        step = unit
    return list(range(0, top + 1, step))


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
        f'font-size="{_FONT}" fill="currentColor">',
        f'<title id="{ident}-title">{escape(title)}</title>',
        f'<desc id="{ident}-desc">{escape(desc)}</desc>',
        f'<text class="chart-title" x="{_num(width / 2)}" y="18" text-anchor="middle" '
        f'font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    return head


def _axes(width: int, height: int, x_label: str, y_label: str, top: int,
          ticks: Sequence[int], tick_label: Callable[[int], str],
          x_grid: Sequence[float]) -> list[str]:
    """The grid, the two axes with their tick marks, the y tick labels and one label per
    axis (the y label rotated, left of the tick labels, so the two never overlap)."""
    bottom, right = height - _BOTTOM, width - _RIGHT
    mid_y = _num((_TOP + bottom) / 2)
    parts = ['<g class="grid" stroke="currentColor" stroke-opacity="0.15" stroke-width="1">']
    ys = [bottom - value / top * (bottom - _TOP) for value in ticks]
    parts += [f'<line class="y-grid" x1="{_LEFT}" y1="{_num(y)}" x2="{right}" y2="{_num(y)}"/>'
              for value, y in zip(ticks, ys, strict=True) if value]
    parts += [f'<line class="x-grid" x1="{_num(x)}" y1="{_TOP}" x2="{_num(x)}" y2="{bottom}"/>'
              for x in x_grid]
    parts.append("</g>")
    parts.append(
        f'<g class="axes" stroke="currentColor" stroke-width="1">'
        f'<line x1="{_LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}"/>'
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{bottom}"/>'
        + "".join(f'<line class="y-tick-mark" x1="{_LEFT - 4}" y1="{_num(y)}" x2="{_LEFT}" '
                  f'y2="{_num(y)}"/>' for y in ys)
        + "".join(f'<line class="x-tick-mark" x1="{_num(x)}" y1="{bottom}" x2="{_num(x)}" '
                  f'y2="{bottom + 4}"/>' for x in x_grid)
        + "</g>")
    parts += [f'<text class="y-tick" x="{_LEFT - 7}" y="{_num(y + 4)}" text-anchor="end">'
              f'{escape(tick_label(value))}</text>' for value, y in zip(ticks, ys, strict=True)]
    parts += [
        f'<text class="x-label" x="{_num((_LEFT + right) / 2)}" y="{height - 6}" '
        f'text-anchor="middle">{escape(x_label)}</text>',
        f'<text class="y-label" x="14" y="{mid_y}" text-anchor="middle" '
        f'transform="rotate(-90 14 {mid_y})">{escape(y_label)}</text>',
    ]
    return parts


def _x_ticks(labels: Sequence[str], xs: Sequence[float], bottom: int,
             every: int) -> list[str]:
    return [f'<text class="x-tick" x="{_num(x)}" y="{bottom + 17}" text-anchor="middle">'
            f'{escape(label)}</text>'
            for index, (label, x) in enumerate(zip(labels, xs, strict=True))
            if index % every == 0]


def _every(xs: Sequence[float], every: int) -> list[float]:
    return [x for index, x in enumerate(xs) if index % every == 0]


def line_chart(points: Sequence[tuple[str, int]], *, title_zh: str, title_en: str,
               x_label: str, y_label: str, width: int = 600, height: int = 260,
               label_every: int = 1, chart_id: str | None = None) -> str:
    """A line through ``(label, value)`` points, left to right, one ``<circle>`` per point
    with its value as hover text; every ``label_every``-th label is written under the axis,
    with a tick mark and a grid line."""
    peak = max((value for _label, value in points), default=0)
    top = _nice_max(peak)
    first_peak = next((label for label, value in points if value == peak), None)
    desc = f"{len(points)} points, highest {peak}" + (f" at {first_peak}" if first_peak else "")
    bottom, span = height - _BOTTOM, width - _LEFT - _RIGHT
    step = span / max(len(points) - 1, 1)
    xs = [_LEFT + index * step for index in range(len(points))]
    every = max(label_every, 1)
    parts = _frame(width, height, title_zh, title_en, desc, chart_id)
    parts += _axes(width, height, x_label, y_label, top, y_ticks(top), str, _every(xs, every))
    ys = [bottom - value / top * (bottom - _TOP) for _label, value in points]
    if points:
        path = " ".join(f"{_num(x)},{_num(y)}" for x, y in zip(xs, ys, strict=True))
        parts.append(f'<polyline class="series" fill="none" stroke="{_PALETTE[0]}" '
                     f'stroke-width="2" points="{path}"/>')
        parts += [f'<circle class="point" cx="{_num(x)}" cy="{_num(y)}" r="2" '
                  f'fill="{_PALETTE[0]}"><title>{escape(label)}: {value}</title></circle>'
                  for x, y, (label, value) in zip(xs, ys, points, strict=True)]
    parts += _x_ticks([label for label, _v in points], xs, bottom, every)
    parts.append("</svg>")
    return "\n".join(parts)


def bar_chart(labels: Sequence[str], series: Sequence[tuple[str, Sequence[int]]], *,
              title_zh: str, title_en: str, x_label: str, y_label: str, width: int = 600,
              height: int = 260, label_every: int = 1, format_value: Callable[[int], str] = str,
              format_tick: Callable[[int], str] = str, tick_unit: int = 1,
              chart_id: str | None = None) -> str:
    """Grouped bars: one group per label, one bar per ``(series name, values)`` in each
    group, with a legend under the title when there is more than one series.
    ``format_value`` writes a value for the hover text and the description (the revenue
    chart passes yuan); ``format_tick`` writes the y tick labels, whose unit the y label
    names, and ``tick_unit`` is the finest tick step (100 fen: whole yuan)."""
    for name, values in series:
        if len(values) != len(labels):
            raise ValueError(f"series {name!r} has {len(values)} values for {len(labels)} labels")
    peak = max((value for _name, values in series for value in values), default=0)
    top = _nice_max(peak)
    if top < tick_unit:
        top = tick_unit
    desc = "; ".join(f"{name}: total {format_value(sum(values))}"
                     for name, values in series) or "no data"
    bottom, span = height - _BOTTOM, width - _LEFT - _RIGHT
    group = span / max(len(labels), 1)
    bar = group * 0.8 / max(len(series), 1)
    centres = [_LEFT + (index + 0.5) * group for index in range(len(labels))]
    every = max(label_every, 1)
    parts = _frame(width, height, title_zh, title_en, desc, chart_id)
    parts += _axes(width, height, x_label, y_label, top, y_ticks(top, unit=tick_unit),
                   format_tick, _every(centres, every))
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
            x = _LEFT + 8 + number * 120
            parts.append(f'<rect class="legend" x="{x}" y="29" width="10" height="10" '
                         f'fill="{_PALETTE[number % len(_PALETTE)]}"/>'
                         f'<text x="{x + 14}" y="38">{escape(name)}</text>')
    parts += _x_ticks(labels, centres, bottom, every)
    parts.append("</svg>")
    return "\n".join(parts)


def _whole_yuan(fen: int) -> str:
    """A y tick in yuan (the axis label says 元): ``1500``, not ``¥1,500.00``."""
    return str(fen // 100)


def occupancy_chart(points: Sequence[OccupancyPoint], *, width: int = 600,
                    height: int = 260) -> str:
    """Cars inside over the day (from :func:`gateway.records.reports.occupancy_over_day`)."""
    every = max(len(points) // 8, 1)
    return line_chart([(p.at.strftime("%H:%M"), p.cars) for p in points],
                      title_zh="全天在场车辆", title_en="Cars inside over the day",
                      x_label="时间 time", y_label="在场车辆 cars inside", label_every=every,
                      width=width, height=height)


def revenue_chart(hours: Sequence[HourRevenue], *, width: int = 600,
                  height: int = 260) -> str:
    """Money taken per hour (from :func:`gateway.records.reports.revenue_by_hour`): ticks in
    whole yuan, hover text to the fen."""
    return bar_chart([h.hour.strftime("%H") for h in hours], [("收入 revenue",
                     [h.fen for h in hours])], title_zh="每小时收入", title_en="Revenue by hour",
                     x_label="小时 hour", y_label="收入(元) revenue (yuan)", label_every=3,
                     format_value=format_yuan, format_tick=_whole_yuan, tick_unit=100,
                     width=width, height=height)


def lane_counts_chart(counts: Sequence[LaneCount], *, width: int = 600,
                      height: int = 260) -> str:
    """Entries, exits and refusals per lane (from :func:`gateway.records.reports.lane_counts`)."""
    return bar_chart([c.lane for c in counts],
                     [("入场 entries", [c.entries for c in counts]),
                      ("出场 exits", [c.exits for c in counts]),
                      ("拒绝 refusals", [c.refusals for c in counts])],
                     title_zh="各车道通行", title_en="Traffic per lane", x_label="车道 lane",
                     y_label="车次 vehicles", width=width, height=height)
