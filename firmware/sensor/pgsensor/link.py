# The node's link to the broker: connect with a retained Last Will, publish the retained
# online state and a heartbeat, send the outbox in seq order with QoS 1 and a window, drop a
# record only on its PUBACK, keep latched retained messages (the fire alarm) until acknowledged,
# receive the site alarms, and reconnect with exponential back-off when anything breaks.
import json
import random
import time

from pgsensor import VERSION, board, topics
from pgsensor.clock import utc_iso
from pgsensor.mqtt import MQTTClient, der_from_pem
from pgsensor.outbox import Outbox

# MicroPython has no `typing` module: mypy treats any name TYPE_CHECKING as true, the runtime
# sees False, and the annotations that use these names are strings (never evaluated).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from _mpy_shed.time_mp import _TicksMs

# Packet ids: readings use 1 + seq % 60000 (so a resend reuses its id); the rest are fixed.
_PID_STATE = 60001
_PID_SUB = 60002
_PID_ALARM = {"fire": 60003, "flood": 60004}


def _reading_pid(seq):
    return 1 + seq % 60000


class Link:
    def __init__(self, cfg, wdt):
        self.cfg = cfg
        self.wdt = wdt
        self.node = cfg["node"]
        self.kind = cfg["kind"]
        site = cfg["site"]
        self.topic_reading = topics.sensor_reading(site, self.node)
        self.topic_state = topics.sensor_state(site, self.node)
        self.topic_alarms = topics.all_alarms(site)
        self.alarm_topics = {}  # alarm kind -> its topic, and back
        self.alarm_kinds = {}
        for kind in topics.ALARM_KINDS:
            self.alarm_topics[kind] = topics.alarm(site, kind)
            self.alarm_kinds[self.alarm_topics[kind]] = kind
        b = cfg["broker"]
        self.bcfg = b
        cadata = None
        if b["tls"]:
            with open(b["ca"], "rb") as f:
                cadata = der_from_pem(f.read())
        self.client = MQTTClient(
            b.get("client_id", b["user"]), b["host"], b["port"], b["user"], b.get("password"),
            b["keepalive_s"], b["tls"], cadata, b.get("server_hostname"), b["timeout_s"])
        self.client.on_puback = self._on_puback
        self.client.on_message = self._on_message
        box = cfg["outbox"]
        self.outbox = Outbox(box["name"], box["max_records"])
        self.seq = self.outbox.next_seq
        self.latched = {}  # alarm kind -> payload to publish retained until acknowledged
        self.inflight = {}  # pid -> ("r", seq) | ("a", kind, payload) | ("s",)
        self.sent_upto = -1  # highest reading seq written on this connection
        self.sent_ever = self.outbox.acked  # highest seq ever written: a resend carries DUP
        self.backoff_ms = b["backoff_min_ms"]
        self.next_attempt = time.ticks_ms()
        self.last_heartbeat: "_TicksMs | int" = 0  # 0: the first service() sends the state
        self.alarm_handlers = []
        self.connects = 0
        self.heartbeat_ms = cfg["heartbeat_s"] * 1000

    # -- what the node application calls ---------------------------------------------------

    def reading(self, fields):
        """Stamp a reading with the next seq and the time, and store it in the outbox."""
        body = {"v": 1, "node": self.node, "seq": self.seq, "ts": utc_iso(), "kind": self.kind}
        for key in fields:
            body[key] = fields[key]
        payload = json.dumps(body)
        self.outbox.append(self.seq, payload)
        print("reading", self.seq, payload)
        self.seq += 1
        return body

    def latch_alarm(self, kind, body):
        """Publish the retained site alarm ``alarm/<kind>`` now and after every reconnect until
        the broker has acknowledged it; a newer value replaces one not yet sent."""
        self.latched[kind] = json.dumps(body)
        if not self.client.connected:  # when connected, it is printed once it is sent
            print("alarm", kind, "latched until the broker is back:", self.latched[kind])

    def send_latched_now(self):
        """Publish the latched alarms at once if connected (a fire goes out before anything
        else the loop pass does); otherwise they leave first on the next connect."""
        if not self.client.connected:
            return
        try:
            self._send_latched()
        except OSError as exc:
            self._lost(exc)

    def on_alarm(self, handler):
        """``handler(kind, dict)`` for every site alarm the broker delivers (retained too)."""
        self.alarm_handlers.append(handler)

    # -- the loop --------------------------------------------------------------------------

    def service(self, now):
        if not self.client.connected:
            if time.ticks_diff(now, self.next_attempt) >= 0:
                self._connect()
            return
        try:
            self.client.poll()
            self._send_latched()
            self._send_outbox()
            if time.ticks_diff(now, self.last_heartbeat) >= self.heartbeat_ms:
                self._send_state(True)
        except OSError as exc:
            self._lost(exc)

    def _state_payload(self, online):
        return json.dumps({"v": 1, "node": self.node, "online": online,
                           "heartbeat_s": self.cfg["heartbeat_s"], "firmware": VERSION,
                           "ts": utc_iso()})

    def _network_ready(self):
        """Join Wi-Fi (blocking, feeding the watchdog); False to retry later."""
        return board.wifi_join(self.cfg.get("wifi"), self.wdt)

    def _will(self):
        """CONNECT's Last Will: the retained "offline" state."""
        return {"will_topic": self.topic_state, "will_payload": self._state_payload(False),
                "will_qos": 1, "will_retain": True}

    def _start_session(self):
        """After CONNECT, before the outbox: the alarm subscription, the retained online
        state, and a fire alarm still waiting for its acknowledgement."""
        self.client.subscribe([(self.topic_alarms, 1)], _PID_SUB)
        self._send_state(True)
        self._send_latched()

    def _connect(self):
        if not self._network_ready():
            self._schedule_retry("wifi down")
            return
        try:
            present = self.client.connect(clean=False, **self._will())
            self.connects += 1
            self.inflight = {}
            self.sent_upto = -1
            self._start_session()
            self._send_outbox()
        except Exception as exc:  # OSError, MQTTError, TLS errors: all mean "try again later"
            self.client.close()
            self._schedule_retry(exc)
            return
        print("mqtt: connected", self.bcfg["host"], self.bcfg["port"], "session", present,
              "backlog", self.outbox.pending)
        self.backoff_ms = self.bcfg["backoff_min_ms"]

    def _schedule_retry(self, why):
        delay = self.backoff_ms + random.getrandbits(8) * self.backoff_ms // 1024  # +0..25 %
        print("mqtt: cannot connect (%s); retry in %d ms" % (why, delay))
        self.next_attempt = time.ticks_add(time.ticks_ms(), delay)
        self.backoff_ms = min(self.backoff_ms * 2, self.bcfg["backoff_max_ms"])

    def _lost(self, exc):
        print("mqtt: connection lost:", exc)
        self.client.close()
        self.inflight = {}
        self.sent_upto = -1
        self.backoff_ms = self.bcfg["backoff_min_ms"]
        self._schedule_retry("lost")

    def _send_state(self, online):
        self.last_heartbeat = time.ticks_ms()
        if _PID_STATE in self.inflight:
            return
        self.client.publish(self.topic_state, self._state_payload(online), 1, True, _PID_STATE)
        self.inflight[_PID_STATE] = ("s",)

    def _send_latched(self):
        for kind in self.latched:
            pid = _PID_ALARM[kind]
            if pid in self.inflight:
                continue
            payload = self.latched[kind]
            self.client.publish(self.alarm_topics[kind], payload, 1, True, pid)
            self.inflight[pid] = ("a", kind, payload)
            # Printed after the publish: nothing (not even a console that blocks) before it.
            # `ticks_ms` lets simulator/bench_fire.py time the node's share of the fire path.
            print("alarm", kind, "sent", time.ticks_ms(), payload)

    def _send_outbox(self):
        if self.outbox.last_seq <= self.sent_upto or self.outbox.pending == 0:
            return
        window = self.bcfg["max_inflight"]
        busy = 0
        for entry in self.inflight.values():
            if entry[0] == "r":
                busy += 1
        if busy >= window:
            return
        for seq, payload in self.outbox.records(self.sent_upto):
            self.client.publish(self.topic_reading, payload, 1, False, _reading_pid(seq),
                                seq <= self.sent_ever)
            self.inflight[_reading_pid(seq)] = ("r", seq)
            self.sent_upto = seq
            if seq > self.sent_ever:
                self.sent_ever = seq
            busy += 1
            if busy >= window:
                break

    # -- callbacks from the client ---------------------------------------------------------

    def _on_puback(self, pid):
        entry = self.inflight.pop(pid, None)
        if entry is None:
            return
        if entry[0] == "r":
            self.outbox.ack(entry[1])
        elif entry[0] == "a":
            kind = entry[1]
            if self.latched.get(kind) == entry[2]:
                del self.latched[kind]
                print("alarm", kind, "acknowledged by the broker")

    def _on_message(self, topic, payload, retain):
        kind = self.alarm_kinds.get(topic)
        if kind is None:
            return
        try:
            body = json.loads(payload)
        except ValueError:
            print("alarm: unreadable payload on", topic)
            return
        for handler in self.alarm_handlers:
            handler(kind, body)
