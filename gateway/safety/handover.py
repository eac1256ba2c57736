"""The shift handover log (认真做好交接班手续): what the outgoing guard hands over, and who took
it.

The outgoing guard starts a handover: the desk gathers what is open — incidents, unresolved
alarms and alerts, lane faults (``lane_fault`` and ``lane_offline`` alerts), plates held at
the exit — and the guard types in what no system knows: the keys handed over and the cash
in the booth. The incoming guard accepts it under their own login (never the outgoing
guard's). Both are audited (``handover.start``, ``handover.accept``) in the transaction
that writes the row.

A handover nobody accepted is not lost: when the next one is started, the typed items of
the one still waiting carry over into it (the open items are gathered afresh anyway), and
the old one is marked ``superseded`` with the new one naming it (``carried_from``). At most
one handover waits at a time; the dashboard shows a banner while one does.

Shift names come from the alert roster (``AlertSettings.shift_at``) when the gateway has
one. With a roster the desk also watches each shift change (:mod:`gateway.safety.shift_change`):
:meth:`HandoverDesk.shift_change` says whether a handover is due (the dashboard's
交接班时间 banner), :meth:`HandoverDesk.tick` raises ``handover:{boundary}`` when one is
late, and accepting a handover resolves it. ``db`` is the gateway worker's connection (run
through ``Gateway.call``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, TypeAlias

import sqlite_utils

from gateway.records.audit import AuditLog
from gateway.safety.alerts import AlertDesk, AlertSettings
from gateway.safety.shift_change import (
    ALERT_KIND,
    KEY_PREFIX,
    HandoverSettings,
    ShiftChange,
    shift_change,
)
from parkguard.clock import Clock, utc_iso
from parkguard.errors import ParkGuardError

__all__ = ["ITEM_KINDS", "Handover", "HandoverDesk", "HandoverError", "Item", "ItemKind"]

ItemKind: TypeAlias = Literal["incident", "alarm", "fault", "hold", "key", "cash", "note"]
ITEM_KINDS: Final[dict[str, str]] = {
    "incident": "事件 incident", "alarm": "告警 alarm", "fault": "故障 fault",
    "hold": "扣留车辆 held plate", "key": "钥匙 key", "cash": "现金 cash", "note": "其他 note",
}
TYPED: Final = frozenset({"key", "cash", "note"})
"""Items a person types in (carried over when a handover is not accepted)."""
_FAULT_KINDS: Final = ("lane_fault", "lane_offline")
_MAX_TEXT: Final = 200
_MAX_ITEMS: Final = 50


class HandoverError(ParkGuardError, ValueError):
    """A handover action was refused: blank or too many items, a negative sum, nothing
    waiting, or the outgoing guard accepting their own handover."""


@dataclass(frozen=True, slots=True)
class Item:
    """One thing handed over: gathered (``ref`` names the incident, alert or hold) or typed
    in (a key, cash with its sum in fen, a note)."""

    kind: ItemKind
    text: str
    ref: str | None = None
    amount_fen: int | None = None

    @property
    def label(self) -> str:
        return ITEM_KINDS[self.kind]


@dataclass(frozen=True, slots=True)
class Handover:
    """One handover with its items; times UTC ISO text."""

    handover_id: str
    from_shift: str | None
    to_shift: str | None
    outgoing: str
    created_at: str
    note: str
    state: Literal["waiting", "accepted", "superseded"]
    accepted_by: str | None
    accepted_at: str | None
    carried_from: str | None
    items: tuple[Item, ...]

    @property
    def cash_fen(self) -> int:
        return sum(i.amount_fen or 0 for i in self.items if i.kind == "cash")


class HandoverDesk:
    """Starts and accepts handovers; gathers the open items."""

    def __init__(self, db: sqlite_utils.Database, *, clock: Clock, audit: AuditLog,
                 shift_at: Callable[[datetime], str] | None = None,
                 roster: AlertSettings | None = None,
                 settings: HandoverSettings | None = None,
                 alerts: AlertDesk | None = None) -> None:
        """``roster``: the alert roster, whose shifts name handovers and whose shift starts
        are watched (none: no shift names, no banner, no alert unless ``shift_at`` names
        them); ``alerts``: where a late handover is raised."""
        self.db = db
        self._clock = clock
        self._audit = audit
        self._shift_at = shift_at if shift_at is not None or roster is None \
            else roster.shift_at
        self.roster = roster
        self.settings = settings or HandoverSettings()
        self._alerts = alerts
        self.watch_from = clock.now()
        """Boundaries before this are judged only once the database holds a handover."""

    # --- gathering -------------------------------------------------------------------------

    def open_items(self) -> list[Item]:
        """What is open now: incidents, alerts (faults apart), holds; oldest first."""
        items = [Item("incident", f"{r['kind']}: {r['description']}"[:_MAX_TEXT],
                      ref=r["incident_id"])
                 for r in self.db.query("SELECT incident_id, kind, description FROM incidents "
                                        "WHERE state = 'open' ORDER BY opened_at")]
        if self.db["alerts"].exists():
            for r in self.db.query("SELECT alert_id, kind, title_zh, title_en, state "
                                   "FROM alerts WHERE state <> 'resolved' AND kind <> ? "
                                   "ORDER BY id", [ALERT_KIND]):
                kind: ItemKind = "fault" if r["kind"] in _FAULT_KINDS else "alarm"
                items.append(Item(kind, f"{r['title_zh']} / {r['title_en']} ({r['state']})"
                                  [:_MAX_TEXT], ref=r["alert_id"]))
        items += [Item("hold", f"{r['plate']}: {r['reason']}"[:_MAX_TEXT], ref=r["plate"])
                  for r in self.db.query("SELECT plate, reason FROM plate_holds "
                                         "WHERE lifted_at IS NULL ORDER BY held_at")]
        return items

    # --- writing ---------------------------------------------------------------------------

    def start(self, outgoing: str, *, keys: Iterable[str] = (),
              cash: Iterable[tuple[str, int]] = (), note: str = "") -> Handover:
        """The outgoing guard hands over: open items gathered now, ``keys`` (one text each)
        and ``cash`` ((what, fen) each) typed in. A handover still waiting is superseded and
        its typed items carried over."""
        _require("outgoing", outgoing)
        typed = [Item("key", _text("key", k)) for k in keys if k.strip()]
        for what, fen in cash:
            if isinstance(fen, bool) or not isinstance(fen, int) or not 0 <= fen <= 10**9:
                raise HandoverError(f"cash: a sum is 0..10^9 fen, got {fen!r}")
            typed.append(Item("cash", _text("cash", what or "现金 cash"), amount_fen=fen))
        now = self._clock.now()
        handover_id = f"ho-{uuid.uuid4().hex[:12]}"
        with self.db.atomic():
            waiting = self.waiting()
            carried = [i for i in waiting.items if i.kind in TYPED] if waiting else []
            items = [*self.open_items(), *carried, *typed]
            if note.strip():
                items.append(Item("note", _text("note", note)))
            if len(items) > _MAX_ITEMS * 4:
                raise HandoverError(f"items: at most {_MAX_ITEMS * 4} in one handover")
            if waiting is not None:
                self.db.table("handovers").update(waiting.handover_id, {"state": "superseded"})
            self.db.table("handovers").insert({
                "handover_id": handover_id, "outgoing": outgoing, "created_at": utc_iso(now),
                "from_shift": self._shift(now), "to_shift": None, "note": note.strip()[:500],
                "state": "waiting", "accepted_by": None, "accepted_at": None,
                "carried_from": waiting.handover_id if waiting else None})
            self.db.table("handover_items").insert_all(
                [{"handover_id": handover_id, "kind": i.kind, "ref": i.ref, "text": i.text,
                  "amount_fen": i.amount_fen} for i in items])
            self._audit.record(
                actor=outgoing, action="handover.start", subject=f"handover:{handover_id}",
                reason=note.strip() or "shift handover",
                after={"items": _counts(items), "cash_fen": sum(i.amount_fen or 0
                                                                for i in items),
                       "carried_from": waiting.handover_id if waiting else None})
        return self.handover(handover_id)

    def accept(self, handover_id: str, incoming: str) -> Handover:
        """The incoming guard takes the handover over, under their own login."""
        _require("incoming", incoming)
        now = self._clock.now()
        with self.db.atomic():
            found = self.handover(handover_id)
            if found.state != "waiting":
                raise HandoverError(f"handover {handover_id} is {found.state}, not waiting")
            if _person(incoming) == _person(found.outgoing):
                raise HandoverError("incoming: the outgoing guard cannot accept their own "
                                    "handover; the incoming guard logs in")
            self.db.table("handovers").update(handover_id, {
                "state": "accepted", "accepted_by": incoming, "accepted_at": utc_iso(now),
                "to_shift": self._shift(now)})
            self._audit.record(
                actor=incoming, action="handover.accept", subject=f"handover:{handover_id}",
                reason=f"accepted from {found.outgoing}",
                before={"state": "waiting"},
                after={"state": "accepted", "items": _counts(found.items),
                       "cash_fen": found.cash_fen})
        self._resolve_late(incoming, f"handover {handover_id} accepted")
        return self.handover(handover_id)

    # --- the shift change ------------------------------------------------------------------

    def shift_change(self, now: datetime | None = None, *,
                     db: sqlite_utils.Database | None = None) -> ShiftChange | None:
        """The latest shift boundary and its handover (None without a roster, or for a
        boundary before the desk started on a database with no handover). ``db``: a reader
        of the same file (the dashboard's), else the worker's connection."""
        if self.roster is None:
            return None
        return shift_change(db if db is not None else self.db, self.roster, self.settings,
                            now if now is not None else self._clock.now(),
                            watch_from=self.watch_from)

    def tick(self, now: datetime) -> ShiftChange | None:
        """On the gateway's tick: raise ``handover:{boundary}`` once the latest boundary is
        late (no handover started, or not accepted, ``alert_after_min`` after it), resolve
        what an accepted handover answered. Nothing while the alert is off."""
        if self._alerts is None or not self.settings.alert_after_min:
            return None
        change = self.shift_change(now)
        if change is None or self.roster is None:
            return None
        if change.state == "accepted":
            self._resolve_late("gateway", f"handover {change.handover_id} accepted")
        elif change.overdue(now):
            b = change.boundary
            at = b.at.astimezone(self.roster.zone()).strftime("%H:%M")
            detail = (f"{b.from_shift} → {b.to_shift} at {at}: no handover started"
                      if change.state == "due" else
                      f"{b.from_shift} → {b.to_shift} at {at}: handover {change.handover_id} "
                      f"by {change.outgoing} not accepted")
            self._alerts.raise_alert(
                change.key, kind=ALERT_KIND, severity="warning",
                title_zh=f"交接班未完成 {b.from_shift}→{b.to_shift} {at}",
                title_en=f"Shift handover not done: {b.from_shift} → {b.to_shift} at {at}",
                detail=detail, also_roles=("squad_leader",))
        return change

    def _resolve_late(self, by: str, reason: str) -> None:
        """An accepted handover ends every late-handover alert still open."""
        if self._alerts is None or not self.db["alerts"].exists():
            return
        for row in list(self.db.query("SELECT key FROM alerts WHERE kind = ? "
                                      "AND state <> 'resolved'", [ALERT_KIND])):
            if str(row["key"]).startswith(KEY_PREFIX):
                self._alerts.resolve_key(row["key"], by, reason)

    # --- reading ---------------------------------------------------------------------------

    def waiting(self) -> Handover | None:
        rows = list(self.db.query("SELECT handover_id FROM handovers WHERE state = 'waiting' "
                                  "ORDER BY created_at DESC LIMIT 1"))
        return self.handover(rows[0]["handover_id"]) if rows else None

    def handover(self, handover_id: str) -> Handover:
        rows = list(self.db.query("SELECT * FROM handovers WHERE handover_id = ?",
                                  [handover_id]))
        if not rows:
            raise HandoverError(f"no handover {handover_id!r}")
        return _handover(rows[0], self._items(handover_id))

    def recent(self, limit: int = 20) -> list[Handover]:
        return [_handover(r, self._items(r["handover_id"])) for r in self.db.query(
            "SELECT * FROM handovers ORDER BY created_at DESC LIMIT ?", [limit])]

    def _items(self, handover_id: str) -> tuple[Item, ...]:
        return tuple(Item(r["kind"], r["text"], r["ref"], r["amount_fen"]) for r in self.db.query(
            "SELECT * FROM handover_items WHERE handover_id = ? ORDER BY id", [handover_id]))

    def _shift(self, now: datetime) -> str | None:
        return self._shift_at(now) if self._shift_at is not None else None


def _handover(row: dict[str, Any], items: Sequence[Item]) -> Handover:
    return Handover(
        handover_id=row["handover_id"], from_shift=row["from_shift"],
        to_shift=row["to_shift"], outgoing=row["outgoing"], created_at=row["created_at"],
        note=row["note"] or "", state=row["state"], accepted_by=row["accepted_by"],
        accepted_at=row["accepted_at"], carried_from=row["carried_from"], items=tuple(items))


def _counts(items: Iterable[Item]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item.kind] = counts.get(item.kind, 0) + 1
    return counts


def _person(actor: str) -> str:
    """``guard:gina`` and ``staff:gina`` are the same person."""
    return actor.split(":", 1)[-1].strip().lower()


def _require(name: str, value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise HandoverError(f"{name}: must not be blank")


def _text(name: str, value: str) -> str:
    _require(name, value)
    if len(value.strip()) > _MAX_TEXT:
        raise HandoverError(f"{name}: at most {_MAX_TEXT} characters")
    return value.strip()
