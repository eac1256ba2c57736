"""The fire equipment register: every extinguisher and hydrant of the fire plan, each checked
once a calendar month (site-local) by a patrol tap at its checkpoint or on the dashboard,
with an alert to the facilities team from ``alert_from_day`` while items are unchecked.

Why the month and not "30 days since the last check": the plan (and the inspector) asks
"was every item checked this month", and a register read by month answers that directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

import sqlite_utils

from gateway.plans.settings import EquipmentItem, EquipmentSettings
from gateway.records.audit import AuditLog
from gateway.safety.alerts import AlertDesk
from parkguard.clock import Clock, utc_iso
from parkguard.errors import ParkGuardError

log = logging.getLogger(__name__)

KIND_WORDS = {"extinguisher": "4kg ABC 干粉灭火器 extinguisher", "hydrant": "室内消火栓 hydrant"}


class EquipmentError(ParkGuardError, ValueError):
    """An equipment check was refused."""


@dataclass(frozen=True, slots=True)
class ItemMonth:
    """One item in one month: its last check, if any."""

    item: EquipmentItem
    checked_at: str | None
    checked_by: str | None
    via: str | None
    result: str | None


@dataclass(frozen=True, slots=True)
class MonthSummary:
    month: str
    items: tuple[ItemMonth, ...]

    def count(self, kind: str) -> tuple[int, int]:
        """(checked, total) of ``kind`` this month."""
        mine = [i for i in self.items if i.item.kind == kind]
        return sum(1 for i in mine if i.checked_at), len(mine)

    @property
    def unchecked(self) -> tuple[str, ...]:
        return tuple(i.item.id for i in self.items if i.checked_at is None)

    @property
    def faults(self) -> tuple[str, ...]:
        return tuple(i.item.id for i in self.items if i.result == "fault")


class EquipmentDesk:
    """Monthly checks of the fire equipment."""

    def __init__(self, db: sqlite_utils.Database, *, clock: Clock, audit: AuditLog,
                 alerts: AlertDesk | None, settings: EquipmentSettings, zone: ZoneInfo) -> None:
        self.db = db
        self._clock = clock
        self._audit = audit
        self._alerts = alerts
        self.settings = settings
        self._zone = zone
        self._items = {i.id: i for i in settings.register()}
        self._by_checkpoint = {i.checkpoint: i for i in self._items.values() if i.checkpoint}

    def month_of(self, moment: datetime) -> str:
        return moment.astimezone(self._zone).strftime("%Y-%m")

    def check(self, item: str, *, actor: str, via: Literal["page", "tap"] = "page",
              result: Literal["ok", "fault"] = "ok", note: str = "",
              at: datetime | None = None) -> None:
        """Record one check (a fault is audited with its note and alerts the team)."""
        found = self._items.get(item)
        if found is None:
            raise EquipmentError(f"item: no {item!r} on the equipment register")
        if result == "fault" and len(note.strip()) < 4:
            raise EquipmentError("note: say what is wrong (at least 4 characters)")
        moment = at or self._clock.now()
        month = self.month_of(moment)
        with self.db.atomic():
            self.db.table("equipment_checks").insert({
                "item": item, "month": month, "checked_at": utc_iso(moment),
                "checked_by": actor[:64], "via": via, "result": result,
                "note": note.strip()[:200]})
            if result == "fault":
                self._audit.record(actor=actor, action="equipment.fault",
                                   subject=f"equipment:{item}", reason=note.strip(),
                                   after={"kind": found.kind, "place": found.place,
                                          "month": month})
        if result == "fault" and self._alerts is not None:
            self._alerts.raise_alert(
                f"equipment-fault:{item}", kind="equipment", severity="warning",
                title_zh=f"消防器材故障 {item}", title_en=f"Fire equipment fault: {item}",
                detail=f"{KIND_WORDS[found.kind]} {found.place}: {note.strip()}",
                team=self.settings.team)

    def on_checkpoint_tap(self, checkpoint: str, person: str, at: datetime) -> None:
        """An accepted patrol tap (PatrolDesk listener): the item at that checkpoint is
        checked for the month of the tap."""
        item = self._by_checkpoint.get(checkpoint)
        if item is not None:
            self.check(item.id, actor=f"staff:{person}", via="tap", at=at)

    def summary(self, month: str | None = None) -> MonthSummary:
        month = month or self.month_of(self._clock.now())
        last: dict[str, dict[str, str]] = {
            r["item"]: r for r in self.db.query(
                "SELECT * FROM equipment_checks WHERE month = ? ORDER BY id", [month])}
        return MonthSummary(month, tuple(
            ItemMonth(i, *(last[i.id][k] for k in ("checked_at", "checked_by", "via",
                                                    "result")))
            if i.id in last else ItemMonth(i, None, None, None, None)
            for i in self._items.values()))

    def tick(self, now: datetime) -> None:
        """From ``alert_from_day``: one alert a month while items are unchecked; it resolves
        itself once every item is checked."""
        if self._alerts is None:
            return
        summary = self.summary(self.month_of(now))
        key = f"equipment:{summary.month}"
        if not summary.unchecked:
            if self._alerts.open_alert(key) is not None:
                self._alerts.resolve_key(key, "gateway", "every item checked this month")
            return
        if now.astimezone(self._zone).day < self.settings.alert_from_day:
            return
        ext, hyd = summary.count("extinguisher"), summary.count("hydrant")
        self._alerts.raise_alert(
            key, kind="equipment", severity="warning",
            title_zh=f"本月消防器材未检完 {summary.month}",
            title_en=f"Fire equipment checks due this month {summary.month}",
            detail=f"extinguishers {ext[0]}/{ext[1]}, hydrants {hyd[0]}/{hyd[1]}; unchecked: "
                   + ", ".join(summary.unchecked[:20])
                   + (" …" if len(summary.unchecked) > 20 else ""),
            team=self.settings.team)
