"""Every lane input is debounced (``[pins.bounce_time]``): a chattering loop relay is one
car, not a tailgate, and a bouncing help button one help request.

gpiozero hands an input's ``bounce_time`` to its pin driver. Its ``MockPin`` ignores it, so
these tests use :class:`DebouncingPin`: a mock pin that honours it as the Pi's driver does (a
new level is reported once it has held for ``bounce`` seconds), on time the test moves.
No sleeps: the pins' time and the lane's clock move only when told.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from firmware.lane.config import BounceTimes, CameraSettings, LaneConfig, LaneTiming, PinMap
from firmware.lane.devices.hardware import LaneHardware
from tests.lane_harness import MemoryLane

DEADLINE_MS = 50


class DebouncingPin(MockPin):  # type: ignore[misc]  # gpiozero has no types
    """A mock input that reports a new level only once it has held for ``bounce`` seconds
    of its factory's time (no ``bounce``: at once, as ``MockPin``)."""

    def __init__(self, factory: DebouncingFactory, info: Any) -> None:
        self._level = False  # what the contact does, bouncing or not
        self._since = 0.0
        super().__init__(factory, info)

    def drive_high(self) -> None:
        self._drive(True)

    def drive_low(self) -> None:
        self._drive(False)

    def _drive(self, level: bool) -> None:
        self._level, self._since = level, self._factory.ticks()
        if self.bounce is None:
            self._report()

    def _report(self) -> None:
        if self._level:
            super().drive_high()
        else:
            super().drive_low()

    def settle(self) -> None:
        """The factory's time moved: report a level that has held long enough."""
        if self.bounce is not None and self._level != self.state \
                and self._factory.ticks() - self._since >= self.bounce:
            self._report()


class DebouncingFactory(MockFactory):  # type: ignore[misc]
    """A ``MockFactory`` of :class:`DebouncingPin` on time that moves only in :meth:`advance`."""

    def __init__(self) -> None:
        super().__init__(pin_class=DebouncingPin)
        self.now = 0.0

    def ticks(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for pin in list(self.pins.values()):
            if isinstance(pin, DebouncingPin):
                pin.settle()


def chatter(pin: MockPin, factory: DebouncingFactory, *, ends_high: bool) -> None:
    """A relay contact closing (or opening): a few ms of chatter, then the new level."""
    for _ in range(3):
        pin.drive_high()
        factory.advance(0.002)
        pin.drive_low()
        factory.advance(0.003)
    if ends_high:
        pin.drive_high()


@pytest.fixture
def factory() -> DebouncingFactory:
    return DebouncingFactory()


def test_every_input_gets_its_bounce_time_from_the_pin_map(factory: DebouncingFactory) -> None:
    pins = PinMap(fire_input=23, bounce_time=BounceTimes(help_button=0.08))
    hardware = LaneHardware(pins, pin_factory=factory)
    try:
        bounce = {role: factory.pin(getattr(pins, role)).bounce
                  for role in ("arming_loop", "safety_loop", "up_limit", "down_limit",
                               "help_button", "fire_input")}
        assert bounce == {"arming_loop": 0.05, "safety_loop": 0.05, "up_limit": 0.02,
                          "down_limit": 0.02, "help_button": 0.08, "fire_input": 0.05}
    finally:
        hardware.close()


def test_the_default_bounce_times_stay_out_of_a_config_dump() -> None:
    config = LaneConfig(site="test", lane="in1", direction="entry",
                        camera=CameraSettings(type="picamera", plate_region=(360, 240, 920, 660)))
    assert "bounce_time" not in config.model_dump()["pins"]
    changed = PinMap(bounce_time=BounceTimes(safety_loop=None))
    assert changed.model_dump()["bounce_time"]["safety_loop"] is None


def open_for_a_car(lane: MemoryLane, factory: DebouncingFactory) -> None:
    """A car drives onto the arming loop (its relay chatters); the silent gateway leaves the
    entry lane to open alone at its deadline."""
    lane.camera.show("粤B12345")
    chatter(lane.pins.arming, factory, ends_high=True)
    factory.advance(0.05)
    lane.settle()
    lane.step(milliseconds=DEADLINE_MS)
    assert lane.relay_up


@pytest.fixture
def lane(tmp_path: Path, factory: DebouncingFactory) -> Iterator[MemoryLane]:
    with MemoryLane(tmp_path, factory=factory,
                    timing=LaneTiming(decide_deadline_ms=DEADLINE_MS)) as running:
        yield running


def test_a_chattering_loop_relay_is_one_vehicle_not_a_tailgate(
    lane: MemoryLane, factory: DebouncingFactory,
) -> None:
    open_for_a_car(lane, factory)
    pins = lane.pins
    chatter(pins.safety, factory, ends_high=True)  # the car reaches the safety loop
    factory.advance(0.05)
    chatter(pins.arming, factory, ends_high=False)  # and leaves the arming loop
    factory.advance(0.05)
    chatter(pins.safety, factory, ends_high=False)  # and the safety loop
    factory.advance(0.05)
    lane.settle()
    assert not lane.relay_up
    assert lane.node.hardware.safety_loop.arrivals == 1
    assert lane.events("tailgate") == []
    assert len(lane.events("passed")) == 1
    assert len(lane.events("vehicle_detected")) == 1


def test_without_a_bounce_time_the_same_chatter_reads_as_a_tailgate(
    tmp_path: Path, factory: DebouncingFactory,
) -> None:
    """Why the debounce is there: the relay's chatter, taken as it comes."""
    with MemoryLane(tmp_path, factory=factory, timing=LaneTiming(decide_deadline_ms=DEADLINE_MS),
                    pins=PinMap(bounce_time=BounceTimes(safety_loop=None))) as lane:
        open_for_a_car(lane, factory)
        chatter(lane.pins.safety, factory, ends_high=True)
        lane.pins.arming.drive_low()
        factory.advance(0.05)
        lane.pins.safety.drive_low()
        lane.settle()
        assert [event["vehicles"] for event in lane.events("tailgate")] == [4]


def test_a_bouncing_help_button_is_one_help_request(
    lane: MemoryLane, factory: DebouncingFactory,
) -> None:
    button = lane.pins.help_button
    chatter(button, factory, ends_high=True)  # pressed
    factory.advance(0.3)
    chatter(button, factory, ends_high=False)  # released
    factory.advance(0.05)
    lane.settle()
    assert len(lane.events("help_pressed")) == 1
    assert lane.controller.help_requests == 1
