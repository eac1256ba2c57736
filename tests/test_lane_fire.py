"""A fire opens every barrier and keeps it open; a flood closes the entries. Mock pins, the
retained ``alarm/fire`` and ``alarm/flood`` as the gateway (or the fire panel) sets them: on
the in-memory bus and a manual clock (no sleeps), and on the real locked-down Mosquitto
where the broker itself goes away."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from broker.runner import MosquittoBroker
from firmware.lane.config import CameraSettings, JournalSettings, LaneConfig, PinMap
from firmware.lane.devices.display import TEXTS, RecordingDisplay
from firmware.lane.node import LaneNode
from parkguard.clock import ManualClock
from simulator.camera import GroundTruthReader, SimulatedCamera
from simulator.driver import SimulatedLaneWiring
from simulator.site import settings_of
from tests.conftest import SITE_START, TEST_SITE
from tests.helpers import eventually
from tests.lane_harness import MemoryLane
from wire.bus import Bus
from wire.contract import topics
from wire.contract.messages import AlarmState
from wire.memory import MemoryBroker, MemoryBus
from wire.mqtt import MqttBus

SITE = TEST_SITE
FIRE_PIN = 23


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(SITE_START)


@pytest.fixture
def gateway_bus(memory: MemoryBroker) -> Iterator[MemoryBus]:
    with memory.bus("gateway") as bus:
        yield bus


@contextmanager
def lane(memory: MemoryBroker, lane_id: str, direction: str, tmp_path: Path,
         clock: ManualClock, *, fire_input: int | None = None) -> Iterator[MemoryLane]:
    with MemoryLane(tmp_path, lane=lane_id, direction=direction,  # type: ignore[arg-type]
                    broker=memory, clock=clock, display=RecordingDisplay(),
                    pins=PinMap(fire_input=fire_input)) as running:
        yield running


def screen(lane: MemoryLane) -> tuple[str, str] | None:
    shown: RecordingDisplay = lane.controller.screen  # type: ignore[assignment]
    return shown.current


def set_alarm(bus: Bus, kind: str, active: bool) -> None:
    state = AlarmState(kind=kind, active=active, source="gateway",  # type: ignore[arg-type]
                       zone="B2-east" if active else None, ts=datetime.now(UTC))
    bus.publish_and_wait(topics.alarm(SITE, kind), state, retain=True)


def settle(*lanes: MemoryLane) -> None:
    for each in lanes:
        each.settle()


def test_a_retained_fire_alarm_raises_and_holds_every_barrier_until_it_says_inactive(
    memory: MemoryBroker, gateway_bus: MemoryBus, tmp_path: Path, clock: ManualClock,
) -> None:
    with lane(memory, "in1", "entry", tmp_path, clock) as in1, \
            lane(memory, "out1", "exit", tmp_path, clock) as out1:
        assert not in1.relay_up and not out1.relay_up
        set_alarm(gateway_bus, "fire", True)
        settle(in1, out1)
        assert in1.relay_up and out1.relay_up
        for each in (in1, out1):
            assert each.controller.state().mode == "fire_open"
            assert screen(each) == TEXTS["fire"]
        assert screen(in1) == ("火警 请立即离场", "FIRE – LEAVE NOW")
        retained = memory.retained(topics.lane_state(SITE, "out1"))
        assert retained is not None and json.loads(retained)["mode"] == "fire_open"

        # Hours pass; nothing lowers a barrier while the alarm holds.
        for _ in range(3):
            clock.advance(timedelta(minutes=30))
            settle(in1, out1)
            assert in1.relay_up and out1.relay_up

        # A car leaves during the fire: free, reported, and no decide request is sent.
        out1.camera.show("粤B12345")
        out1.pins.arming.drive_high()
        out1.pins.safety.drive_high()
        out1.pins.arming.drive_low()
        out1.pins.safety.drive_low()
        settle(in1, out1)
        assert out1.published("/decide") == [] and in1.published("/decide") == []
        passed = out1.events("passed")[0]
        decision = next(d for d in out1.events("decision")
                        if d["correlation_id"] == passed["correlation_id"])
        assert (passed["fee_fen"], passed["plate"]) == (0, "粤B12345")
        assert (decision["reason"], decision["decided_by"], decision["fee_fen"]) == (
            "fire_open", "lane", 0)
        assert out1.relay_up

        set_alarm(gateway_bus, "fire", False)
        settle(in1, out1)
        assert not in1.relay_up and not out1.relay_up
        assert out1.controller.state().mode == "normal"
        assert screen(in1) == TEXTS["idle"]


# The real broker goes away: Mosquitto itself, stopped and started ---------------------------

@dataclass
class RealLane:
    node: LaneNode
    pins: SimulatedLaneWiring

    @property
    def relay_up(self) -> bool:
        return bool(self.pins.relay.state)


@contextmanager
def real_lane(broker: MosquittoBroker, lane_id: str, direction: str, tmp_path: Path,
              clock: ManualClock) -> Iterator[RealLane]:
    config = LaneConfig(
        site=SITE, lane=lane_id, direction=direction,  # type: ignore[arg-type]
        broker=settings_of(broker.address(f"lane-{lane_id}")),
        journal=JournalSettings(path=tmp_path / f"lane-{lane_id}.db"),
        camera=CameraSettings(type="simulated"),
    )
    factory = MockFactory()
    node = LaneNode(config, clock=clock, camera=SimulatedCamera(clock=clock),
                    reader=GroundTruthReader(), pin_factory=factory).start()
    try:
        yield RealLane(node, SimulatedLaneWiring(config, factory))
    finally:
        node.stop()


@pytest.mark.integration
def test_the_barriers_stay_up_when_the_broker_goes_away_during_a_fire(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    clock = ManualClock(SITE_START)
    with real_lane(broker, "in1", "entry", tmp_path, clock) as in1, \
            real_lane(broker, "out1", "exit", tmp_path, clock) as out1:
        with MqttBus(broker.address("gateway"), client_id="gateway") as gateway:
            set_alarm(gateway, "fire", True)
        eventually(lambda: in1.relay_up and out1.relay_up, what="both barriers up")
        broker.stop()
        eventually(lambda: not in1.node.bus.connected.is_set()
                   and not out1.node.bus.connected.is_set(), what="lanes see the broker gone")
        clock.advance(timedelta(hours=1))
        for each in (in1, out1):
            each.node.controller.wait_idle()
        assert in1.relay_up and out1.relay_up, "a barrier came down when the broker went away"
        assert in1.node.controller.state().mode == "fire_open"
        broker.start()
        eventually(lambda: in1.node.bus.connected.is_set() and out1.node.bus.connected.is_set(),
                   timeout=15, what="lanes back on the broker")
        assert in1.relay_up and out1.relay_up  # the retained alarm still says fire
        with MqttBus(broker.address("gateway"), client_id="gateway-2") as again:
            set_alarm(again, "fire", False)
        eventually(lambda: not in1.relay_up and not out1.relay_up, what="barriers down")


# --------------------------------------------------------------------------------------------

def test_a_fire_latched_before_a_restart_holds_the_barrier_from_the_start(
    memory: MemoryBroker, gateway_bus: MemoryBus, tmp_path: Path, clock: ManualClock,
) -> None:
    with lane(memory, "out1", "exit", tmp_path, clock) as out1:
        set_alarm(gateway_bus, "fire", True)
        out1.settle()
        assert out1.relay_up
    # Someone clears the retained message without saying "inactive" (or the broker lost it):
    # the lane keeps the last state it knew, from its journal.
    gateway_bus.publish_and_wait(topics.alarm(SITE, "fire"), b"", retain=True)
    with lane(memory, "out1", "exit", tmp_path, clock) as again:
        again.step(minutes=10)
        assert again.relay_up and again.controller.state().mode == "fire_open"
        set_alarm(gateway_bus, "fire", False)
        again.settle()
        assert not again.relay_up, "barrier down once the alarm is over"


def test_the_hard_wired_fire_input_alone_raises_and_holds_the_barrier(
    memory: MemoryBroker, tmp_path: Path, clock: ManualClock,
) -> None:
    with lane(memory, "out1", "exit", tmp_path, clock, fire_input=FIRE_PIN) as out1:
        fire = out1.factory.pin(FIRE_PIN)
        fire.drive_high()
        assert out1.relay_up, "barrier up on the fire input, at once"
        assert out1.node.hardware.barrier.lower() is False  # the interlock refuses
        out1.settle()
        assert out1.controller.state().mode == "fire_open"
        out1.step(hours=1)
        assert out1.relay_up
        fire.drive_low()
        out1.settle()
        assert not out1.relay_up, "barrier down when the input clears"


def test_a_car_on_the_safety_loop_is_never_lowered_on_when_the_fire_is_over(
    memory: MemoryBroker, gateway_bus: MemoryBus, tmp_path: Path, clock: ManualClock,
) -> None:
    with lane(memory, "out1", "exit", tmp_path, clock) as out1:
        set_alarm(gateway_bus, "fire", True)
        out1.settle()
        assert out1.relay_up
        out1.pins.safety.drive_high()  # a car stops under the boom
        set_alarm(gateway_bus, "fire", False)
        out1.settle()
        assert out1.controller.state().mode == "normal"
        for _ in range(3):
            out1.step(minutes=10)
            assert out1.relay_up, "barrier lowered onto a vehicle"
        out1.pins.safety.drive_low()
        out1.settle()
        assert not out1.relay_up, "barrier down once the loop is clear"


def test_a_flood_closes_the_entries_with_the_flood_text(
    memory: MemoryBroker, gateway_bus: MemoryBus, tmp_path: Path, clock: ManualClock,
) -> None:
    with lane(memory, "in1", "entry", tmp_path, clock) as in1:
        set_alarm(gateway_bus, "flood", True)
        in1.settle()
        assert in1.controller.flood_alarm
        in1.camera.show("粤B12345")
        in1.pins.arming.drive_high()
        in1.settle()
        decision = in1.events("decision")[0]
        assert (decision["action"], decision["reason"], decision["decided_by"]) == (
            "refuse", "flood_entries_closed", "lane")
        assert screen(in1) == ("水浸 暂停入场", "FLOOD – NO ENTRY")
        in1.step(minutes=10)
        assert not in1.relay_up
        in1.pins.arming.drive_low()
