"""The day as series for the control room's charts: cars inside over the day, each lane's
entries, exits and refusals, and money taken per hour."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlite_utils import Database

from gateway.money.payments.reports import MONEY_IN_STATES
from gateway.records.days import bounds_text, day_bounds
from parkguard.clock import utc_iso


@dataclass(frozen=True, slots=True)
class OccupancyPoint:
    """Cars inside at one site-local instant."""

    at: datetime
    cars: int


@dataclass(frozen=True, slots=True)
class LaneCount:
    """One lane's day: cars let in, cars let out, and vehicles refused at the barrier."""

    lane: str
    entries: int
    exits: int
    refusals: int


@dataclass(frozen=True, slots=True)
class HourRevenue:
    """Money taken in the hour starting ``hour`` (site-local): fees and debts paid off."""

    hour: datetime
    fen: int


def occupancy_over_day(db: Database, day: date, zone: ZoneInfo,
                       step_minutes: int = 15) -> list[OccupancyPoint]:
    """Cars inside every ``step_minutes`` from local midnight (included) to the next
    (excluded): a car counts at ``t`` if it entered at or before ``t`` and had not left."""
    if step_minutes <= 0:
        raise ValueError(f"step_minutes must be positive, got {step_minutes}")
    start_utc, end_utc = day_bounds(day, zone)
    start, end = utc_iso(start_utc), utc_iso(end_utc)
    stays = [(row["entry_at"], row["exit_at"]) for row in db.query(
        "SELECT entry_at, exit_at FROM sessions WHERE entry_at < ? "
        "AND (exit_at IS NULL OR exit_at >= ?)", [end, start])]
    points = []
    moment = start_utc
    while moment < end_utc:
        at = utc_iso(moment)
        cars = sum(1 for entered, left in stays if entered <= at and (left is None or left > at))
        points.append(OccupancyPoint(moment.astimezone(zone), cars))
        moment += timedelta(minutes=step_minutes)
    return points


def lane_counts(db: Database, day: date, zone: ZoneInfo) -> list[LaneCount]:
    """Per lane, sorted by name: sessions it opened, sessions it closed, and its ``refuse``
    decision events (the gateway's and the lane's own), a car held to pay (``payment_due``)
    not counted: it is waiting, not turned away."""
    start, end = bounds_text(day, zone)
    counts: dict[str, list[int]] = {}

    def add(rows: Iterable[dict[str, Any]], column: int) -> None:
        for row in rows:
            counts.setdefault(row["lane"], [0, 0, 0])[column] += int(row["n"])

    add(db.query("SELECT entry_lane AS lane, count(*) AS n FROM sessions "
                 "WHERE entry_at >= ? AND entry_at < ? GROUP BY entry_lane", [start, end]), 0)
    add(db.query("SELECT exit_lane AS lane, count(*) AS n FROM sessions WHERE state = 'closed' "
                 "AND exit_at >= ? AND exit_at < ? GROUP BY exit_lane", [start, end]), 1)
    add(db.query("SELECT lane, count(*) AS n FROM events WHERE type = 'decision' "
                 "AND ts >= ? AND ts < ? AND json_extract(payload, '$.action') = 'refuse' "
                 "AND json_extract(payload, '$.reason') NOT IN "
                 "('payment_due', 'offline_payment_due') GROUP BY lane", [start, end]), 2)
    return [LaneCount(lane, *values) for lane, values in sorted(counts.items())]


def revenue_by_hour(db: Database, day: date, zone: ZoneInfo) -> list[HourRevenue]:
    """Money taken (fees and debts paid off, before refunds) in each site-local hour of the
    day; the hours sum to :attr:`DailySummary.takings_fen`."""
    start_utc, end_utc = day_bounds(day, zone)
    hours: list[HourRevenue] = []
    moment = start_utc
    edges = []
    while moment < end_utc:
        edges.append(moment)
        moment += timedelta(hours=1)
    totals = [0] * len(edges)
    for row in db.query(
            "SELECT paid_at, amount_fen FROM payments WHERE state IN (?, ?, ?) "
            "AND paid_at >= ? AND paid_at < ?",
            [*MONEY_IN_STATES, utc_iso(start_utc), utc_iso(end_utc)]):
        paid = datetime.fromisoformat(str(row["paid_at"]).replace("Z", "+00:00"))
        index = min(int((paid - start_utc).total_seconds() // 3600), len(edges) - 1)
        totals[index] += int(row["amount_fen"])
    for edge, fen in zip(edges, totals, strict=True):
        hours.append(HourRevenue(edge.astimezone(zone), fen))
    return hours
