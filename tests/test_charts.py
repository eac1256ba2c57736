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
    assert {"时间 time", "车辆 cars", "00:00", "12:00"} <= set(texts(root))


def test_a_revenue_chart_has_a_bar_per_hour_labelled_in_yuan() -> None:
    hours = [HourRevenue(MIDNIGHT + timedelta(hours=h), 700 * h) for h in range(24)]
    root = parse(revenue_chart(hours))
    bars = list(root.iter(f"{SVG}rect"))

    assert len(bars) == 24
    tips = [el.findtext(f"{SVG}title") for el in bars]
    assert tips[13] == "13 收入 revenue: ¥91.00"
    assert float(bars[0].get("height", "x")) == 0.0
    assert "元 yuan" in texts(root) and "¥200.00" in texts(root)  # the axis top, rounded up


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
