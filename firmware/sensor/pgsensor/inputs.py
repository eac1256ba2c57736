# Inputs shared by the node types: supervised loops on the ADC (directly or through an
# analog multiplexer), debounced digital inputs, and outputs with blink patterns.
import time

import machine

LOOP_STATES = ("normal", "active", "open", "short")


class AnalogSource:
    """One ADC channel, either a pin (26-29) or a channel of an analog mux on that pin."""

    def __init__(self, pin, mux=None, channel=0, settle_us=50):
        self.adc = machine.ADC(machine.Pin(pin))
        self.mux = mux
        self.channel = channel
        self.settle_us = settle_us

    def read(self):
        if self.mux is not None:
            for bit, sel in enumerate(self.mux):
                sel.value(self.channel >> bit & 1)
            time.sleep_us(self.settle_us)
        return self.adc.read_u16()


def classify_loop(raw, th):
    """End-of-line supervised loop: short < active < normal < open on the 16-bit ADC scale."""
    if raw <= th["short_max"]:
        return "short"
    if raw <= th["active_max"]:
        return "active"
    if raw <= th["normal_max"]:
        return "normal"
    return "open"


class Debounced:
    """A value that changes only after the raw value has held still for ``hold_ms``."""

    def __init__(self, hold_ms):
        self.hold_ms = hold_ms
        self.value = None
        self._cand = None
        self._since = 0

    @property
    def candidate(self):
        return self._cand

    def update(self, raw, now):
        """Feed one sample; True when the stable value has just changed."""
        if raw != self._cand:
            self._cand = raw
            self._since = now
        if raw != self.value and time.ticks_diff(now, self._since) >= self.hold_ms:
            self.value = raw
            return True
        return False


class DigitalIn:
    def __init__(self, pin, active_low=True, pull=True):
        mode_pull = None
        if pull:
            mode_pull = machine.Pin.PULL_UP if active_low else machine.Pin.PULL_DOWN
        # pull=None (no resistor) is documented by MicroPython, and by the stub's own docstring,
        # but the stub types pull as int.
        self.pin = machine.Pin(pin, machine.Pin.IN, mode_pull)  # type: ignore[arg-type]
        self.active_low = active_low

    def active(self):
        v = self.pin.value()
        return (v == 0) if self.active_low else (v == 1)


class Output:
    """A buzzer or LED with a pattern: off, on, or blinking (on_ms, off_ms)."""

    def __init__(self, pin, active_low=False):
        self.active_low = active_low
        self.pin = machine.Pin(pin, machine.Pin.OUT, value=1 if active_low else 0)
        self.pattern = None
        self._on = False
        self._next = 0

    def set(self, pattern, now):
        """``None``/``False``: off; ``True``: steady on; ``(on_ms, off_ms)``: blink."""
        if pattern == self.pattern:
            return
        self.pattern = pattern
        self._next = now
        if not pattern:
            self._drive(False)
        self.tick(now)

    def _drive(self, on):
        self._on = on
        self.pin.value((0 if on else 1) if self.active_low else (1 if on else 0))

    def tick(self, now):
        p = self.pattern
        if not p:
            return
        if p is True:
            if not self._on:
                self._drive(True)
            return
        if time.ticks_diff(now, self._next) >= 0:
            self._drive(not self._on)
            self._next = time.ticks_add(now, p[0] if self._on else p[1])
