"""Offline decisions that do not add up, kept for a person to review instead of merged silently.

A lane cut off from the gateway decides alone from its replica and journals what it did;
when its events arrive the gateway books them (``gateway/runtime/sessions.py``). Most fit: the car
was inside and left, or came in and is now inside. Three do not, and guessing would
either lose money or invent it, so each becomes a **conflict** (table ``conflicts``):

- ``exit_without_entry`` — a car let out whose entry was never seen: no session to close
  (an entry lane that lost its journal, a tailgater that came in behind another car, a
  plate read differently at each end).
- ``double_exit`` — a session already closed is closed again by another passage: two lanes
  let the same car (or two cars with the same plate) out while they could not compare notes.
- ``entry_while_inside`` — a lane alone let in a plate the gateway has inside already: a
  missed exit, a cloned plate, or the same car counted twice.

The rules are pure functions (:func:`judge_exit`, :func:`judge_entry`) over the facts the
gateway already has; :class:`Reconciler` records what they find, once per lane event, and
:meth:`Reconciler.resolve` closes a conflict with who and why, in the hash-chained audit log
and in the same transaction.

>>> judge_exit(lane="out2", plate="粤B12345", event_id="out2-7", session=None).kind
'exit_without_entry'
>>> closed = {"session_id": "s-1", "state": "closed", "exit_lane": "out1",
...           "exit_at": "2026-05-01T03:00:00.000Z", "exit_event_id": "out1-3"}
>>> judge_exit(lane="out2", plate="粤B12345", event_id="out2-7", session=closed).kind
'double_exit'
>>> judge_exit(lane="out1", plate="粤B12345", event_id="out1-3", session=closed) is None
True
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal, TypeAlias

import sqlite_utils

from gateway.records.audit import AuditLog
from parkguard.clock import Clock, utc_iso
from parkguard.errors import ParkGuardError
from wire.contract.messages import Passed

__all__ = [
    "DOUBLE_EXIT_WINDOW",
    "Conflict",
    "ConflictKind",
    "ConflictResolvedError",
    "Finding",
    "ReconcileError",
    "Reconciler",
    "UnknownConflictError",
    "judge_entry",
    "judge_exit",
]

_log = logging.getLogger(__name__)

ConflictKind: TypeAlias = Literal["exit_without_entry", "double_exit", "entry_while_inside"]
DecidedBy: TypeAlias = Literal["gateway", "lane"]

DOUBLE_EXIT_WINDOW: Final = timedelta(hours=12)
"""How recent a closed session of the plate must be for an unmatched exit to count as a
double exit rather than an exit without entry: longer than any offline spell, shorter
than the gap between two visits of a regular."""

RESOLVE_ACTION: Final = "conflict.resolve"


class ReconcileError(ParkGuardError):
    """Base of the reconciler's errors."""


class UnknownConflictError(ReconcileError, LookupError):
    """No conflict has that id."""


class ConflictResolvedError(ReconcileError, ValueError):
    """The conflict was resolved already; a second resolution would overwrite the first."""


# --- pure rules ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    """What a rule found: the kind, the session it concerns (if any) and, for a person, why."""

    kind: ConflictKind
    session_id: str | None
    detail: str


def judge_exit(*, lane: str, plate: str | None, event_id: str,
               session: Mapping[str, Any] | None) -> Finding | None:
    """An exit passage against the session it closes (the open one matched, else the plate's
    recently closed one, else None). None means it fits."""
    if session is None:
        return Finding("exit_without_entry", None,
                       f"{plate or 'unread plate'} left by {lane} with no entry on record")
    if session.get("state") == "closed" and session.get("exit_event_id") != event_id:
        return Finding("double_exit", str(session["session_id"]),
                       f"{plate or 'unread plate'} left by {lane}, but session "
                       f"{session['session_id']} had already left by {session.get('exit_lane')} "
                       f"at {session.get('exit_at')}")
    return None


def judge_entry(*, lane: str, plate: str | None, event_id: str, decided_by: DecidedBy,
                inside: Mapping[str, Any] | None) -> Finding | None:
    """An entry passage against the open session the plate already has, if any. Only a lane
    deciding alone can let such a car in (the gateway answers ``already_inside``)."""
    if inside is None or decided_by != "lane" or inside.get("state", "open") != "open":
        return None
    if inside.get("entry_event_id") == event_id:
        return None  # the session this very passage opened
    return Finding("entry_while_inside", str(inside["session_id"]),
                   f"{plate or 'unread plate'} let in by {lane} alone while session "
                   f"{inside['session_id']} (in by {inside.get('entry_lane')} at "
                   f"{inside.get('entry_at')}) is still inside")


# --- the table -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Conflict:
    """A recorded conflict; ``state`` is ``open`` until a person resolves it."""

    id: int
    kind: ConflictKind
    lane: str
    plate: str
    event_id: str
    event_ts: str
    decided_by: str
    session_id: str | None
    detail: str
    detected_at: str
    state: Literal["open", "resolved"]
    resolved_by: str | None
    resolved_at: str | None
    resolution: str | None


class Reconciler:
    """Records conflicting passages for review and resolves them, audited.

    ``db`` is the gateway's writer connection (the worker thread) and ``audit`` must be on
    it, so a resolution and its audit entry commit together.
    """

    def __init__(self, db: sqlite_utils.Database, *, clock: Clock, audit: AuditLog,
                 double_exit_window: timedelta = DOUBLE_EXIT_WINDOW) -> None:
        self.db = db
        self._clock = clock
        self._audit = audit
        self.double_exit_window = double_exit_window

    def check_exit(self, event: Passed, session: Mapping[str, Any] | None,
                   decided_by: DecidedBy) -> Conflict | None:
        """Call for every exit passage before closing ``session`` (the session it matched, or
        None). With no session, the plate's latest session closed within
        :data:`DOUBLE_EXIT_WINDOW` is looked up, so a second exit is told from a car never
        seen coming in. A returned conflict means: do not close anything."""
        if session is None and event.plate:
            session = self._recently_closed(event.plate, event.ts)
        finding = judge_exit(lane=event.lane, plate=event.plate, event_id=event.event_id,
                             session=session)
        return None if finding is None else self._record(finding, event, decided_by)

    def check_entry(self, event: Passed, inside: Mapping[str, Any] | None,
                    decided_by: DecidedBy) -> Conflict | None:
        """Call for every entry passage before its session is stored, with the open session
        the plate already has (None if it has none)."""
        finding = judge_entry(lane=event.lane, plate=event.plate, event_id=event.event_id,
                              decided_by=decided_by, inside=inside)
        return None if finding is None else self._record(finding, event, decided_by)

    def open_conflicts(self) -> list[Conflict]:
        """Conflicts waiting for a person, oldest first."""
        return [_conflict_from(row) for row in self.db.query(
            "SELECT * FROM conflicts WHERE state = 'open' ORDER BY id")]

    def get(self, conflict_id: int) -> Conflict:
        rows = list(self.db.query("SELECT * FROM conflicts WHERE id = ?", [conflict_id]))
        if not rows:
            raise UnknownConflictError(f"no conflict {conflict_id}")
        return _conflict_from(rows[0])

    def resolve(self, conflict_id: int, actor: str, reason: str) -> Conflict:
        """Close a conflict with who decided and why (e.g. "CCTV: car entered behind 粤B1,
        fee taken in cash"); audited in the same transaction."""
        if not isinstance(actor, str) or not actor.strip():
            raise ReconcileError("actor: say who resolves the conflict")
        if not isinstance(reason, str) or not reason.strip():
            raise ReconcileError("reason: say how the conflict was resolved")
        now = utc_iso(self._clock.now())
        with self.db.atomic():
            before = self.get(conflict_id)
            if before.state != "open":
                raise ConflictResolvedError(
                    f"conflict {conflict_id} was resolved by {before.resolved_by} at "
                    f"{before.resolved_at}: {before.resolution}")
            self.db.execute(
                "UPDATE conflicts SET state = 'resolved', resolved_by = ?, resolved_at = ?, "
                "resolution = ? WHERE id = ? AND state = 'open'",
                [actor, now, reason, conflict_id])
            self._audit.record(
                actor=actor, action=RESOLVE_ACTION, subject=f"conflict:{conflict_id}",
                reason=reason,
                before={"state": "open", "kind": before.kind, "lane": before.lane,
                        "plate": before.plate, "event_id": before.event_id,
                        "session_id": before.session_id},
                after={"state": "resolved"})
            return self.get(conflict_id)

    # --- helpers ---------------------------------------------------------------------------

    def _recently_closed(self, plate: str, at: datetime) -> dict[str, Any] | None:
        since = utc_iso(at - self.double_exit_window)
        rows = list(self.db.query(
            "SELECT * FROM sessions WHERE plate = ? AND state = 'closed' AND exit_at >= ? "
            "ORDER BY exit_at DESC LIMIT 1", [plate, since]))
        return rows[0] if rows else None

    def _record(self, finding: Finding, event: Passed, decided_by: DecidedBy) -> Conflict:
        with self.db.atomic():
            self.db.execute(
                "INSERT OR IGNORE INTO conflicts (kind, lane, plate, event_id, event_ts, "
                "decided_by, session_id, detail, detected_at, state) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'open')",
                [finding.kind, event.lane, event.plate or "", event.event_id,
                 utc_iso(event.ts), decided_by, finding.session_id,
                 json.dumps({"text": finding.detail, "correlation_id": event.correlation_id,
                             "fee_fen": event.fee_fen}, ensure_ascii=False),
                 utc_iso(self._clock.now())])
            row = next(iter(self.db.query(
                "SELECT * FROM conflicts WHERE kind = ? AND event_id = ?",
                [finding.kind, event.event_id])))
        _log.warning("reconcile: %s at %s: %s", finding.kind, event.lane, finding.detail)
        return _conflict_from(row)


def _conflict_from(row: Mapping[str, Any]) -> Conflict:
    return Conflict(
        id=int(row["id"]), kind=row["kind"], lane=row["lane"], plate=row["plate"],
        event_id=row["event_id"], event_ts=row["event_ts"], decided_by=row["decided_by"],
        session_id=row["session_id"], detail=json.loads(row["detail"])["text"],
        detected_at=row["detected_at"], state=row["state"], resolved_by=row["resolved_by"],
        resolved_at=row["resolved_at"], resolution=row["resolution"])
