"""The lane's table-driven state machine: the table, its odd cases, its documentation, and
the property that no sequence of events lowers the boom onto a car or during a fire (the
table's actions carried out on a real ``Barrier`` over gpiozero MockFactory pins). Two
integration tests run the odd cases that need the limit switches and a broken camera on a
whole lane against the real broker."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.lane.config import BarrierSettings, LaneTiming, PinMap
from firmware.lane.controller import LaneController
from firmware.lane.devices.camera import Frame
from firmware.lane.devices.hardware import LaneHardware
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
from tests.helpers import eventually
from tests.lane_harness import MemoryLane

ROOT = Path(__file__).resolve().parents[1]
E, S, A = Event, State, Action


def run(*events: Event) -> tuple[State, list[Action]]:
    machine = GateMachine()
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
    "fee due, a 付款码 taken offline": (
        (E.VEHICLE_ARRIVED, E.READ_STARTED, E.PLATE_READ, E.DECIDED_REFUSE, E.HELP_PRESSED,
         E.PAID_OFFLINE), S.OPEN, [A.NONE] * 5 + [A.RAISE]),
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
    """The machine is strict (no row: :class:`UnexpectedEvent`, the state stays put); the
    lane's gate reports that as a fault (test_an_event_with_no_row_is_reported_as_a_fault)."""
    machine = GateMachine()
    with pytest.raises(UnexpectedEvent):
        machine.step(E.VEHICLE_PASSED)
    assert machine.state is S.IDLE and not machine.history


def test_held_open_and_fire_are_guards_of_the_machine() -> None:
    machine = GateMachine()
    modes = [(machine.mode, machine.keeps_up())]
    machine.step(E.HOLD_OPEN)
    modes.append((machine.mode, machine.keeps_up()))
    machine.fire = True
    modes.append((machine.mode, machine.keeps_up()))
    machine.step(E.FIRE_STARTED)
    machine.step(E.CLOSE_COMMAND)  # a guard's close during the fire ends the hold only
    machine.fire = False
    modes.append((machine.mode, machine.held_open))
    machine.step(E.FIRE_OVER)
    modes.append((machine.mode, machine.keeps_up()))
    assert modes == [("normal", False), ("free_open", True), ("fire_open", True),
                     ("fire_open", False), ("normal", False)]


def test_timeouts_come_from_the_config() -> None:
    timing = LaneTiming(decide_deadline_ms=250, pass_timeout_s=90, limit_timeout_s=4,
                        refused_timeout_s=300)
    assert timeout_for(S.DECIDING, timing, limit_switches=False) == 0.25
    assert timeout_for(S.OPEN, timing, limit_switches=False) == 90
    assert timeout_for(S.OPEN, timing, limit_switches=True, moving=True) == 4
    assert timeout_for(S.OPEN, timing, limit_switches=False, moving=True) is None
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
                    if machine.can(E.FIRE_STARTED):
                        machine.step(E.FIRE_STARTED)
            else:
                assert isinstance(step, Event)
                if not machine.can(step):  # strict: the gate reports it, nothing moves
                    continue
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


# On a whole lane (the in-memory bus, a manual clock: no sleeps) ---------------------------

def _state(controller: LaneController) -> State:
    """Read afresh each time (the worker moves it between asserts)."""
    return controller.machine.state


def test_limit_switches_missed_are_reported_and_the_boom_goes_back_up(tmp_path: Path) -> None:
    with MemoryLane(tmp_path, barrier=BarrierSettings(limit_switches=True),
                    timing=LaneTiming(decide_deadline_ms=50, limit_timeout_s=6)) as lane:
        controller, pins = lane.controller, lane.pins
        lane.camera.show("粤B12345")
        pins.arming.drive_high()
        lane.settle()
        lane.step(milliseconds=50)  # nobody answers: the lane decides alone and opens
        assert pins.relay.state
        pins.up_limit.drive_high()  # the boom reaches its up switch
        lane.settle()
        assert any(t.event is E.UP_REACHED for t in controller.machine.history)
        pins.safety.drive_high()
        pins.arming.drive_low()
        pins.up_limit.drive_low()
        pins.safety.drive_low()
        lane.settle()
        assert _state(controller) is S.CLOSING and not pins.relay.state
        # The down switch never closes: after limit_timeout_s the lane reports it and raises.
        lane.step(seconds=5.9)
        assert "barrier_limit_timeout" not in lane.faults()
        lane.step(seconds=0.1)
        assert "barrier_limit_timeout" in lane.faults()
        assert pins.relay.state and _state(controller) is S.FAULT
        # It stays up (a broken switch must not make the boom bob) until a guard acts.
        lane.step(minutes=10)
        assert pins.relay.state and _state(controller) is S.FAULT
        pins.down_limit.drive_high()


class _BrokenCamera:
    def capture(self) -> Frame:
        raise OSError("camera unplugged")


def test_a_broken_camera_is_a_failed_read_and_the_car_can_use_the_help_button(
    tmp_path: Path,
) -> None:
    with MemoryLane(tmp_path, camera=_BrokenCamera(),
                    timing=LaneTiming(decide_deadline_ms=50)) as lane:
        controller, pins = lane.controller, lane.pins
        pins.arming.drive_high()
        lane.settle()  # asked the gateway: the deadline counts from the request
        lane.step(milliseconds=50)
        assert _state(controller) is S.REFUSED
        assert "read_failed" in lane.faults()
        pins.help_button.drive_high()
        lane.settle()
        assert _state(controller) is S.WAITING_HELP
        assert "help_pressed" in lane.types()
        assert controller.screen.current == ("已呼叫保安", "Help is coming")  # type: ignore[attr-defined]
        pins.arming.drive_low()
        lane.settle()
        assert _state(controller) is S.IDLE


def test_an_event_with_no_row_is_reported_as_a_fault(tmp_path: Path) -> None:
    """The gate never feeds the machine an event it has no row for; if it ever did, the lane
    says so (a fault event), the state stays put and the lane goes on serving."""
    with MemoryLane(tmp_path) as lane:
        lane.controller.gate.step(E.VEHICLE_PASSED)  # idle: no such step
        lane.settle()
        assert lane.faults() == ["unexpected_event"]
        assert _state(lane.controller) is S.IDLE and not lane.pins.relay.state
