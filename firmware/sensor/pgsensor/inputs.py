# Inputs shared by the node types: supervised loops on the ADC (directly or through an
# analog multiplexer), debounced and confirmed values, the interrupt wake-up of the main loop,
# digital inputs, and outputs with blink patterns.
import time

import machine

# MicroPython has no `typing` module: mypy treats any name TYPE_CHECKING as true, the runtime
# sees False, and the annotations that use these names are strings (never evaluated).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from _mpy_shed.time_mp import _TicksUs

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


class Confirmed:
    """A value that changes only once the raw samples have agreed on it for ``window_ms``.

    A new value is confirmed when a run of at least ``samples`` consecutive samples that all
    read it spans ``window_ms`` or more (measured in ticks_us between the run's first and last
    sample). So a glitch shorter than the window never confirms: a run that spans the window
    reads the new value at both its ends, and one contiguous glitch that covers both ends
    lasts the window at least. Any disagreeing sample starts the run again. The caller samples
    every millisecond or so while ``pending``, which is how the confirmation comes as soon as
    the window allows, not a loop period or two later. A busy CPU that samples late only
    makes the run longer, never shorter: it delays a confirmation, never stops one; and once
    the run spans the window, the samples it still lacks are taken at once (``ripe``).
    """

    def __init__(self, window_ms, samples=3):
        self.window_us = window_ms * 1000
        self.samples = samples
        self.value = None
        self._cand = None
        self._run = 0
        self._first: "_TicksUs | int" = 0

    @property
    def candidate(self):
        return self._cand

    @property
    def pending(self):
        """A sample has disagreed with the value and nothing is decided yet: sample soon."""
        return self._cand != self.value

    def ripe(self, now_us):
        """The run already spans the window and lacks only samples: take them now, back to
        back (after the CPU was held elsewhere, waiting for more passes only adds delay)."""
        return (self._cand != self.value and self._run < self.samples
                and time.ticks_diff(now_us, self._first) >= self.window_us)

    def update(self, raw, now_us):
        """Feed one sample taken at ``now_us`` (time.ticks_us()); True when the confirmed
        value has just changed."""
        if raw != self._cand:
            self._cand = raw
            self._first = now_us
            self._run = 0
        self._run += 1
        if (raw != self.value and self._run >= self.samples
                and time.ticks_diff(now_us, self._first) >= self.window_us):
            self.value = raw
            return True
        return False


class Wake:
    """Set by pin interrupts, waited on by the main loop: ``wait`` returns at once when an edge
    came, else after ``ms``. ``irq`` is the handler (soft: scheduled by MicroPython, it only
    sets flags, so it neither allocates nor touches the socket the main loop may be using)."""

    def __init__(self):
        self.flag = False

    def irq(self, _pin):
        self.flag = True

    def wait(self, ms):
        """Return after ``ms``, or at once when an edge came (the flag stays set for the node
        to see which lines to sample)."""
        start = time.ticks_ms()
        while not self.flag and time.ticks_diff(time.ticks_ms(), start) < ms:
            machine.idle()  # rp2: returns at the next interrupt, or after at most 1 ms


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
