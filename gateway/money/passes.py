"""Monthly and family passes, whitelists and blacklists, and which pass cars are inside.

:class:`AccessDesk` is the gateway's record of who may enter on what terms. The decision
itself is :func:`parkguard.core.access.entry_access` (pure, shared with the lanes); the desk
stores its inputs, answers from them with the injected clock, and keeps track of which
sessions are inside on which pass, so a family pass lets one car in at a time and the second
pays as a visitor. :meth:`AccessDesk.snapshot` is everything a lane needs to give the same
answer with the network down.

Times are stored as integer milliseconds since the epoch, UTC; plates normalised. Every
issue, renewal, revocation, change of plates and list change is audited in the same
transaction as the write it describes, with the phone masked (customer data stays private).

>>> from datetime import UTC, datetime, timedelta
>>> import sqlite_utils
>>> from parkguard.clock import ManualClock
>>> from gateway.storage.migrations import migrate
>>> db = migrate(sqlite_utils.Database(memory=True))
>>> clock = ManualClock(datetime(2026, 5, 1, 2, 0, tzinfo=UTC))
>>> desk = AccessDesk(db, clock=clock, audit=AuditLog(db, clock=clock))
>>> family = desk.issue_pass("family", ["沪A12345", "沪B67890"], clock.now(),
...                          clock.now() + timedelta(days=31), "王芳", actor="office:02",
...                          reason="paid June, receipt 8812", phone="13812345678")
>>> desk.entry_access("沪A12345").kind
'pass'
>>> desk.occupy(family.pass_id, "s-1", "沪A12345")
True
>>> desk.entry_access("沪B67890").reason
'pass_in_use'
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Final

import sqlite_utils

from gateway.money.pass_records import (
    PlateConflictError,
    UnknownPassError,
    audit_json,
    from_ms,
    list_entry_from,
    plate_list,
    require_who,
    subject_of,
    to_ms,
)
from gateway.records.audit import AuditLog
from parkguard.clock import Clock, utc_iso
from parkguard.core.access import (
    Access,
    AccessError,
    ListEntry,
    ListName,
    Pass,
    PassKind,
    entry_access,
    list_entry_to_json,
    pass_to_json,
    require_plate,
)
from parkguard.core.plates.normalise import normalise_plate

__all__ = [
    "HISTORY_WINDOW",
    "AccessDesk",
    "PlateConflictError",
    "UnknownPassError",
]

_log = logging.getLogger(__name__)

HISTORY_WINDOW: Final = timedelta(days=31)
"""How long a lapsed or revoked pass is still told apart from no pass at all.

Within it, the gate says "pass expired: pay as visitor" (the driver learns why); after it
the driver is a plain visitor. The desk and the lane replicas use the same window, so a
lane offline answers exactly as the gateway would.
"""


class AccessDesk:
    """Passes, whitelists and blacklists in the gateway's database, and pass cars inside.

    ``db`` is the gateway's writer connection (one thread); pass an ``audit`` log on the same
    database so each change and its audit entry commit together. A refused change writes
    neither.
    """

    def __init__(self, db: sqlite_utils.Database, *, clock: Clock, audit: AuditLog) -> None:
        self.db = db
        self._clock = clock
        self._audit = audit
        self.changes = 0
        """Passes and lists changed by this desk since start (lane replicas follow it)."""

    # --- passes ----------------------------------------------------------------------------

    def _audited(self, **entry: Any) -> None:
        """Every change of a pass or a list is audited here, and counted for the replicas."""
        self._audit.record(**entry)
        self.changes += 1

    def issue_pass(self, kind: PassKind, plates: Iterable[str], valid_from: datetime,
                   valid_until: datetime, holder: str, actor: str, reason: str,
                   phone: str | None = None, vehicle_class: str | None = None,
                   max_inside: int = 1) -> Pass:
        """Sell a monthly pass (one plate) or a family pass (2..5 plates, one inside at once).

        Refused if any of its plates is already on another pass whose window overlaps this
        one and that has not lapsed: one plate, one live pass.
        """
        require_who(actor, reason)
        pass_id = uuid.uuid4().hex
        draft = Pass(pass_id, kind, holder, frozenset(plate_list(plates)),
                     from_ms(to_ms("valid_from", valid_from)),
                     from_ms(to_ms("valid_until", valid_until)),
                     vehicle_class=vehicle_class, phone=phone, max_inside=max_inside)
        if draft.valid_until <= self._clock.now():
            raise AccessError("valid_until", f"{utc_iso(draft.valid_until)} is already past: "
                                             "the pass would never be valid")
        with self.db.atomic():
            self._refuse_conflicts(draft)
            self.db.table("passes").insert({
                "pass_id": pass_id, "kind": draft.kind, "holder": draft.holder,
                "valid_from_ms": to_ms("valid_from", draft.valid_from),
                "valid_until_ms": to_ms("valid_until", draft.valid_until),
                "vehicle_class": draft.vehicle_class, "phone": draft.phone,
                "max_inside": draft.max_inside, "issued_at_ms": self._now_ms(),
            })
            self._store_plates(pass_id, draft.plates)
            issued = self._require_pass(pass_id)
            self._audited(actor=actor, action="pass.issue", subject=subject_of(pass_id),
                               reason=reason, after=audit_json(issued))
        _log.info("pass %s issued (%s, %d plates)", pass_id, kind, len(issued.plates))
        return issued

    def renew(self, pass_id: str, valid_until: datetime, actor: str, reason: str) -> Pass:
        """Extend a pass to ``valid_until`` (later than its current end); a lapsed one too.

        A renewal never shortens a pass: ending one early is :meth:`revoke`, which is audited
        as what it is.
        """
        require_who(actor, reason)
        until_ms = to_ms("valid_until", valid_until)
        with self.db.atomic():
            before = self._require_live(pass_id)
            if until_ms <= to_ms("valid_until", before.valid_until):
                raise AccessError("valid_until", f"a renewal must end after the current end "
                                                 f"{utc_iso(before.valid_until)}, got "
                                                 f"{utc_iso(from_ms(until_ms))}")
            if until_ms <= self._now_ms():
                raise AccessError("valid_until", f"{utc_iso(from_ms(until_ms))} is already past")
            renewed = Pass(before.pass_id, before.kind, before.holder, before.plates,
                           before.valid_from, from_ms(until_ms), before.vehicle_class,
                           before.phone, before.max_inside)
            self._refuse_conflicts(renewed)
            self.db.execute("UPDATE passes SET valid_until_ms = ? WHERE pass_id = ?",
                            [until_ms, pass_id])
            after = self._require_pass(pass_id)
            self._audited(actor=actor, action="pass.renew", subject=subject_of(pass_id),
                               reason=reason,
                               before={"valid_until": utc_iso(before.valid_until)},
                               after={"valid_until": utc_iso(after.valid_until)})
        return after

    def revoke(self, pass_id: str, actor: str, reason: str) -> Pass:
        """End a pass now (refund, fraud, holder moved away); it grants nothing from now on.

        A car inside on it stays a pass car until now and pays from now on
        (:func:`~parkguard.core.access.billable_span`). Revoking twice is refused.
        """
        require_who(actor, reason)
        now_ms = self._now_ms()
        with self.db.atomic():
            before = self._require_live(pass_id)
            self.db.execute("UPDATE passes SET revoked_at_ms = ?, revoke_reason = ? "
                            "WHERE pass_id = ? AND revoked_at_ms IS NULL",
                            [now_ms, reason, pass_id])
            after = self._require_pass(pass_id)
            self._audited(actor=actor, action="pass.revoke", subject=subject_of(pass_id),
                               reason=reason,
                               before={"state": "live",
                                       "valid_until": utc_iso(before.valid_until)},
                               after={"state": "revoked", "revoked_at": utc_iso(from_ms(now_ms)),
                                      "inside": self._inside_count(pass_id)})
        return after

    def set_plates(self, pass_id: str, plates: Iterable[str], actor: str, reason: str) -> Pass:
        """Replace a pass's plates (the holder changed cars). A car inside keeps its presence."""
        require_who(actor, reason)
        with self.db.atomic():
            before = self._require_live(pass_id)
            changed = Pass(before.pass_id, before.kind, before.holder,
                           frozenset(plate_list(plates)), before.valid_from,
                           before.valid_until, before.vehicle_class, before.phone,
                           before.max_inside)
            if changed.plates == before.plates:
                raise AccessError("plates", "the pass already has exactly these plates")
            self._refuse_conflicts(changed)
            self.db.execute("DELETE FROM pass_plates WHERE pass_id = ?", [pass_id])
            self._store_plates(pass_id, changed.plates)
            after = self._require_pass(pass_id)
            self._audited(actor=actor, action="pass.set_plates", subject=subject_of(pass_id),
                               reason=reason, before={"plates": sorted(before.plates)},
                               after={"plates": sorted(after.plates)})
        return after

    def get_pass(self, pass_id: str) -> Pass:
        """The pass as stored (revoked or lapsed ones too); :class:`UnknownPassError` if none."""
        return self._require_pass(pass_id)

    def passes_for(self, plate: str, *, include_history: bool = False) -> list[Pass]:
        """The passes holding ``plate`` that are valid now or later, soonest first.

        With ``include_history`` also revoked and lapsed ones (a holder asking "when did my
        pass end?").
        """
        now = self._clock.now()
        found = [self._require_pass(row["pass_id"]) for row in self.db.query(
            "SELECT DISTINCT pass_id FROM pass_plates WHERE plate = ?", [normalise_plate(plate)])]
        if not include_history:
            found = [p for p in found if p.lapses_at > now]
        return sorted(found, key=lambda p: (p.valid_from, p.pass_id))

    # --- lists -----------------------------------------------------------------------------

    def list_plate(self, list_name: ListName, plate: str, reason: str, actor: str,
                   until: datetime | None = None) -> ListEntry:
        """Put ``plate`` on the whitelist or blacklist, until ``until`` (or until unlisted).

        Listing a plate that is already on that list replaces its reason and expiry (audited
        with the old ones). A plate may be on both lists; the blacklist wins.
        """
        require_who(actor, reason)
        if list_name not in ("whitelist", "blacklist"):  # holds: gateway.safety.holds
            raise AccessError("list_name", f"a list is 'whitelist' or 'blacklist', got "
                                           f"{list_name!r}")
        entry = ListEntry(list_name, plate, reason,
                          None if until is None else from_ms(to_ms("until", until)))
        if entry.until is not None and entry.until <= self._clock.now():
            raise AccessError("until", f"{utc_iso(entry.until)} is already past")
        with self.db.atomic():
            before = self._list_row(entry.list_name, entry.plate)
            self.db.table("access_lists").upsert({
                "list_name": entry.list_name, "plate": entry.plate, "reason": entry.reason,
                "until_ms": None if entry.until is None else to_ms("until", entry.until),
                "listed_at_ms": self._now_ms(), "listed_by": actor,
            }, pk=("list_name", "plate"))
            self._audited(actor=actor, action=f"{entry.list_name}.add",
                               subject=f"plate:{entry.plate}", reason=reason,
                               before=None if before is None else list_entry_to_json(before),
                               after=list_entry_to_json(entry))
        return entry

    def unlist(self, list_name: ListName, plate: str, actor: str, reason: str) -> None:
        """Take ``plate`` off a list; refused if it is not on it (a typo should be noticed)."""
        require_who(actor, reason)
        key = require_plate("plate", plate)
        if list_name not in ("whitelist", "blacklist"):
            raise AccessError("list_name", f"a list is 'whitelist' or 'blacklist', got "
                                           f"{list_name!r}")
        with self.db.atomic():
            before = self._list_row(list_name, key)
            if before is None:
                raise AccessError("plate", f"{key} is not on the {list_name}")
            self.db.execute("DELETE FROM access_lists WHERE list_name = ? AND plate = ?",
                            [list_name, key])
            self._audited(actor=actor, action=f"{list_name}.remove",
                               subject=f"plate:{key}", reason=reason,
                               before=list_entry_to_json(before), after=None)

    def lists_for(self, plate: str) -> list[ListEntry]:
        """The list entries in force for ``plate`` (expired ones are ignored, as at the gate)."""
        now_ms = self._now_ms()
        return [list_entry_from(row) for row in self.db.query(
            "SELECT * FROM access_lists WHERE plate = ? AND (until_ms IS NULL OR until_ms > ?) "
            "ORDER BY list_name", [normalise_plate(plate), now_ms])]

    # --- the gate --------------------------------------------------------------------------

    def entry_access(self, plate: str) -> Access:
        """On what terms ``plate`` enters now, from the stored passes, lists and presence."""
        now = self._clock.now()
        key = normalise_plate(plate)
        passes = [self._require_pass(row["pass_id"]) for row in self.db.query(
            "SELECT DISTINCT pp.pass_id FROM pass_plates pp JOIN passes p USING (pass_id) "
            "WHERE pp.plate = ? AND min(p.valid_until_ms, coalesce(p.revoked_at_ms, "
            "p.valid_until_ms)) > ?", [key, self._ms_of(now - HISTORY_WINDOW)])]
        return entry_access(key, now, passes=passes, lists=self.lists_for(key),
                            occupied=self._occupied({p.pass_id for p in passes}))

    def occupy(self, pass_id: str, session_id: str, plate: str) -> bool:
        """Record that ``session_id`` entered on ``pass_id``; say whether it was within limits.

        Called after a car entered on a pass. Repeating it for the same session is harmless
        (a redelivered entry event). A lane that decided offline may have let a second car of
        a family pass in on it: the presence is recorded anyway (the car is inside), marked
        over the limit, and returns False; :meth:`pass_of_session` then answers None for
        it, so that car pays as the visitor it should have been.
        """
        if not isinstance(session_id, str) or not session_id.strip():
            raise AccessError("session_id", f"must be non-empty text, got {session_id!r}")
        with self.db.atomic():
            pass_ = self._require_pass(pass_id)
            key = normalise_plate(plate)
            if key not in pass_.plates:
                raise AccessError("plate", f"{key} is not on pass {pass_id}")
            existing = self._presence_row(session_id)
            if existing is not None:
                if existing["pass_id"] != pass_id:
                    raise AccessError("session_id", f"session {session_id} is already on pass "
                                                    f"{existing['pass_id']}")
                return not existing["over_limit"]
            over = self._inside_count(pass_id) >= pass_.max_inside
            self.db.table("pass_presence").insert({
                "session_id": session_id, "pass_id": pass_id, "plate": key,
                "entered_at_ms": self._now_ms(), "left_at_ms": None, "over_limit": int(over),
            })
        if over:
            _log.warning("pass %s: session %s entered beyond its %d car(s) inside",
                         pass_id, session_id, pass_.max_inside)
        return not over

    def release(self, session_id: str) -> bool:
        """Record that a pass car left; True if it was inside, False if already released or
        never on a pass (so the exit path may call it for every session)."""
        cursor = self.db.execute(
            "UPDATE pass_presence SET left_at_ms = ? WHERE session_id = ? AND left_at_ms IS NULL",
            [self._now_ms(), session_id])
        return cursor.rowcount == 1

    def pass_of_session(self, session_id: str) -> Pass | None:
        """The pass ``session_id`` entered on, as it stands now, for pricing the exit.

        None if the session did not enter on a pass, or entered beyond the pass's cars-inside
        limit. Give the result to :func:`~parkguard.core.access.billable_span`: a renewal
        made while the car was inside counts, a revocation ends the cover.
        """
        row = self._presence_row(session_id)
        if row is None or row["over_limit"]:
            return None
        return self._require_pass(row["pass_id"])

    def inside(self, pass_id: str) -> list[str]:
        """The sessions inside on ``pass_id`` now, in the order they entered."""
        return [row["session_id"] for row in self.db.query(
            "SELECT session_id FROM pass_presence WHERE pass_id = ? AND left_at_ms IS NULL "
            "ORDER BY entered_at_ms, session_id", [pass_id])]

    # --- replicas --------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything a lane needs to decide alone, as JSON-able data.

        ``passes`` are those not lapsed or revoked longer than :data:`HISTORY_WINDOW` ago
        (holder masked, no phone: see :func:`~parkguard.core.access.pass_to_json`);
        ``lists`` the entries in force; ``inside`` the pass cars inside now; ``occupied`` the
        pass ids that have their cars-inside limit reached. Rebuild with
        ``pass_from_json``/``list_entry_from_json`` and call ``entry_access`` with the same
        ``now`` to get the desk's answer.
        """
        now = self._clock.now()
        since = self._ms_of(now - HISTORY_WINDOW)
        passes = [self._require_pass(row["pass_id"]) for row in self.db.query(
            "SELECT pass_id FROM passes WHERE min(valid_until_ms, coalesce(revoked_at_ms, "
            "valid_until_ms)) > ? ORDER BY pass_id", [since])]
        lists = [list_entry_from(row) for row in self.db.query(
            "SELECT * FROM access_lists WHERE until_ms IS NULL OR until_ms > ? "
            "ORDER BY list_name, plate", [self._ms_of(now)])]
        inside = [{"pass_id": row["pass_id"], "session_id": row["session_id"],
                   "plate": row["plate"], "entered_at": utc_iso(from_ms(row["entered_at_ms"]))}
                  for row in self.db.query(
                      "SELECT * FROM pass_presence WHERE left_at_ms IS NULL "
                      "ORDER BY entered_at_ms, session_id")]
        return {
            "taken_at": utc_iso(now),
            "passes": [pass_to_json(p) for p in passes],
            "lists": [list_entry_to_json(e) for e in lists],
            "inside": inside,
            "occupied": sorted(self._occupied({p.pass_id for p in passes})),
        }

    # --- helpers ---------------------------------------------------------------------------

    def _refuse_conflicts(self, candidate: Pass) -> None:
        """One plate, one live pass: refuse overlapping windows of passes not yet lapsed."""
        now = self._clock.now()
        for plate in sorted(candidate.plates):
            for row in self.db.query(
                    "SELECT DISTINCT pass_id FROM pass_plates WHERE plate = ? AND pass_id != ?",
                    [plate, candidate.pass_id]):
                other = self._require_pass(row["pass_id"])
                if other.lapses_at <= now or other.is_revoked(now):
                    continue
                if other.valid_from < candidate.valid_until and \
                        candidate.valid_from < other.lapses_at:
                    raise PlateConflictError(
                        "plates", f"{plate} is already on live pass {other.pass_id} "
                                  f"({utc_iso(other.valid_from)} to {utc_iso(other.lapses_at)}): "
                                  "renew or change that pass instead")

    def _store_plates(self, pass_id: str, plates: Iterable[str]) -> None:
        self.db.table("pass_plates").insert_all(
            {"pass_id": pass_id, "plate": plate} for plate in sorted(plates))

    def _require_pass(self, pass_id: str) -> Pass:
        rows = list(self.db.query("SELECT * FROM passes WHERE pass_id = ?", [pass_id]))
        if not rows:
            raise UnknownPassError("pass_id", f"no pass {pass_id!r}")
        row = rows[0]
        plates = frozenset(r["plate"] for r in self.db.query(
            "SELECT plate FROM pass_plates WHERE pass_id = ?", [pass_id]))
        revoked = row["revoked_at_ms"]
        return Pass(row["pass_id"], row["kind"], row["holder"], plates,
                    from_ms(row["valid_from_ms"]), from_ms(row["valid_until_ms"]),
                    vehicle_class=row["vehicle_class"], phone=row["phone"],
                    max_inside=row["max_inside"],
                    revoked_at=None if revoked is None else from_ms(revoked))

    def _require_live(self, pass_id: str) -> Pass:
        """The pass, unless revoked: a revoked pass is history and is never changed again."""
        found = self._require_pass(pass_id)
        if found.revoked_at is not None:
            raise AccessError("pass_id", f"pass {pass_id} was revoked at "
                                         f"{utc_iso(found.revoked_at)}: issue a new one")
        return found

    def _list_row(self, list_name: str, plate: str) -> ListEntry | None:
        rows = list(self.db.query("SELECT * FROM access_lists WHERE list_name = ? AND plate = ?",
                                  [list_name, plate]))
        return list_entry_from(rows[0]) if rows else None

    def _presence_row(self, session_id: str) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM pass_presence WHERE session_id = ?",
                                  [session_id]))
        return rows[0] if rows else None

    def _inside_count(self, pass_id: str) -> int:
        value = self.db.execute("SELECT count(*) FROM pass_presence WHERE pass_id = ? "
                                "AND left_at_ms IS NULL", [pass_id]).fetchone()[0]
        return int(value)

    def _occupied(self, pass_ids: set[str]) -> frozenset[str]:
        """Those of ``pass_ids`` whose cars inside have reached the pass's ``max_inside``."""
        full: set[str] = set()
        for pass_id in pass_ids:
            limit = self.db.execute("SELECT max_inside FROM passes WHERE pass_id = ?",
                                    [pass_id]).fetchone()[0]
            if self._inside_count(pass_id) >= int(limit):
                full.add(pass_id)
        return frozenset(full)

    def _now_ms(self) -> int:
        return self._ms_of(self._clock.now())

    @staticmethod
    def _ms_of(moment: datetime) -> int:
        return to_ms("now", moment)
