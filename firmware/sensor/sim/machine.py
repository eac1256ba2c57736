# `machine` for the MicroPython unix port: the physical edge of a sensor node, driven from
# outside the process by a small control file, so tests stay deterministic.
#
#   sim.json      written by the test (atomically: write a temp file, rename): {"pin5": 0,
#                 "adc26": 32000, "adc26.3": 9000, "mux": {"26": [10, 11, 12]}}. With
#                 "sim_poke": <udp port>, this shim listens there and the writer sends a
#                 datagram after each write: the file is read when poked (and every 20 ms in
#                 case a poke was lost), so the node spends no time polling a file. Without
#                 it, the file is read at most every millisecond. A missing input reads as its idle level:
#                 1 with a pull-up, else 0; a missing ADC reads "sim_adc_default" or 32768.
#                 A value may also be a waveform in the node's own time, [[value, ms], ...]:
#                 each value holds for its ms from the moment this file was first read, the
#                 last one for ever. A glitch is written this way ([[9600, 3], [32768, 0]]),
#                 so its length does not depend on how fast the test process runs.
#   sim_out.json  every output pin's level, rewritten (atomically) whenever one changes (not
#                 the mux select lines: those the ADC reads in memory).
#   sim_out.log   one line per output change: "<ticks_ms> pin<id> <0|1>" (idem).
#   sim_irq.log   one line per interrupt handler call: "<ticks_ms> pin<id> <flags>" (written
#                 at the next machine.idle()).
#   sim_wdt.log   "<ticks_ms> <gap_ms>" whenever the watchdog was fed later than its timeout
#                 (the Pico would have reset): tests read it to find stalls.
#   sim_clock.ask created by a test to read the node's clock: the next watchdog feed (the top
#                 of a loop pass) writes its ticks_ms to sim_clock, then removes the ask. So a
#                 test waits on the node's own clock, never on its own sleep.
# Paths are relative to the working directory: the simulated flash filesystem.
#
# Pin interrupts (Pin.irq) behave as on the rp2 port with hard=False: the edge is latched when
# it happens (every edge of a waveform counts, however short, as the GPIO edge detector
# latches it) and the handler runs later in the main thread, called with the Pin, with
# irq().flags() telling which edges it was for. Where the Pico runs a soft handler at the next
# bytecode boundary, this shim runs it at the next call into `machine` (idle, Pin.value,
# ADC.read_u16, WDT.feed): the firmware only sets a flag there, which it reads after such a
# call. machine.idle() returns at the next interrupt or after 1 ms, like the rp2 port's
# (MICROPY_INTERNAL_WFE(1) in ports/rp2/modmachine.c).
import json
import os
import time

CONTROL = "sim.json"
OUTPUTS = "sim_out.json"
OUT_LOG = "sim_out.log"
IRQ_LOG = "sim_irq.log"
WDT_LOG = "sim_wdt.log"
CLOCK_ASK = "sim_clock.ask"
CLOCK = "sim_clock"

_values = {}
_raw = None
_seen_at = 0  # ticks_ms when the current sim.json content was first read
_last_read = None
_outputs = {}
_irqs = {}  # pin key -> _IRQ of every pin with a handler
_pending = []  # _IRQs whose handler is due
_irq_lines = []  # sim_irq.log lines not written yet
_in_handler = False
_poke = None  # [socket, poll] once sim.json names a poke port
_dirty = True  # a poke came: read the file at the next refresh
_POKE_FALLBACK_MS = 20


def _level_at(value, t):
    """A control value (number or waveform) at ``t`` ms after its file was first read."""
    if not isinstance(value, list):
        return value
    for seg_value, ms in value:
        if t < ms:
            return seg_value
        t -= ms
    return value[-1][0]


def _levels_between(value, t0, t1):
    """Every level a waveform passes through in (t0, t1], in order (t0 < 0: from its start)."""
    if not isinstance(value, list):
        return [value]
    out = []
    start = 0
    for seg_value, ms in value:
        end = start + ms
        if end > t0 and start <= t1:
            out.append(seg_value)
        start = end
    if not out or start <= t1:
        out.append(value[-1][0])
    return out


def _drain_pokes():
    """Note whether the writer poked since the last call."""
    global _dirty
    if _poke is None:
        return
    while True:
        try:
            if not _poke[0].recv(64):
                return
        except OSError:  # EAGAIN: nothing more
            return
        _dirty = True


def _listen(port):
    global _poke
    import select
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
    sock.setblocking(False)
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    _poke = [sock, poller]


def _refresh(force=False):
    global _values, _raw, _last_read, _seen_at, _dirty
    now = time.ticks_ms()
    _drain_pokes()
    if _poke is not None:
        due = _dirty or _last_read is None or time.ticks_diff(now, _last_read) >= \
            _POKE_FALLBACK_MS
    else:
        due = force or _last_read is None or time.ticks_diff(now, _last_read) >= 1
    if not due:
        for irq in _irqs.values():
            irq.latch(now)  # a waveform moves on without a new file
        return
    _dirty = False
    _last_read = now
    try:
        with open(CONTROL) as f:
            raw = f.read()
    except OSError:
        raw = None
    if raw is not None and raw != _raw:
        try:
            new = json.loads(raw)
        except ValueError:
            new = None  # never happens with an atomic writer; keep the last good values
        if new is not None:
            for irq in _irqs.values():
                irq.close_old(now)
            _values = new
            _raw = raw
            _seen_at = now
            for irq in _irqs.values():
                irq.last_t = -1
            port = new.get("sim_poke")
            if port and _poke is None:
                _listen(port)
    for irq in _irqs.values():
        irq.latch(now)


def _dispatch():
    """Run the handlers of latched edges (not from inside a handler: no nesting)."""
    global _in_handler
    if _in_handler or not _pending:
        return False
    _in_handler = True
    try:
        while _pending:
            irq = _pending.pop(0)
            irq.run()
    finally:
        _in_handler = False
    return True


def _mux_select(key):
    """Whether ``key`` drives an analog mux's select input (named in sim.json's "mux")."""
    for pins in _values.get("mux", {}).values():
        for sel in pins:
            if key == "pin%s" % (sel,):
                return True
    return False


def _set_output(key, value):
    if _outputs.get(key) == value:
        return
    _outputs[key] = value
    if _mux_select(key):
        # A scan switches the mux several times a pass: on the Pico that is a register write;
        # here two files a switch would make the shim, not the firmware, the slow part.
        return
    with open(OUTPUTS + ".tmp", "w") as f:
        f.write(json.dumps(_outputs))
    os.rename(OUTPUTS + ".tmp", OUTPUTS)
    with open(OUT_LOG, "a") as f:
        f.write("%d %s %d\n" % (time.ticks_ms(), key, value))


def _flush_irq_log():
    if _irq_lines:
        with open(IRQ_LOG, "a") as f:
            for line in _irq_lines:
                f.write(line)
        del _irq_lines[:]


def idle():
    """Wait for the next interrupt, at most 1 ms (the rp2 port's WFE with a 1 ms timeout)."""
    _flush_irq_log()
    _refresh(True)
    if _dispatch():
        return
    if _poke is not None:
        _poke[1].poll(1)  # a poke is the writer's edge: it ends the wait, as an IRQ would
    else:
        time.sleep_ms(1)
    _refresh(True)
    _dispatch()


class _IRQ:
    def __init__(self, pin, handler, trigger, hard):
        self.pin = pin
        self.handler = handler
        self.trigger_mask = trigger
        self.hard = hard
        self.level = pin._level()
        self.last_t = time.ticks_diff(time.ticks_ms(), _seen_at)
        self.latched = 0
        self.current = 0

    def close_old(self, now):
        """Before a new control file replaces the old: the old waveform's edges up to now."""
        self._walk(_values.get(self.pin.key), time.ticks_diff(now, _seen_at))

    def latch(self, now):
        self._walk(_values.get(self.pin.key), time.ticks_diff(now, _seen_at))

    def _walk(self, value, t):
        if value is None:
            value = self.pin._idle()
        for level in _levels_between(value, self.last_t, t):
            level = 1 if level else 0
            if level != self.level:
                edge = Pin.IRQ_RISING if level else Pin.IRQ_FALLING
                if edge & self.trigger_mask:
                    self.latched |= edge
                self.level = level
        self.last_t = t
        if self.latched and self.handler is not None and self not in _pending:
            _pending.append(self)

    def run(self):
        self.current = self.latched
        self.latched = 0
        # Logged at the next idle(), so the shim's own file write is not in the path it times.
        _irq_lines.append("%d %s %d\n" % (time.ticks_ms(), self.pin.key, self.current))
        if self.handler is not None:
            self.handler(self.pin)

    def flags(self):
        return self.current

    def trigger(self, value=None):
        if value is not None:
            self.trigger_mask = value
        return self.trigger_mask


_UNSET = object()


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_LEVEL_LOW = 1
    IRQ_LEVEL_HIGH = 2
    IRQ_FALLING = 4
    IRQ_RISING = 8

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.key = "pin%s" % (id,)
        self.mode = mode
        self.pull = pull
        if value is not None:
            self.value(value)

    def init(self, mode=-1, pull=-1, value=None):
        self.__init__(self.id, mode, pull, value)

    def _idle(self):
        return 1 if self.pull == Pin.PULL_UP else 0

    def _level(self):
        value = _values.get(self.key, self._idle())
        return 1 if _level_at(value, time.ticks_diff(time.ticks_ms(), _seen_at)) else 0

    def value(self, v=None):
        if v is None:
            if self.mode == Pin.OUT:
                return _outputs.get(self.key, 0)
            _refresh()
            _dispatch()
            return self._level()
        _set_output(self.key, 1 if v else 0)
        return None

    def irq(self, handler=_UNSET, trigger=IRQ_FALLING | IRQ_RISING, hard=False):
        """Like the rp2 port's: with no arguments, the pin's IRQ object; else (re)configure.
        ``handler=None`` disables it."""
        irq = _irqs.get(self.key)
        if handler is _UNSET:
            return irq
        _refresh(True)
        irq = _IRQ(self, handler, trigger, hard)
        _irqs[self.key] = irq
        return irq

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
        _dispatch()
        key = "adc%s" % (self.id,)
        mux = _values.get("mux", {}).get(str(self.id))
        if mux:
            channel = 0
            for bit, sel in enumerate(mux):
                channel |= _outputs.get("pin%s" % (sel,), 0) << bit
            key = "%s.%d" % (key, channel)
        value = _values.get(key, _values.get("sim_adc_default", 32768))
        return int(_level_at(value, time.ticks_diff(time.ticks_ms(), _seen_at)))


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
        _refresh()
        _dispatch()


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
