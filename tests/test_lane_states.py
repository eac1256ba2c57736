"""The lane's table-driven state machine: the table, its odd cases, its documentation, and
the property that no sequence of events lowers the boom onto a car or during a fire (the
table's actions carried out on a real ``Barrier`` over gpiozero MockFactory pins). Two
integration tests run the odd cases that need the limit switches and a broken camera on a
whole lane against the real broker."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.runner import MosquittoBroker
from firmware.lane.config import BarrierSettings, JournalSettings, LaneConfig, LaneTiming, PinMap
from firmware.lane.devices.camera import Frame
from firmware.lane.devices.hardware import LaneHardware
from firmware.lane.node import LaneNode
from firmware.lane.states import (
    TRANSITIONS,
    Action,
    Event,
    GateMachine,
    State,
    UnexpectedEvent,
    table_rows,
    timeout_for,
)
from parkguard.clock import ManualClock
from simulator.camera import GroundTruthReader, SimulatedCamera
from simulator.site import settings_of
from tests.conftest import SITE_START, TEST_SITE
from tests.helpers import Recorder, eventually, give_the_lane_time_to_misbehave, ticking
from wire.contract import topics

ROOT = Path(__file__).resolve().parents[1]
E, S, A = Event, State, Action


def run(*events: Event) -> tuple[State, list[Action]]:
    machine = GateMachine(strict=True)
    actions = [machine.step(event).action for event in events]
    return machine.state, actions


HAPPY = (E.VEHICLE_ARRIVED, E.READ_STARTED, E.PLATE_READ, E.DECIDED_OPEN)

CASES = {
    "a car passes": ((*HAPPY, E.VEHICLE_ENTERED, E.VEHICLE_PASSED, E.DOWN_REACHED),
                     S.IDLE, [A.NONE] * 3 + [A.RAISE, A.NONE, A.LOWER, A.NONE]),
    "the car backs out": ((*HAPPY, E.VEHICLE_LEFT, E.DOWN_REACHED),
                          S.IDLE, [A.NONE] * 3 + [A.RAISE, A.LOWER, A.NONE]),
    "nobody comes": ((*HAPPY, E.PASS_TIMEOUT), S.CLOSING, [A.NONE] * 3 + [A.RAISE, A.LOWER]),
    "tailgate": ((*HAPPY, E.VEHICLE_ENTERED, E.TAILGATE, E.DOWN_REACHED),
                 S.IDLE, [A.NONE] * 3 + [A.RAISE, A.NONE, A.LOWER, A.NONE]),
    "up limit missed": ((*HAPPY, E.LIMIT_TIMEOUT), S.FAULT, [A.NONE] * 3 + [A.RAISE, A.NONE]),
    "down limit missed": ((*HAPPY, E.VEHICLE_ENTERED, E.VEHICLE_PASSED, E.LIMIT_TIMEOUT),
                          S.FAULT, [A.NONE] * 3 + [A.RAISE, A.NONE, A.LOWER, A.RAISE]),
    "fault cleared": ((*HAPPY, E.LIMIT_TIMEOUT, E.FAULT_CLEARED, E.DOWN_REACHED),
                      S.IDLE, [A.NONE] * 3 + [A.RAISE, A.NONE, A.LOWER, A.NONE]),
    "read fails, refused, help, kiosk, open": (
        (E.VEHICLE_ARRIVED, E.READ_STARTED, E.READ_FAILED, E.DECIDED_REFUSE, E.HELP_PRESSED,
         E.KIOSK_IDENTITY, E.DECIDED_OPEN),
        S.OPEN, [A.NONE] * 6 + [A.RAISE]),
    "refused car leaves": ((E.VEHICLE_ARRIVED, E.READ_STARTED, E.PLATE_READ,
                            E.DECIDED_REFUSE, E.VEHICLE_LEFT), S.IDLE, [A.NONE] * 5),
    "guard opens for a refused car": (
        (E.VEHICLE_ARRIVED, E.READ_STARTED, E.PLATE_READ, E.DECIDED_REFUSE, E.MANUAL_OPEN),
        S.OPEN, [A.NONE] * 4 + [A.RAISE]),
    "car under a closing boom": ((*HAPPY, E.VEHICLE_ENTERED, E.VEHICLE_PASSED,
                                  E.SAFETY_OCCUPIED, E.VEHICLE_PASSED),
                                 S.CLOSING, [A.NONE] * 3 + [A.RAISE, A.NONE, A.LOWER,
                                                            A.RAISE, A.LOWER]),
    "fire while deciding": ((E.VEHICLE_ARRIVED, E.READ_STARTED, E.PLATE_READ, E.FIRE_STARTED,
                             E.FIRE_OVER), S.CLOSING, [A.NONE] * 3 + [A.RAISE, A.LOWER]),
    "hold open, then a car, kept up": ((E.HOLD_OPEN, *HAPPY, E.VEHICLE_ENTERED,
                                        E.VEHICLE_PASSED, E.KEPT_UP),
        S.IDLE, [A.RAISE] + [A.NONE] * 3 + [A.RAISE, A.NONE, A.LOWER, A.NONE]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_path_through_the_table(case: str) -> None:
    events, final, actions = CASES[case]
    assert run(*events) == (final, actions)


def test_every_state_is_reachable_and_none_is_a_dead_end() -> None:
    sources = {state for state, _ in TRANSITIONS}
    targets = {nxt for nxt, _ in TRANSITIONS.values()}
    assert set(State) == sources == targets | {S.IDLE}


def test_a_fire_raises_from_every_state_and_help_is_heard_everywhere() -> None:
    for state in State:
        if state is not S.FIRE_OPEN:
            assert TRANSITIONS[state, E.FIRE_STARTED] == (S.FIRE_OPEN, A.RAISE)
        assert (state, E.HELP_PRESSED) in TRANSITIONS


def test_an_event_without_a_row_is_refused_or_ignored() -> None:
    with pytest.raises(UnexpectedEvent):
        GateMachine(strict=True).step(E.VEHICLE_PASSED)
    lenient = GateMachine()
    assert lenient.step(E.VEHICLE_PASSED).action is A.NONE
    assert (lenient.state, lenient.ignored) == (S.IDLE, 1)


def test_timeouts_come_from_the_config() -> None:
    timing = LaneTiming(decide_deadline_ms=250, pass_timeout_s=90, limit_timeout_s=4,
                        refused_timeout_s=300)
    assert timeout_for(S.DECIDING, timing, limit_switches=False) == 0.25
    assert timeout_for(S.OPEN, timing, limit_switches=False) == 90
    assert timeout_for(S.CLOSING, timing, limit_switches=True) == 4
    assert timeout_for(S.CLOSING, timing, limit_switches=False) is None
    assert timeout_for(S.REFUSED, timing, limit_switches=False) == 300
    assert timeout_for(S.IDLE, timing, limit_switches=True) is None


def test_the_documented_table_is_the_code_table() -> None:
    doc = (ROOT / "docs/lane.md").read_text(encoding="utf-8")
    documented = re.findall(r"^\| (\w+) \| (\w+) \| (\w+) \| (none|raise|lower) \|$", doc,
                            flags=re.MULTILINE)
    assert documented == table_rows()
    diagram = doc[doc.index("stateDiagram-v2"):]
    for state in State:
        assert f" {state.value} -->" in diagram or f"--> {state.value}:" in diagram


# The property: the table's actions on a real barrier never put the boom on a car -------

PHYSICAL = ("safety_on", "safety_off", "fire_on", "fire_off")
STEPS = st.lists(st.sampled_from([*Event, *PHYSICAL]), max_size=60)


@settings(max_examples=300, deadline=None)
@given(STEPS)
def test_no_sequence_of_events_lowers_the_barrier_onto_a_car_or_during_a_fire(
    steps: list[Event | str],
) -> None:
    factory = MockFactory()
    hardware = LaneHardware(PinMap(), pin_factory=factory)
    safety_pin = factory.pin(PinMap().safety_loop)
    barrier, machine = hardware.barrier, GateMachine()
    try:
        for step in steps:
            was_up = barrier.is_up
            if step == "safety_on":
                safety_pin.drive_high()
            elif step == "safety_off":
                safety_pin.drive_low()
            elif step in ("fire_on", "fire_off"):
                barrier.fire_hold = step == "fire_on"
                if barrier.fire_hold:  # the fire reflex, then the worker's step
                    barrier.raise_()
                    machine.step(E.FIRE_STARTED)
            else:
                assert isinstance(step, Event)
                action = machine.step(step).action
                if action is A.RAISE:
                    barrier.raise_()
                elif action is A.LOWER:
                    barrier.lower()
            if was_up and (hardware.safety_loop.vehicle_present or barrier.fire_hold):
                assert barrier.is_up, f"boom lowered on {step} (state {machine.state})"
            if barrier.fire_hold:
                assert barrier.is_up
    finally:
        hardware.close()


def test_a_pulse_barrier_pulses_open_and_close_and_keeps_the_interlock() -> None:
    factory = MockFactory()
    pins = PinMap()
    hardware = LaneHardware(pins, pin_factory=factory, barrier=BarrierSettings(kind="pulse",
                                                                               pulse_ms=50))
    open_pin, close_pin = factory.pin(pins.barrier_relay), factory.pin(pins.barrier_close)
    try:
        hardware.barrier.raise_()
        assert hardware.barrier.is_up
        eventually(lambda: any(state for _, state in open_pin.states), what="open pulse")
        factory.pin(pins.safety_loop).drive_high()
        assert not hardware.barrier.lower()
        assert not any(state for _, state in close_pin.states[1:])
        factory.pin(pins.safety_loop).drive_low()
        assert hardware.barrier.lower() and not hardware.barrier.is_up
        eventually(lambda: any(state for _, state in close_pin.states[1:]), what="close pulse")
    finally:
        hardware.close()


# On a whole lane ---------------------------------------------------------------------------

@pytest.fixture
def events(broker: MosquittoBroker) -> Iterator[Recorder]:
    with Recorder(broker, topics.all_lane(TEST_SITE, "event"), device="monitor-watch1") as rec:
        yield rec


def _lane(broker: MosquittoBroker, tmp_path: Path, clock: ManualClock, camera: object,
          **settings: object) -> tuple[LaneNode, MockFactory]:
    config = LaneConfig(site=TEST_SITE, lane="in9", direction="entry",
                        broker=settings_of(broker.address("lane-in9")),
                        journal=JournalSettings(path=tmp_path / "in9.db"), **settings)  # type: ignore[arg-type]
    factory = MockFactory()
    node = LaneNode(config, clock=clock, camera=camera,  # type: ignore[arg-type]
                    reader=GroundTruthReader(), pin_factory=factory)
    return node, factory


def _faults(recorder: Recorder) -> list[str]:
    return [event["code"] for event in map(json.loads, recorder.payloads())
            if event["type"] == "fault"]


@pytest.mark.integration
def test_limit_switches_missed_are_reported_and_the_boom_goes_back_up(
    broker: MosquittoBroker, events: Recorder, tmp_path: Path,
) -> None:
    clock = ManualClock(SITE_START)
    camera = SimulatedCamera(clock=clock)
    node, factory = _lane(broker, tmp_path, clock, camera,
                          barrier=BarrierSettings(limit_switches=True),
                          timing=LaneTiming(decide_deadline_ms=50))
    pins = PinMap()
    relay, up, down = (factory.pin(pins.barrier_relay), factory.pin(pins.up_limit),
                       factory.pin(pins.down_limit))
    arming, safety = factory.pin(pins.arming_loop), factory.pin(pins.safety_loop)
    with node:
        controller = node.controller
        camera.show("粤B12345")
        arming.drive_high()
        ticking(lambda: bool(relay.state), clock, "barrier up")
        up.drive_high()  # the boom reaches its up switch
        eventually(lambda: any(t.event is E.UP_REACHED for t in controller.machine.history),
                   what="up reached")
        safety.drive_high()
        arming.drive_low()
        up.drive_low()
        safety.drive_low()
        eventually(lambda: controller.machine.state is S.CLOSING, what="closing")
        assert not relay.state
        # The down switch never closes: after limit_timeout_s the lane reports it and raises.
        ticking(lambda: "barrier_limit_timeout" in _faults(events), clock, "limit fault")
        eventually(lambda: bool(relay.state), what="boom raised again")
        assert controller.machine.state is S.FAULT
        # It stays up (a broken switch must not make the boom bob) until a guard acts.
        give_the_lane_time_to_misbehave()
        assert relay.state and controller.machine.state is S.FAULT
        down.drive_high()


class _BrokenCamera:
    def __init__(self, clock: ManualClock) -> None:
        self._clock = clock

    def capture(self) -> Frame:
        raise OSError("camera unplugged")


@pytest.mark.integration
def test_a_broken_camera_is_a_failed_read_and_the_car_can_use_the_help_button(
    broker: MosquittoBroker, events: Recorder, tmp_path: Path,
) -> None:
    clock = ManualClock(SITE_START)
    node, factory = _lane(broker, tmp_path, clock, _BrokenCamera(clock),
                          timing=LaneTiming(decide_deadline_ms=50))
    pins = PinMap()
    with node:
        controller = node.controller
        factory.pin(pins.arming_loop).drive_high()
        ticking(lambda: controller.machine.state is S.REFUSED, clock, "refused")
        eventually(lambda: "read_failed" in _faults(events), what="read_failed fault")
        factory.pin(pins.help_button).drive_high()
        eventually(lambda: controller.machine.state is S.WAITING_HELP, what="waiting help")
        eventually(lambda: any(json.loads(p)["type"] == "help_pressed"
                               for p in events.payloads()), what="help_pressed event")
        assert node.controller.screen.current == ("已呼叫保安", "Help is coming")  # type: ignore[attr-defined]
        factory.pin(pins.arming_loop).drive_low()
        eventually(lambda: controller.machine.state is S.IDLE, what="idle after leaving")
