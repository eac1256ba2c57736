"""Complaints answered in time: an answer-by time per incident kind, the call-back made to
the person who complained, and an alert when the time runs out (the operations plan: handle
customer complaints, answer within the set time, call back, tally them daily).

An incident of a kind with a deadline (``complaint`` and ``fee_dispute`` by default) gets
an answer-by time when it is opened: ``opened_at + deadline``. The desk finds new ones by
itself (:meth:`ComplaintDesk.sync`, idempotent), so the incident desk needs no hook and a
gateway that was down still dates them from the opening.

A **call-back** (who called, whether the person was reached, what they were told) is kept in
order; the first one *answers* the complaint. An open complaint not answered by its time
raises ``overdue:{incident}`` (warning; the guard on duty and the squad leaders at once,
then up the ladder until acknowledged); a call-back or closing the incident resolves it.
Each call-back is audited (``incident.callback``).

Runs on the gateway's worker with the gateway's clock (``check_overdue(now)`` from its
tick).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlite_utils
from pydantic import Field

from gateway.records.audit import AuditLog
from gateway.safety.alerts import AlertDesk
from parkguard.clock import Clock, utc_iso
from parkguard.configfile import StrictModel
from parkguard.errors import ParkGuardError

__all__ = ["Callback", "ComplaintDesk", "ComplaintError", "ComplaintSettings", "Deadline"]


class ComplaintSettings(StrictModel):
    """How long each kind of incident may wait for an answer (a call-back)."""

    deadline_hours: dict[str, float] = Field(
        default_factory=lambda: {"complaint": 24.0, "fee_dispute": 24.0},
        description="incident kind → hours to answer it by a call-back; kinds not listed "
                    "have no deadline")


class ComplaintError(ParkGuardError, ValueError):
    """A call-back was refused: blank text, an unknown or closed incident, or a kind with
    no deadline."""


@dataclass(frozen=True, slots=True)
class Callback:
    at: str
    by: str
    reached: bool
    outcome: str


@dataclass(frozen=True, slots=True)
class Deadline:
    """An incident's answer-by time and its call-backs; times UTC ISO text."""

    incident_id: str
    kind: str
    due_at: str
    answered_at: str | None
    answered_by: str | None
    callbacks: tuple[Callback, ...]

    def overdue(self, now: datetime) -> bool:
        return self.answered_at is None and datetime.fromisoformat(self.due_at) <= now


class ComplaintDesk:
    """Answer-by times, call-backs and the overdue alert."""

    def __init__(self, db: sqlite_utils.Database, *, clock: Clock, audit: AuditLog,
                 settings: ComplaintSettings | None = None,
                 alerts: AlertDesk | None = None) -> None:
        self.db = db
        self._clock = clock
        self._audit = audit
        self.settings = settings or ComplaintSettings()
        self._alerts = alerts

    def sync(self) -> int:
        """Give each incident of a kind with a deadline its answer-by time (once)."""
        hours = self.settings.deadline_hours
        if not hours:
            return 0
        marks = ", ".join("?" for _ in hours)
        rows = list(self.db.query(
            f"SELECT i.incident_id, i.kind, i.opened_at FROM incidents i "  # noqa: S608
            f"LEFT JOIN incident_deadlines d USING (incident_id) "
            f"WHERE d.incident_id IS NULL AND i.kind IN ({marks})", list(hours)))
        if rows:
            with self.db.atomic():
                self.db.table("incident_deadlines").insert_all([{
                    "incident_id": r["incident_id"], "kind": r["kind"],
                    "opened_at": r["opened_at"], "answered_at": None, "answered_by": None,
                    "due_at": utc_iso(datetime.fromisoformat(r["opened_at"])
                                      + timedelta(hours=hours[r["kind"]]))} for r in rows])
        return len(rows)

    def callback(self, incident_id: str, *, by: str, outcome: str,
                 reached: bool = True) -> Deadline:
        """Record a call-back to whoever raised ``incident_id``; the first answers it."""
        for name, value in (("by", by), ("outcome", outcome)):
            if not value.strip():
                raise ComplaintError(f"{name}: must not be blank")
        self.sync()
        now = utc_iso(self._clock.now())
        with self.db.atomic():
            found = self.deadline(incident_id)
            state = self.db.execute("SELECT state FROM incidents WHERE incident_id = ?",
                                    [incident_id]).fetchone()
            if state is None or state[0] != "open":
                raise ComplaintError(f"incident {incident_id} is not open")
            self.db.table("incident_callbacks").insert({
                "incident_id": incident_id, "at": now, "by": by, "reached": int(reached),
                "outcome": outcome.strip()[:500]})
            if found.answered_at is None:
                self.db.table("incident_deadlines").update(
                    incident_id, {"answered_at": now, "answered_by": by})
            self._audit.record(actor=by, action="incident.callback",
                               subject=f"incident:{incident_id}", reason=outcome,
                               after={"reached": reached, "due_at": found.due_at,
                                      "late": now > found.due_at})
        if self._alerts is not None:
            self._alerts.resolve_key(f"overdue:{incident_id}", by, "called back")
        return self.deadline(incident_id)

    def check_overdue(self, now: datetime) -> list[str]:
        """Raise the alert of each open complaint past its time and unanswered; resolve it
        for those closed meanwhile. Returns the incidents overdue now."""
        self.sync()
        overdue = [dict(r) for r in self.db.query(
            "SELECT d.incident_id, d.kind, d.due_at, i.description FROM incident_deadlines d "
            "JOIN incidents i USING (incident_id) WHERE i.state = 'open' "
            "AND d.answered_at IS NULL AND d.due_at <= ? ORDER BY d.due_at", [utc_iso(now)])]
        if self._alerts is None:
            return [r["incident_id"] for r in overdue]
        for row in overdue:
            self._alerts.raise_alert(
                f"overdue:{row['incident_id']}", kind="complaint_overdue", severity="warning",
                title_zh=f"投诉超时未回复 {row['incident_id']}",
                title_en=f"Complaint not answered in time: {row['incident_id']}",
                detail=f"{row['kind']} due {row['due_at']}: {row['description']}"[:512],
                also_roles=("squad_leader",))
        for row in self.db.query(
                "SELECT a.key FROM alerts a WHERE a.kind = 'complaint_overdue' "
                "AND a.state <> 'resolved' AND NOT EXISTS (SELECT 1 FROM incidents i "
                "WHERE 'overdue:' || i.incident_id = a.key AND i.state = 'open')"):
            self._alerts.resolve_key(row["key"], "gateway", "incident closed")
        return [r["incident_id"] for r in overdue]

    def deadline(self, incident_id: str) -> Deadline:
        rows = list(self.db.query("SELECT * FROM incident_deadlines WHERE incident_id = ?",
                                  [incident_id]))
        if not rows:
            raise ComplaintError(f"incident {incident_id!r} has no answer-by time (its kind "
                                 "has no deadline, or it does not exist)")
        return _deadline(rows[0], self._callbacks(incident_id))

    def _callbacks(self, incident_id: str) -> tuple[Callback, ...]:
        return tuple(Callback(r["at"], r["by"], bool(r["reached"]), r["outcome"])
                     for r in self.db.query("SELECT * FROM incident_callbacks "
                                            "WHERE incident_id = ? ORDER BY id",
                                            [incident_id]))


def _deadline(row: dict[str, Any], callbacks: tuple[Callback, ...]) -> Deadline:
    return Deadline(incident_id=row["incident_id"], kind=row["kind"], due_at=row["due_at"],
                    answered_at=row["answered_at"], answered_by=row["answered_by"],
                    callbacks=callbacks)
