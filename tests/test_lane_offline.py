"""With the gateway gone the lane decides from its replica, with the gateway's own pure cores.

The test plays the gateway's replica publisher (retained snapshot, deltas, capacity on
``lane/{lane}/replica/...``) but never answers a decide request. Mock pins, the real
locked-down Mosquitto, a manual clock so the fee is exact.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from broker.runner import MosquittoBroker
from firmware.lane.config import JournalSettings, LaneConfig
from firmware.lane.controller import Verdict
from firmware.lane.devices.display import RecordingDisplay
from firmware.lane.node import LaneNode
from gateway.money.pricing import EXAMPLE_TARIFF, SitePricing
from parkguard.clock import ManualClock
from parkguard.core.tariffs import parse_tariff_document, quote
from simulator.camera import GroundTruthReader, SimulatedCamera
from simulator.driver import SimulatedLaneWiring
from simulator.site import settings_of
from tests.conftest import SITE_START, TEST_SITE
from tests.helpers import Recorder, eventually
from wire.contract import topics
from wire.contract.messages import (
    CapacityState,
    LevelState,
    ReplicaDelta,
    ReplicaListEntry,
    ReplicaPass,
    ReplicaPrepaid,
    ReplicaSession,
    ReplicaSnapshot,
    ReplicaTariff,
)
from wire.mqtt import MqttBus

pytestmark = pytest.mark.integration

SITE = TEST_SITE
NOW = SITE_START
EPOCH = "0123456789abcdef"
VISITOR, PASS_CAR, PREPAID, BANNED, STRANGER = (
    "粤B11111", "粤B22222", "粤B33333", "粤B66666", "粤B99999")


def snapshot(version: int = 5) -> ReplicaSnapshot:
    text = EXAMPLE_TARIFF.read_text(encoding="utf-8")
    return ReplicaSnapshot(
        site=SITE, epoch=EPOCH, version=version, taken_at=NOW - timedelta(minutes=1),
        sessions=(
            ReplicaSession(session_id="s-visitor", plate=VISITOR,
                           entry_at=NOW - timedelta(hours=3, minutes=10), access="visitor"),
            ReplicaSession(session_id="s-pass", plate=PASS_CAR,
                           entry_at=NOW - timedelta(hours=5), access="pass", pass_id="P1"),
            ReplicaSession(session_id="s-prepaid", plate=PREPAID,
                           entry_at=NOW - timedelta(hours=2), access="visitor"),
        ),
        passes=(
            ReplicaPass(pass_id="P1", kind="monthly", holder="王*", plates=(PASS_CAR,),
                        valid_from=NOW - timedelta(days=10), valid_until=NOW + timedelta(days=20)),
            ReplicaPass(pass_id="P2", kind="monthly", holder="李*", plates=("粤B44444",),
                        valid_from=NOW - timedelta(days=10), valid_until=NOW + timedelta(days=20)),
        ),
        lists=(ReplicaListEntry(list_name="blacklist", plate=BANNED, reason="fraud"),),
        tariff=ReplicaTariff.of(text, source=str(EXAMPLE_TARIFF)),
        prepaid=(ReplicaPrepaid(session_id="s-prepaid", paid_fen=1_000,
                                grace_until=NOW + timedelta(minutes=10)),),
    )


def capacity(full: bool) -> CapacityState:
    occupied = 100 if full else 3
    return CapacityState(site=SITE, total=100, occupied=occupied, free=100 - occupied,
                         full=full, levels={"B2": LevelState(capacity=100, occupied=occupied,
                                                             full=full)}, ts=NOW)


@dataclass
class Lane:
    node: LaneNode
    pins: SimulatedLaneWiring
    camera: SimulatedCamera
    screen: RecordingDisplay
    clock: ManualClock


class Gateway:
    """What the test may do as the gateway: publish replicas; it never answers a decide."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.bus = MqttBus(broker.address("gateway"), client_id="gateway")
        self.asked: list[dict[str, object]] = []
        self.bus.subscribe(topics.all_lane(SITE, "decide"),
                           lambda _t, p: self.asked.append(json.loads(p)))
        self.bus.start()

    def publish(self, lane: str, part: str, message: object, *, retain: bool) -> None:
        self.bus.publish_and_wait(topics.lane_replica(SITE, lane, part), message,  # type: ignore[arg-type]
                                  retain=retain)


@pytest.fixture
def gateway(broker: MosquittoBroker) -> Iterator[Gateway]:
    gw = Gateway(broker)
    yield gw
    gw.bus.stop()


@contextmanager
def lane(broker: MosquittoBroker, lane_id: str, direction: str, tmp_path: Path) -> Iterator[Lane]:
    clock = ManualClock(NOW)
    config = LaneConfig(site=SITE, lane=lane_id, direction=direction,  # type: ignore[arg-type]
                        broker=settings_of(broker.address(f"lane-{lane_id}")),
                        journal=JournalSettings(path=tmp_path / f"lane-{lane_id}.db"))
    factory = MockFactory()
    camera = SimulatedCamera(clock=clock)
    screen = RecordingDisplay()
    node = LaneNode(config, clock=clock, camera=camera, reader=GroundTruthReader(),
                    pin_factory=factory, display=screen).start()
    try:
        yield Lane(node, SimulatedLaneWiring(config, factory), camera, screen, clock)
    finally:
        node.stop()


def offline(lane: Lane, gateway: Gateway, plate: str) -> Verdict:
    """Drive a car up, let the gateway stay silent past the deadline, take the verdict, and
    let the car go through (or back off)."""
    controller = lane.node.controller
    before, asked = controller.verdicts, len(gateway.asked)
    lane.camera.show(plate)
    lane.pins.arming.drive_high()
    eventually(lambda: len(gateway.asked) > asked, what="decide request")
    lane.clock.advance(timedelta(milliseconds=400))
    eventually(lambda: controller.verdicts > before, what="the lane's own verdict")
    verdict = controller.last_verdict
    assert verdict is not None and verdict.decided_by == "lane"
    if verdict.action == "open":
        eventually(lambda: bool(lane.pins.relay.state), what="barrier up")
        lane.pins.safety.drive_high()
        lane.pins.arming.drive_low()
        lane.pins.safety.drive_low()
        eventually(lambda: not lane.pins.relay.state, what="barrier down")
    else:
        lane.pins.arming.drive_low()
    return verdict


def with_replica(lane: Lane) -> None:
    eventually(lambda: lane.node.replica.has_snapshot, what="replica received")


def test_an_entry_lane_alone_refuses_the_blacklist_and_visitors_when_full(
    broker: MosquittoBroker, gateway: Gateway, tmp_path: Path
) -> None:
    gateway.publish("in1", "snapshot", snapshot(), retain=True)
    with lane(broker, "in1", "entry", tmp_path) as in1:
        with_replica(in1)
        banned = offline(in1, gateway, BANNED)
        assert (banned.action, banned.reason) == ("refuse", "offline_blacklisted")
        assert in1.screen.current == ("禁止入场 请联系管理处",
                                      "Entry refused: please call the office")
        assert offline(in1, gateway, "粤B44444").reason == "offline_pass_entry"
        assert offline(in1, gateway, "粤B55555").reason == "offline_visitor_entry"
        gateway.publish("in1", "capacity", capacity(full=True), retain=True)
        eventually(lambda: in1.node.replica.capacity is not None, what="capacity")
        full = offline(in1, gateway, "粤B77777")
        assert (full.action, full.reason) == ("refuse", "offline_lot_full")
        assert in1.screen.current == ("车位已满", "Car park full")
        assert offline(in1, gateway, "粤B44444").action == "open"  # pass cars still enter


def test_an_exit_lane_alone_prices_the_stay_as_the_gateway_would(
    broker: MosquittoBroker, gateway: Gateway, tmp_path: Path
) -> None:
    gateway.publish("out1", "snapshot", snapshot(), retain=True)
    with Recorder(broker, topics.lane_event(SITE, "out1"), device="monitor-watch1") as events, \
            lane(broker, "out1", "exit", tmp_path) as out1:
        with_replica(out1)
        visitor = offline(out1, gateway, VISITOR)
        left_at = NOW + timedelta(milliseconds=400)
        entered = NOW - timedelta(hours=3, minutes=10)
        document = parse_tariff_document(EXAMPLE_TARIFF.read_text(encoding="utf-8"))
        core = quote(document.book, entry=entered, exit=left_at, plate=VISITOR,
                     calendar=document.calendar, timezone=document.zone).total_fen
        billing = SitePricing.from_file(EXAMPLE_TARIFF).quote(plate=VISITOR, entry=entered,
                                                              exit=left_at).total_fen
        assert core == billing > 0
        assert (visitor.action, visitor.reason, visitor.fee_fen, visitor.session_id) == (
            "open", "offline_paid_at_exit", core, "s-visitor")
        assert "请缴费" in out1.screen.shown[-1][0]

        pass_car = offline(out1, gateway, PASS_CAR)
        assert (pass_car.reason, pass_car.fee_fen) == ("offline_pass", 0)
        prepaid = offline(out1, gateway, PREPAID)
        assert (prepaid.reason, prepaid.fee_fen) == ("offline_prepaid", 0)
        assert "一路平安" in out1.screen.shown[-1][0]

        nobody = offline(out1, gateway, STRANGER)
        assert (nobody.action, nobody.reason) == ("refuse", "offline_no_entry_record")
        assert out1.screen.current == ("无入场记录 请按帮助键", "No entry record: press Help")

        eventually(lambda: sum(json.loads(p)["type"] == "passed" for p in events.payloads())
                   == 3, what="three passages")
        passed = [json.loads(p) for p in events.payloads() if json.loads(p)["type"] == "passed"]
        assert [(p["plate"], p["fee_fen"]) for p in passed] == [
            (VISITOR, core), (PASS_CAR, 0), (PREPAID, 0)]
        decisions = [json.loads(p) for p in events.payloads()
                     if json.loads(p)["type"] == "decision"]
        assert {d["decided_by"] for d in decisions} == {"lane"}


def test_deltas_apply_in_order_a_gap_waits_for_a_snapshot_and_the_replica_survives_reboot(
    broker: MosquittoBroker, gateway: Gateway, tmp_path: Path
) -> None:
    gateway.publish("out1", "snapshot", snapshot(version=5), retain=True)
    late = ReplicaSession(session_id="s-late", plate="粤B12121", entry_at=NOW - timedelta(hours=1),
                          access="visitor")
    with Recorder(broker, topics.lane_event(SITE, "out1"), device="monitor-watch1") as events, \
            lane(broker, "out1", "exit", tmp_path) as out1:
        with_replica(out1)
        gateway.publish("out1", "delta", ReplicaDelta(site=SITE, epoch=EPOCH, version=6, ts=NOW,
                                                      kind="session_opened", data=late),
                        retain=False)
        eventually(lambda: out1.node.replica.version == 6, what="delta applied")
        gap = ReplicaDelta(site=SITE, epoch=EPOCH, version=9, ts=NOW, kind="session_opened",
                           data=late.model_copy(update={"session_id": "s-gap",
                                                        "plate": "粤B13131"}))
        gateway.publish("out1", "delta", gap, retain=False)
        eventually(lambda: out1.node.replica.waiting_for_snapshot, what="gap seen")
        assert out1.node.replica.version == 6
        eventually(lambda: any(json.loads(p).get("code") == "replica_gap"
                               for p in events.payloads()), what="replica_gap fault")
    # The gateway is gone and so is the retained snapshot: the lane still has its replica.
    gateway.publish("out1", "snapshot", b"", retain=True)
    with lane(broker, "out1", "exit", tmp_path) as again:
        assert again.node.replica.version == 6
        verdict = offline(again, gateway, "粤B12121")
        assert (verdict.action, verdict.session_id) == ("open", "s-late")
