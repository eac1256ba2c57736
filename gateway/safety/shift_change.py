"""The shift change by the roster: when a handover is due, which handover answers it, and
when a missing or unaccepted handover becomes an alert (docs/handover.md, "At the shift
change").

A **boundary** is a shift's start in the roster (``[alerts] shifts``, site-local), between
the shift before it (outgoing) and that shift (incoming). The handover that answers a
boundary is the latest one started from ``early_min`` before it (a guard hands over a little
before the change), or one started earlier and still waiting (or accepted only after the
boundary). While none does, the dashboard shows 交接班时间 Handover due.

With ``alert_after_min`` set, no handover started that long after the boundary — or the
answering one not accepted that long after the boundary or its start, whichever is later —
raises ``handover:{boundary}`` (UTC ISO text) for the guard and squad leader on duty, up the
ladder until acknowledged; accepting a handover resolves it.

Only boundaries the gateway saw are judged: on a database with no handover yet, the
boundaries before the desk started are not (a new install is not overdue from its first
minute). Reads only; the desk (:mod:`gateway.safety.handover`) writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

import sqlite_utils
from pydantic import Field

from gateway.safety.alerts.settings import AlertSettings
from parkguard.clock import utc_iso
from parkguard.configfile import StrictModel

__all__ = ["ALERT_KIND", "KEY_PREFIX", "Boundary", "HandoverSettings", "ShiftChange", "boundary_at",
           "shift_change"]

ALERT_KIND: Final = "handover_overdue"
KEY_PREFIX: Final = "handover:"


class HandoverSettings(StrictModel):
    """When the shift change is judged (safety file, ``[handover]``)."""

    alert_after_min: int = Field(
        default=0, ge=0, le=240,
        description="minutes after a shift boundary with no handover started, or with the "
                    "handover not accepted, before `handover:{boundary}` alerts the guard "
                    "and squad leader on duty; 0: no alert (the banner still shows)")
    early_min: int = Field(
        default=30, ge=0, le=120,
        description="a handover started up to this many minutes before a boundary counts "
                    "for it")


@dataclass(frozen=True, slots=True)
class Boundary:
    """One shift change: ``at`` (UTC), from the shift before to the shift starting."""

    at: datetime
    from_shift: str
    to_shift: str
    previous: datetime
    """The boundary before this one (UTC)."""

    @property
    def key(self) -> str:
        return f"{KEY_PREFIX}{utc_iso(self.at)}"


@dataclass(frozen=True, slots=True)
class ShiftChange:
    """The latest boundary and how it was answered (times UTC)."""

    boundary: Boundary
    handover_id: str | None
    state: Literal["due", "waiting", "accepted"]
    """``due``: no handover started for it yet."""
    outgoing: str | None
    started_at: datetime | None
    alert_at: datetime | None
    """When a ``due`` or ``waiting`` change alerts (None: accepted, or alerts off)."""

    @property
    def key(self) -> str:
        return self.boundary.key

    def overdue(self, now: datetime) -> bool:
        return self.alert_at is not None and now >= self.alert_at


def boundary_at(roster: AlertSettings, now: datetime) -> Boundary:
    """The last shift start at or before ``now``, and the shift it followed."""
    zone = roster.zone()
    ordered = sorted(roster.shifts, key=lambda s: s.start)
    starts = _starts(ordered, zone, now)
    index = max(i for i, (at, _) in enumerate(starts) if at <= now)
    at, position = starts[index]
    return Boundary(at=at, from_shift=ordered[position - 1].name,
                    to_shift=ordered[position].name, previous=starts[index - 1][0])


def shift_change(db: sqlite_utils.Database, roster: AlertSettings, settings: HandoverSettings,
                 now: datetime, *, watch_from: datetime) -> ShiftChange | None:
    """How the latest boundary stands at ``now``; None when it came before ``watch_from``
    and no handover was ever kept."""
    boundary = boundary_at(roster, now)
    if boundary.at < watch_from:
        first = db.execute("SELECT min(created_at) FROM handovers").fetchone()[0]
        if first is None or first > utc_iso(boundary.at):
            return None
    half = (boundary.at - boundary.previous) / 2
    since = max(boundary.at - timedelta(minutes=settings.early_min), boundary.previous + half)
    rows = list(db.query(
        "SELECT handover_id, outgoing, created_at, state, accepted_at FROM handovers "
        "WHERE created_at >= :since OR (created_at < :at AND (state = 'waiting' "
        "OR accepted_at >= :at)) ORDER BY created_at DESC LIMIT 1",
        {"since": utc_iso(since), "at": utc_iso(boundary.at)}))
    after = timedelta(minutes=settings.alert_after_min)
    if not rows:
        return ShiftChange(boundary, None, "due", None, None,
                           boundary.at + after if after else None)
    row: dict[str, Any] = rows[0]
    started = datetime.fromisoformat(row["created_at"])
    if row["state"] == "accepted":
        return ShiftChange(boundary, row["handover_id"], "accepted", row["outgoing"], started,
                           None)
    # waiting; a superseded one was followed by a later start, found before it
    return ShiftChange(boundary, row["handover_id"], "waiting", row["outgoing"], started,
                       max(boundary.at, started) + after if after else None)


def _starts(ordered: list[Any], zone: ZoneInfo,
            now: datetime) -> list[tuple[datetime, int]]:
    """Every shift start from two days before ``now``'s local day to its end, in order
    (UTC, with the index of its shift)."""
    day = now.astimezone(zone).date()
    return sorted(
        (datetime.combine(day + timedelta(days=d), shift.start, tzinfo=zone)
         .astimezone(UTC), i)
        for d in (-2, -1, 0) for i, shift in enumerate(ordered))
