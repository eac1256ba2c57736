"""A site-local day in the database: its bounds in UTC text, local times of stored instants,
and the small queries every report repeats."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlite_utils import Database

from parkguard.clock import utc_iso


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """Local midnight to the next local midnight, as aware UTC datetimes (23 or 25 hours
    long on a daylight-saving change, where a site has one)."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def bounds_text(day: date, zone: ZoneInfo) -> tuple[str, str]:
    start, end = day_bounds(day, zone)
    return utc_iso(start), utc_iso(end)


def local_time(text: str | None, zone: ZoneInfo) -> datetime | None:
    """A stored UTC instant in the site's zone. One at the very edge of the calendar (a
    year-9999 stamp stored before the contract bounded times) cannot be moved east of UTC:
    it stays in UTC rather than take a report down."""
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    try:
        return moment.astimezone(zone)
    except OverflowError:
        return moment


def scalar(db: Database, sql: str, params: Sequence[object]) -> int:
    return int(db.execute(sql, list(params)).fetchone()[0] or 0)
