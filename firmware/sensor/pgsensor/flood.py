# Flood / water-level node: float switches at three heights and/or an analog level sensor, a
# pump-running input, and a local buzzer and LED. Levels change only after the new level has
# held for debounce_ms, and an analog level must fall hysteresis_mm below a threshold to go
# back down, so a ripple on the surface gives exactly one reading per level crossing.
import time

from pgsensor.inputs import AnalogSource, Debounced, DigitalIn, Output

# Local annunciation per level: (LED pattern, buzzer pattern); (on_ms, off_ms) blinks.
PATTERNS = {
    0: (None, None),
    1: (True, None),
    2: (True, (200, 1800)),
    3: ((250, 250), True),
}


class FloodNode:
    def __init__(self, cfg, link):
        self.link = link
        fl = cfg["flood"]
        self.levels_mm = fl["levels_mm"]  # three thresholds, rising
        self.hyst = fl.get("hysteresis_mm", 20)
        hold = fl.get("debounce_ms", 300)
        self.floats = []
        for spec in fl.get("floats", ()):
            self.floats.append((DigitalIn(spec["pin"], spec.get("active_low", True)),
                                spec["height_mm"], Debounced(hold)))
        self.analog = None
        if "level_adc" in fl:
            a = fl["level_adc"]
            self.analog = AnalogSource(a["pin"])
            self.raw_zero = a.get("raw_zero", 0)
            self.raw_full = a["raw_full"]
            self.full_mm = a["full_mm"]
            self.samples = []
            self.nsamples = a.get("samples", 8)
        if not self.floats and self.analog is None:
            raise ValueError("a flood node needs floats and/or level_adc")
        self.analog_level = 0
        self.mm = 0
        self.win_max = self.win_min = 0
        self.level = Debounced(hold)
        pump = fl.get("pump")
        self.pump_in = DigitalIn(pump["pin"], pump.get("active_low", True)) if pump else None
        self.pump = Debounced(hold)
        self.trouble = False
        self.buzzer = Output(fl["buzzer"]["pin"], fl["buzzer"].get("active_low", False)) \
            if "buzzer" in fl else None
        self.led = Output(fl["led"]["pin"], fl["led"].get("active_low", False)) \
            if "led" in fl else None
        self.report_ms = cfg["report_s"] * 1000
        self.last_report = 0
        self.ready = False
        self.loop_ms = cfg["loop_ms"]

    def pause_ms(self):
        """How long the main loop waits between passes: water rises in seconds, not ms."""
        return self.loop_ms

    def _analog_mm(self):
        assert self.analog is not None  # poll() calls this only with a level_adc
        raw = self.analog.read()
        self.samples.append(raw)
        if len(self.samples) > self.nsamples:
            self.samples.pop(0)
        avg = sum(self.samples) // len(self.samples)
        span = self.raw_full - self.raw_zero
        mm = (avg - self.raw_zero) * self.full_mm // span if span else 0
        return min(max(mm, 0), 10000)

    def _level_from_mm(self, mm):
        lv = self.analog_level
        while lv < 3 and mm >= self.levels_mm[lv]:
            lv += 1
        while lv > 0 and mm < self.levels_mm[lv - 1] - self.hyst:
            lv -= 1
        self.analog_level = lv
        return lv

    def poll(self, now):
        float_level = 0
        float_mm = 0
        floats_ready = True
        trouble = False
        gap = False
        for pin, height, deb in self.floats:
            deb.update(pin.active(), now)
            if deb.value is None:
                floats_ready = False
            elif deb.value:
                if gap:
                    trouble = True  # a higher float is up while a lower one is down: stuck
                float_level += 1
                float_mm = max(float_mm, height)
            else:
                gap = True
        level = float_level
        mm = float_mm
        if self.analog is not None:
            mm = self._analog_mm()
            level = max(level, self._level_from_mm(mm))
        # The level is debounced: report the highest (rising) or lowest (falling) filtered
        # level seen while the new level held, so the reading lies in the band it announces.
        before = self.level.candidate
        previous = self.level.value
        changed = self.level.update(level, now)
        if self.level.candidate != before:
            self.win_max = self.win_min = mm
        else:
            self.win_max = max(self.win_max, mm)
            self.win_min = min(self.win_min, mm)
        if changed and previous is not None:
            mm = self.win_max if self.level.value > previous else self.win_min
        self.mm = mm
        if self.pump_in is not None:
            changed = self.pump.update(self.pump_in.active(), now) or changed
            pump_ready = self.pump.value is not None
        else:
            pump_ready = True
        if trouble != self.trouble:
            self.trouble = trouble
            changed = True
        if not self.ready:
            if not (floats_ready and pump_ready and self.level.value is not None):
                return
            self.ready = True
            changed = True
        if changed:
            print("level", self.level.value, "mm", mm, "pump", self.pump.value, "trouble", trouble)
            self._reading(now)
            assert self.level.value is not None  # ready: the level has settled
            led, buzz = PATTERNS[self.level.value]
            if trouble and not led:
                led = (100, 900)
            if self.led is not None:
                self.led.set(led, now)
            if self.buzzer is not None:
                self.buzzer.set(buzz, now)
        elif self.report_ms and time.ticks_diff(now, self.last_report) >= self.report_ms:
            self._reading(now)
        if self.led is not None:
            self.led.tick(now)
        if self.buzzer is not None:
            self.buzzer.tick(now)

    def _reading(self, now):
        self.last_report = now
        fields = {"water_level_mm": int(self.mm), "trouble": self.trouble}
        if self.pump_in is not None:
            fields["pump_running"] = bool(self.pump.value)
        self.link.reading(fields)
