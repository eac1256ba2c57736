"""The sensor-node runtime on the real MicroPython unix port: outbox across a broker outage
and a power cut, Last Will, heartbeat; and the MQTT packet encoding, under CPython."""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest

from broker.runner import _CONNECT, MosquittoBroker
from simulator.sensor_node import (
    FIRMWARE,
    LOOP_ACTIVE,
    LOOP_NORMAL,
    SensorNode,
    fire_panel_config,
    fire_panel_inputs,
    loop_key,
)
from tests.helpers import Recorder, eventually
from wire.contract import topics
from wire.contract.messages import SensorReading, SensorState, decode
from wire.mqtt import MqttBus

SITE = "test"
READINGS = topics.sensor_reading(SITE, "fire1")
STATE = topics.sensor_state(SITE, "fire1")


def _load_mqtt() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pg_mqtt", FIRMWARE / "pgsensor" / "mqtt.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class PersistentWatcher:
    """A watcher with a persistent session: the broker queues for it while it is away."""

    def __init__(self, broker: MosquittoBroker, topic_filter: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.bus = MqttBus(broker.address("monitor-watch2"), client_id="monitor-watch2",
                           persistent=True)
        self.bus.subscribe(topic_filter, self._keep)
        self.bus.start()

    def _keep(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self.messages.append((topic, payload))

    def readings(self) -> list[SensorReading]:
        with self._lock:
            got = list(self.messages)
        out = []
        for topic, payload in got:
            value = decode(topic, payload)
            assert isinstance(value, SensorReading)
            out.append(value)
        return out


@pytest.mark.integration
def test_readings_taken_while_the_broker_is_down_arrive_later_in_order(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    watcher = PersistentWatcher(broker, READINGS)
    node = SensorNode(broker, tmp_path / "fire1", fire_panel_config(), fire_panel_inputs())
    try:
        node.start()
        eventually(lambda: len(watcher.readings()) == 1, timeout=10, what="the boot reading")

        def pending_seqs() -> list[int]:
            return [int(line.split(" ", 1)[0]) for line in node.outbox_pending()]

        def toggle(times: int) -> None:
            """Flip the supervisory contact; each change is one reading, on flash first."""
            for i in range(times):
                last = node.last_seq()
                node.set(**{loop_key("supervisory"): LOOP_ACTIVE if i % 2 == 0 else LOOP_NORMAL})
                eventually(lambda last=last: node.last_seq() == last + 1,  # type: ignore[misc]
                           what="the reading on flash")

        broker.stop()
        toggle(6)  # seq 1..6, while the broker is down
        eventually(lambda: pending_seqs()[-1:] == [6], what="six readings in the outbox")
        node.kill()  # a power cut with the backlog on flash
        node.start()  # boot: seq goes on from the flash, the boot reading is seq 7
        eventually(lambda: pending_seqs()[-1:] == [7], what="the boot reading after the cut")
        toggle(4)  # seq 8..11
        eventually(lambda: pending_seqs()[-1:] == [11], what="eleven readings on flash")
        assert set(range(1, 12)) <= set(pending_seqs())
        assert node.running
        time.sleep(0.5)  # a few failed reconnects with back-off

        broker.start()  # same port, same persistent sessions
        eventually(lambda: len({r.seq for r in watcher.readings()}) == 12, timeout=15,
                   what="every reading after the outage")
        seqs = [r.seq for r in watcher.readings()]
        first_seen = list(dict.fromkeys(seqs))  # a QoS 1 resend may duplicate, never reorder
        assert first_seen == list(range(12)), seqs
        sup = [r.supervisory for r in watcher.readings()[1:7]]
        assert sup == [True, False, True, False, True, False]
        eventually(lambda: node.outbox_pending() == [], what="the outbox emptied after PUBACKs")
        ts = [r.ts for r in watcher.readings()]
        assert ts == sorted(ts)  # stamped when taken, not when sent
    finally:
        node.kill()
        watcher.bus.stop()


@pytest.mark.integration
def test_the_node_goes_offline_by_last_will_when_it_dies(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    config = fire_panel_config(heartbeat_s=1)
    node = SensorNode(broker, tmp_path / "fire1", config, fire_panel_inputs())
    with Recorder(broker, STATE, device="monitor-watch1") as rec:
        node.start()

        def states() -> list[SensorState]:
            out = []
            for topic, payload in list(rec.messages):
                value = decode(topic, payload)
                assert isinstance(value, SensorState)
                out.append(value)
            return out

        # Online, retained, and republished every heartbeat.
        eventually(lambda: len(states()) >= 3, timeout=30, what="three heartbeats")
        assert all(s.online and s.heartbeat_s == 1 for s in states())
        assert len({s.ts for s in states()}) == len(states())

        node.kill()
        started = time.monotonic()
        eventually(lambda: not states()[-1].online, timeout=30, what="the Last Will")
        print(f"process killed to offline state: {(time.monotonic() - started) * 1000:.0f} ms")
        assert states()[-1].heartbeat_s == 1

    with Recorder(broker, STATE, device="monitor-watch2") as late:
        eventually(lambda: bool(late.messages), what="the retained offline state")
        value = decode(*late.messages[0])
        assert isinstance(value, SensorState) and not value.online


# MQTT packet encoding, under CPython -----------------------------------------------------


def test_remaining_length_encoding_matches_the_spec_boundaries() -> None:
    mqtt = _load_mqtt()
    cases = {
        0: b"\x00", 127: b"\x7f", 128: b"\x80\x01", 16383: b"\xff\x7f",
        16384: b"\x80\x80\x01", 2097151: b"\xff\xff\x7f", 2097152: b"\x80\x80\x80\x01",
        268435455: b"\xff\xff\xff\x7f",
    }
    for length, encoded in cases.items():
        assert mqtt.encode_remaining_length(length) == encoded
        assert mqtt.decode_remaining_length(b"\x30" + encoded) == (length, 1 + len(encoded))
    with pytest.raises(mqtt.MQTTError):
        mqtt.encode_remaining_length(268435456)
    assert mqtt.decode_remaining_length(b"\x30\x80") is None  # not all here yet
    with pytest.raises(mqtt.MQTTError):
        mqtt.decode_remaining_length(b"\x30\xff\xff\xff\xff\x01")


def test_connect_packet_is_byte_for_byte_the_runners_probe() -> None:
    mqtt = _load_mqtt()
    assert mqtt.connect_packet("parkguard-probe", keepalive=10, clean=True) == _CONNECT


def test_connect_packet_carries_will_and_credentials() -> None:
    mqtt = _load_mqtt()
    packet = mqtt.connect_packet("sensor-fire1", keepalive=30, user="sensor-fire1",
                                 password="pw", clean=False, will_topic="a/b",
                                 will_payload=b"{}", will_qos=1, will_retain=True)
    first, body, used = mqtt.split_packet(packet + b"\xc0\x00")
    assert first == 0x10 and used == len(packet)
    assert body[:7] == b"\x00\x04MQTT\x04"
    assert body[7] == 0x80 | 0x40 | 0x20 | 0x08 | 0x04  # user, password, will retain/QoS1/flag
    assert body[8:10] == b"\x00\x1e"
    assert body[10:] == (b"\x00\x0csensor-fire1" b"\x00\x03a/b" b"\x00\x02{}"
                         b"\x00\x0csensor-fire1" b"\x00\x02pw")


def test_publish_round_trips_through_the_parser() -> None:
    mqtt = _load_mqtt()
    payload = "火警".encode() * 100  # a body longer than 127 bytes: two length bytes
    packet = mqtt.publish_packet("parkguard/v1/test/alarm/fire", payload, qos=1, retain=True,
                                 pid=60003, dup=True)
    assert packet[0] == 0x30 | 0x08 | 0x02 | 0x01
    first, body, used = mqtt.split_packet(packet)
    assert used == len(packet)
    assert mqtt.parse_publish(first, body) == (
        "parkguard/v1/test/alarm/fire", payload, 1, True, True, 60003)
    assert mqtt.split_packet(packet[:-1]) is None
    with pytest.raises(mqtt.MQTTError):
        mqtt.publish_packet("t", b"", qos=1, pid=0)
    assert mqtt.subscribe_packet(60002, [("a/+", 1)]) == b"\x82\x08\xea\x62\x00\x03a/+\x01"
    assert mqtt.puback_packet(258) == b"\x40\x02\x01\x02"


def test_the_build_compiles_every_module_and_the_unix_port_imports_the_bytecode(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    from simulator.sensor_node import SIM, micropython_binary

    binary = micropython_binary()
    out = tmp_path / "build"
    subprocess.run([sys.executable, str(FIRMWARE / "build.py"), "--out", str(out)], check=True,
                   capture_output=True)
    sources = sorted(p.stem for p in (FIRMWARE / "pgsensor").glob("*.py"))
    assert sorted(p.stem for p in (out / "pgsensor").glob("*.mpy")) == sources
    assert not list((out / "pgsensor").glob("*.py"))
    probe = subprocess.run(
        [str(binary), "-c", "import pgsensor.app, pgsensor.fire, pgsensor.flood; "
         "print(pgsensor.app.__file__)"],
        cwd=out, env={"MICROPYPATH": f"{SIM}:{out}:.frozen"}, capture_output=True, text=True,
        check=True, timeout=10,
    )
    assert probe.stdout.strip().endswith("app.mpy")
