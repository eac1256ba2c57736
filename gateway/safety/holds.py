"""Holding a plate at the exit: after an accident the car must not leave before a guard has
seen it (the operations plan: secure the scene, stop the car leaving).

A guard or supervisor puts a hold on a plate with a reason, often from an incident. While it
is in force the exit refuses that plate with its own reason (``plate_held``, the display
says 请联系保安 / Please see a guard) and the guard on duty is alerted (``hold:{plate}``,
one alert while the hold lasts). Only lifting it, with a reason, lets the car go; the lift
resolves the alert. Both ends are audited (``plate.hold``, ``plate.hold_lift``) in the
transaction that writes the row.

Lanes learn holds with their replica: each hold is a ``hold`` list entry beside the white
and black lists (:meth:`HoldDesk.list_entries`, merged by
:class:`gateway.lanes.replicas.ReplicaPublisher`), so an exit deciding alone refuses the car
too (:func:`parkguard.core.access.exit_hold`). ``on_change`` is called after each committed
change (the gateway sends the lanes a ``list_changed`` delta from it).

``db`` is the gateway worker's connection (run through ``Gateway.call``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import sqlite_utils

from gateway.records.audit import AuditLog
from gateway.safety.alerts import AlertDesk
from parkguard.clock import Clock, utc_iso
from parkguard.core.access import ListEntry, require_plate
from parkguard.errors import ParkGuardError
from wire.contract.messages import Decision, LaneEvent

log = logging.getLogger(__name__)

__all__ = ["HELD_DISPLAY", "HELD_REASON", "Hold", "HoldDesk", "HoldError"]

HELD_REASON: Final = "plate_held"
"""The decision reason of an exit refused for a hold (``offline_plate_held`` from a lane
deciding alone)."""
HELD_DISPLAY: Final = ("请联系保安", "Please see a guard")
"""What the lane display shows a held car: nothing about why (the reason is for staff)."""


class HoldError(ParkGuardError, ValueError):
    """A hold was refused: no plate, no reason, a plate already held, or none to lift."""


@dataclass(frozen=True, slots=True)
class Hold:
    """One hold as stored; ``lifted_at`` is None while it is in force."""

    id: int
    plate: str
    reason: str
    incident_id: str | None
    held_by: str
    held_at: str
    lifted_at: str | None
    lifted_by: str | None
    lift_reason: str | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> Hold:
        return cls(**{name: row[name] for name in cls.__slots__})

    @property
    def in_force(self) -> bool:
        return self.lifted_at is None


class HoldDesk:
    """Puts and lifts holds on plates; says which plates are held."""

    def __init__(self, db: sqlite_utils.Database, *, clock: Clock, audit: AuditLog,
                 alerts: AlertDesk | None = None,
                 on_change: Callable[[], object] | None = None) -> None:
        """``alerts``: the desk that calls the guard (none: the refusal is only logged);
        ``on_change``: told after each committed hold or lift (the lanes' replicas)."""
        self.db = db
        self._clock = clock
        self._audit = audit
        self.alerts = alerts
        self.on_change = on_change

    def hold(self, plate: str, *, reason: str, actor: str,
             incident_id: str | None = None) -> Hold:
        """Hold ``plate`` at the exit. A plate already held is refused (lift it first)."""
        key = _plate(plate)
        _require("reason", reason)
        _require("actor", actor)
        if incident_id is not None and not self.db.execute(
                "SELECT 1 FROM incidents WHERE incident_id = ?", [incident_id]).fetchone():
            raise HoldError(f"incident_id: no incident {incident_id!r}")
        now = utc_iso(self._clock.now())
        with self.db.atomic():
            if self.held(key) is not None:
                raise HoldError(f"plate: {key} is already held at the exit")
            pk = self.db.table("plate_holds").insert({
                "plate": key, "reason": reason.strip()[:256], "incident_id": incident_id,
                "held_by": actor, "held_at": now, "lifted_at": None, "lifted_by": None,
                "lift_reason": None}).last_pk
            self._audit.record(actor=actor, action="plate.hold", subject=f"plate:{key}",
                               reason=reason, after={"incident_id": incident_id, "hold": pk})
        self._changed()
        return self._by_id(pk)

    def lift(self, plate: str, *, reason: str, actor: str) -> Hold:
        """Lift the hold on ``plate``: only with a reason, and only a hold in force."""
        key = _plate(plate)
        _require("reason", reason)
        _require("actor", actor)
        now = utc_iso(self._clock.now())
        with self.db.atomic():
            held = self.held(key)
            if held is None:
                raise HoldError(f"plate: {key} is not held")
            self.db.table("plate_holds").update(held.id, {
                "lifted_at": now, "lifted_by": actor, "lift_reason": reason.strip()[:256]})
            self._audit.record(actor=actor, action="plate.hold_lift", subject=f"plate:{key}",
                               reason=reason,
                               before={"reason": held.reason, "held_by": held.held_by,
                                       "incident_id": held.incident_id},
                               after={"lifted": True})
        self._changed()
        if self.alerts is not None:
            self.alerts.resolve_key(f"hold:{key}", actor, f"hold lifted: {reason}")
        return self._by_id(held.id)

    # --- calling the guard -----------------------------------------------------------------

    def call_guard(self, lane: str, plate: str, *, offline: bool = False) -> None:
        """A held car is at ``lane``: the guard on duty is alerted, once while the hold lasts
        (the key is the plate's), then up the ladder until someone acknowledges."""
        if self.alerts is None:
            log.warning("holds: held plate %s at %s and no alert roster to tell", plate, lane)
            return
        hold = self.held(plate)
        why = hold.reason if hold is not None else "held"
        self.alerts.raise_alert(
            f"hold:{plate}", kind="hold", severity="warning",
            title_zh=f"{lane} 扣留车辆 {plate} 请前往", title_en=f"Held car {plate} at {lane}: "
                                                              "please go",
            detail=f"{why}" + (" (the lane decided offline)" if offline else ""))

    def on_event(self, event: LaneEvent) -> None:
        """A lane that decided alone refused a held car: the guard is called when its
        journaled decision arrives."""
        if isinstance(event, Decision) and event.reason == f"offline_{HELD_REASON}" \
                and event.plate:
            key = _plate_or_none(event.plate)
            if key is not None:
                self.call_guard(event.lane, key, offline=True)

    # --- reading ---------------------------------------------------------------------------

    def held(self, plate: str) -> Hold | None:
        """The hold in force on ``plate`` (any spelling of it), or None."""
        try:
            key = require_plate("plate", plate)
        except ParkGuardError:
            return None
        rows = list(self.db.query(
            "SELECT * FROM plate_holds WHERE plate = ? AND lifted_at IS NULL", [key]))
        return Hold.of(rows[0]) if rows else None

    def active(self) -> list[Hold]:
        """Holds in force, oldest first."""
        return [Hold.of(r) for r in self.db.query(
            "SELECT * FROM plate_holds WHERE lifted_at IS NULL ORDER BY held_at, id")]

    def history(self, limit: int = 50) -> list[Hold]:
        """The latest holds, lifted ones too, newest first."""
        return [Hold.of(r) for r in self.db.query(
            "SELECT * FROM plate_holds ORDER BY held_at DESC, id DESC LIMIT ?", [limit])]

    def list_entries(self) -> list[ListEntry]:
        """The holds in force as ``hold`` list entries, for the lanes' replicas."""
        return [ListEntry("hold", hold.plate, hold.reason) for hold in self.active()]

    def _by_id(self, pk: object) -> Hold:
        return Hold.of(next(self.db.query("SELECT * FROM plate_holds WHERE id = ?", [pk])))

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


def _plate(plate: str) -> str:
    try:
        return require_plate("plate", plate)
    except ParkGuardError as error:
        raise HoldError(str(error)) from error


def _plate_or_none(plate: str) -> str | None:
    try:
        return require_plate("plate", plate)
    except ParkGuardError:
        return None


def _require(name: str, value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise HoldError(f"{name}: must not be blank")
