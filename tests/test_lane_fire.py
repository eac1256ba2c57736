"""A fire opens every barrier and keeps it open; a flood closes the entries. Mock pins, the
real locked-down Mosquitto, the retained ``alarm/fire`` and ``alarm/flood`` as the gateway
(or the fire panel) sets them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from broker.runner import MosquittoBroker
from firmware.lane.config import JournalSettings, LaneConfig, PinMap
from firmware.lane.devices.display import TEXTS, RecordingDisplay
from firmware.lane.node import LaneNode
from parkguard.clock import ManualClock
from simulator.camera import GroundTruthReader, SimulatedCamera
from simulator.driver import SimulatedLaneWiring
from simulator.site import settings_of
from tests.conftest import SITE_START, TEST_SITE
from tests.helpers import Recorder, eventually, give_the_lane_time_to_misbehave
from wire.contract import topics
from wire.contract.messages import AlarmState
from wire.mqtt import MqttBus

pytestmark = pytest.mark.integration

SITE = TEST_SITE
FIRE_PIN = 23


@dataclass
class Lane:
    node: LaneNode
    pins: SimulatedLaneWiring
    camera: SimulatedCamera
    screen: RecordingDisplay
    factory: MockFactory

    @property
    def relay_up(self) -> bool:
        return bool(self.pins.relay.state)

    def fire_pin(self) -> MockPin:
        pin: MockPin = self.factory.pin(FIRE_PIN)
        return pin


@contextmanager
def lane(broker: MosquittoBroker, lane_id: str, direction: str, tmp_path: Path,
         clock: ManualClock, *, fire_input: int | None = None) -> Iterator[Lane]:
    config = LaneConfig(
        site=SITE, lane=lane_id, direction=direction,  # type: ignore[arg-type]
        broker=settings_of(broker.address(f"lane-{lane_id}")),
        pins=PinMap(fire_input=fire_input),
        journal=JournalSettings(path=tmp_path / f"lane-{lane_id}.db"),
    )
    factory = MockFactory()
    camera = SimulatedCamera(clock=clock)
    screen = RecordingDisplay()
    node = LaneNode(config, clock=clock, camera=camera, reader=GroundTruthReader(),
                    pin_factory=factory, display=screen).start()
    try:
        yield Lane(node, SimulatedLaneWiring(config, factory), camera, screen, factory)
    finally:
        node.stop()


@pytest.fixture
def gateway_bus(broker: MosquittoBroker) -> Iterator[MqttBus]:
    with MqttBus(broker.address("gateway"), client_id="gateway") as bus:
        yield bus


def set_alarm(bus: MqttBus, kind: str, active: bool) -> None:
    state = AlarmState(kind=kind, active=active, source="gateway",  # type: ignore[arg-type]
                       zone="B2-east" if active else None, ts=datetime.now(UTC))
    bus.publish_and_wait(topics.alarm(SITE, kind), state, retain=True)


def retained_mode(broker: MosquittoBroker, lane_id: str) -> str:
    with Recorder(broker, topics.lane_state(SITE, lane_id), device="monitor-watch3") as states:
        eventually(lambda: bool(states.payloads()), what="retained lane state")
        return str(json.loads(states.payloads()[-1])["mode"])


def of_type(recorder: Recorder, kind: str) -> list[dict[str, object]]:
    return [e for e in map(json.loads, recorder.payloads()) if e["type"] == kind]


@pytest.fixture
def events(broker: MosquittoBroker) -> Iterator[Recorder]:
    with Recorder(broker, topics.all_lane(SITE, "event"), device="monitor-watch1") as recorder:
        yield recorder


def test_a_retained_fire_alarm_raises_and_holds_every_barrier_until_it_says_inactive(
    broker: MosquittoBroker, gateway_bus: MqttBus, tmp_path: Path, events: Recorder
) -> None:
    clock = ManualClock(SITE_START)
    with lane(broker, "in1", "entry", tmp_path, clock) as in1, \
            lane(broker, "out1", "exit", tmp_path, clock) as out1:
        assert not in1.relay_up and not out1.relay_up
        started = time.perf_counter()
        set_alarm(gateway_bus, "fire", True)
        eventually(lambda: in1.relay_up and out1.relay_up, what="both barriers up")
        latency_ms = (time.perf_counter() - started) * 1000
        print(f"\nalarm/fire published -> both relays on: {latency_ms:.1f} ms")
        for node in (in1, out1):
            eventually(lambda n=node: n.node.controller.state().mode == "fire_open",  # type: ignore[misc]
                       what="fire_open mode")
            eventually(lambda n=node: n.screen.current == TEXTS["fire"],  # type: ignore[misc]
                       what="fire text on the display")
        assert in1.screen.current == ("火警 请立即离场", "FIRE – LEAVE NOW")
        assert retained_mode(broker, "out1") == "fire_open"

        # Hours pass; nothing lowers a barrier while the alarm holds.
        for _ in range(3):
            clock.advance(timedelta(minutes=30))
            give_the_lane_time_to_misbehave()
            assert in1.relay_up and out1.relay_up

        # A car leaves during the fire: free, reported, and no decide request is sent.
        with Recorder(broker, topics.all_lane(SITE, "decide"), device="monitor-watch2") as asks:
            out1.camera.show("粤B12345")
            out1.pins.arming.drive_high()
            out1.pins.safety.drive_high()
            out1.pins.arming.drive_low()
            out1.pins.safety.drive_low()
            eventually(lambda: bool(of_type(events, "passed")), what="passed during the fire")
            give_the_lane_time_to_misbehave()
            assert asks.payloads() == []
        passed = of_type(events, "passed")[0]
        decision = next(d for d in of_type(events, "decision")
                        if d["correlation_id"] == passed["correlation_id"])
        assert (passed["fee_fen"], passed["plate"]) == (0, "粤B12345")
        assert (decision["reason"], decision["decided_by"], decision["fee_fen"]) == (
            "fire_open", "lane", 0)
        assert out1.relay_up

        set_alarm(gateway_bus, "fire", False)
        eventually(lambda: not in1.relay_up and not out1.relay_up, what="barriers down")
        eventually(lambda: out1.node.controller.state().mode == "normal", what="normal mode")
        assert in1.screen.current == TEXTS["idle"]


def test_the_barriers_stay_up_when_the_broker_goes_away_during_a_fire(
    broker: MosquittoBroker, gateway_bus: MqttBus, tmp_path: Path
) -> None:
    clock = ManualClock(SITE_START)
    with lane(broker, "in1", "entry", tmp_path, clock) as in1, \
            lane(broker, "out1", "exit", tmp_path, clock) as out1:
        set_alarm(gateway_bus, "fire", True)
        eventually(lambda: in1.relay_up and out1.relay_up, what="both barriers up")
        broker.stop()
        eventually(lambda: not in1.node.bus.connected.is_set()
                   and not out1.node.bus.connected.is_set(), what="lanes see the broker gone")
        clock.advance(timedelta(hours=1))
        give_the_lane_time_to_misbehave(0.5)
        assert in1.relay_up and out1.relay_up, "a barrier came down when the broker went away"
        assert in1.node.controller.state().mode == "fire_open"
        broker.start()
        eventually(lambda: in1.node.bus.connected.is_set() and out1.node.bus.connected.is_set(),
                   timeout=15, what="lanes back on the broker")
        assert in1.relay_up and out1.relay_up  # the retained alarm still says fire
        with MqttBus(broker.address("gateway"), client_id="gateway-2") as again:
            set_alarm(again, "fire", False)
        eventually(lambda: not in1.relay_up and not out1.relay_up, what="barriers down")


def test_a_fire_latched_before_a_restart_holds_the_barrier_from_the_start(
    broker: MosquittoBroker, gateway_bus: MqttBus, tmp_path: Path
) -> None:
    clock = ManualClock(SITE_START)
    with lane(broker, "out1", "exit", tmp_path, clock) as out1:
        set_alarm(gateway_bus, "fire", True)
        eventually(lambda: out1.relay_up, what="barrier up")
    # Someone clears the retained message without saying "inactive" (or the broker lost it):
    # the lane keeps the last state it knew, from its journal.
    gateway_bus.publish_and_wait(topics.alarm(SITE, "fire"), b"", retain=True)
    with lane(broker, "out1", "exit", tmp_path, clock) as again:
        eventually(lambda: again.relay_up, what="barrier up at start")
        give_the_lane_time_to_misbehave(0.2)
        assert again.relay_up and again.node.controller.state().mode == "fire_open"
        set_alarm(gateway_bus, "fire", False)
        eventually(lambda: not again.relay_up, what="barrier down once the alarm is over")


def test_the_hard_wired_fire_input_alone_raises_and_holds_the_barrier(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    clock = ManualClock(SITE_START)
    with lane(broker, "out1", "exit", tmp_path, clock, fire_input=FIRE_PIN) as out1:
        fire = out1.fire_pin()
        fire.drive_high()
        eventually(lambda: out1.relay_up, what="barrier up on the fire input")
        assert out1.node.hardware.barrier.lower() is False  # the interlock refuses
        eventually(lambda: out1.node.controller.state().mode == "fire_open", what="fire mode")
        clock.advance(timedelta(hours=1))
        give_the_lane_time_to_misbehave()
        assert out1.relay_up
        fire.drive_low()
        eventually(lambda: not out1.relay_up, what="barrier down when the input clears")


def test_a_car_on_the_safety_loop_is_never_lowered_on_when_the_fire_is_over(
    broker: MosquittoBroker, gateway_bus: MqttBus, tmp_path: Path
) -> None:
    clock = ManualClock(SITE_START)
    with lane(broker, "out1", "exit", tmp_path, clock) as out1:
        set_alarm(gateway_bus, "fire", True)
        eventually(lambda: out1.relay_up, what="barrier up")
        out1.pins.safety.drive_high()  # a car stops under the boom
        set_alarm(gateway_bus, "fire", False)
        eventually(lambda: out1.node.controller.state().mode == "normal", what="fire over")
        for _ in range(3):
            clock.advance(timedelta(minutes=10))
            give_the_lane_time_to_misbehave()
            assert out1.relay_up, "barrier lowered onto a vehicle"
        out1.pins.safety.drive_low()
        eventually(lambda: not out1.relay_up, what="barrier down once the loop is clear")


def test_a_flood_closes_the_entries_with_the_flood_text(
    broker: MosquittoBroker, gateway_bus: MqttBus, tmp_path: Path, events: Recorder
) -> None:
    clock = ManualClock(SITE_START)
    with lane(broker, "in1", "entry", tmp_path, clock) as in1:
        set_alarm(gateway_bus, "flood", True)
        eventually(lambda: in1.node.controller.flood_alarm, what="flood known to the lane")
        in1.camera.show("粤B12345")
        in1.pins.arming.drive_high()
        eventually(lambda: bool(of_type(events, "decision")), what="decision")
        decision = of_type(events, "decision")[0]
        assert (decision["action"], decision["reason"], decision["decided_by"]) == (
            "refuse", "flood_entries_closed", "lane")
        assert in1.screen.current == ("水浸 暂停入场", "FLOOD – NO ENTRY")
        give_the_lane_time_to_misbehave()
        assert not in1.relay_up
        in1.pins.arming.drive_low()
