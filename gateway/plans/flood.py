"""The flood plan: a supervisor's "heavy rain" switch starts the readiness checklist (team
leaders report in, pumps, shovels, sandbags, duty phones: items from the config), each
item checked on the dashboard or by a patrol tap at its checkpoint, shown until every item
is done; and when the water reaches level 3, "leave now" on every lane display.

"Leaders report in" (the item ``leaders``) is one item per leader when the roster names
them: each person on the flood team whose role is one of ``leader_roles``.

Level 3 on the lanes: the retained ``alarm/flood`` carries ``level`` 3 (the alarm monitor
writes it), and each lane holds 水浸 请立即驶离 on its display from it, between cars, over
each car's words, across a restart, until the level drops (firmware/lane/alarms.py). The
signed, audited ``display`` order sent here once at level 3 is for lanes whose firmware
predates the ``level`` field (they refuse a message that has it). Owners of cars inside who
agreed to be reached are texted to move their cars (through the contact register) when the
water reaches level 2, and to leave at level 3.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlite_utils

from gateway.contacts import ContactRegister
from gateway.plans.lanes import LaneOrders, every_lane
from gateway.plans.settings import ChecklistItem, FloodPlanSettings
from gateway.records.audit import AuditLog
from gateway.safety.alarms import FLOOD_EVACUATE_DISPLAY, AlarmChange
from gateway.safety.alerts import AlertDesk
from parkguard.clock import Clock, utc_iso
from parkguard.errors import ParkGuardError

log = logging.getLogger(__name__)

MOVE_YOUR_CAR = ("【停车场防汛通知】地下停车场水位上涨，请尽快将您的车辆驶离。"
                 "Flood warning: water is rising in the car park, please move your car out now.")
LEAVE_NOW = ("【停车场防汛通知】地下停车场水浸，请立即撤离，勿再进入取车。"
             "Flood: leave the car park now, do not go back for your car.")
MIN_NOTE = 4


class FloodPlanError(ParkGuardError, ValueError):
    """A flood-plan action was refused."""


@dataclass(frozen=True, slots=True)
class ItemState:
    item: ChecklistItem
    checked_at: str | None
    checked_by: str | None
    via: str | None


@dataclass(frozen=True, slots=True)
class Readiness:
    """A heavy-rain readiness run as the dashboard shows it."""

    run_id: str
    state: str
    started_at: str
    started_by: str
    note: str
    items: tuple[ItemState, ...]

    @property
    def remaining(self) -> int:
        return sum(1 for i in self.items if i.checked_at is None)


class FloodPlanDesk:
    """Heavy-rain readiness and the level-3 lane displays."""

    def __init__(self, db: sqlite_utils.Database, *, clock: Clock, audit: AuditLog,
                 alerts: AlertDesk, settings: FloodPlanSettings,
                 lanes: LaneOrders | None = None, contacts: ContactRegister | None = None
                 ) -> None:
        self.db = db
        self._clock = clock
        self._audit = audit
        self._alerts = alerts
        self.settings = settings
        self._lanes = lanes
        self._contacts = contacts
        self.checklist = settings.items_with_leaders(
            (p.id, p.name) for p in alerts.settings.people
            if settings.team in p.teams and p.role in settings.leader_roles)
        self._items = {c.item: c for c in self.checklist}
        self._by_checkpoint = {c.checkpoint: c for c in self.checklist if c.checkpoint}
        self._level = 0

    # heavy rain ---------------------------------------------------------------------------

    def heavy_rain(self, *, actor: str, note: str) -> str:
        """The supervisor's switch: a readiness run and an alert to the flood team."""
        if len(note.strip()) < MIN_NOTE:
            raise FloodPlanError(f"note: say what is forecast (at least {MIN_NOTE} characters)")
        if self.current() is not None:
            raise FloodPlanError("a heavy-rain readiness checklist is open already")
        now = self._clock.now()
        with self.db.atomic():
            pk = self.db.table("flood_readiness").insert({
                "run_id": "pending", "state": "open", "started_at": utc_iso(now),
                "started_by": actor[:64], "note": note.strip()[:200]}).last_pk or 0
            run_id = f"r-{int(str(pk)):06d}"
            self.db.table("flood_readiness").update(pk, {"run_id": run_id})
            self._audit.record(actor=actor, action="flood.heavy_rain",
                               subject=f"readiness:{run_id}", reason=note.strip(),
                               after={"items": list(self._items)})
        items = "; ".join(f"{c.zh} {c.en}" for c in self.checklist)
        view, _new = self._alerts.raise_alert(
            f"heavy-rain:{run_id}", kind="heavy_rain", severity="warning",
            title_zh="暴雨预警 启动防汛准备", title_en="Heavy rain: flood readiness checklist",
            detail=f"{note.strip()} — {items}", team=self.settings.team)
        with self.db.atomic():
            self.db.table("flood_readiness").update(pk, {"alert_id": view.alert_id})
        return run_id

    def check(self, item: str, *, actor: str, via: Literal["page", "tap"] = "page") -> bool:
        """Tick one item of the open checklist; says whether that completed it."""
        if item not in self._items:
            raise FloodPlanError(f"item: unknown checklist item {item!r}")
        run = self.current()
        if run is None:
            raise FloodPlanError("no heavy-rain checklist is open")
        now = self._clock.now()
        with self.db.atomic():
            done = self.db.execute("SELECT 1 FROM flood_checks WHERE run_id = ? AND item = ?",
                                   [run.run_id, item]).fetchone()
            if done is None:
                self.db.table("flood_checks").insert({
                    "run_id": run.run_id, "item": item, "checked_at": utc_iso(now),
                    "checked_by": actor[:64], "via": via})
                self._audit.record(actor=actor, action="flood.check",
                                   subject=f"readiness:{run.run_id}",
                                   reason=f"checked {item} via {via}",
                                   after={"item": item, "via": via})
        after = self.current()
        if after is not None and after.remaining == 0:
            self._complete(after, actor)
            return True
        return False

    def on_checkpoint_tap(self, checkpoint: str, person: str, _at: datetime) -> None:
        """An accepted patrol tap (PatrolDesk listener): checks the item at that checkpoint
        while a checklist is open."""
        item = self._by_checkpoint.get(checkpoint)
        if item is None or self.current() is None:
            return
        self.check(item.item, actor=f"staff:{person}", via="tap")

    def _complete(self, run: Readiness, actor: str) -> None:
        now = self._clock.now()
        row = self.db.execute("SELECT id, alert_id FROM flood_readiness WHERE run_id = ?",
                              [run.run_id]).fetchone()
        with self.db.atomic():
            self.db.table("flood_readiness").update(row[0], {
                "state": "complete", "completed_at": utc_iso(now)})
            self._audit.record(actor=actor, action="flood.ready",
                               subject=f"readiness:{run.run_id}",
                               reason="every readiness item checked",
                               after={"checked": [i.item.item for i in run.items]})
        if row[1] and self._alerts.view(str(row[1])).state != "resolved":
            self._alerts.resolve(str(row[1]), actor, "flood readiness checklist complete")

    def current(self) -> Readiness | None:
        row = self.db.execute("SELECT run_id FROM flood_readiness WHERE state = 'open' "
                              "ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else self.readiness(str(row[0]))

    def readiness(self, run_id: str) -> Readiness:
        rows = list(self.db.query("SELECT * FROM flood_readiness WHERE run_id = ?", [run_id]))
        if not rows:
            raise FloodPlanError(f"no readiness run {run_id!r}")
        run = rows[0]
        checks: dict[str, dict[str, Any]] = {
            r["item"]: r for r in self.db.query(
                "SELECT * FROM flood_checks WHERE run_id = ?", [run_id])}
        items = tuple(ItemState(c, checks[c.item]["checked_at"], checks[c.item]["checked_by"],
                                checks[c.item]["via"]) if c.item in checks
                      else ItemState(c, None, None, None) for c in self.checklist)
        return Readiness(run["run_id"], run["state"], run["started_at"], run["started_by"],
                         run["note"], items)

    # the water ----------------------------------------------------------------------------

    def on_alarm(self, change: AlarmChange) -> None:
        """AlarmMonitor listener: owners told at 2 and 3; at 3 a ``display`` order to every
        lane, for lane firmware that cannot read ``level`` (newer lanes hold it from the
        retained ``alarm/flood`` by themselves)."""
        if change.kind != "flood":
            return
        before, self._level = self._level, change.level
        if change.level >= 3 > before:
            every_lane(self._lanes, "display", actor="gateway:flood",
                       reason="flood level 3: evacuate", text=FLOOD_EVACUATE_DISPLAY)
        if self._contacts is None:
            return
        if change.level >= 2 > before:
            self._contacts.tell_inside("flood:2", MOVE_YOUR_CAR, actor="gateway:flood")
        if change.level >= 3 > before:
            self._contacts.tell_inside("flood:3", LEAVE_NOW, actor="gateway:flood")
