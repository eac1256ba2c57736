# Fire-panel interface node: the panel's dry contacts (fire, trouble, supervisory) and zone
# contacts, each on a loop supervised by an end-of-line resistor and read on the ADC as
# normal / active / open / short. On fire it latches the retained site alarm itself, so the
# lanes open even with the gateway down; every change of a loop is also a reading.
#
# Speed without false alarms: a loop with a `wake_pin` (a comparator on the loop, low while
# the loop is active or shorted) interrupts the main loop's wait at its edge, so the loop is
# sampled at once instead of at the next pass. From the first sample that disagrees with a
# loop's state until it is decided, that loop is sampled every `sample_ms`, and a new state is
# confirmed as soon as `confirm_samples` or more consecutive samples spanning `debounce_ms`
# agree (inputs.Confirmed): a glitch shorter than `debounce_ms` never alarms. The ADC reading
# stays the evidence: the wake line only says "look now", and a glitch on it alone changes
# nothing. On a fire the retained alarm leaves before the reading is written to flash (a flash
# write can take milliseconds).
import time

import machine

from pgsensor.clock import utc_iso
from pgsensor.inputs import AnalogSource, Confirmed, Output, classify_loop

# MicroPython has no `typing` module: mypy treats any name TYPE_CHECKING as true, the runtime
# sees False, and the annotations that use these names are strings (never evaluated).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from _mpy_shed.time_mp import _TicksMs

ROLES = ("fire", "trouble", "supervisory", "zone")


class Loop:
    def __init__(self, spec, source, state, wake):
        self.name = spec["name"]
        self.role = spec.get("role", "zone")
        if self.role not in ROLES:
            raise ValueError("fire_panel loop %s: role must be one of %s" % (self.name, ROLES))
        self.zone = spec.get("zone", self.name if self.role == "zone" else None)
        self.source = source
        self.state = state
        self.wake_pin = None
        if "wake_pin" in spec:
            # Open-collector comparator output: the pull-up holds it high while the loop is
            # normal; both edges wake the loop (into alarm, and back out of it).
            pin = machine.Pin(spec["wake_pin"], machine.Pin.IN, machine.Pin.PULL_UP)
            pin.irq(wake.irq, machine.Pin.IRQ_FALLING | machine.Pin.IRQ_RISING)
            self.wake_pin = pin


def _positive(fp, key, default, unit="ms"):
    value = fp.get(key, default)
    if not isinstance(value, int) or value < 1:
        raise ValueError("fire_panel.%s must be a whole number of %s >= 1, not %r"
                         % (key, unit, value))
    return value


class FireNode:
    def __init__(self, cfg, link, wake):
        self.link = link
        self.wake = wake
        self.node = cfg["node"]
        fp = cfg["fire_panel"]
        self.th = fp["eol"]
        self.clear_on_normal = fp.get("clear_alarm_on_normal", False)
        window = _positive(fp, "debounce_ms", 20)
        self.sample_ms = _positive(fp, "sample_ms", 1)
        samples = _positive(fp, "confirm_samples", 3, "samples")
        self.loop_ms = cfg["loop_ms"]
        self.last_scan: "_TicksMs | int" = 0
        mux = None
        if "mux" in fp:
            mux = [machine.Pin(p, machine.Pin.OUT, value=0) for p in fp["mux"]["select"]]
        self.loops = []
        for spec in fp["loops"]:
            if "channel" in spec:
                src = AnalogSource(fp["mux"]["adc"], mux, spec["channel"],
                                   fp["mux"].get("settle_us", 50))
            else:
                src = AnalogSource(spec["adc"])
            self.loops.append(Loop(spec, src, Confirmed(window, samples), wake))
        led = fp.get("led")
        self.led = Output(led["pin"], led.get("active_low", False)) if led else None
        self.ready = False
        self.fire = False
        self.since = None
        self.report_ms = cfg["report_s"] * 1000
        self.last_report = 0
        link.on_alarm(self._site_alarm)

    def _flags(self):
        fire = trouble = supervisory = False
        for lp in self.loops:
            s = lp.state.value
            if s in ("open", "short"):
                trouble = True
            elif s == "active":
                if lp.role in ("fire", "zone"):
                    fire = True
                elif lp.role == "trouble":
                    trouble = True
                else:
                    supervisory = True
        return fire, trouble, supervisory

    def _fire_zone(self):
        for lp in self.loops:
            if lp.role == "zone" and lp.state.value == "active":
                return lp.zone
        return None

    def pause_ms(self):
        """How long the main loop may wait (an interrupt ends the wait sooner): ``sample_ms``
        while a loop is being confirmed, else until the next full scan."""
        for lp in self.loops:
            if lp.state.pending:
                return self.sample_ms
        left = self.loop_ms - time.ticks_diff(time.ticks_ms(), self.last_scan)
        return left if left > 0 else 0

    def poll(self, now):
        woke = self.wake.flag
        self.wake.flag = False
        scan = not self.ready or time.ticks_diff(now, self.last_scan) >= self.loop_ms
        if scan:
            self.last_scan = now
        changed: "list[Loop | None]" = []  # None: the first complete picture (no one loop)
        for lp in self.loops:
            if scan or lp.state.pending or (woke and lp.wake_pin is not None):
                state = lp.state
                done = state.update(classify_loop(lp.source.read(), self.th), time.ticks_us())
                while not done and state.ripe(time.ticks_us()):
                    done = state.update(classify_loop(lp.source.read(), self.th),
                                        time.ticks_us())
                if done:
                    changed.append(lp)
        if not self.ready:
            for lp in self.loops:
                if lp.state.value is None:
                    return
            self.ready = True
            changed = [None]  # first complete picture: one reading
        fire, trouble, supervisory = self._flags()
        if fire and not self.fire:
            self.since = utc_iso()
            self._latch(True)
            self.link.send_latched_now()  # before the readings go to flash
        elif not fire and self.fire and self.clear_on_normal:
            self._latch(False)
        self.fire = fire
        for ch in changed:
            zone = ch.zone if ch is not None and ch.role == "zone" else None
            if ch is not None:
                print("loop", ch.name, ch.state.value)
            self._reading(fire, trouble, supervisory, zone, now)
        if self.report_ms and not changed and self.ready:
            if time.ticks_diff(now, self.last_report) >= self.report_ms:
                self._reading(fire, trouble, supervisory, None, now)
        if self.led is not None:
            self.led.set((100, 100) if fire else ((500, 1500) if trouble else True), now)
            self.led.tick(now)

    def _reading(self, fire, trouble, supervisory, zone, now):
        self.last_report = now
        self.link.reading({"fire": fire, "trouble": trouble, "supervisory": supervisory,
                           "zone": zone})

    def _latch(self, active):
        ts = utc_iso()
        self.link.latch_alarm("fire", {
            "v": 1, "kind": "fire", "active": active, "source": self.node,
            "zone": self._fire_zone() if active else None,
            "since": self.since if active else None, "ts": ts})

    def _site_alarm(self, kind, body):
        # Someone cleared the fire alarm while the panel still reports fire: say it again.
        if kind == "fire" and self.fire and not body.get("active", False):
            print("fire: alarm cleared while the panel is in fire; re-asserting")
            self._latch(True)
