"""Lane replicas on the real Mosquitto: a retained snapshot, numbered deltas, recovery."""

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
from tests.conftest import TEST_SITE
from tests.helpers import Recorder, eventually
from wire.contract import topics
from wire.contract.messages import (
    CapacityState,
    PassesChanged,
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

    def publish(self, topic: str, payload: bytes | WireMessage, *, qos: int = 1,
                retain: bool = False) -> object:
        assert isinstance(payload, WireMessage)
        self.sent.append((topic, payload, retain))
        return None

    def of(self, part: str, lane: str = "in1") -> list[Any]:
        where = topics.lane_replica(TEST_SITE, lane, part)
        return [p for t, p, _r in self.sent if t == where]


@dataclass
class Gateway:
    store: GatewayStore
    clock: ManualClock
    access: AccessDesk
    payments: PaymentDesk
    provider: SimulatedProvider

    def publisher(self, bus: Any, *, snapshot_every: int = 100) -> ReplicaPublisher:
        return ReplicaPublisher(bus, TEST_SITE, self.clock, lanes=LANES, store=self.store,
                                access=self.access, payments=self.payments,
                                tariff_file=EXAMPLE_TARIFF, snapshot_every=snapshot_every)

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
    return [decode(topic, payload) for topic, payload in list(recorder.messages)]


# --- on the real broker ----------------------------------------------------------------------


def test_a_lane_that_subscribes_late_gets_the_retained_snapshot(
    broker: MosquittoBroker, gw: Gateway
) -> None:
    gw.open_session("s-1", A)
    with MqttBus(broker.address("gateway"), client_id="gateway") as bus:
        sent = gw.publisher(bus).publish_snapshot()
        replica = f"{topics.site_root(TEST_SITE)}/lane/in1/replica/#"
        with Recorder(broker, replica, device="lane-in1") as lane:
            eventually(lambda: len(lane.messages) == 1, what="the retained snapshot")
            (snapshot,) = _decoded(lane)
    assert isinstance(snapshot, ReplicaSnapshot)
    assert snapshot == sent
    assert [s.session_id for s in snapshot.sessions] == ["s-1"]


# --- on the in-memory broker (retained messages and ordering are broker semantics) ----------


@pytest.fixture
def memory() -> Iterator[MemoryBroker]:
    broker = MemoryBroker()
    yield broker
    broker.close()


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
    assert len(watched) == 2 * 7  # the snapshot and 6 deltas, to each of two lanes
    messages: list[Any] = [decode(topic, payload) for topic, payload in watched]
    for lane in LANES:
        mine = [m for (t, _p), m in zip(watched, messages, strict=True)
                if f"/lane/{lane}/" in t]
        assert isinstance(mine[0], ReplicaSnapshot) and mine[0].version == 0
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
        snapshots = bus.of("snapshot", lane)
        assert [s.version for s in snapshots] == [0, 3, 6]
        assert len(snapshots[-1].sessions) == 6
        assert all(retain for t, _p, retain in bus.sent if t.endswith("/snapshot"))
        assert not any(retain for t, _p, retain in bus.sent if t.endswith("/delta"))


def test_a_sync_for_one_lane_goes_to_that_lane_only_at_the_current_version(gw: Gateway) -> None:
    bus = FakeBus()
    publisher = gw.publisher(bus)
    publisher.publish_snapshot()
    publisher.session_opened("s-1", A, START)
    publisher.publish_snapshot(lanes=["out1"])
    assert [s.version for s in bus.of("snapshot", "out1")] == [0, 1]
    assert [s.version for s in bus.of("snapshot", "in1")] == [0]


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
