# `machine` for the MicroPython unix port: the physical edge of a sensor node, driven from
# outside the process by a small control file, so tests stay deterministic.
#
#   sim.json      written by the test (atomically: write a temp file, rename), read here at
#                 most every 2 ms: {"pin5": 0, "adc26": 32000, "adc26.3": 9000,
#                 "mux": {"26": [10, 11, 12]}}. A missing input reads as its idle level:
#                 1 with a pull-up, else 0; a missing ADC reads "sim_adc_default" or 32768.
#   sim_out.json  every output pin's level, rewritten (atomically) whenever one changes.
#   sim_out.log   one line per output change: "<ticks_ms> pin<id> <0|1>".
#   sim_wdt.log   "<ticks_ms> <gap_ms>" whenever the watchdog was fed later than its timeout
#                 (the Pico would have reset): tests read it to find stalls.
#   sim_clock.ask created by a test to read the node's clock: the next watchdog feed (the top
#                 of a loop pass) writes its ticks_ms to sim_clock, then removes the ask. So a
#                 test waits on the node's own clock, never on its own sleep.
# Paths are relative to the working directory: the simulated flash filesystem.
import json
import os
import time

CONTROL = "sim.json"
OUTPUTS = "sim_out.json"
OUT_LOG = "sim_out.log"
WDT_LOG = "sim_wdt.log"
CLOCK_ASK = "sim_clock.ask"
CLOCK = "sim_clock"

_values = {}
_raw = None
_last_read = None
_outputs = {}


def _refresh():
    global _values, _raw, _last_read
    now = time.ticks_ms()
    if _last_read is not None and time.ticks_diff(now, _last_read) < 2:
        return
    _last_read = now
    try:
        with open(CONTROL) as f:
            raw = f.read()
    except OSError:
        return
    if raw != _raw:
        try:
            _values = json.loads(raw)
            _raw = raw
        except ValueError:
            pass  # never happens with an atomic writer; keep the last good values


def _set_output(key, value):
    if _outputs.get(key) == value:
        return
    _outputs[key] = value
    with open(OUTPUTS + ".tmp", "w") as f:
        f.write(json.dumps(_outputs))
    os.rename(OUTPUTS + ".tmp", OUTPUTS)
    with open(OUT_LOG, "a") as f:
        f.write("%d %s %d\n" % (time.ticks_ms(), key, value))


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.key = "pin%s" % (id,)
        self.mode = mode
        self.pull = pull
        if value is not None:
            self.value(value)

    def init(self, mode=-1, pull=-1, value=None):
        self.__init__(self.id, mode, pull, value)

    def value(self, v=None):
        if v is None:
            if self.mode == Pin.OUT:
                return _outputs.get(self.key, 0)
            _refresh()
            return 1 if _values.get(self.key, 1 if self.pull == Pin.PULL_UP else 0) else 0
        _set_output(self.key, 1 if v else 0)
        return None

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def toggle(self):
        self.value(0 if self.value() else 1)


class ADC:
    def __init__(self, pin):
        self.id = pin.id if isinstance(pin, Pin) else pin

    def read_u16(self):
        _refresh()
        key = "adc%s" % (self.id,)
        mux = _values.get("mux", {}).get(str(self.id))
        if mux:
            channel = 0
            for bit, sel in enumerate(mux):
                channel |= _outputs.get("pin%s" % (sel,), 0) << bit
            key = "%s.%d" % (key, channel)
        return int(_values.get(key, _values.get("sim_adc_default", 32768)))


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.last = time.ticks_ms()

    def feed(self):
        now = time.ticks_ms()
        gap = time.ticks_diff(now, self.last)
        if gap > self.timeout:
            with open(WDT_LOG, "a") as f:
                f.write("%d %d\n" % (now, gap))
        self.last = now
        _answer_clock(now)


def _answer_clock(now):
    try:
        os.stat(CLOCK_ASK)
    except OSError:
        return
    with open(CLOCK + ".tmp", "w") as f:
        f.write("%d" % now)
    os.rename(CLOCK + ".tmp", CLOCK)
    os.remove(CLOCK_ASK)


def reset():
    raise SystemExit(1)


def unique_id():
    return b"unixsim1"


def freq(*_args):
    return 125000000
