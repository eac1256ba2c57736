"""The site-operations part of the daily report: shift handovers and the incidents and
complaints tally (docs/reports.md, docs/handover.md, docs/incidents.md). Reads only."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlite_utils import Database

from gateway.records.days import local_time, scalar

__all__ = ["ComplaintTally", "HandoverAlertRow", "HandoverRow", "complaint_tally",
           "handover_alerts_of_day", "handovers_of_day"]


@dataclass(frozen=True, slots=True)
class HandoverRow:
    """One shift handover of the day: who handed over to whom, when, and what (the count of
    each kind of item, the cash handed over in fen)."""

    at: datetime
    outgoing: str
    state: str
    accepted_by: str | None
    accepted_at: datetime | None
    items: Mapping[str, int]
    cash_fen: int

    @property
    def state_label(self) -> str:
        return _HANDOVER_STATES.get(self.state, self.state)


@dataclass(frozen=True, slots=True)
class HandoverAlertRow:
    """A shift change whose handover was late (``handover:{boundary}`` alert raised this
    day): when it was raised, who acknowledged it, when an accepted handover ended it."""

    raised_at: datetime
    title_zh: str
    title_en: str
    detail: str
    acked_by: str | None
    acked_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class ComplaintTally:
    """The day's incidents by kind, and of those with an answer-by time (complaints, fee
    disputes): answered in time, answered late, not answered by their time (as of the
    day's end), and incidents closed this day."""

    opened: Mapping[str, int]
    answered_in_time: int
    answered_late: int
    overdue: int
    closed: int


_HANDOVER_STATES = {"waiting": "待接收 waiting", "accepted": "已接班 accepted",
                    "superseded": "未接收·已转入下次 not accepted, carried over"}


def handovers_of_day(db: Database, start: str, end: str, zone: ZoneInfo) -> Iterator[HandoverRow]:
    """Handovers started in the day, with their items counted by kind."""
    if not db["handovers"].exists():
        return
    for row in db.query("SELECT * FROM handovers WHERE created_at >= ? AND created_at < ? "
                        "ORDER BY created_at", [start, end]):
        counts: dict[str, int] = {}
        cash = 0
        for item in db.query("SELECT kind, amount_fen FROM handover_items "
                             "WHERE handover_id = ?", [row["handover_id"]]):
            counts[item["kind"]] = counts.get(item["kind"], 0) + 1
            cash += int(item["amount_fen"] or 0) if item["kind"] == "cash" else 0
        yield HandoverRow(at=_local(row["created_at"], zone), outgoing=row["outgoing"],
                          state=row["state"], accepted_by=row["accepted_by"],
                          accepted_at=local_time(row["accepted_at"], zone)
                          if row["accepted_at"] else None,
                          items=counts, cash_fen=cash)


def handover_alerts_of_day(db: Database, start: str, end: str,
                           zone: ZoneInfo) -> Iterator[HandoverAlertRow]:
    """Late-handover alerts (kind ``handover_overdue``) raised in the day."""
    if not db["alerts"].exists():
        return
    for row in db.query("SELECT * FROM alerts WHERE kind = 'handover_overdue' "
                        "AND raised_at >= ? AND raised_at < ? ORDER BY raised_at",
                        [start, end]):
        yield HandoverAlertRow(
            raised_at=_local(row["raised_at"], zone), title_zh=row["title_zh"],
            title_en=row["title_en"], detail=row["detail"], acked_by=row["acked_by"],
            acked_at=local_time(row["acked_at"], zone) if row["acked_at"] else None,
            resolved_by=row["resolved_by"],
            resolved_at=local_time(row["resolved_at"], zone) if row["resolved_at"] else None)


def complaint_tally(db: Database, start: str, end: str) -> ComplaintTally | None:
    """Counts of the day's incidents and of answers due this day (``incident_deadlines``)."""
    if not db["incident_deadlines"].exists():
        return None
    opened = {row["kind"]: int(row["n"]) for row in db.query(
        "SELECT kind, count(*) AS n FROM incidents WHERE opened_at >= ? AND opened_at < ? "
        "GROUP BY kind ORDER BY kind", [start, end])}
    in_time, late, overdue = db.execute(
        "SELECT coalesce(sum(answered_at IS NOT NULL AND answered_at <= due_at), 0), "
        "coalesce(sum(answered_at IS NOT NULL AND answered_at > due_at), 0), "
        "coalesce(sum((answered_at IS NULL OR answered_at >= ?) AND due_at < ?), 0) "
        "FROM incident_deadlines WHERE due_at >= ? AND due_at < ?",
        [end, end, start, end]).fetchone()
    closed = scalar(db, "SELECT count(*) FROM incidents WHERE closed_at >= ? AND closed_at < ?",
                    [start, end])
    return ComplaintTally(opened=opened, answered_in_time=int(in_time),
                          answered_late=int(late), overdue=int(overdue), closed=closed)



def _local(text: str, zone: ZoneInfo) -> datetime:
    moment = local_time(text, zone)
    assert moment is not None  # noqa: S101 - callers pass NOT NULL columns
    return moment
