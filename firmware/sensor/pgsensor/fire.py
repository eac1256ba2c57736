# Fire-panel interface node: the panel's dry contacts (fire, trouble, supervisory) and zone
# contacts, each on a loop supervised by an end-of-line resistor and read on the ADC as
# normal / active / open / short. On fire it latches the retained site alarm itself, so the
# lanes open even with the gateway down; every change of a loop is also a reading.
import time

import machine

from pgsensor.clock import utc_iso
from pgsensor.inputs import AnalogSource, Debounced, Output, classify_loop

ROLES = ("fire", "trouble", "supervisory", "zone")


class Loop:
    def __init__(self, spec, source, hold_ms):
        self.name = spec["name"]
        self.role = spec.get("role", "zone")
        if self.role not in ROLES:
            raise ValueError("fire_panel loop %s: role must be one of %s" % (self.name, ROLES))
        self.zone = spec.get("zone", self.name if self.role == "zone" else None)
        self.source = source
        self.state = Debounced(hold_ms)


class FireNode:
    def __init__(self, cfg, link):
        self.link = link
        self.node = cfg["node"]
        fp = cfg["fire_panel"]
        self.th = fp["eol"]
        self.clear_on_normal = fp.get("clear_alarm_on_normal", False)
        hold = fp.get("debounce_ms", 50)
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
            self.loops.append(Loop(spec, src, hold))
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

    def poll(self, now):
        changed: "list[Loop | None]" = []  # None: the first complete picture (no one loop)
        for lp in self.loops:
            if lp.state.update(classify_loop(lp.source.read(), self.th), now):
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
