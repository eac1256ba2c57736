"""The lane's devices — loops and barrier — built on gpiozero through a pin factory.

A device never talks to a GPIO library directly: on a Pi the default pin
factory drives real pins, in tests and the simulator ``MockFactory`` does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from gpiozero import DigitalInputDevice, DigitalOutputDevice
from gpiozero.pins import Factory

from firmware.lane.config import PinMap


class VehicleLoop:
    """An inductive loop detector's output: active while a vehicle stands over the loop.

    Counts arrivals so a waiter cannot miss a car that came and went between
    two looks.
    """

    def __init__(self, pin: int | str, *, name: str, pin_factory: Factory | None = None) -> None:
        self.name = name
        self._device = DigitalInputDevice(pin, pull_up=False, pin_factory=pin_factory)
        self._lock = threading.Lock()
        self.arrivals = 0
        self.departures = 0
        self._listeners: list[Callable[[], None]] = []
        self._device.when_activated = self._arrived
        self._device.when_deactivated = self._departed

    @property
    def vehicle_present(self) -> bool:
        return bool(self._device.is_active)

    def when_changed(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (on the pin's thread: keep it short) whenever the loop changes."""
        self._listeners.append(listener)

    def _arrived(self) -> None:
        with self._lock:
            self.arrivals += 1
        self._notify()

    def _departed(self) -> None:
        with self._lock:
            self.departures += 1
        self._notify()

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()

    def close(self) -> None:
        self._device.close()


class FireInput:
    """The fire panel's alarm relay wired straight to the Pi (optional): active = fire.

    It works without the broker, the gateway or the network: the lane raises the barrier on
    the pin's own thread the moment it goes active.
    """

    def __init__(self, pin: int | str, *, pin_factory: Factory | None = None) -> None:
        self._device = DigitalInputDevice(pin, pull_up=False, pin_factory=pin_factory)
        self._listeners: list[Callable[[], None]] = []
        self._device.when_activated = self._notify
        self._device.when_deactivated = self._notify

    @property
    def active(self) -> bool:
        return bool(self._device.is_active)

    def when_changed(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()

    def close(self) -> None:
        self._device.close()


class Barrier:
    """A boom barrier on a hold-type controller: relay on holds it up, relay off lets it down.

    The safety interlock lives here, at the lowest layer, so no caller can get
    around it: :meth:`lower` refuses while the safety loop holds a vehicle, and while a
    fire holds the barrier up (:attr:`fire_hold`, or the hard-wired fire input is active).
    """

    def __init__(
        self, relay_pin: int | str, *, safety_loop: VehicleLoop, pin_factory: Factory | None = None,
        fire_input: FireInput | None = None,
    ) -> None:
        self._relay = DigitalOutputDevice(relay_pin, initial_value=False, pin_factory=pin_factory)
        self._safety_loop = safety_loop
        self._fire_input = fire_input
        self.fire_hold = False
        """Set by the lane while a fire alarm is active: :meth:`lower` refuses."""

    @property
    def is_up(self) -> bool:
        return bool(self._relay.value)

    def raise_(self) -> None:
        self._relay.on()

    def lower(self) -> bool:
        """Let the boom down unless a vehicle is under it or a fire holds it up; say whether
        it went down."""
        if self._safety_loop.vehicle_present:
            return False
        if self.fire_hold or (self._fire_input is not None and self._fire_input.active):
            return False
        self._relay.off()
        return True

    def close(self) -> None:
        self._relay.close()


class LaneHardware:
    """The lane's wiring as devices: arming loop, safety loop, barrier, fire input if wired."""

    def __init__(self, pins: PinMap, *, pin_factory: Factory | None = None) -> None:
        self.arming_loop = VehicleLoop(pins.arming_loop, name="arming", pin_factory=pin_factory)
        self.safety_loop = VehicleLoop(pins.safety_loop, name="safety", pin_factory=pin_factory)
        self.fire_input = (None if pins.fire_input is None
                           else FireInput(pins.fire_input, pin_factory=pin_factory))
        self.barrier = Barrier(
            pins.barrier_relay, safety_loop=self.safety_loop, pin_factory=pin_factory,
            fire_input=self.fire_input,
        )

    def close(self) -> None:
        self.barrier.close()
        if self.fire_input is not None:
            self.fire_input.close()
        self.safety_loop.close()
        self.arming_loop.close()
