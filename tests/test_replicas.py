"""Lane replicas on the real Mosquitto: a snapshot in chunks, numbered deltas, recovery."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from broker.runner import MosquittoBroker
from firmware.lane.replica import LaneReplica
from gateway.lanes.capacity import Capacity, CapacitySettings
from gateway.lanes.replicas import ReplicaPublisher
from gateway.money.passes import AccessDesk
from gateway.money.payments import PaymentDesk, SimulatedProvider
from gateway.money.pricing import EXAMPLE_TARIFF
from gateway.records.audit import AuditLog
from gateway.storage.store import GatewayStore
from parkguard.clock import ManualClock, utc_iso
from parkguard.core.access import entry_access, list_entry_from_json, pass_from_json
from parkguard.core.tariffs import parse_tariff_document
from parkguard.errors import ContractError
from tests.conftest import TEST_SITE
from tests.helpers import Recorder, eventually
from wire.contract import topics
from wire.contract.chunks import join_chunks, split_snapshot
from wire.contract.messages import (
    CapacityState,
    PassesChanged,
    ReplicaChunk,
    ReplicaDelta,
    ReplicaPrepaid,
    ReplicaSession,
    ReplicaSnapshot,
    WireMessage,
    decode,
)
from wire.memory import MemoryBroker
from wire.mqtt import MqttBus

START = datetime(2026, 5, 6, 2, 0, tzinfo=UTC)
LANES = ("in1", "out1")
A, B = "沪A12345", "粤B67890"


@dataclass
class FakeBus:
    """Keeps what would have been published, for the rules that need no broker."""

    sent: list[tuple[str, WireMessage, bool]] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)

    def publish(self, topic: str, payload: bytes | WireMessage, *, qos: int = 1,
                retain: bool = False) -> object:
        if payload == b"" and retain:
            self.cleared.append(topic)
            return None
        assert isinstance(payload, WireMessage)
        self.sent.append((topic, payload, retain))
        return None

    def of(self, part: str, lane: str = "in1") -> list[Any]:
        where = topics.lane_replica(TEST_SITE, lane, part)
        return [p for t, p, _r in self.sent if t == where]

    def snapshots(self, lane: str = "in1") -> list[ReplicaSnapshot]:
        """The snapshots sent to ``lane``, joined from their chunks, in order."""
        return _joined(self.of("snapshot", lane))


def _joined(chunks: list[ReplicaChunk]) -> list[ReplicaSnapshot]:
    by_id: dict[str, list[ReplicaChunk]] = {}
    for chunk in chunks:
        by_id.setdefault(chunk.snapshot, []).append(chunk)
    return [join_chunks(pieces) for pieces in by_id.values()]


@dataclass
class Gateway:
    store: GatewayStore
    clock: ManualClock
    access: AccessDesk
    payments: PaymentDesk
    provider: SimulatedProvider

    def publisher(self, bus: Any, *, snapshot_every: int = 100,
                  max_packet_size: int = 256 * 1024) -> ReplicaPublisher:
        return ReplicaPublisher(bus, TEST_SITE, self.clock, lanes=LANES, store=self.store,
                                access=self.access, payments=self.payments,
                                tariff_file=EXAMPLE_TARIFF, snapshot_every=snapshot_every,
                                max_packet_size=max_packet_size)

    def open_session(self, session_id: str, plate: str, *, access: str = "visitor",
                     pass_id: str | None = None, minutes_ago: int = 30) -> None:
        self.store.db.table("sessions").insert({
            "session_id": session_id, "plate": plate, "state": "open", "entry_lane": "in1",
            "entry_at": utc_iso(self.clock.now() - timedelta(minutes=minutes_ago)),
            "fee_fen": 0, "access": access, "pass_id": pass_id})


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Gateway]:
    store = GatewayStore.open(tmp_path / "gateway.db")
    clock = ManualClock(START)
    audit = AuditLog(store.db, clock=clock)
    provider = SimulatedProvider(b"test-secret", clock)
    yield Gateway(store, clock, AccessDesk(store.db, clock=clock, audit=audit),
                  PaymentDesk(store.db, clock=clock, audit=audit, provider=provider),
                  provider)
    store.close()


def _decoded(recorder: Recorder) -> list[Any]:
    return [decode(topic, payload) for topic, payload in list(recorder.messages) if payload]


# --- on the real broker ----------------------------------------------------------------------


def test_a_lane_joins_the_snapshot_from_chunks_that_each_fit_the_packet_limit(
    broker: MosquittoBroker, gw: Gateway
) -> None:
    for n in range(40):
        gw.open_session(f"s-{n:03d}", f"粤B{n:05d}")
    replica = f"{topics.site_root(TEST_SITE)}/lane/in1/replica/snapshot"
    with Recorder(broker, replica, device="lane-in1") as lane, \
            MqttBus(broker.address("gateway"), client_id="gateway") as bus:
        sent = gw.publisher(bus, max_packet_size=2048).publish_snapshot()

        def chunks() -> list[ReplicaChunk]:
            return [c for c in _decoded(lane) if isinstance(c, ReplicaChunk)]

        eventually(lambda: len(chunks()) >= 1 and len(chunks()) == chunks()[0].count,
                   what="every chunk of the snapshot")
        assert max(len(p) for _t, p in lane.messages) <= 2048
        assert bus.disconnects == 0 and bus.oversized == 0
    assert len(chunks()) > 3
    assert join_chunks(chunks()) == sent
    assert [s.session_id for s in sent.sessions][:2] == ["s-000", "s-001"]


# --- on the in-memory broker (retained messages and ordering are broker semantics) ----------


def _watch(broker: MemoryBroker, topic_filter: str) -> list[tuple[str, bytes]]:
    seen: list[tuple[str, bytes]] = []
    broker.bus(f"watch-{len(topic_filter)}").start().subscribe(
        topic_filter, lambda topic, payload: seen.append((topic, payload)))
    return seen


def test_deltas_arrive_in_order_with_versions_after_the_snapshot(
    memory: MemoryBroker, gw: Gateway
) -> None:
    replica = f"{topics.site_root(TEST_SITE)}/lane/+/replica/#"
    watched = _watch(memory, replica)
    publisher = gw.publisher(memory.bus("gateway").start())
    publisher.publish_snapshot()
    for n in range(5):
        publisher.session_opened(f"s-{n}", A, START, "visitor")
    publisher.session_closed("s-0", START + timedelta(minutes=5))
    memory.settle()
    watched = [(topic, payload) for topic, payload in watched if payload]  # not the clear
    assert len(watched) == 2 * 7  # the snapshot (one chunk) and 6 deltas, to each of two lanes
    messages: list[Any] = [decode(topic, payload) for topic, payload in watched]
    for lane in LANES:
        mine = [m for (t, _p), m in zip(watched, messages, strict=True)
                if f"/lane/{lane}/" in t]
        assert isinstance(mine[0], ReplicaChunk) and mine[0].version == 0
        assert [d.version for d in mine[1:]] == [1, 2, 3, 4, 5, 6]
        assert [d.kind for d in mine[1:]] == ["session_opened"] * 5 + ["session_closed"]
        assert {d.epoch for d in mine} == {publisher.epoch}


def test_capacity_is_retained_for_each_lane(memory: MemoryBroker, gw: Gateway) -> None:
    publisher = gw.publisher(memory.bus("gateway").start())
    capacity = Capacity(CapacitySettings(total=2), site=TEST_SITE, clock=gw.clock,
                        publish=publisher.publish_capacity)
    capacity.entered("s-1", "in1")
    capacity.entered("s-2", "in1")
    memory.settle()
    where = topics.lane_replica(TEST_SITE, "in1", "capacity")
    watched = _watch(memory, where)  # subscribes after the fact: the retained state comes
    memory.settle()
    assert len(watched) == 1
    state = decode(*watched[0])
    assert isinstance(state, CapacityState)
    assert (state.occupied, state.free, state.full) == (2, 0, True)


# --- what the replica holds ------------------------------------------------------------------


def test_the_snapshot_holds_what_a_lane_needs_to_decide_alone(gw: Gateway) -> None:
    monthly = gw.access.issue_pass("monthly", [A], START - timedelta(days=1),
                                   START + timedelta(days=30), "王芳", actor="office:1",
                                   reason="paid", phone="13812345678")
    gw.access.list_plate("blacklist", B, "fraudulent plate", "office:1")
    gw.open_session("s-1", A, access="pass", pass_id=monthly.pass_id, minutes_ago=60)
    gw.open_session("s-2", "京AD12345", minutes_ago=10)
    snapshot = gw.publisher(FakeBus()).snapshot()
    assert [(s.session_id, s.access, s.pass_id) for s in snapshot.sessions] == [
        ("s-1", "pass", monthly.pass_id), ("s-2", "visitor", None)]
    (replica_pass,) = snapshot.passes
    rebuilt = pass_from_json(replica_pass.model_dump(mode="json"))
    assert rebuilt.plates == monthly.plates and rebuilt.phone is None
    assert rebuilt.holder != "王芳"  # masked
    lists = [list_entry_from_json(e.model_dump(mode="json")) for e in snapshot.lists]
    assert entry_access(B, START, passes=[rebuilt], lists=lists, occupied=set()).refused
    text = EXAMPLE_TARIFF.read_text(encoding="utf-8")
    assert snapshot.tariff.text == text
    assert snapshot.tariff.sha256 == hashlib.sha256(text.encode()).hexdigest()
    parse_tariff_document(snapshot.tariff.text, source="replica")


def test_a_prepayment_is_a_paid_delta_and_part_of_the_next_snapshot(gw: Gateway) -> None:
    gw.open_session("s-1", A)
    bus = FakeBus()
    publisher = gw.publisher(bus)
    pending = gw.payments.start_prepayment("s-1", A, 700)
    gw.payments.handle_callback(*gw.provider.pay(pending.provider_ref))
    delta = publisher.paid("s-1")
    assert delta.kind == "paid"
    assert delta.data == ReplicaPrepaid(session_id="s-1", paid_fen=700,
                                        grace_until=START + timedelta(minutes=15))
    assert publisher.snapshot().prepaid == (delta.data,)


def test_pass_and_list_changes_are_sent_whole_and_only_when_something_changed(
    gw: Gateway
) -> None:
    bus = FakeBus()
    publisher = gw.publisher(bus)
    publisher.publish_snapshot()
    assert publisher.passes_changed() == []
    gw.access.issue_pass("monthly", [A], START, START + timedelta(days=30), "王芳",
                         actor="office:1", reason="paid")
    (delta,) = publisher.passes_changed()
    assert delta.kind == "pass_changed"
    assert isinstance(delta.data, PassesChanged) and len(delta.data.passes) == 1
    gw.access.list_plate("whitelist", B, "landlord", "office:1")
    assert [d.kind for d in publisher.passes_changed()] == ["list_changed"]
    assert publisher.passes_changed() == []


def test_a_fresh_snapshot_goes_to_every_lane_every_n_deltas(gw: Gateway) -> None:
    bus = FakeBus()
    publisher = gw.publisher(bus, snapshot_every=3)
    publisher.publish_snapshot()
    for n in range(7):
        gw.open_session(f"s-{n}", A)
        publisher.session_opened(f"s-{n}", A, START)
    for lane in LANES:
        snapshots = bus.snapshots(lane)
        assert [s.version for s in snapshots] == [0, 3, 6]
        assert len(snapshots[-1].sessions) == 6
        assert not any(retain for _t, _p, retain in bus.sent)  # chunks and deltas alike


def test_a_sync_for_one_lane_goes_to_that_lane_only_at_the_current_version(gw: Gateway) -> None:
    bus = FakeBus()
    publisher = gw.publisher(bus)
    publisher.publish_snapshot()
    publisher.session_opened("s-1", A, START)
    publisher.publish_snapshot(lanes=["out1"])
    assert [s.version for s in bus.snapshots("out1")] == [0, 1]
    assert [s.version for s in bus.snapshots("in1")] == [0]


def test_every_start_is_a_new_epoch_so_old_versions_cannot_pass_for_new_ones(
    gw: Gateway
) -> None:
    first, second = gw.publisher(FakeBus()), gw.publisher(FakeBus())
    assert first.epoch != second.epoch


def test_deltas_are_exactly_what_travels(gw: Gateway) -> None:
    bus = FakeBus()
    delta = gw.publisher(bus).session_opened("s-9", A, START, "pass", "P-1")
    wire = json.loads(delta.to_json())
    assert wire["data"] == {"session_id": "s-9", "plate": A, "entry_at": utc_iso(START),
                            "access": "pass", "pass_id": "P-1"}
    assert ReplicaDelta.from_json(delta.to_json()) == delta
    assert isinstance(delta.data, ReplicaSession)


@pytest.mark.parametrize("every", [0, -1, True])
def test_snapshot_every_must_be_a_positive_int(gw: Gateway, every: int) -> None:
    with pytest.raises(ValueError, match="snapshot_every"):
        gw.publisher(FakeBus(), snapshot_every=every)


# --- chunks: every packet within the limit, the lane switches only on a whole snapshot -------


def _big(gw: Gateway, cars: int = 60) -> None:
    for n in range(cars):
        gw.open_session(f"s-{n:03d}", f"粤B{n:05d}")


def test_chunks_each_fit_the_budget_and_join_to_the_same_snapshot(gw: Gateway) -> None:
    _big(gw)
    snapshot = gw.publisher(FakeBus()).snapshot()
    chunks = split_snapshot(snapshot, max_payload=1500, snapshot_id="0123abcd")
    assert len(chunks) > 5
    assert max(len(c.to_json()) for c in chunks) <= 1500  # quotes and 粤 measured, not guessed
    assert {(c.count, c.snapshot) for c in chunks} == {(len(chunks), "0123abcd")}
    assert join_chunks(reversed(chunks)) == snapshot
    with pytest.raises(ContractError, match=r"have chunks \[0, 2"):
        join_chunks([c for c in chunks if c.index != 1])
    tampered = chunks[1].model_copy(update={"data": chunks[1].data.replace("粤", "沪")})
    with pytest.raises(ContractError, match="sha256 does not match"):
        join_chunks([tampered if c.index == 1 else c for c in chunks])
    with pytest.raises(ValueError, match="leaves"):
        split_snapshot(snapshot, max_payload=250, snapshot_id="0123abcd")


def _feed(replica: LaneReplica, bus: FakeBus, lane: str = "in1", *,
          skip: int | None = None) -> list[str]:
    """Hand ``lane``'s messages (chunks and deltas) to the replica, in order, but chunk
    ``skip`` of every snapshot; what became of each."""
    outcomes = []
    for topic, message, _retain in bus.sent:
        if f"/lane/{lane}/" not in topic:
            continue
        if isinstance(message, ReplicaChunk) and message.index == skip:
            continue
        outcomes.append(replica.on_message(topic, message.to_json()))
    bus.sent.clear()
    return outcomes


def test_a_lane_switches_only_when_every_chunk_of_one_snapshot_is_there(gw: Gateway) -> None:
    _big(gw)
    bus = FakeBus()
    publisher = gw.publisher(bus, max_packet_size=2048)
    replica = LaneReplica(site=TEST_SITE, lane="in1")
    publisher.publish_snapshot()
    outcomes = _feed(replica, bus)
    assert outcomes[-1] == "snapshot" and set(outcomes[:-1]) == {"chunk"}
    assert replica.sessions_inside == 60 and replica.version == 0
    # A new epoch (a gateway restart with one more car) whose chunk 2 is lost: the lane keeps
    # deciding from the replica it has; the next delta shows the gap and it asks for a sync.
    gw.open_session("s-new", "粤B99999")
    restarted = gw.publisher(bus, max_packet_size=2048)
    restarted.publish_snapshot()
    assert "snapshot" not in _feed(replica, bus, skip=2)
    assert (replica.epoch, replica.sessions_inside) == (publisher.epoch, 60)
    restarted.session_closed("s-000", START)
    assert _feed(replica, bus) == ["gap"]
    assert replica.waiting_for_snapshot and replica.gaps == 1
    restarted.publish_snapshot(lanes=["in1"])  # the sync the lane's fault asks for
    assert _feed(replica, bus)[-1] == "snapshot"
    assert (replica.epoch, replica.version, replica.sessions_inside) == (restarted.epoch, 1, 61)
    assert not replica.waiting_for_snapshot


def test_a_lost_sync_snapshot_is_reported_again_and_an_old_one_never_wins(gw: Gateway) -> None:
    _big(gw, 20)
    bus = FakeBus()
    publisher = gw.publisher(bus, max_packet_size=2048)
    replica = LaneReplica(site=TEST_SITE, lane="in1")
    publisher.publish_snapshot()
    _feed(replica, bus)
    publisher.session_opened("s-a", "粤B77777", START)
    bus.sent.clear()  # lost: the next delta is a gap
    publisher.session_opened("s-b", "粤B88888", START)
    assert _feed(replica, bus) == ["gap"] and replica.gaps == 1
    publisher.publish_snapshot(lanes=["in1"])
    assert "snapshot" not in _feed(replica, bus, skip=0)  # the sync loses a piece too
    publisher.session_opened("s-c", "粤B66666", START)  # overtakes it: reported again
    assert _feed(replica, bus) == ["gap"] and replica.gaps == 2
    publisher.publish_snapshot(lanes=["in1"])
    assert _feed(replica, bus)[-1] == "snapshot" and replica.version == 3
    old = publisher.snapshot().model_copy(update={"version": 1})
    assert replica.apply_snapshot(old) == "stale" and replica.version == 3


def test_a_chunk_that_contradicts_its_snapshot_is_refused_and_a_clear_is_ignored(
    gw: Gateway
) -> None:
    _big(gw, 20)
    bus = FakeBus()
    gw.publisher(bus, max_packet_size=2048).publish_snapshot()
    replica = LaneReplica(site=TEST_SITE, lane="in1")
    topic, first, _r = bus.sent[0]
    assert isinstance(first, ReplicaChunk)
    assert replica.on_message(topic, first.to_json()) == "chunk"
    forged = first.model_copy(update={"index": 1, "count": first.count + 1})
    assert replica.on_message(topic, forged.to_json()) == "refused"
    assert replica.on_message(topic, b"") == "cleared"
    assert replica.rejected == 1 and not replica.has_snapshot
    assert bus.cleared == [topics.lane_replica(TEST_SITE, lane, "snapshot") for lane in LANES]


def test_a_delta_too_big_for_a_packet_goes_out_as_a_snapshot(gw: Gateway) -> None:
    bus = FakeBus()
    publisher = gw.publisher(bus, max_packet_size=2048)
    publisher.publish_snapshot()
    for n in range(12):  # the whole set of passes is more than one packet
        gw.access.issue_pass("monthly", [f"沪A{n:05d}"], START, START + timedelta(days=30),
                             "王芳", actor="office:1", reason="paid")
    publisher.passes_changed()
    assert bus.of("delta") == []
    (_first, fresh) = bus.snapshots()
    assert (fresh.version, len(fresh.passes)) == (1, 12)
    assert max(len(m.to_json()) for _t, m, _r in bus.sent) <= 2048
    delta = publisher.session_opened("s-1", A, START)
    assert delta.version == 2 and bus.of("delta") == [delta]


def test_a_snapshot_at_the_same_version_is_built_once_and_completes_a_lost_chunk(
    gw: Gateway
) -> None:
    _big(gw, 20)
    bus = FakeBus()
    publisher = gw.publisher(bus, max_packet_size=2048)
    replica = LaneReplica(site=TEST_SITE, lane="in1")
    publisher.publish_snapshot()  # at start
    assert "snapshot" not in _feed(replica, bus, skip=1)
    publisher.publish_snapshot(lanes=["in1"])  # the lane's online state, at once
    ids = {m.snapshot for _t, m, _r in bus.sent if isinstance(m, ReplicaChunk)}
    outcomes = _feed(replica, bus)
    assert outcomes[1] == "snapshot" and outcomes.count("snapshot") == 1  # chunk 1 was missing
    assert replica.sessions_inside == 20 and replica.stale == 0
    gw.clock.advance(timedelta(minutes=2))
    publisher.publish_snapshot(lanes=["in1"])
    assert {m.snapshot for _t, m, _r in bus.sent if isinstance(m, ReplicaChunk)}.isdisjoint(ids)
