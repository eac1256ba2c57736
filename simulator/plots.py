"""Pictures of a simulated day: occupancy over the day and how long gate decisions took.

Chinese first with English beside, like every screen: the fonts are the CJK families the
Makefile's ``system-deps`` installs (``fonts-noto-cjk``, ``fonts-wqy-microhei``), found by
matplotlib among the system's fonts; the decision times are marked at their p50 and p99.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final
from zoneinfo import ZoneInfo

if TYPE_CHECKING:  # matplotlib comes with the `sim` extra; a lane-only install has none
    from matplotlib.figure import Figure

#: CJK families in order of preference, then matplotlib's own for Latin text.
CJK_FONTS: Final = ("Noto Sans CJK SC", "WenQuanYi Micro Hei",
                    "DejaVu Sans")


def occupancy_steps(
    sessions: list[tuple[str, str | None]], zone: ZoneInfo
) -> tuple[list[datetime], list[int]]:
    """Cars inside after each entry or exit, as (site-local time, count) steps."""
    changes = [(datetime.fromisoformat(entry), 1) for entry, _ in sessions]
    changes += [(datetime.fromisoformat(left), -1) for _, left in sessions if left]
    changes.sort()
    times, counts, inside = [], [], 0
    for moment, delta in changes:
        inside += delta
        times.append(moment.astimezone(zone))
        counts.append(inside)
    return times, counts


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (p50: ``share`` 0.5): a value that was measured."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * share // 1))  # ceil(n * share), at least the first
    return ordered[int(rank) - 1]


def day_figure(sessions: list[tuple[str, str | None]], waits_ms: Sequence[float], *,
               timezone: str) -> Figure:
    """The two panels as a matplotlib figure (not saved): occupancy steps in site-local
    time, and the histogram of decision times with its p50 and p99 drawn and named."""
    import matplotlib
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure

    zone = ZoneInfo(timezone)
    times, counts = occupancy_steps(sessions, zone)
    # each text keeps the families it was made with: named here (not the generic
    # "sans-serif", which is looked up again when the figure is drawn)
    with matplotlib.rc_context({"font.family": list(CJK_FONTS)}):
        fig = Figure(figsize=(13, 4.6), layout="constrained")
        occupancy, latency = fig.subplots(1, 2)
        occupancy.step(times, counts, where="post", color="#1f6feb")
        occupancy.set_title(f"全天在场车辆 Cars inside over the day ({timezone})")
        occupancy.set_xlabel("本地时间 site-local time")
        occupancy.set_ylabel("在场车辆 cars inside")
        occupancy.xaxis.set_major_formatter(
            mdates.DateFormatter("%H:%M", tz=zone))  # type: ignore[no-untyped-call]
        occupancy.grid(alpha=0.3)
        latency.hist(list(waits_ms), bins=40, color="#2da44e")
        latency.set_title("道闸决策用时 Gate decision time (lane → gateway → lane)")
        latency.set_xlabel("毫秒 milliseconds")
        latency.set_ylabel("决策次数 decisions")
        latency.grid(alpha=0.3)
        if waits_ms:
            for share, name, colour, style in ((0.5, "中位数 p50", "#0b4ea2", "--"),
                                               (0.99, "99分位 p99", "#c53030", ":")):
                value = percentile(waits_ms, share)
                latency.axvline(value, color=colour, linestyle=style, linewidth=2,
                                label=f"{name} = {value:.1f} ms")
            latency.legend(loc="upper right")
    return fig


def plot_day(database: Path, out: Path, *, timezone: str, waits_ms: list[float]) -> Path | None:
    """Write the two-panel PNG; None when matplotlib is not installed (a lane-only install)."""
    try:
        import matplotlib  # noqa: F401 - the `sim` extra's
    except ImportError:
        return None
    with sqlite3.connect(database) as conn:
        sessions = conn.execute("SELECT entry_at, exit_at FROM sessions").fetchall()
    fig = day_figure(sessions, waits_ms, timezone=timezone)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out
