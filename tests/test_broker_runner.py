"""The broker runner against the real Mosquitto binary: ports, round trips, persistence, errors."""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from broker import runner
from broker.mosquitto_conf import render_local_config
from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker, find_mosquitto
from parkguard.errors import BrokerError
from wire.mqtt import BrokerAddress, MqttBus

pytestmark = pytest.mark.integration

#: An upper bound for what must happen; each wait returns as soon as it does. A busy 2-core
#: machine running two suites once took over 5 s to stop a broker.
WAIT_S = 60.0


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """The open development broker (`parkguard broker run`), which is what these tests are
    about; every other test runs the provisioned, locked-down one from conftest."""
    with MosquittoBroker(tmp_path / "mosquitto") as running:
        yield running


@contextlib.contextmanager
def paho_client(
    bus: MosquittoBroker, *, subscribe: str | None = None
) -> Iterator[tuple[mqtt.Client, queue.Queue[mqtt.MQTTMessage]]]:
    """A connected paho 2.x client, optionally subscribed (SUBACK received) at QoS 1."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"test-{uuid.uuid4().hex[:12]}",
        protocol=mqtt.MQTTv311,
    )
    received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    connected = threading.Event()
    subscribed = threading.Event()

    def on_connect(
        _c: mqtt.Client,
        _u: object,
        _f: mqtt.ConnectFlags,
        reason: ReasonCode,
        _p: Properties | None,
    ) -> None:
        if not reason.is_failure:
            connected.set()

    client.on_connect = on_connect
    client.on_subscribe = lambda *_args: subscribed.set()
    client.on_message = lambda _c, _u, message: received.put(message)
    client.connect(bus.host, bus.port, keepalive=10)
    client.loop_start()
    try:
        assert connected.wait(WAIT_S), f"no CONNACK from {bus.url}"
        if subscribe is not None:
            client.subscribe(subscribe, qos=1)
            assert subscribed.wait(WAIT_S), f"no SUBACK for {subscribe}"
        yield client, received
    finally:
        client.disconnect()
        client.loop_stop()


def publish(client: mqtt.Client, topic: str, payload: bytes, *, retain: bool = False) -> None:
    info = client.publish(topic, payload, qos=1, retain=retain)
    info.wait_for_publish(timeout=WAIT_S)
    assert info.is_published(), f"no PUBACK for {topic}"


def listening_socket() -> socket.socket:
    """Hold a loopback port the way another program would: bound and listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_starts_on_a_private_port_and_carries_a_qos1_round_trip(broker: MosquittoBroker) -> None:
    assert broker.running
    assert broker.port != 1883
    assert broker.host == "127.0.0.1"
    assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
    assert isinstance(broker.pid, int)

    topic = "parkguard/v1/test/lane/in1/event"
    with (
        paho_client(broker, subscribe=topic) as (_, received),
        paho_client(broker) as (publisher, _),
    ):
        publish(publisher, topic, b'{"event_id": "e1"}')
        message = received.get(timeout=WAIT_S)
    assert message.topic == topic
    assert message.payload == b'{"event_id": "e1"}'
    assert message.qos == 1


def test_generated_config_turns_off_nagle_and_turns_on_persistence(
    broker: MosquittoBroker,
) -> None:
    lines = broker.config_path.read_text(encoding="utf-8").splitlines()
    assert "set_tcp_nodelay true" in lines
    assert "persistence true" in lines
    assert f"persistence_location {broker.data_dir}" in lines
    assert f"listener {broker.port} 127.0.0.1" in lines
    assert "max_queued_messages 1000000" in lines
    assert not any(line.startswith("message_size_limit") for line in lines)


def test_config_without_persistence_writes_nothing_to_disk(tmp_path: Path) -> None:
    text = render_local_config(port=18830, data_dir=tmp_path, log_file=None, persistence=False)
    assert "persistence false" in text.splitlines()
    assert "persistence_location" not in text
    assert "autosave_interval" not in text


def test_config_refuses_a_path_that_would_inject_a_directive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="line break"):
        render_local_config(port=18830, data_dir=tmp_path / "x\nuser nobody", log_file=None)


def test_log_file_variant_is_accepted_by_the_real_binary(tmp_path: Path) -> None:
    """The runner logs to stderr; the file variant must still be a config Mosquitto takes."""
    log_file = tmp_path / "broker.log"
    conf = tmp_path / "mosquitto.conf"
    with listening_socket() as sock:
        port = sock.getsockname()[1]
    conf.write_text(
        render_local_config(
            port=port,
            data_dir=tmp_path,
            log_file=log_file,
            user="root" if os.geteuid() == 0 else None,
        ),
        encoding="utf-8",
    )
    proc = subprocess.Popen([str(find_mosquitto()), "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + WAIT_S
        while "running" not in (log_file.read_text() if log_file.exists() else ""):
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "mosquitto never logged that it is running"
            time.sleep(0.02)
    finally:
        proc.terminate()
        proc.wait(timeout=WAIT_S)
    assert "Error" not in log_file.read_text()


def test_stop_leaves_no_process_and_can_be_called_twice(tmp_path: Path) -> None:
    bus = MosquittoBroker(tmp_path).start()
    pid, port = bus.pid, bus.port
    assert pid is not None

    bus.stop()
    bus.stop()

    assert not bus.running
    assert bus.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()


def test_retained_message_survives_a_clean_restart_on_the_same_port(
    broker: MosquittoBroker,
) -> None:
    topic = "parkguard/v1/test/alarm/fire"
    with paho_client(broker) as (publisher, _):
        publish(publisher, topic, b'{"state": "active"}', retain=True)
    port, pid = broker.port, broker.pid

    broker.restart()

    assert broker.port == port
    assert broker.pid not in (None, pid)
    with paho_client(broker, subscribe=topic) as (_, received):
        message = received.get(timeout=WAIT_S)
    assert message.payload == b'{"state": "active"}'
    assert message.retain


def test_a_killed_broker_can_be_started_again_on_its_port(broker: MosquittoBroker) -> None:
    port = broker.port
    broker.kill()
    assert not broker.running
    broker.kill()  # a second crash of a dead broker is a no-op

    broker.start()

    assert broker.running
    assert broker.port == port


def test_a_taken_port_fails_with_the_brokers_own_log_line(tmp_path: Path) -> None:
    with listening_socket() as sock:
        port = sock.getsockname()[1]
        bus = MosquittoBroker(tmp_path, port=port)
        with pytest.raises(BrokerError, match="Address already in use") as caught:
            bus.start()
    assert str(bus.log_path) in str(caught.value)
    assert not bus.running


def test_a_port_lost_to_a_race_is_swapped_for_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with listening_socket() as sock:
        taken = sock.getsockname()[1]
        ports = iter([taken])
        real_free_port = runner.free_port
        monkeypatch.setattr(runner, "free_port", lambda: next(ports, None) or real_free_port())

        with MosquittoBroker(tmp_path) as bus:
            assert bus.running
            assert bus.port != taken
    assert "Address already in use" in bus.log_path.read_text()


def test_two_brokers_run_side_by_side(tmp_path: Path) -> None:
    with (
        MosquittoBroker(tmp_path / "a") as first,
        MosquittoBroker(tmp_path / "b") as second,
    ):
        assert first.port != second.port
        topic = "parkguard/v1/test/sensor/n1/reading"
        with (
            paho_client(first, subscribe=topic) as (_, on_first),
            paho_client(second, subscribe=topic) as (publisher, on_second),
        ):
            publish(publisher, topic, b"{}")
            assert on_second.get(timeout=WAIT_S).payload == b"{}"
            assert on_first.empty()


def test_a_missing_binary_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(runner, "SEARCH_DIRS", (tmp_path / "sbin",))

    with pytest.raises(BrokerError, match="apt-get install mosquitto"):
        find_mosquitto()
    with pytest.raises(BrokerError, match="make test/make demo"):
        MosquittoBroker(tmp_path / "work").start()


def test_a_broker_that_never_answers_times_out_with_its_log_and_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in binary that prints and hangs: the one place a fake beats the real thing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "mosquitto"
    sleep = shutil.which("sleep")
    assert sleep is not None
    fake.write_text(f"#!/bin/sh\necho 'stuck loading plugins' >&2\nexec {sleep} 60\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    bus = MosquittoBroker(tmp_path / "work", startup_timeout=0.3)

    with pytest.raises(BrokerError, match="stuck loading plugins") as caught:
        bus.start()

    assert "within 0.3 s" in str(caught.value)
    assert not bus.running


def test_session_broker_is_one_running_bus(
    session_broker: MosquittoBroker, broker: MosquittoBroker
) -> None:
    assert session_broker.running
    assert session_broker.port not in (broker.port, 1883)


def test_a_provisioned_broker_lets_its_devices_in_and_nobody_else(
    tmp_path: Path, test_site: ProvisionResult
) -> None:
    with MosquittoBroker(tmp_path / "locked", site=test_site) as locked:
        config = locked.config_path.read_text(encoding="utf-8")
        assert "allow_anonymous false" in config
        device = MqttBus(locked.address("monitor-watch1"), client_id="monitor-watch1").start()
        device.stop()
        anonymous = MqttBus(BrokerAddress(locked.host, locked.port, test_site.ca_path),
                            client_id="stranger")
        with pytest.raises(BrokerError, match="refused"):
            anonymous.start(timeout=30)
        with pytest.raises(BrokerError, match="locked down"):
            locked.address()


def test_a_relative_work_directory_works_from_any_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make demo` passes var/demo: mosquitto runs inside it, so the runner must not hand it
    paths relative to the caller's directory."""
    monkeypatch.chdir(tmp_path)
    with MosquittoBroker(Path("var/relative")) as relative:
        assert relative.running
        assert relative.config_path.is_absolute()
