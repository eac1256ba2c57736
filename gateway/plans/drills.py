"""Fire drills: scheduled or unscheduled, started by a supervisor, marked as a drill end to
end, with a report of who acknowledged when.

A drill is never a fire: it does not touch the retained ``alarm/fire`` (which makes every
lane raise its barrier and the gateway stop billing), so a real fire during a drill is
handled exactly as any other. What marks it: its alerts are kind ``drill`` with 演习 DRILL
in every title, and every lane is sent a signed ``display`` order 消防演习 DRILL (audited,
reason naming the drill). Barriers stay as they are unless ``open_barriers`` is set, when
every lane gets a signed ``hold_open`` and a ``close`` at the end.

Each response team of the plan gets an alert of its own (``team``: its roster members on
duty are reached at the first step) whose title is the team's task, raised by
:func:`gateway.plans.teams.alert_teams` as a real fire's are; everyone on duty and the
managers get the drill's own alert at once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlite_utils

from gateway.plans.lanes import LaneOrders, every_lane
from gateway.plans.settings import DrillSettings
from gateway.plans.teams import alert_teams, drill_call
from gateway.records.audit import AuditLog
from gateway.safety.alerts import AlertDesk
from parkguard.clock import Clock, utc_iso
from parkguard.errors import ParkGuardError

log = logging.getLogger(__name__)

DRILL_DISPLAY = ("消防演习 DRILL", "FIRE DRILL – 演习")
DRILL_OVER_DISPLAY = ("演习结束", "Drill over")
MIN_NOTE = 4


class DrillError(ParkGuardError, ValueError):
    """A drill action was refused."""


@dataclass(frozen=True, slots=True)
class TeamAck:
    """One alert of a drill in the report: whom it was for and who acknowledged when."""

    team: str
    name: str
    alert_id: str
    raised_at: str
    acked_at: str | None
    acked_by: str | None
    seconds: float | None
    reached: str


@dataclass(frozen=True, slots=True)
class DrillReport:
    drill_id: str
    kind: str
    state: str
    started_at: str | None
    started_by: str
    ended_at: str | None
    note: str
    barriers: str
    acks: tuple[TeamAck, ...]
    evacuation_ack_s: float | None
    unanswered: tuple[str, ...]


class DrillDesk:
    """Schedules, starts and ends fire drills; reports on them."""

    def __init__(self, db: sqlite_utils.Database, *, clock: Clock, audit: AuditLog,
                 alerts: AlertDesk, settings: DrillSettings,
                 lanes: LaneOrders | None = None) -> None:
        self.db = db
        self._clock = clock
        self._audit = audit
        self._alerts = alerts
        self.settings = settings
        self._lanes = lanes

    def schedule(self, at: datetime, *, actor: str, note: str) -> str:
        """A drill to start by itself at ``at`` (the staff are not told beforehand)."""
        if at <= self._clock.now():
            raise DrillError("scheduled_for: a scheduled drill is in the future")
        return self._insert("scheduled", "scheduled", actor, note, scheduled_for=at)

    def start(self, *, actor: str, note: str) -> str:
        """An unscheduled drill, now."""
        drill_id = self._insert("unscheduled", "running", actor, note)
        self._begin(drill_id)
        return drill_id

    def tick(self, now: datetime | None = None) -> list[str]:
        """Start every scheduled drill that is due; returns their ids."""
        now = now or self._clock.now()
        due = [r["drill_id"] for r in self.db.query(
            "SELECT drill_id FROM drills WHERE state = 'scheduled' AND scheduled_for <= ?",
            [utc_iso(now)])]
        for drill_id in due:
            with self.db.atomic():
                self.db.execute("UPDATE drills SET state = 'running' WHERE drill_id = ?",
                                [drill_id])
            self._begin(drill_id)
        return due

    def _insert(self, kind: Literal["scheduled", "unscheduled"], state: str, actor: str,
                note: str, *, scheduled_for: datetime | None = None) -> str:
        if len(note.strip()) < MIN_NOTE:
            raise DrillError(f"note: say what the drill is (at least {MIN_NOTE} characters)")
        if state == "running" and self.running() is not None:
            raise DrillError("a drill is running already: end it first")
        with self.db.atomic():
            pk = self.db.table("drills").insert({
                "drill_id": "pending", "kind": kind, "state": state,
                "scheduled_for": utc_iso(scheduled_for) if scheduled_for else None,
                "started_at": None, "started_by": actor[:64], "note": note.strip()[:200],
                "barriers": "open" if self.settings.open_barriers else "unchanged",
                "alerts": "{}"}).last_pk or 0
            drill_id = f"d-{int(str(pk)):06d}"
            self.db.table("drills").update(pk, {"drill_id": drill_id})
            action = "drill.schedule" if scheduled_for else "drill.start"
            self._audit.record(actor=actor, action=action,
                               subject=f"drill:{drill_id}", reason=note.strip(),
                               after={"kind": kind, "scheduled_for": utc_iso(scheduled_for)
                                      if scheduled_for else None,
                                      "open_barriers": self.settings.open_barriers})
        return drill_id

    def _begin(self, drill_id: str) -> None:
        now = self._clock.now()
        row = self._row(drill_id)
        alerts: dict[str, str] = {}
        view, _new = self._alerts.raise_alert(
            f"drill:{drill_id}", kind="drill", severity="warning",
            title_zh="【演习 DRILL】消防演习 请按预案行动",
            title_en="DRILL: fire drill, act by the fire plan",
            detail=f"drill {drill_id} ({row['kind']}): {row['note']}. This is a drill, not "
                   "a fire: do not call 119.", all_at_once=True)
        alerts["all"] = view.alert_id
        alerts.update(alert_teams(self._alerts, self.settings.teams, drill_call(drill_id)))
        with self.db.atomic():
            self.db.table("drills").update(row["id"], {
                "started_at": utc_iso(now), "alerts": json.dumps(alerts)})
        reason = f"fire drill {drill_id}"
        every_lane(self._lanes, "display", actor="gateway:drill", reason=reason,
                   text=DRILL_DISPLAY)
        if self.settings.open_barriers:
            every_lane(self._lanes, "hold_open", actor="gateway:drill", reason=reason)
        log.warning("plans: fire drill %s started", drill_id)

    def end(self, drill_id: str, *, actor: str) -> DrillReport:
        row = self._row(drill_id)
        if row["state"] != "running":
            raise DrillError(f"drill {drill_id} is not running")
        now = self._clock.now()
        for alert_id in json.loads(row["alerts"]).values():
            if self._alerts.view(alert_id).state != "resolved":
                self._alerts.resolve(alert_id, actor, f"drill {drill_id} over")
        with self.db.atomic():
            self.db.table("drills").update(row["id"], {
                "state": "over", "ended_at": utc_iso(now), "ended_by": actor[:64]})
            report = self.report(drill_id)
            self._audit.record(actor=actor, action="drill.end", subject=f"drill:{drill_id}",
                               reason="drill over",
                               after={"evacuation_ack_s": report.evacuation_ack_s,
                                      "unanswered": list(report.unanswered)})
        reason = f"fire drill {drill_id} over"
        if row["barriers"] == "open":
            every_lane(self._lanes, "close", actor="gateway:drill", reason=reason)
        every_lane(self._lanes, "display", actor="gateway:drill", reason=reason,
                   text=DRILL_OVER_DISPLAY)
        return report

    # reading ------------------------------------------------------------------------------

    def running(self) -> str | None:
        row = self.db.execute("SELECT drill_id FROM drills WHERE state = 'running' "
                              "ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else str(row[0])

    def drills(self, limit: int = 20) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM drills ORDER BY id DESC LIMIT ?", [limit]))

    def report(self, drill_id: str) -> DrillReport:
        """Who each alert reached, who acknowledged it when, and how long that took."""
        row = self._row(drill_id)
        names = {t.team: f"{t.name_zh} {t.name_en}" for t in self.settings.teams}
        names["all"] = "全员 Everyone on duty"
        acks: list[TeamAck] = []
        for team, alert_id in json.loads(row["alerts"]).items():
            view = self._alerts.view(alert_id)
            seconds = None if view.acked_at is None else (
                datetime.fromisoformat(view.acked_at)
                - datetime.fromisoformat(view.raised_at)).total_seconds()
            reached = "; ".join(e["detail"] for e in self._alerts.events(alert_id)
                                if e["event"] == "escalated")
            acks.append(TeamAck(team, names.get(team, team), alert_id, view.raised_at,
                                view.acked_at, view.acked_by, seconds, reached))
        evacuation = next((a.seconds for a in acks if a.team == self.settings.evacuation_team),
                          None)
        return DrillReport(
            drill_id, row["kind"], row["state"], row["started_at"], row["started_by"],
            row["ended_at"], row["note"], row["barriers"], tuple(acks), evacuation,
            tuple(a.name for a in acks if a.acked_at is None))

    def _row(self, drill_id: str) -> dict[str, Any]:
        rows = list(self.db.query("SELECT * FROM drills WHERE drill_id = ?", [drill_id]))
        if not rows:
            raise DrillError(f"no drill {drill_id!r}")
        return rows[0]
