"""What the fleet dashboard shows, read from PostgreSQL: one row per site, and one site in
detail. Plain SQL over the ingest tables (docs/fleet.md); money in integer fen, times in UTC
here and shown in the site's zone by the page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg

Conn = psycopg.Connection[tuple[object, ...]]

_SITES = """SELECT site FROM events UNION SELECT site FROM fleet_commands
UNION SELECT site FROM fleet_user_sites"""
_OCCUPANCY = """SELECT site, count(*) FROM sessions
WHERE entered_at IS NOT NULL AND exited_at IS NULL GROUP BY site"""
_REVENUE = """SELECT site, COALESCE(sum(fee_fen), 0) FROM payments
WHERE ts >= %s AND ts < %s GROUP BY site"""
_ALARMS = "SELECT site, count(*) FROM alarms WHERE active GROUP BY site"
_LANES_OFF = """SELECT site, count(*) FROM device_health
WHERE device LIKE 'lane:%%' AND online IS FALSE GROUP BY site"""
_PATROL = """SELECT site, taps, checkpoints, guards FROM patrol_compliance WHERE day = %s"""
_TARIFF = "SELECT site, version FROM site_tariff_versions"


@dataclass(frozen=True, slots=True)
class SiteRow:
    site: str
    occupancy: int
    revenue_fen: int
    open_alarms: int
    lanes_offline: int
    patrol_taps: int
    patrol_checkpoints: int
    tariff_version: str | None


def local_day(now: datetime, zone: ZoneInfo) -> tuple[date, datetime, datetime]:
    """Today at the sites (one zone for the fleet) and its UTC bounds."""
    today = now.astimezone(zone).date()
    start = datetime.combine(today, time(0), tzinfo=zone)
    return today, start, start + timedelta(days=1)


def all_sites(conn: Conn) -> list[str]:
    return sorted(str(r[0]) for r in conn.execute(_SITES).fetchall())


def _counts(conn: Conn, query: str, params: tuple[object, ...] = ()) -> dict[str, int]:
    return {str(r[0]): int(str(r[1])) for r in conn.execute(query, params).fetchall()}


def overview(conn: Conn, sites: list[str], now: datetime, zone: ZoneInfo) -> list[SiteRow]:
    today, start, end = local_day(now, zone)
    occupancy = _counts(conn, _OCCUPANCY)
    revenue = _counts(conn, _REVENUE, (start, end))
    alarms = _counts(conn, _ALARMS)
    lanes_off = _counts(conn, _LANES_OFF)
    patrol = {str(r[0]): (int(str(r[1])), int(str(r[2])))
              for r in conn.execute(_PATROL, (today,)).fetchall()}
    tariffs = {str(r[0]): str(r[1]) for r in conn.execute(_TARIFF).fetchall()}
    return [SiteRow(site, occupancy.get(site, 0), revenue.get(site, 0), alarms.get(site, 0),
                    lanes_off.get(site, 0), *patrol.get(site, (0, 0)), tariffs.get(site))
            for site in sites]


@dataclass(frozen=True, slots=True)
class SiteDetail:
    row: SiteRow
    devices: list[tuple[str, bool | None, str | None, datetime]]
    alarms: list[tuple[str, bool, str, datetime]]
    acks: list[tuple[str, str, str, str, str | None, datetime]]


def site_detail(conn: Conn, site: str, now: datetime, zone: ZoneInfo) -> SiteDetail:
    row = overview(conn, [site], now, zone)[0]
    devices = [(str(r[0]), r[1] if isinstance(r[1], bool) else None,
                None if r[2] is None else str(r[2]), _when(r[3]))
               for r in conn.execute("SELECT device, online, fault, ts FROM device_health "
                                     "WHERE site = %s ORDER BY device", (site,)).fetchall()]
    alarms = [(str(r[0]), bool(r[1]), str(r[2]), _when(r[3]))
              for r in conn.execute("SELECT kind, active, source, ts FROM alarms "
                                    "WHERE site = %s ORDER BY kind", (site,)).fetchall()]
    acks = [(str(r[0]), str(r[1]), str(r[2]), str(r[3]), None if r[4] is None else str(r[4]),
             _when(r[5]))
            for r in conn.execute("SELECT command_id, kind, status, reason, version, ts "
                                  "FROM fleet_acks WHERE site = %s ORDER BY ts DESC LIMIT 20",
                                  (site,)).fetchall()]
    return SiteDetail(row, devices, alarms, acks)


def _when(value: object) -> datetime:
    if not isinstance(value, datetime):  # the columns are NOT NULL timestamptz
        raise TypeError(f"expected a time, got {type(value).__name__}")
    return value
