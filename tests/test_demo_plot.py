"""The demo's picture of the day (simulator/plots.py): Chinese with English beside in a CJK
font that has every glyph, and the decision times' p50 and p99 drawn and named. Checked on
matplotlib's own objects after a real render to PNG, not on pixels."""

from __future__ import annotations

import random
import sqlite3
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib import font_manager
from matplotlib.figure import Figure
from matplotlib.text import Text

from simulator.plots import day_figure, percentile, plot_day

START = datetime(2026, 5, 6, 0, 0, tzinfo=UTC)
SESSIONS = [((START + timedelta(minutes=7 * i)).isoformat(),
             (START + timedelta(minutes=7 * i + 95)).isoformat() if i % 5 else None)
            for i in range(150)]
_RANDOM = random.Random(7)
WAITS = [_RANDOM.lognormvariate(0.5, 0.6) for _ in range(1000)]


@pytest.fixture(scope="module")
def figure(tmp_path_factory: pytest.TempPathFactory) -> Figure:
    """The figure after a real PNG render, with a missing glyph an error."""
    fig = day_figure(SESSIONS, WAITS, timezone="Asia/Shanghai")
    png = tmp_path_factory.mktemp("plot") / "day.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph 22312 missing from font(s) DejaVu Sans"
        fig.savefig(png, dpi=60)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return fig


def test_the_nearest_rank_percentile_is_a_measured_value() -> None:
    assert percentile([5, 1, 3, 2, 4], 0.5) == 3
    assert percentile(list(range(1, 101)), 0.99) == 99
    assert percentile([7.0], 0.99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_every_title_and_axis_label_is_chinese_with_english_beside(figure: Figure) -> None:
    occupancy, latency = figure.axes
    texts = [occupancy.get_title(), occupancy.get_xlabel(), occupancy.get_ylabel(),
             latency.get_title(), latency.get_xlabel(), latency.get_ylabel()]
    assert texts[:3] == ["全天在场车辆 Cars inside over the day (Asia/Shanghai)",
                         "本地时间 site-local time", "在场车辆 cars inside"]
    assert texts[3:] == ["道闸决策用时 Gate decision time (lane → gateway → lane)",
                         "毫秒 milliseconds", "决策次数 decisions"]
    for text in texts:
        chinese, _, english = text.partition(" ")
        assert any("\u4e00" <= ch <= "\u9fff" for ch in chinese), text
        assert english.isascii() or "→" in english, text
    # the title's font is a CJK family the Makefile installs, not a fallback
    title: Text = occupancy.title
    found = font_manager.findfont(title.get_fontproperties(), fallback_to_default=False)
    assert Path(found).name in {"NotoSansCJK-Regular.ttc", "wqy-microhei.ttc"}, found


def test_the_decision_times_p50_and_p99_are_marked_and_named(figure: Figure) -> None:
    _occupancy, latency = figure.axes
    marks = {line.get_label(): float(np.asarray(line.get_xdata()).ravel()[0])
             for line in latency.get_lines()}
    p50, p99 = percentile(WAITS, 0.5), percentile(WAITS, 0.99)
    assert marks == {f"中位数 p50 = {p50:.1f} ms": p50, f"99分位 p99 = {p99:.1f} ms": p99}
    legend = latency.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == list(marks)
    assert p50 < p99


def test_both_panels_have_ticks_and_a_grid(figure: Figure) -> None:
    for axes in figure.axes:
        assert len(axes.get_xticks()) >= 3 and len(axes.get_yticks()) >= 3
        assert all(line.get_visible() for line in axes.xaxis.get_gridlines())
    occupancy = figure.axes[0]
    assert {t.get_text() for t in occupancy.get_xticklabels()} & {"08:00", "12:00", "16:00"}


def test_plot_day_writes_the_png_from_the_days_database(tmp_path: Path) -> None:
    database = tmp_path / "day.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE sessions (entry_at TEXT, exit_at TEXT)")
        conn.executemany("INSERT INTO sessions VALUES (?, ?)", SESSIONS)
    out = plot_day(database, tmp_path / "out" / "demo-day.png", timezone="Asia/Shanghai",
                   waits_ms=WAITS)
    assert out is not None and out.read_bytes()[:4] == b"\x89PNG"
    assert matplotlib.get_backend()  # never needed a display
