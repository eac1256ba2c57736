"""The lane's replica of what the gateway decides from, and the lane's own decisions from it.

The gateway publishes to each lane (``docs/replicas.md``) a **snapshot** in chunks, ordered
**deltas** after it and the retained **capacity**. :class:`LaneReplica` keeps them:

- a snapshot arrives as :class:`~wire.contract.messages.ReplicaChunk` pieces, each within the
  broker's packet limit; only when every piece of one snapshot is here (and the joined text
  matches its SHA-256) does it replace everything, at once, and set the epoch and version.
  Until then the lane decides from what it has. A snapshot missing a piece is dropped when
  a delta overtakes it or a newer snapshot starts; if the lane needed it (another epoch, or
  it is waiting after a gap) that counts as a gap, reported like one, so the gateway sends
  another. A snapshot older than what the lane has (same epoch, lower version) is ignored;
- a delta of the same epoch and exactly the next version is applied; one the lane already
  has (same epoch, version not above its own) is a QoS 1 repeat and ignored; anything else
  is a **gap**: the delta is not applied, the lane keeps deciding from what it has and
  ignores every further delta until the next snapshot arrives (the gateway sends one every
  ``snapshot_every`` deltas, at start and on a sync); the controller reports the gap once
  as ``fault replica_gap`` so the control room (and the gateway) can send a snapshot;
- everything applied is also written to the lane's journal (:mod:`firmware.lane.journal`),
  so the replica survives a reboot.

When the gateway does not answer a decide in time the lane decides here, with the **same
pure cores** the gateway uses: :func:`~parkguard.core.access.entry_access` at the entry,
the plate matcher (:func:`~parkguard.core.plates.match`) over the open sessions and
:func:`~parkguard.core.tariffs.quote` over the replica's tariff file at the exit, with
:func:`~parkguard.core.access.billable_span` for pass cars and
:func:`~parkguard.core.payments.amount_due` for prepaid ones. Every reason starts with
``offline_`` and the decision event says ``decided_by: "lane"``. The replica's merchant
coupons (:mod:`firmware.lane.coupons`) are offered to the quote as the gateway offers them;
the gateway charges their merchants, and settles older debts (not in the replica), when the
passage arrives.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from firmware.lane.coupons import CouponBook
from firmware.lane.devices.display import TEXTS, goodbye, payment_due
from firmware.lane.journal import Journal
from parkguard.core.access import (
    ListEntry,
    Pass,
    billable_span,
    entry_access,
    exit_hold,
    list_entry_from_json,
    pass_from_json,
)
from parkguard.core.bill_lines import started_minutes
from parkguard.core.payments import amount_due
from parkguard.core.plates import (
    MatchPolicy,
    NoPlateId,
    PlateError,
    PlateIndex,
    is_no_plate,
    match,
    matchable_read,
    stored_spelling,
)
from parkguard.core.tariffs import (
    TariffDocument,
    parse_tariff_document,
    quote,
)
from parkguard.errors import ContractError, ParkGuardError
from wire.contract import topics
from wire.contract.chunks import ChunkAssembler
from wire.contract.messages import (
    CapacityState,
    ListsChanged,
    PassesChanged,
    PlateCoupons,
    ReplicaChunk,
    ReplicaDelta,
    ReplicaPrepaid,
    ReplicaSession,
    ReplicaSnapshot,
    SessionClosed,
    decode,
)

log = logging.getLogger(__name__)

DeltaOutcome = Literal["applied", "repeat", "gap", "no_snapshot"]

_CAPACITY_KEY = "replica.capacity"


@dataclass(frozen=True, slots=True)
class OfflineVerdict:
    """What the lane decided alone, with what the display shows and the evidence kept."""

    action: Literal["open", "refuse"]
    reason: str
    fee_fen: int = 0
    session_id: str | None = None
    display: tuple[str, str] = TEXTS["welcome"]
    evidence: dict[str, Any] = field(default_factory=dict)


class LaneReplica:
    """The lane's copy of sessions, passes, lists, tariff, prepayments and capacity.

    Fed on paho's thread (:meth:`on_message`), read by the lane's worker (``entry``,
    ``exit``): one lock around both.
    """

    def __init__(self, *, site: str, lane: str, journal: Journal | None = None,
                 policy: MatchPolicy | None = None) -> None:
        self.site, self.lane = site, lane
        self._journal = journal
        self._policy = policy or MatchPolicy()
        self._lock = threading.Lock()
        self.epoch: str | None = None
        self.version = 0
        self.waiting_for_snapshot = False
        self.gaps = 0
        self.repeats = 0
        self.rejected = 0
        self.stale = 0  # whole snapshots older than the replica, ignored
        self._chunks = ChunkAssembler()
        self._sessions: dict[str, ReplicaSession] = {}
        self._index = PlateIndex()
        self._session_by_key: dict[str, str] = {}
        self._passes: list[Pass] = []
        self._lists: list[ListEntry] = []
        self._prepaid: dict[str, ReplicaPrepaid] = {}
        self._coupons = CouponBook()
        self._tariff_sha: str | None = None
        self._tariff_source = ""
        self._document: TariffDocument | None = None
        self.capacity: CapacityState | None = None

    # feeding ------------------------------------------------------------------------------

    @property
    def has_snapshot(self) -> bool:
        return self.epoch is not None

    def topics(self) -> list[str]:
        return [topics.lane_replica(self.site, self.lane, part)
                for part in ("snapshot", "delta", "capacity")]

    def on_message(self, topic: str, payload: bytes) -> str:
        """Take one replica message (paho's thread); say what became of it."""
        if not payload:
            return "cleared"  # a retained message removed (the gateway clears old snapshots)
        try:
            value = decode(topic, payload)
            if isinstance(value, ReplicaChunk):
                return self.apply_chunk(value)
        except ContractError as error:
            self.rejected += 1
            log.warning("lane %s: replica message refused: %s", self.lane, error)
            return "refused"
        if isinstance(value, ReplicaDelta):
            return self.apply_delta(value)
        if isinstance(value, CapacityState):
            self.apply_capacity(value)
            return "capacity"
        self.rejected += 1
        return "refused"

    def load(self) -> None:
        """Restore what the journal kept (at start, before the bus delivers anything)."""
        if self._journal is None:
            return
        snapshot, deltas = self._journal.load_replica()
        if snapshot is not None:
            try:
                self.apply_snapshot(ReplicaSnapshot.from_json(snapshot), persist=False)
                for delta in deltas:
                    self.apply_delta(ReplicaDelta.from_json(delta), persist=False)
            except (ContractError, ParkGuardError) as error:
                log.error("lane %s: stored replica unusable, waiting for a snapshot: %s",
                          self.lane, error)
        capacity = self._journal.get(_CAPACITY_KEY)
        if capacity is not None:
            try:
                self.capacity = CapacityState.from_json(capacity)
            except ContractError:
                pass
        if self.has_snapshot:
            log.info("lane %s: replica restored at %s v%d, %d inside", self.lane, self.epoch,
                     self.version, len(self._sessions))

    def apply_chunk(self, chunk: ReplicaChunk) -> str:
        """One piece of a snapshot: ``chunk`` while it is incomplete (``gap`` if it made the
        lane drop an unfinished snapshot it needed), then what :meth:`apply_snapshot` made of
        the whole. ContractError if the pieces do not join."""
        with self._lock:
            gaps = self.gaps
            whole = self._chunks.offer(chunk)
            self._settle_abandoned()
            gap = self.gaps > gaps
        if whole is not None:
            return self.apply_snapshot(whole)
        return "gap" if gap else "chunk"

    def _settle_abandoned(self) -> None:
        """Snapshots dropped with a piece missing: a gap if the lane needed one (lock held)."""
        while self._chunks.abandoned:
            lost = self._chunks.abandoned.pop()
            log.warning("lane %s: replica snapshot %s v%d incomplete, dropped", self.lane,
                        lost.epoch, lost.version)
            if self.epoch is not None and lost.epoch == self.epoch \
                    and not self.waiting_for_snapshot:
                continue  # the deltas keep this lane current: nothing missed
            self.gaps += 1  # reported again: the snapshot sent for the last gap is lost too
            self.waiting_for_snapshot = self.epoch is not None

    def apply_snapshot(self, snapshot: ReplicaSnapshot, *, persist: bool = True) -> str:
        """Replace the replica with ``snapshot`` (``snapshot``), unless it is older than what
        the lane has (``stale``)."""
        with self._lock:
            if snapshot.epoch == self.epoch and snapshot.version < self.version:
                self.stale += 1
                return "stale"
        document = self._document
        if snapshot.tariff.sha256 != self._tariff_sha:
            document = parse_tariff_document(snapshot.tariff.text, source=snapshot.tariff.source)
        passes = _passes(snapshot.passes)
        lists = _lists(snapshot.lists)
        with self._lock:
            self._document = document
            self._tariff_sha = snapshot.tariff.sha256
            self._tariff_source = snapshot.tariff.source
            self._passes, self._lists = passes, lists
            self._sessions = {}
            self._index = PlateIndex()
            self._session_by_key = {}
            for session in snapshot.sessions:
                self._open(session)
            self._prepaid = {p.session_id: p for p in snapshot.prepaid}
            self._coupons = CouponBook(snapshot.coupons)
            self.epoch, self.version = snapshot.epoch, snapshot.version
            self.waiting_for_snapshot = False
        if persist:
            self._keep(lambda journal: journal.save_snapshot(snapshot.model_dump_json()))
        return "snapshot"

    def apply_delta(self, delta: ReplicaDelta, *, persist: bool = True) -> DeltaOutcome:
        with self._lock:
            if self._chunks.drop_older_than(delta.epoch, delta.version):
                self._settle_abandoned()
            if self.epoch is None:
                return "no_snapshot"
            if delta.epoch == self.epoch and delta.version <= self.version:
                self.repeats += 1
                return "repeat"
            if self.waiting_for_snapshot or delta.epoch != self.epoch \
                    or delta.version != self.version + 1:
                if not self.waiting_for_snapshot:
                    self.gaps += 1
                    log.warning("lane %s: replica gap (have %s v%d, got %s v%d): waiting for "
                                "a snapshot", self.lane, self.epoch, self.version, delta.epoch,
                                delta.version)
                self.waiting_for_snapshot = True
                return "gap"
            data = delta.data
            if isinstance(data, ReplicaSession):
                self._open(data)
            elif isinstance(data, SessionClosed):
                self._close(data.session_id)
            elif isinstance(data, ReplicaPrepaid):
                if data.paid_fen > 0:
                    self._prepaid[data.session_id] = data
                else:
                    self._prepaid.pop(data.session_id, None)
            elif isinstance(data, PassesChanged):
                self._passes = _passes(data.passes)
            elif isinstance(data, ListsChanged):
                self._lists = _lists(data.lists)
            elif isinstance(data, PlateCoupons):
                self._coupons.replace(data)
            self.version = delta.version
        if persist:
            self._keep(lambda journal: journal.save_delta(delta.version,
                                                          delta.model_dump_json()))
        return "applied"

    def apply_capacity(self, state: CapacityState) -> None:
        with self._lock:
            self.capacity = state
        self._keep(lambda journal: journal.put(_CAPACITY_KEY, state.model_dump_json(),
                                               durable=False))

    def _keep(self, write: Callable[[Journal], object]) -> None:
        """Persist what was just applied in memory. A journal that refuses (a full card, an
        I/O error) costs only the copy a restart would start from: the replica in memory is
        current, and a lane that comes back online is sent a fresh snapshot anyway."""
        try:
            if self._journal is not None:
                write(self._journal)
        except sqlite3.Error as error:
            log.warning("replica: kept in memory, not saved to the journal (%s)", error)

    def _open(self, session: ReplicaSession) -> None:
        self._close(session.session_id)
        self._sessions[session.session_id] = session
        if not session.plate:
            return
        try:
            key = self._index.add(session.plate)
        except PlateError:
            return  # unmatched by plate, as at the gateway: a guard sorts it out
        self._session_by_key[key] = session.session_id

    def _close(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        self._prepaid.pop(session_id, None)
        if session is None or not session.plate:
            return
        for key, owner in list(self._session_by_key.items()):
            if owner == session_id:
                del self._session_by_key[key]
                self._index.discard(key)

    @property
    def sessions_inside(self) -> int:
        with self._lock:
            return len(self._sessions)

    # deciding -----------------------------------------------------------------------------

    def entry(self, read: str | None, now: datetime) -> OfflineVerdict:
        """The entry answer the gateway would give, from the replica (see module doc)."""
        if read is None:
            return OfflineVerdict("refuse", "offline_plate_unread", display=TEXTS["unread"])
        with self._lock:
            if self.epoch is None:
                # Never had a replica: nothing to check against. Let the car in and say so;
                # the gateway checks the entry when the journal reaches it.
                return OfflineVerdict("open", "offline_entry", display=TEXTS["welcome"],
                                      evidence={"replica": None})
            plate = stored_spelling(read)
            evidence: dict[str, Any] = {"replica": f"{self.epoch}:{self.version}"}
            inside = self._session_of(read)
            if inside is not None:
                return OfflineVerdict("open", "offline_already_inside", session_id=inside,
                                      display=(f"{plate} 欢迎光临", f"Welcome {plate}"),
                                      evidence=evidence)
            access = entry_access(plate, now, passes=self._passes, lists=self._lists,
                                  occupied=self._occupied())
            full = self.capacity is not None and self.capacity.full
        if access.refused:
            return OfflineVerdict("refuse", f"offline_{access.reason}",
                                  display=(access.display_zh, access.display_en),
                                  evidence=evidence)
        if full and access.kind == "visitor":
            return OfflineVerdict("refuse", "offline_lot_full", display=TEXTS["lot_full"],
                                  evidence=evidence)
        reason = {"visitor": "visitor_entry", "pass": "pass_entry",
                  "whitelisted": "whitelisted_entry"}[access.kind]
        if access.reason == "pass_in_use":
            reason = "pass_in_use"
        zh, en = access.display_zh, access.display_en
        if access.reason == "no_pass":
            zh, en = f"{plate} 欢迎光临", f"Welcome {plate}"
        return OfflineVerdict("open", f"offline_{reason}", display=(zh, en),
                              evidence={**evidence, "access": access.kind,
                                        "pass_id": access.pass_id})

    def exit(self, read: str | None, char_confidences: Iterable[float],
             now: datetime) -> OfflineVerdict:
        """The exit answer the gateway would give, from the replica (no coupons, no debts)."""
        if read is None:
            return OfflineVerdict("refuse", "offline_plate_unread", display=TEXTS["unread"])
        with self._lock:
            if self.epoch is None or self._document is None:
                return OfflineVerdict("refuse", "offline_no_replica",
                                      display=TEXTS["no_replica"], evidence={"replica": None})
            evidence: dict[str, Any] = {"replica": f"{self.epoch}:{self.version}",
                                        "tariff_sha256": self._tariff_sha}
            try:
                result = match(matchable_read(read, char_confidences), self._index, self._policy)
            except PlateError as error:
                return OfflineVerdict("refuse", "offline_no_entry_record",
                                      display=TEXTS["no_entry"],
                                      evidence={**evidence, "match": f"unreadable: {error}"})
            evidence["match"] = result.reason
            if result.outcome == "ambiguous":
                return OfflineVerdict("refuse", "offline_plate_ambiguous",
                                      display=TEXTS["ambiguous"], evidence=evidence)
            session_id = self._session_by_key.get(result.plate) if result.plate else None
            session = self._sessions.get(session_id) if session_id else None
            held = exit_hold(session.plate if session else read, now, self._lists) \
                or exit_hold(read, now, self._lists)
            if held is not None:  # held at the exit (an accident): a guard must come
                return OfflineVerdict("refuse", "offline_plate_held", display=TEXTS["held"],
                                      session_id=session_id,
                                      evidence={**evidence, "held": held.plate})
            if session is None:
                return OfflineVerdict("refuse", "offline_no_entry_record",
                                      display=TEXTS["no_entry"], evidence=evidence)
            fee, exemption = self._fee(session, now)
            prepaid = self._prepaid.get(session.session_id)
        paid = prepaid.paid_fen if prepaid is not None else 0
        due = amount_due(fee_now_fen=fee, paid_fen=paid,
                         last_paid_at=prepaid.grace_until if prepaid else None,
                         grace_minutes=0, now=now).due_fen
        plate = _shown(session.plate)
        if due:
            # The barrier stays down until the money is taken: offline only a 付款码 can
            # take it (no pay page to link to), journaled for the gateway to charge.
            minutes = started_minutes(session.entry_at, now)
            return OfflineVerdict("refuse", "offline_payment_due", fee_fen=due,
                                  session_id=session.session_id,
                                  display=payment_due(plate, minutes, due, qr=False),
                                  evidence={**evidence, "fee_fen": fee, "paid_fen": paid})
        reason: str
        if session.access in ("pass", "whitelisted") and fee == 0:
            reason = session.access
        elif exemption:
            reason = "exempt"
        else:
            reason = "prepaid" if paid else "free"
        return OfflineVerdict("open", f"offline_{reason}", fee_fen=0,
                              session_id=session.session_id, display=goodbye(plate),
                              evidence={**evidence, "fee_fen": fee, "paid_fen": paid})

    def _session_of(self, read: str) -> str | None:
        try:
            key = PlateIndex.key(stored_spelling(read))
        except PlateError:
            return None
        return self._session_by_key.get(key)

    def _occupied(self) -> set[str]:
        """Passes with ``max_inside`` or more of their cars inside."""
        counts: dict[str, int] = {}
        for session in self._sessions.values():
            if session.pass_id:
                counts[session.pass_id] = counts.get(session.pass_id, 0) + 1
        return {p.pass_id for p in self._passes if counts.get(p.pass_id, 0) >= p.max_inside}

    def _fee(self, session: ReplicaSession, now: datetime) -> tuple[int, bool]:
        """The stay's fee as ``gateway.money.billing.Billing`` prices it, with the plate's
        live merchant coupons offered in the gateway's order (lock held)."""
        document = self._document
        if document is None or session.access == "whitelisted":
            return 0, False
        span: tuple[datetime, datetime] | None = (session.entry_at, now)
        vehicle_class: str | None = None
        if session.access == "pass":
            held = next((p for p in self._passes if p.pass_id == session.pass_id), None)
            if held is not None:
                span = billable_span(session.entry_at, now, held)
                vehicle_class = held.vehicle_class
        if span is None:
            return 0, False
        # entry_at is another clock's (the entry lane's, via the gateway): a few seconds of
        # skew must read as no time parked, not as an exit before the entry (TariffError)
        span = (span[0], max(span[0], span[1]))
        vehicle_class = document.vehicle_class(session.plate, span[0], named=vehicle_class)
        priced = quote(document.book, entry=span[0], exit=span[1], plate=session.plate,
                       vehicle_class=vehicle_class,
                       coupons=self._coupons.offered(session.plate, now),
                       calendar=document.calendar,
                       timezone=document.zone)
        return priced.total_fen, priced.exemption is not None


def _shown(plate: str) -> str | None:
    """What the display may show for a session's plate: a no-plate identity only masked
    (尾号5678), never its text."""
    if not plate or not is_no_plate(plate):
        return plate or None
    try:
        return NoPlateId.parse(plate).masked
    except PlateError:
        return "无牌车"


def _passes(records: Iterable[Any]) -> list[Pass]:
    passes = []
    for record in records:
        try:
            passes.append(pass_from_json(record.model_dump(mode="json")))
        except (ParkGuardError, ValueError, KeyError) as error:
            log.warning("replica pass %s ignored: %s", getattr(record, "pass_id", "?"), error)
    return passes


def _lists(records: Iterable[Any]) -> list[ListEntry]:
    entries = []
    for record in records:
        try:
            entries.append(list_entry_from_json(record.model_dump(mode="json")))
        except (ParkGuardError, ValueError, KeyError) as error:
            log.warning("replica list entry ignored: %s", error)
    return entries
