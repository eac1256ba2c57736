"""Pictures of a simulated day: occupancy over the day and how long gate decisions took."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo


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


def plot_day(database: Path, out: Path, *, timezone: str, waits_ms: list[float]) -> Path | None:
    """Write a two-panel PNG; None when matplotlib is not installed (a lane-only install)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    with sqlite3.connect(database) as conn:
        sessions = conn.execute("SELECT entry_at, exit_at FROM sessions").fetchall()
    zone = ZoneInfo(timezone)
    times, counts = occupancy_steps(sessions, zone)
    fig, (occupancy, latency) = plt.subplots(1, 2, figsize=(12, 4.2))
    occupancy.step(times, counts, where="post", color="#1f6feb")
    occupancy.set_title(f"Cars inside over the day ({timezone})")
    occupancy.set_xlabel("site-local time")
    occupancy.set_ylabel("cars inside")
    hours = mdates.DateFormatter("%H:%M", tz=zone)  # type: ignore[no-untyped-call]
    occupancy.xaxis.set_major_formatter(hours)
    occupancy.grid(alpha=0.3)
    latency.hist(waits_ms, bins=40, color="#2da44e")
    latency.set_title("Gate decision time (lane → gateway → lane)")
    latency.set_xlabel("milliseconds")
    latency.set_ylabel("decisions")
    latency.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
