"""The lane's devices — loops, barrier, limit switches, help button, light — on gpiozero.

Everything is built through a pin factory. Every input is debounced: its ``bounce_time``
(``[pins.bounce_time]`` in the lane's config) goes to gpiozero, whose pin driver reports a
new level only once it has held that long, so a chattering loop relay is one car and a
bouncing help button one request. (gpiozero's ``MockPin`` ignores ``bounce``: the tests of
the debounce use a mock pin that honours it.)

A device never talks to a GPIO library directly: on a Pi the default pin
factory drives real pins, in tests and the simulator ``MockFactory`` does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Literal

from gpiozero import DigitalInputDevice, DigitalOutputDevice
from gpiozero.pins import Factory

from firmware.lane.config import BarrierSettings, PinMap


class VehicleLoop:
    """An inductive loop detector's output: active while a vehicle stands over the loop.

    Counts arrivals so a waiter cannot miss a car that came and went between
    two looks.
    """

    def __init__(self, pin: int | str, *, name: str, pin_factory: Factory | None = None,
                 bounce_time: float | None = None) -> None:
        self.name = name
        self._device = DigitalInputDevice(pin, pull_up=False, bounce_time=bounce_time,
                                          pin_factory=pin_factory)
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


class Contact:
    """A dry contact read through an opto-isolator (active high): a limit switch, the help
    button, the fire panel's relay. Listeners run on the pin's thread: keep them short."""

    def __init__(self, pin: int | str, *, name: str, pin_factory: Factory | None = None,
                 bounce_time: float | None = None) -> None:
        self.name = name
        self._device = DigitalInputDevice(pin, pull_up=False, bounce_time=bounce_time,
                                          pin_factory=pin_factory)
        self._listeners: list[Callable[[], None]] = []
        self._press_listeners: list[Callable[[], None]] = []
        self.activations = 0
        self._device.when_activated = self._activated
        self._device.when_deactivated = self._notify

    @property
    def active(self) -> bool:
        return bool(self._device.is_active)

    def when_changed(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def when_activated(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (pin thread) each time the contact closes."""
        self._press_listeners.append(listener)

    def _activated(self) -> None:
        self.activations += 1
        for listener in self._press_listeners:
            listener()
        self._notify()

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()

    def close(self) -> None:
        self._device.close()


class FireInput(Contact):
    """The fire panel's alarm relay wired straight to the Pi (optional): active = fire.

    It works without the broker, the gateway or the network: the lane raises the barrier on
    the pin's own thread the moment it goes active.
    """

    def __init__(self, pin: int | str, *, pin_factory: Factory | None = None,
                 bounce_time: float | None = None) -> None:
        super().__init__(pin, name="fire", pin_factory=pin_factory, bounce_time=bounce_time)


class LaneLight:
    """The red/green lane light: green while the lane lets a car through, red otherwise."""

    def __init__(self, green_pin: int | str, red_pin: int | str, *,
                 pin_factory: Factory | None = None) -> None:
        self._green = DigitalOutputDevice(green_pin, initial_value=False, pin_factory=pin_factory)
        self._red = DigitalOutputDevice(red_pin, initial_value=True, pin_factory=pin_factory)

    @property
    def green(self) -> bool:
        return bool(self._green.value)

    @property
    def red(self) -> bool:
        return bool(self._red.value)

    def go(self) -> None:
        self._red.off()
        self._green.on()

    def stop(self) -> None:
        self._green.off()
        self._red.on()

    def close(self) -> None:
        self._green.close()
        self._red.close()


class Barrier:
    """A boom barrier on either kind of controller.

    - ``kind="hold"``: relay on holds the boom up, relay off lets it down.
    - ``kind="pulse"``: a pulse on the open output raises it, a pulse on the close output
      lowers it; the controller keeps the boom where it was last sent (:attr:`is_up` is the
      last command, or the up limit switch when limit switches are wired).

    The safety interlock lives here, at the lowest layer, so no caller can get
    around it: :meth:`lower` refuses while the safety loop holds a vehicle, and while a
    fire holds the barrier up (:attr:`fire_hold`, or the hard-wired fire input is active).
    """

    def __init__(
        self, relay_pin: int | str, *, safety_loop: VehicleLoop, pin_factory: Factory | None = None,
        fire_input: FireInput | None = None, kind: Literal["hold", "pulse"] = "hold",
        close_pin: int | str | None = None, pulse_ms: int = 500,
        up_limit: Contact | None = None, down_limit: Contact | None = None,
    ) -> None:
        self.kind = kind
        self._relay = DigitalOutputDevice(relay_pin, initial_value=False, pin_factory=pin_factory)
        self._close: DigitalOutputDevice | None = None
        if kind == "pulse":
            if close_pin is None:
                raise ValueError("a pulse barrier needs a close output pin")
            self._close = DigitalOutputDevice(close_pin, initial_value=False,
                                              pin_factory=pin_factory)
        self._pulse_s = pulse_ms / 1000
        self._commanded_up = False
        self._safety_loop = safety_loop
        self._fire_input = fire_input
        self.up_limit = up_limit
        self.down_limit = down_limit
        self._lock = threading.Lock()
        self.fire_hold = False
        """Set by the lane while a fire alarm is active: :meth:`lower` refuses."""

    @property
    def is_up(self) -> bool:
        """Whether the boom is (commanded) up."""
        if self.kind == "hold":
            return bool(self._relay.value)
        return self._commanded_up

    def _pulse(self, device: DigitalOutputDevice) -> None:
        device.blink(on_time=self._pulse_s, off_time=0.0, n=1, background=True)

    def raise_(self) -> None:
        with self._lock:
            if self.kind == "hold":
                self._relay.on()
            elif not self._commanded_up or self.up_limit is None or not self.up_limit.active:
                self._pulse(self._relay)
            self._commanded_up = True

    def lowering_blocked(self) -> str | None:
        """Why the boom must not come down now, or None."""
        if self._safety_loop.vehicle_present:
            return "safety_loop"
        if self.fire_hold or (self._fire_input is not None and self._fire_input.active):
            return "fire"
        return None

    def lower(self) -> bool:
        """Let the boom down unless a vehicle is under it or a fire holds it up; say whether
        it went down."""
        with self._lock:
            if self.lowering_blocked() is not None:
                return False
            if self.kind == "hold":
                self._relay.off()
            elif self._close is not None:
                self._pulse(self._close)
            self._commanded_up = False
            return True

    def close(self) -> None:
        self._relay.close()
        if self._close is not None:
            self._close.close()


class LaneHardware:
    """The lane's wiring as devices: loops, barrier (hold or pulse), limit switches, help
    button, light, fire input if wired."""

    def __init__(self, pins: PinMap, *, pin_factory: Factory | None = None,
                 barrier: BarrierSettings | None = None) -> None:
        settings = barrier or BarrierSettings()
        self.barrier_settings = settings
        bounce = pins.bounce_time
        self.arming_loop = VehicleLoop(pins.arming_loop, name="arming", pin_factory=pin_factory,
                                       bounce_time=bounce.arming_loop)
        self.safety_loop = VehicleLoop(pins.safety_loop, name="safety", pin_factory=pin_factory,
                                       bounce_time=bounce.safety_loop)
        self.fire_input = (None if pins.fire_input is None
                           else FireInput(pins.fire_input, pin_factory=pin_factory,
                                          bounce_time=bounce.fire_input))
        self.up_limit = Contact(pins.up_limit, name="up_limit", pin_factory=pin_factory,
                                bounce_time=bounce.up_limit)
        self.down_limit = Contact(pins.down_limit, name="down_limit", pin_factory=pin_factory,
                                  bounce_time=bounce.down_limit)
        self.help_button = Contact(pins.help_button, name="help", pin_factory=pin_factory,
                                   bounce_time=bounce.help_button)
        self.light = LaneLight(pins.light_green, pins.light_red, pin_factory=pin_factory)
        self.barrier = Barrier(
            pins.barrier_relay, safety_loop=self.safety_loop, pin_factory=pin_factory,
            fire_input=self.fire_input, kind=settings.kind, close_pin=pins.barrier_close,
            pulse_ms=settings.pulse_ms,
            up_limit=self.up_limit if settings.limit_switches else None,
            down_limit=self.down_limit if settings.limit_switches else None,
        )

    @property
    def limit_switches(self) -> bool:
        return self.barrier_settings.limit_switches

    def close(self) -> None:
        self.barrier.close()
        self.light.close()
        self.help_button.close()
        self.down_limit.close()
        self.up_limit.close()
        if self.fire_input is not None:
            self.fire_input.close()
        self.safety_loop.close()
        self.arming_loop.close()
