"""What each lane needs to decide alone, kept current on the bus: a snapshot, then deltas.

A lane that loses the gateway still has to answer the car in front of it (DESIGN.md,
"a lane works offline"). :class:`ReplicaPublisher` gives every lane, on its own topics
``lane/{lane}/replica/...`` (only that lane may read them):

- ``snapshot`` (QoS 1, not retained): the cars inside, the passes and lists, the tariff file
  verbatim with its SHA-256, the prepaid sessions and the live merchant coupons —
  :class:`~wire.contract.messages.ReplicaSnapshot`, cut into
  :class:`~wire.contract.messages.ReplicaChunk` messages that each fit the broker's
  ``max_packet_size`` (:mod:`wire.contract.chunks`): a whole snapshot of a big site is
  megabytes, and a packet over the limit gets the gateway disconnected;
- ``delta`` (QoS 1): each change after it, numbered ``version`` + 1, + 2, ...
  — :class:`~wire.contract.messages.ReplicaDelta`; a delta that would not fit a packet (the
  whole set of passes at a site with thousands) is sent as a fresh snapshot instead;
- ``capacity`` (retained): occupancy and lot full, from :mod:`gateway.lanes.capacity`.

**Versions and recovery** (``docs/replicas.md``). Versions count within an ``epoch`` that is
new every time the gateway starts. A lane applies a delta only if it has the same epoch and
exactly the next version; an older one is a repeat (QoS 1 may deliver twice) and is ignored;
anything else is a gap: the lane keeps deciding from what it has and asks for a ``sync``,
which the gateway answers with :meth:`ReplicaPublisher.publish_snapshot` for that lane. A
fresh snapshot also goes to every lane each ``snapshot_every`` deltas and to a lane whose
state comes back online (chunks are not retained: the lane's journal keeps its last one).

Deltas replace, never add up: ``session_opened``/``session_closed`` carry the session,
``paid`` the session's whole prepayment so far, ``pass_changed``/``list_changed`` the whole
set of passes or lists, ``coupons_changed`` one plate's whole set of live coupons. Applying
one twice does no harm.

The publisher is owned by the gateway's worker thread (it reads the worker's connection).
Call it after the transaction that made the change has committed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from gateway.money.merchants import IssuedCoupon, MerchantAccounts
from gateway.money.passes import AccessDesk
from gateway.money.payments import PaymentDesk
from gateway.storage.store import GatewayStore
from parkguard.clock import Clock
from parkguard.configfile import MAX_PACKET_SIZE
from parkguard.core.access import ListEntry, list_entry_to_json
from parkguard.errors import ConfigError
from wire.contract import topics
from wire.contract.chunks import split_snapshot
from wire.contract.messages import (
    CapacityState,
    DeltaData,
    DeltaKind,
    ListsChanged,
    PassesChanged,
    PlateCoupons,
    ReplicaChunk,
    ReplicaCoupon,
    ReplicaDelta,
    ReplicaListEntry,
    ReplicaPass,
    ReplicaPrepaid,
    ReplicaSession,
    ReplicaSnapshot,
    ReplicaTariff,
    SessionAccess,
    SessionClosed,
    WireMessage,
)
from wire.mqtt import max_payload_size

__all__ = ["DEFAULT_SNAPSHOT_EVERY", "ReplicaBus", "ReplicaPublisher"]

_log = logging.getLogger(__name__)

DEFAULT_SNAPSHOT_EVERY = 200
"""Deltas between two snapshots to every lane: at a busy mall about an hour of traffic, so
the retained snapshot a reconnecting lane finds is at most that far behind (and it asks
for a sync when it sees the gap)."""

_MONEY_IN = ("paid", "partly_refunded", "refunded")

_REUSE = timedelta(seconds=60)
"""A snapshot built less than this long ago at the same version is sent again as it is: at
a big site building one takes seconds of the worker's time, and a gateway start brings a
sync for every lane whose state is online at once."""


class ReplicaBus(Protocol):
    """The part of :class:`wire.mqtt.MqttBus` the publisher uses (tests may record)."""

    def publish(self, topic: str, payload: bytes | WireMessage, *, qos: int = 1,
                retain: bool = False) -> object: ...


class ReplicaPublisher:
    """Builds each lane's replica from the gateway's records and keeps it current.

    ``lanes`` are the lane ids to publish to (the gateway's bundle lists them in
    ``lane_keys``). ``tariff_file`` is read once, here, as the gateway reads it once at
    start: a lane must price with the very file the gateway prices with.
    ``max_packet_size`` is the broker's limit (the bus's): no message it publishes is bigger.
    """

    def __init__(self, bus: ReplicaBus, site: str, clock: Clock, *, lanes: Iterable[str],
                 store: GatewayStore, access: AccessDesk, payments: PaymentDesk,
                 tariff_file: Path, snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
                 epoch: str | None = None, max_packet_size: int = MAX_PACKET_SIZE,
                 merchants: MerchantAccounts | None = None,
                 holds: Callable[[], Iterable[ListEntry]] | None = None) -> None:
        """``holds``: the plates held at the exit now (``HoldDesk.list_entries``), sent as
        ``hold`` entries beside the lists so an exit deciding alone refuses them too."""
        if isinstance(snapshot_every, bool) or not isinstance(snapshot_every, int) \
                or snapshot_every < 1:
            raise ValueError(f"snapshot_every must be a positive int, got {snapshot_every!r}")
        self.site = topics.check_segment(site, what="site")
        self.lanes = tuple(sorted({topics.check_segment(x, what="lane") for x in lanes}))
        self._bus = bus
        self._clock = clock
        self._store = store
        self._access = access
        self._payments = payments
        self._merchants = merchants
        self.holds = holds
        self.snapshot_every = snapshot_every
        self.epoch = epoch or uuid.uuid4().hex[:16]
        try:
            text = tariff_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"{tariff_file}: cannot read tariff file: {error}") from error
        self.tariff = ReplicaTariff.of(text, source=str(tariff_file))
        self.version = 0
        self.chunks_sent = 0
        self._since_snapshot = 0
        self._cleared = False
        self._built: tuple[int, ReplicaSnapshot, list[ReplicaChunk]] | None = None
        # One budget for every lane (the longest topic): the same chunks go to each.
        self._budget = min(max_payload_size(topics.lane_replica(self.site, lane, part), qos=1,
                                             limit=max_packet_size)
                            for lane in self.lanes or ("x" * 32,)
                            for part in ("snapshot", "delta"))
        self._passes: tuple[ReplicaPass, ...] | None = None
        self._lists: tuple[ReplicaListEntry, ...] | None = None

    # --- snapshots -------------------------------------------------------------------------

    def snapshot(self) -> ReplicaSnapshot:
        """The replica as it stands now, at the current version."""
        access = self._access.snapshot()
        passes = tuple(ReplicaPass.model_validate(p) for p in access["passes"])
        lists = self._lists_of(access)
        return ReplicaSnapshot(
            site=self.site, epoch=self.epoch, version=self.version, taken_at=self._clock.now(),
            sessions=tuple(self._open_sessions()), passes=passes, lists=lists,
            tariff=self.tariff, prepaid=tuple(self._prepaid()),
            coupons=tuple(self._coupons()))

    def publish_snapshot(self, lanes: Iterable[str] | None = None) -> ReplicaSnapshot:
        """Publish a fresh snapshot in chunks to ``lanes``, default every lane: at start, on a
        lane's ``sync`` request, when a lane comes back online."""
        targets = self.lanes if lanes is None else tuple(lanes)
        snapshot, chunks = self._current()
        if not self._cleared:
            self._clear_retained()
        for lane in targets:
            topic = topics.lane_replica(self.site, lane, "snapshot")
            for chunk in chunks:
                self._bus.publish(topic, chunk, qos=1)
            self.chunks_sent += len(chunks)
        if lanes is None:
            self._since_snapshot = 0
        self._passes, self._lists = snapshot.passes, snapshot.lists
        _log.info("replica snapshot v%d (%s) to %s: %d inside, %d chunks", snapshot.version,
                  self.epoch, ", ".join(targets), len(snapshot.sessions), len(chunks))
        return snapshot

    def _current(self) -> tuple[ReplicaSnapshot, list[ReplicaChunk]]:
        """The snapshot at the current version and its chunks: built again unless one was
        built at this version within :data:`_REUSE` (the same publication id, so a lane that
        lost a chunk of it completes it from the repeat)."""
        built = self._built
        if built is not None and built[0] == self.version \
                and self._clock.now() - built[1].taken_at < _REUSE:
            return built[1], built[2]
        snapshot = self.snapshot()
        chunks = split_snapshot(snapshot, max_payload=self._budget,
                                snapshot_id=uuid.uuid4().hex[:16])
        self._built = (self.version, snapshot, chunks)
        return snapshot, chunks

    def _clear_retained(self) -> None:
        """Remove a whole snapshot an older gateway left retained on the snapshot topics: a
        lane would take it for a chunk and refuse it on every subscribe."""
        for lane in self.lanes:
            self._bus.publish(topics.lane_replica(self.site, lane, "snapshot"), b"", qos=1,
                              retain=True)
        self._cleared = True

    # --- deltas ----------------------------------------------------------------------------

    def session_opened(self, session_id: str, plate: str, entry_at: datetime,
                       access: SessionAccess = "visitor",
                       pass_id: str | None = None) -> ReplicaDelta:
        """A car has entered (its session is stored)."""
        return self._delta("session_opened", ReplicaSession(
            session_id=session_id, plate=plate, entry_at=entry_at, access=access,
            pass_id=pass_id))

    def session_closed(self, session_id: str, exit_at: datetime) -> ReplicaDelta:
        """A car has left (its session is closed); the coupons its exit used follow."""
        delta = self._delta("session_closed", SessionClosed(session_id=session_id,
                                                            exit_at=exit_at))
        self.coupons_changed()
        return delta

    def paid(self, session_id: str) -> ReplicaDelta:
        """A payment for ``session_id`` was recorded or refunded: its prepayment as it now
        stands (read from the payments table, so a repeat says the same)."""
        money = self._payments.money_for(session_id)
        grace_until = None
        if money.last_paid_at is not None and money.paid_fen > 0:
            grace_until = money.last_paid_at + timedelta(minutes=self._payments.grace_minutes)
        return self._delta("paid", ReplicaPrepaid(session_id=session_id,
                                                  paid_fen=money.paid_fen,
                                                  grace_until=grace_until))

    def passes_changed(self) -> list[ReplicaDelta]:
        """Call after any pass or list change: publishes ``pass_changed`` and/or
        ``list_changed`` with the whole new set, only for what really changed."""
        snapshot = self._access.snapshot()
        passes = tuple(ReplicaPass.model_validate(p) for p in snapshot["passes"])
        lists = self._lists_of(snapshot)
        sent: list[ReplicaDelta] = []
        if passes != self._passes:
            self._passes = passes
            sent.append(self._delta("pass_changed", PassesChanged(passes=passes)))
        if lists != self._lists:
            self._lists = lists
            sent.append(self._delta("list_changed", ListsChanged(lists=lists)))
        return sent

    def coupons_changed(self) -> list[ReplicaDelta]:
        """Call after coupons were issued, claimed, revoked or used (the merchant desk
        remembers which plates): one ``coupons_changed`` per plate, with its whole live set
        read back from the records, so a repeat says the same."""
        if self._merchants is None:
            return []
        merchants = self._merchants
        return [self._delta("coupons_changed", PlateCoupons(
                    plate=plate, coupons=tuple(_wire_coupon(c)
                                               for c in merchants.coupons_for(plate))))
                for plate in sorted(merchants.drain_touched())]

    # --- capacity --------------------------------------------------------------------------

    def publish_capacity(self, state: CapacityState) -> None:
        """Put the lot's state on every lane (retained): give this to
        :class:`gateway.lanes.capacity.Capacity` as its ``publish`` callback."""
        for lane in self.lanes:
            self._bus.publish(topics.lane_replica(self.site, lane, "capacity"), state,
                              qos=1, retain=True)

    # --- helpers ---------------------------------------------------------------------------

    def _lists_of(self, access: dict[str, Any]) -> tuple[ReplicaListEntry, ...]:
        """The white and black lists in force, then the plates held at the exit."""
        held = [list_entry_to_json(e) for e in self.holds()] if self.holds else []
        return tuple(ReplicaListEntry.model_validate(e) for e in (*access["lists"], *held))

    def _delta(self, kind: DeltaKind, data: DeltaData) -> ReplicaDelta:
        self.version += 1
        delta = ReplicaDelta(site=self.site, epoch=self.epoch, version=self.version,
                             ts=self._clock.now(), kind=kind, data=data)
        if len(delta.to_json()) > self._budget:
            # Too big for one packet (the whole set of thousands of passes): the lanes get
            # this version as a snapshot, in chunks, and the next delta follows it.
            _log.info("replica %s v%d does not fit a packet: sent as a snapshot", kind,
                      self.version)
            self.publish_snapshot()
            return delta
        for lane in self.lanes:
            self._bus.publish(topics.lane_replica(self.site, lane, "delta"), delta, qos=1)
        self._since_snapshot += 1
        if self._since_snapshot >= self.snapshot_every:
            self.publish_snapshot()
        return delta

    def _open_sessions(self) -> Iterable[ReplicaSession]:
        for row in self._store.db.query(
                "SELECT session_id, plate, entry_at, access, pass_id FROM sessions "
                "WHERE state = 'open' ORDER BY entry_at, session_id"):
            yield ReplicaSession(session_id=row["session_id"], plate=row["plate"] or "",
                                 entry_at=row["entry_at"], access=row["access"] or "visitor",
                                 pass_id=row["pass_id"])

    def _coupons(self) -> Iterable[ReplicaCoupon]:
        """Every live merchant coupon: what an offline exit offers the quote."""
        if self._merchants is None:
            return
        for coupon in self._merchants.live_coupons():
            yield _wire_coupon(coupon)

    def _prepaid(self) -> Iterable[ReplicaPrepaid]:
        """Cars inside that paid in advance: the same sums as ``PaymentDesk.money_for``."""
        grace = timedelta(minutes=self._payments.grace_minutes)
        rows: Iterable[dict[str, Any]] = self._store.db.query(
            "SELECT p.session_id, sum(p.amount_fen - p.refunded_fen) AS paid, "
            "max(CASE WHEN p.amount_fen > p.refunded_fen THEN p.paid_at END) AS last_paid "
            "FROM payments p JOIN sessions s ON s.session_id = p.session_id "
            "WHERE s.state = 'open' AND p.purpose = 'fee' AND p.state IN (?, ?, ?) "
            "GROUP BY p.session_id HAVING paid > 0 ORDER BY p.session_id", _MONEY_IN)
        for row in rows:
            last = datetime.fromisoformat(row["last_paid"])
            yield ReplicaPrepaid(session_id=row["session_id"], paid_fen=int(row["paid"]),
                                 grace_until=last + grace)


def _wire_coupon(coupon: IssuedCoupon) -> ReplicaCoupon:
    grant = coupon.grant
    return ReplicaCoupon(coupon_id=coupon.coupon_id, plate=coupon.plate, kind=grant.kind,
                         rule=grant.rule or None, minutes=grant.minutes, fen=grant.fen,
                         issued_at=datetime.fromisoformat(coupon.issued_at),
                         expires_at=datetime.fromisoformat(coupon.expires_at))
