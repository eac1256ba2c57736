# Handheld NFC patrol reader (Pico W + PN532): the guard logs on with his badge tag, then each
# checkpoint tap becomes a PatrolTap (tag UID, SUN data, badge, reader-local time, seq) that is
# written to the flash outbox first and uploaded in seq order whenever Wi-Fi and the broker are
# there (underground they mostly are not). LED and buzzer tell the guard what happened; the
# battery is measured on the ADC.
#
# Wire: parkguard/v1/{site}/patrol/{reader}/tap, QoS 1, not retained (broker user
# patrol-<reader>, whose ACL allows that topic only: so no retained state and no Last Will).
import json
import os
import time

import machine

from pgsensor import VERSION, board, topics
from pgsensor import config as base_config
from pgsensor.link import Link
from pgsensor.pn532 import open_reader

PATROL_DEFAULTS = {
    "tz_offset_min": 480,  # reader_time is site-local: Asia/Shanghai
    "repeat_ms": 3000,  # the same tag again within this is the same tap (tag still held)
    "ack_wait_ms": 600,  # online: wait this long for the PUBACK before saying "stored"
    "shift_s": 43200,  # a logon lapses after this (a forgotten reader is not a patrol)
    "badges": {},
}
BATTERY_DEFAULTS = {
    "adc": 26, "ratio": 2.0, "vref_mv": 3300, "samples": 8, "every_s": 60,
    "low_pct": 15,
}
# 1S Li-ion resting voltage -> charge (mV, %), a coarse discharge curve.
LI_ION_CURVE = ((3300, 0), (3500, 5), (3600, 12), (3700, 30), (3800, 50), (3900, 65),
                (4000, 80), (4100, 92), (4180, 100))

# Feedback: per output, a list of (on_ms, off_ms) pulses played once. Counted by the tests.
PATTERNS: "dict[str, dict[str, tuple[tuple[int, int], ...]]]" = {
    "ok": {"green": ((400, 0),), "buzzer": ((80, 0),)},  # at the broker
    "stored": {"green": ((120, 120), (120, 0)), "buzzer": ((60, 90), (60, 0))},  # on flash
    "logon": {"green": ((800, 0),), "buzzer": ((50, 60), (50, 60), (50, 0))},
    "logoff": {"green": ((100, 100), (100, 100), (100, 0)), "buzzer": ((300, 0),)},
    "error": {"red": ((150, 100), (150, 100), (150, 0)), "buzzer": ((700, 0),)},
    "battery_low": {"red": ((1000, 0),)},
}
STATE_FILE = "patrol_state.json"
SESSION_FILE = "patrol.session"


def load_config(path="config.json"):
    try:
        with open(path) as f:
            cfg = json.load(f)
    except OSError:
        raise base_config.ConfigError("config.json: cannot open %s" % path)
    except ValueError:
        raise base_config.ConfigError("config.json: %s is not valid JSON" % path)
    for key in ("node", "site", "broker", "patrol"):
        base_config._need(cfg, key, "the top level")
    if cfg.setdefault("kind", "patrol") != "patrol":
        raise base_config.ConfigError("config.json: kind must be patrol for the patrol reader")
    for key, value in base_config.DEFAULTS.items():
        cfg.setdefault(key, value)
    broker = cfg["broker"]
    base_config._need(broker, "host", "broker")
    for key, value in base_config.BROKER_DEFAULTS.items():
        broker.setdefault(key, value)
    broker.setdefault("user", "patrol-" + cfg["node"])
    p = cfg["patrol"]
    for key, value in PATROL_DEFAULTS.items():
        p.setdefault(key, value)
    base_config._need(p, "nfc", "patrol")
    badges = {}
    for uid, badge in p["badges"].items():
        if not badge or len(badge) > 32:
            raise base_config.ConfigError("config.json: badge id for %s must be 1-32 chars" % uid)
        badges[uid.upper()] = badge
    p["badges"] = badges
    if "battery" in p:
        for key, value in BATTERY_DEFAULTS.items():
            p["battery"].setdefault(key, value)
    return cfg


# -- clock ---------------------------------------------------------------------------------


def clock_valid():
    """The RTC has been set (NTP or a backup RTC): a Pico W boots at 2021-01-01."""
    return time.gmtime(time.time())[0] >= 2024


def local_iso(offset_s):
    """Site-local naive time with milliseconds, e.g. 2026-05-06T10:02:13.120."""
    ns = time.time_ns()
    secs = ns // 1000000000 + offset_s
    t = time.gmtime(secs)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03d" % (t[0], t[1], t[2], t[3], t[4], t[5],
                                                   (ns // 1000000) % 1000)


def _bcd(b):
    return (b >> 4) * 10 + (b & 0x0F)


def _to_bcd(v):
    return (v // 10) << 4 | v % 10


class BackupRtc:
    """DS3231 on the PN532's I2C bus (0x68, coin cell): the Pico W's own RTC starts at
    2021-01-01 after every power-up, and underground there is no NTP. ``load`` sets the
    Pico's RTC from it at boot; ``store`` writes it back after an NTP sync. UTC throughout.
    Untested here: the unix port has no I2C."""

    ADDR = 0x68

    def __init__(self, cfg):
        self.i2c = machine.I2C(cfg.get("i2c_id", 0), sda=machine.Pin(cfg.get("sda", 4)),
                               scl=machine.Pin(cfg.get("scl", 5)), freq=cfg.get("freq", 100000))

    def load(self):
        try:
            r = self.i2c.readfrom_mem(self.ADDR, 0, 7)
        except OSError as exc:
            print("rtc: DS3231 not answering:", exc)
            return False
        year = 2000 + _bcd(r[6])
        if year < 2024:
            print("rtc: DS3231 not set")
            return False
        machine.RTC().datetime((year, _bcd(r[5] & 0x1F), _bcd(r[4]), (r[3] - 1) % 7,
                                _bcd(r[2] & 0x3F), _bcd(r[1]), _bcd(r[0] & 0x7F), 0))
        print("rtc: clock set from the DS3231")
        return True

    def store(self):
        t = time.gmtime()
        try:
            self.i2c.writeto_mem(self.ADDR, 0, bytes([
                _to_bcd(t[5]), _to_bcd(t[4]), _to_bcd(t[3]), t[6] + 1, _to_bcd(t[2]),
                _to_bcd(t[1]), _to_bcd(t[0] - 2000)]))
        except OSError as exc:
            print("rtc: DS3231 not written:", exc)


# -- battery -------------------------------------------------------------------------------


def percent_from_mv(mv):
    if mv <= LI_ION_CURVE[0][0]:
        return 0
    for i in range(1, len(LI_ION_CURVE)):
        hi_mv, hi_pct = LI_ION_CURVE[i]
        if mv <= hi_mv:
            lo_mv, lo_pct = LI_ION_CURVE[i - 1]
            return lo_pct + (hi_pct - lo_pct) * (mv - lo_mv) // (hi_mv - lo_mv)
    return 100


class Battery:
    """Cell voltage through a divider on an ADC pin, averaged; ``mv``, ``pct``, ``low``."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.adc = machine.ADC(machine.Pin(cfg["adc"]))
        self.every_ms = cfg["every_s"] * 1000
        self.last = None
        self.mv = None
        self.pct = None

    def due(self, now):
        return self.last is None or time.ticks_diff(now, self.last) >= self.every_ms

    def sample(self, now):
        n = self.cfg["samples"]
        total = 0
        for _ in range(n):
            total += self.adc.read_u16()
        raw = total // n
        self.mv = int(raw * self.cfg["vref_mv"] * self.cfg["ratio"] // 65535)
        self.pct = percent_from_mv(self.mv)
        self.last = now
        return self.mv

    @property
    def low(self):
        return self.pct is not None and self.pct <= self.cfg["low_pct"]


# -- feedback ------------------------------------------------------------------------------


class Feedback:
    """LEDs and buzzer playing one pattern at a time; a new pattern waits for the current."""

    def __init__(self, outputs):
        self.pins = {}
        for name in ("green", "red", "buzzer"):
            spec = outputs.get(name)
            if spec:
                low = spec.get("active_low", False)
                self.pins[name] = (machine.Pin(spec["pin"], machine.Pin.OUT,
                                               value=1 if low else 0), low)
        self.queue = []
        self.tracks = {}  # name -> [pulses, index, on, next_ms]
        self.played = []  # names of finished patterns (the last few), for the console

    def play(self, name):
        print("feedback", name)
        self.queue.append(name)
        if not self.tracks:
            self._start()

    @property
    def busy(self):
        return bool(self.tracks) or bool(self.queue)

    @staticmethod
    def _after(ms):
        # From the clock read once the pin has changed, not the loop's ``now``: that was read
        # before the tap was handled (a flash write, a publish), and a pulse timed from it
        # came out short on a busy node (the 700 ms error buzz measured 570 ms).
        return time.ticks_add(time.ticks_ms(), ms)

    def _drive(self, name, on):
        pin, low = self.pins[name]
        pin.value((0 if on else 1) if low else (1 if on else 0))

    def _start(self):
        if not self.queue:
            return
        pattern = PATTERNS[self.queue.pop(0)]
        for name in pattern:
            if name in self.pins:
                self._drive(name, True)
                self.tracks[name] = [pattern[name], 0, True, self._after(pattern[name][0][0])]

    def tick(self, now):
        for name in list(self.tracks):
            track = self.tracks[name]
            if time.ticks_diff(now, track[3]) < 0:
                continue
            pulses, i, on = track[0], track[1], track[2]
            if on:
                self._drive(name, False)
                off = pulses[i][1]
                if off == 0 or i + 1 >= len(pulses):
                    del self.tracks[name]
                    continue
                track[2] = False
                track[3] = self._after(off)
            else:
                track[1] = i + 1
                track[2] = True
                self._drive(name, True)
                track[3] = self._after(pulses[i + 1][0])
        if not self.tracks and self.queue:
            self._start()


# -- link ----------------------------------------------------------------------------------


class PatrolLink(Link):
    """The runtime's Link with the patrol reader's one topic: taps from the outbox, in seq
    order, QoS 1; no retained state, no Last Will, no alarm subscription (the ACL of a
    ``patrol-<id>`` user allows ``patrol/<id>/tap`` only), and Wi-Fi that never blocks the
    reader: a tap must be read even while the network is being looked for."""

    def __init__(self, cfg, wdt):
        super().__init__(cfg, wdt)
        self.topic_reading = topics.patrol_tap(cfg["site"], self.node)
        self._wlan = None
        self._wifi_since = None
        self._ntp_done = False
        self.on_clock_set = None  # called after an NTP sync (BackupRtc.store)

    def _wifi_ready(self):
        wifi = self.cfg.get("wifi")
        try:
            import network
        except ImportError:
            return True  # unix port: the host's network
        if not wifi:
            return True
        if self._wlan is None:
            self._wlan = network.WLAN(network.STA_IF)
            self._wlan.active(True)
        if self._wlan.isconnected():
            if not self._ntp_done:
                board._sync_clock(wifi.get("ntp"))
                self._ntp_done = True
                if self.on_clock_set is not None and clock_valid():
                    self.on_clock_set()
            return True
        now = time.ticks_ms()
        if self._wifi_since is None or time.ticks_diff(now, self._wifi_since) > 15000:
            self._wifi_since = now
            self._wlan.connect(wifi["ssid"], wifi.get("password", ""))  # returns at once
        return False

    def _network_ready(self):
        return self._wifi_ready()  # never blocks: taps are read while Wi-Fi is looked for

    def _will(self):
        return {}  # the patrol ACL allows the tap topic only: no state, no Last Will

    def _start_session(self):
        pass  # taps only: no alarm subscription, no retained state

    def _lost(self, exc):
        super()._lost(exc)
        self._ntp_done = False  # resync the clock when the network is back

    def _send_state(self, online):
        self.last_heartbeat = time.ticks_ms()  # nothing to publish: see the class docstring

    @property
    def online(self):
        return self.client.connected


# -- the reader ----------------------------------------------------------------------------


class PatrolReader:
    """Badge logon, checkpoint taps to the outbox, feedback, battery, the reader's state."""

    def __init__(self, cfg, link, nfc):
        self.cfg = cfg
        self.p = cfg["patrol"]
        self.link = link
        self.nfc = nfc
        self.reader = cfg["node"]
        self.offset_s = self.p["tz_offset_min"] * 60
        self.badges = self.p["badges"]
        self.feedback = Feedback(self.p.get("outputs", {}))
        self.battery = Battery(self.p["battery"]) if "battery" in self.p else None
        self.badge = None
        self.logon_at = 0
        self.last_uid = None
        self.last_seen = 0
        self.waiting = None  # (seq, deadline) of a tap whose PUBACK decides ok vs stored
        self.online = None
        self._load_session()
        self.taps = 0
        self.refused = 0

    # session: which guard carries the reader, kept across a battery swap
    def _load_session(self):
        try:
            with open(SESSION_FILE) as f:
                data = json.loads(f.read())
        except (OSError, ValueError):
            return
        if data.get("badge") and time.time() - data.get("at", 0) < self.p["shift_s"]:
            self.badge = data["badge"]
            self.logon_at = data["at"]
            print("patrol: session restored, badge", self.badge)

    def _save_session(self):
        tmp = SESSION_FILE + ".tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps({"badge": self.badge, "at": self.logon_at}))
        os.rename(tmp, SESSION_FILE)

    def write_state(self):
        """The reader's state on flash (``mpremote cat :patrol_state.json``) and the console."""
        b = self.battery
        state = {"reader": self.reader, "firmware": VERSION, "badge": self.badge,
                 "online": bool(self.online), "next_seq": self.link.seq,
                 "pending": self.link.outbox.pending, "battery_mv": b.mv if b else None,
                 "battery_pct": b.pct if b else None, "battery_low": b.low if b else False,
                 "clock_set": clock_valid(), "taps": self.taps, "refused": self.refused}
        tmp = STATE_FILE + ".tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps(state))
        os.rename(tmp, STATE_FILE)
        print("state", json.dumps(state))

    # the loop
    def poll(self, now):
        dirty = False
        if self.battery is not None and self.battery.due(now):
            before = (self.battery.mv, self.battery.low)
            self.battery.sample(now)
            if before[0] is None or abs(self.battery.mv - before[0]) >= 20 or \
                    before[1] != self.battery.low:
                dirty = True
        if self.online != self.link.online:
            self.online = self.link.online
            dirty = True
        if self.badge is not None and time.time() - self.logon_at >= self.p["shift_s"]:
            print("patrol: shift over, badge", self.badge, "logged off")
            self._logoff()
            dirty = True
        tag = self.nfc.poll(now)
        if tag is not None:
            if tag.uid == self.last_uid and time.ticks_diff(now, self.last_seen) < \
                    self.p["repeat_ms"]:
                self.last_seen = now  # still held, or tapped twice: one tap
            else:
                self.last_uid = tag.uid
                self.last_seen = now
                self._tap(tag, now)
                dirty = True
        if self.waiting is not None:
            seq, deadline = self.waiting
            if self.link.outbox.acked >= seq:
                self.waiting = None
                self.feedback.play("ok")
            elif not self.link.online or time.ticks_diff(now, deadline) >= 0:
                self.waiting = None
                self.feedback.play("stored")
        self.feedback.tick(now)
        if dirty:
            self.write_state()

    def _tap(self, tag, now):
        uid = tag.uid_hex
        if uid in self.badges:
            badge = self.badges[uid]
            if badge == self.badge:
                print("patrol: logoff, badge", badge)
                self._logoff()
                return
            self.badge = badge
            self.logon_at = time.time()
            self._save_session()
            print("patrol: logon, badge", badge)
            self.feedback.play("logon")
            if self.battery is not None and self.battery.low:
                self.feedback.play("battery_low")
            return
        if self.badge is None:
            return self._refuse("no badge logged on", uid)
        if len(tag.uid) not in (4, 7, 10):
            return self._refuse("uid length %d" % len(tag.uid), uid)
        if tag.sun is not None and len(tag.sun) > 128:
            return self._refuse("SUN data too long", uid)
        if not clock_valid():
            print("patrol: WARNING the clock is not set; reader_time is wrong")
        seq = self.link.seq
        body = {"v": 1, "reader": self.reader, "seq": seq, "tag_id": uid, "sun": tag.sun,
                "badge": self.badge, "reader_time": local_iso(self.offset_s)}
        payload = json.dumps(body)
        self.link.outbox.append(seq, payload)  # on flash before anything else
        self.link.seq = seq + 1
        self.taps += 1
        print("tap", seq, payload)
        if self.link.online:
            self.waiting = (seq, time.ticks_add(now, self.p["ack_wait_ms"]))
        else:
            self.feedback.play("stored")
        if self.battery is not None and self.battery.low:
            self.feedback.play("battery_low")

    def _logoff(self):
        self.badge = None
        self.logon_at = 0
        try:
            os.remove(SESSION_FILE)
        except OSError:
            pass
        self.feedback.play("logoff")

    def _refuse(self, why, uid):
        self.refused += 1
        print("patrol: tap refused (%s), tag" % why, uid)
        self.feedback.play("error")


def main(path="config.json"):
    cfg = load_config(path)
    print("parkguard patrol reader", VERSION, cfg["node"], "site", cfg["site"])
    wdt = board.watchdog(cfg["watchdog_ms"])
    rtc = None
    if "rtc" in cfg["patrol"]:
        rtc = BackupRtc(cfg["patrol"]["rtc"])
        rtc.load()
    link = PatrolLink(cfg, wdt)
    if rtc is not None:
        link.on_clock_set = rtc.store
    reader = PatrolReader(cfg, link, open_reader(cfg["patrol"]["nfc"]))
    loop_ms = cfg["loop_ms"]
    while True:
        wdt.feed()
        now = time.ticks_ms()
        reader.poll(now)
        link.service(now)
        time.sleep_ms(loop_ms)
