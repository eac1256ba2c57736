"""Charts are compared by structure (well-formed SVG, titles, one mark per value), not pixels."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gateway.records.charts import (
    bar_chart,
    lane_counts_chart,
    line_chart,
    occupancy_chart,
    revenue_chart,
    y_ticks,
)
from gateway.records.reports import HourRevenue, LaneCount, OccupancyPoint

SVG = "{http://www.w3.org/2000/svg}"
ZONE = ZoneInfo("Asia/Shanghai")
MIDNIGHT = datetime(2026, 5, 6, 16, 0, tzinfo=UTC).astimezone(ZONE)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - our own output


def texts(root: ET.Element) -> list[str]:
    return [el.text or "" for el in root.iter(f"{SVG}text")]


def test_an_occupancy_chart_is_an_accessible_line_with_a_point_per_step() -> None:
    points = [OccupancyPoint(MIDNIGHT + timedelta(minutes=15 * i), i % 7) for i in range(96)]
    root = parse(occupancy_chart(points))

    assert root.get("role") == "img"
    title, desc = root.find(f"{SVG}title"), root.find(f"{SVG}desc")
    assert title is not None and title.text == "全天在场车辆 Cars inside over the day"
    assert desc is not None and "highest 6" in (desc.text or "")
    assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    assert len(list(root.iter(f"{SVG}circle"))) == 96
    assert len(list(root.iter(f"{SVG}polyline"))) == 1
    assert {"时间 time", "在场车辆 cars inside", "00:00", "12:00"} <= set(texts(root))


def test_a_revenue_chart_has_a_bar_per_hour_labelled_in_yuan() -> None:
    hours = [HourRevenue(MIDNIGHT + timedelta(hours=h), 700 * h) for h in range(24)]
    root = parse(revenue_chart(hours))
    bars = list(root.iter(f"{SVG}rect"))

    assert len(bars) == 24
    tips = [el.findtext(f"{SVG}title") for el in bars]
    assert tips[13] == "13 收入 revenue: ¥91.00"
    assert float(bars[0].get("height", "x")) == 0.0
    assert "收入(元) revenue (yuan)" in texts(root)
    assert ticks(root) == ["0", "50", "100", "150", "200"]  # whole yuan, the top rounded up


def test_lane_counts_are_grouped_bars_with_a_legend() -> None:
    counts = [LaneCount("in1", 40, 0, 2), LaneCount("out1", 0, 38, 5)]
    root = parse(lane_counts_chart(counts))
    groups = [g for g in root.iter(f"{SVG}g") if g.get("data-series")]

    assert [g.get("data-series") for g in groups] == ["入场 entries", "出场 exits",
                                                       "拒绝 refusals"]
    assert all(len(g.findall(f"{SVG}rect")) == 2 for g in groups)
    assert {"入场 entries", "in1", "out1", "各车道通行 Traffic per lane"} <= set(texts(root))


def test_charts_are_deterministic_escape_text_and_draw_empty_data() -> None:
    once = line_chart([("a<b", 1)], title_zh="测试", title_en="Test & co", x_label="x",
                      y_label="y")
    assert once == line_chart([("a<b", 1)], title_zh="测试", title_en="Test & co",
                              x_label="x", y_label="y")
    assert "a&lt;b" in once and "Test &amp; co" in once
    empty = parse(bar_chart([], [], title_zh="空", title_en="Empty", x_label="x", y_label="y"))
    assert list(empty.iter(f"{SVG}rect")) == [] and "no data" in (
        empty.findtext(f"{SVG}desc") or "")
    assert "<script" not in once and "href" not in once


def test_a_series_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="2 values for 3 labels"):
        bar_chart(["a", "b", "c"], [("s", [1, 2])], title_zh="t", title_en="t", x_label="x",
                  y_label="y")


def ticks(root: ET.Element, kind: str = "y-tick") -> list[str]:
    return [el.text or "" for el in root.iter(f"{SVG}text") if el.get("class") == kind]


def lines(root: ET.Element, kind: str) -> list[ET.Element]:
    return [el for el in root.iter(f"{SVG}line") if el.get("class") == kind]


@pytest.mark.parametrize(("top", "unit", "expected"), [
    (1, 1, [0, 1]), (2, 1, [0, 1, 2]), (5, 1, [0, 1, 2, 3, 4, 5]), (10, 1, [0, 2, 4, 6, 8, 10]),
    (20, 1, [0, 5, 10, 15, 20]), (500, 1, [0, 100, 200, 300, 400, 500]),
    (100, 100, [0, 100]), (200_000, 100, [0, 50_000, 100_000, 150_000, 200_000]),
])
def test_y_ticks_are_four_or_five_round_steps_never_finer_than_the_unit(
        top: int, unit: int, expected: list[int]) -> None:
    assert y_ticks(top, unit=unit) == expected


def test_every_chart_has_one_label_per_axis_ticks_with_marks_and_a_grid() -> None:
    points = [OccupancyPoint(MIDNIGHT + timedelta(minutes=15 * i), 3 * i) for i in range(96)]
    hours = [HourRevenue(MIDNIGHT + timedelta(hours=h), 1234 * h * (24 - h)) for h in range(24)]
    counts = [LaneCount("in1", 340, 0, 3), LaneCount("out1", 0, 310, 5)]
    for svg in (occupancy_chart(points), revenue_chart(hours), lane_counts_chart(counts)):
        root = parse(svg)
        y_labels = [el for el in root.iter(f"{SVG}text") if el.get("class") == "y-label"]
        x_labels = [el for el in root.iter(f"{SVG}text") if el.get("class") == "x-label"]
        assert len(y_labels) == 1 and len(x_labels) == 1
        assert all(" " in (el.text or "") for el in (*y_labels, *x_labels))  # 中文 English
        marks = ticks(root)
        assert 3 <= len(marks) <= 7 and marks[0] == "0"
        assert len(lines(root, "y-tick-mark")) == len(marks)
        assert len(lines(root, "y-grid")) == len(marks) - 1  # the axis is the zero line
        assert len(lines(root, "x-grid")) == len(ticks(root, "x-tick")) >= 2
        assert len(lines(root, "x-tick-mark")) == len(ticks(root, "x-tick"))
        # the y label sits left of the tick labels: they never overlap (12 px text, ~7 px
        # per digit, right-aligned at x = 57)
        label_x = float(y_labels[0].get("x", "0"))
        widest = max(len(m) for m in marks) * 7.5
        tick_x = min(float(el.get("x", "0")) for el in root.iter(f"{SVG}text")
                     if el.get("class") == "y-tick")
        assert label_x + 8 < tick_x - widest, svg[:200]
    revenue = parse(revenue_chart(hours))
    assert ticks(revenue) == ["0", "500", "1000", "1500", "2000"]


def test_the_legend_sits_under_the_title_not_on_it() -> None:
    root = parse(lane_counts_chart([LaneCount("in1", 40, 0, 2)]))
    title = next(el for el in root.iter(f"{SVG}text") if el.get("class") == "chart-title")
    legend = [el for el in root.iter(f"{SVG}rect") if el.get("class") == "legend"]
    assert legend and all(float(el.get("y", "0")) > float(title.get("y", "0")) for el in legend)
