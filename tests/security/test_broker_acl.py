"""The locked-down site broker, proven against the real Mosquitto with its generated config.

Every refusal is its own test, and every refusal is proven, not assumed. Over MQTT 3.1.1
Mosquitto 2.0.11 drops a denied PUBLISH silently (the PUBACK still says success) and grants
every SUBSCRIBE (it filters at delivery instead), so a denial is shown by a privileged
observer, the gateway reading the whole site tree, *not* receiving the message while a
control message the same client may send, sent right after it, *is* received. Mosquitto
forwards one client's messages in order, so once the control has arrived the denied one
would have arrived before it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from broker.provision import (
    BrokerConf,
    ProvisionResult,
    SiteInventory,
    load_bundle,
    provision_site,
    render_mosquitto_conf,
    rotate_secret,
)
from broker.provision.bridge import notification_topic
from broker.provision.passwords import password_line
from broker.provision.pki import issue_server_cert, new_ca
from broker.runner import find_mosquitto, free_port
from wire.contract import topics

pytestmark = pytest.mark.integration

SITE = "sec1"
HOST = "127.0.0.1"
TIMEOUT = 5.0
#: Small enough that the oversized-payload test moves little data.
MAX_PACKET = 64 * 1024
#: Mosquitto started as root would switch to the `mosquitto` user, which cannot read the
#: 0600 files pytest's root-owned temporary directories hold.
RUN_AS = "root" if os.geteuid() == 0 else None
NOW = datetime.now(UTC)

INVENTORY: dict[str, Any] = {
    "site": SITE,
    "broker": {"address": "gw.sec1.lan", "max_packet_size": MAX_PACKET},
    "lanes": [{"id": "in1", "direction": "entry"}, {"id": "out1", "direction": "exit"}],
    "sensors": [{"id": "fire1", "kind": "fire_panel"}, {"id": "flood1", "kind": "flood"}],
    "patrol_readers": [{"id": "reader1"}, {"id": "reader2"}],
    "staff": [{"id": "ops1", "name": "Ops One"}, {"id": "ops2", "name": "Ops Two"}],
    "monitors": [{"id": "screen"}],
}
ROOT = topics.site_root(SITE)


def _marker(what: str) -> bytes:
    """A payload no other test sends, so a stray retained message cannot pass for it."""
    return f"{what}-{uuid.uuid4().hex}".encode()


# A real broker ----------------------------------------------------------------------------


class Broker:
    """A Mosquitto process started with a generated config on a free loopback port."""

    def __init__(self, workdir: Path, render: Callable[[int], str], *, ca: Path | None) -> None:
        self.workdir = workdir
        self._render = render
        self._ca = ca
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "mosquitto.log"

    def start(self) -> Broker:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):  # another process may take the free port first
            self.port = free_port()
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(self._render(self.port), encoding="utf-8")
            offset = self.log.stat().st_size if self.log.exists() else 0
            with self.log.open("ab") as log:
                self._proc = subprocess.Popen(
                    [str(find_mosquitto()), "-c", str(conf)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            if self._wait_ready(offset):
                return self
        raise RuntimeError(f"mosquitto did not start; log:\n{self.log.read_text()}")

    def _wait_ready(self, offset: int) -> bool:
        """Ready means: it logged that it runs, and it completes a TLS handshake (a plain
        listener, ``ca=None``: it accepts a connection)."""
        assert self._proc is not None
        deadline = time.monotonic() + 10
        context = None if self._ca is None else ssl.create_default_context(cafile=str(self._ca))
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                if "Address already in use" in self.log.read_text()[offset:]:
                    return False
                raise RuntimeError(f"mosquitto exited; log:\n{self.log.read_text()}")
            if "running" in self.log.read_text()[offset:]:
                with contextlib.suppress(OSError):
                    with socket.create_connection((HOST, self.port), timeout=1) as raw:
                        if context is None:
                            return True
                        with context.wrap_socket(raw, server_hostname=HOST):
                            return True
            time.sleep(0.02)
        raise RuntimeError(f"mosquitto not ready in 10 s; log:\n{self.log.read_text()}")

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads the password and ACL files."""
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGHUP)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._proc = None

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def _start_site_broker(result: ProvisionResult, workdir: Path, **overrides: Any) -> Broker:
    def render(port: int) -> str:
        return result.render_conf(port=port, bind_address=HOST, run_as_user=RUN_AS, **overrides)

    return Broker(workdir, render, ca=result.ca_path).start()


# A client ---------------------------------------------------------------------------------


class Peer:
    """One paho client over TLS whose callbacks only record, so a test can wait on them."""

    def __init__(
        self,
        port: int,
        *,
        username: str | None,
        password: str | None,
        ca: Path | None,
        client_id: str = "",
        protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311,
        will: tuple[str, bytes] | None = None,
        tls: bool = True,
    ) -> None:
        self.port = port
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
            protocol=protocol,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls:
            # ca=None: the system's CAs, i.e. a client that does not have the site CA.
            self.client.tls_set(ca_certs=None if ca is None else str(ca))
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=False)
        self.connack: queue.Queue[ReasonCode] = queue.Queue()
        self.subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.pubacks: dict[int, ReasonCode] = {}
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.seen: list[tuple[str, bytes]] = []
        self.disconnected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    def _on_connect(self, _c: paho.Client, _u: Any, _f: paho.ConnectFlags, reason: ReasonCode,
                    _p: Properties | None) -> None:
        self.connack.put(reason)

    def _on_subscribe(self, _c: paho.Client, _u: Any, _mid: int, reasons: list[ReasonCode],
                      _p: Properties | None) -> None:
        self.subacks.put(reasons)

    def _on_publish(self, _c: paho.Client, _u: Any, mid: int, reason: ReasonCode,
                    _p: Properties | None) -> None:
        self.pubacks[mid] = reason

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        self.messages.put((message.topic, bytes(message.payload)))

    def _on_disconnect(self, _c: paho.Client, _u: Any, _f: paho.DisconnectFlags,
                       _r: ReasonCode, _p: Properties | None) -> None:
        self.disconnected.set()

    def connect(self) -> ReasonCode:
        """Connect and return the broker's CONNACK reason (TLS errors raise)."""
        self.client.connect(HOST, self.port, keepalive=30)
        self.client.loop_start()
        try:
            return self.connack.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError("no CONNACK") from None

    def subscribe(self, topic_filter: str) -> int:
        """Subscribe at QoS 1 and return the granted QoS (0x80 would be a refusal)."""
        self.client.subscribe(topic_filter, qos=1)
        reasons = self.subacks.get(timeout=TIMEOUT)
        return reasons[0].value

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> ReasonCode | None:
        """Publish at QoS 1 and wait for the PUBACK; return its reason code (MQTT 5 only)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), f"no PUBACK for {topic}"
        return self.pubacks.get(info.mid)

    def _drain(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                self.seen.append(self.messages.get_nowait())

    def wait_for(self, payload: bytes, timeout: float = TIMEOUT) -> str | None:
        """The topic ``payload`` arrived on, waiting up to ``timeout``; ``None`` if it did not."""
        deadline = time.monotonic() + timeout
        while True:
            self._drain()
            for topic, seen in self.seen:
                if seen == payload:
                    return topic
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            with contextlib.suppress(queue.Empty):
                self.seen.append(self.messages.get(timeout=left))

    def got(self, payload: bytes) -> bool:
        """Whether ``payload`` has arrived by now, without waiting."""
        return self.wait_for(payload, timeout=0) is not None

    def count(self, payload: bytes) -> int:
        self._drain()
        return sum(1 for _t, seen in self.seen if seen == payload)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


# Fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> ProvisionResult:
    inventory = SiteInventory.model_validate(INVENTORY)
    return provision_site(inventory, tmp_path_factory.mktemp("site"), now=NOW)


@pytest.fixture(scope="module")
def site_broker(site: ProvisionResult,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = _start_site_broker(site, tmp_path_factory.mktemp("site-broker"),
                                local_port=free_port())
    yield broker
    broker.stop()


PeerFactory = Callable[..., Peer]


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    made: list[Peer] = []
    yield made
    for peer in made:
        peer.close()


@pytest.fixture
def device(site: ProvisionResult, site_broker: Broker, peers: list[Peer]) -> PeerFactory:
    """``device("lane-in1")``: a connected client with that device's credentials."""

    def make(device_id: str, **options: Any) -> Peer:
        creds = site.device(device_id)
        peer = Peer(site_broker.port, username=creds.username, password=creds.password,
                    ca=creds.ca_path, **options)
        peers.append(peer)
        reason = peer.connect()
        assert not reason.is_failure, f"{device_id} refused: {reason}"
        return peer

    return make


@pytest.fixture
def gateway(device: PeerFactory) -> Peer:
    """The privileged observer: the gateway, reading the whole site tree."""
    peer = device("gateway")
    assert peer.subscribe(f"{ROOT}/#") == 1
    return peer


def assert_publish_denied(offender: Peer, topic: str, *, control_topic: str,
                          observer: Peer, control_from: Peer | None = None) -> None:
    """``topic`` from ``offender`` never reaches the observer; the allowed control does.

    The control comes from the offender itself, or, for a client that may publish nothing,
    from ``control_from`` once the offender's PUBACK is in: the broker routes a publish
    before acknowledging it, so a delivery would already be queued ahead of the control.
    """
    denied, control = _marker("denied"), _marker("control")
    offender.publish(topic, denied)  # MQTT 3.1.1: acknowledged all the same
    (control_from or offender).publish(control_topic, control)
    assert observer.wait_for(control) == control_topic, "control lost: the test proves nothing"
    assert not observer.got(denied), f"{topic} was delivered"


def assert_cannot_read(reader: Peer, topic: str, *, publisher: Peer, control_topic: str,
                       rightful: Peer) -> None:
    """``reader`` subscribes to ``topic`` (Mosquitto grants it) yet receives nothing on it,
    while ``rightful`` does and ``reader`` gets its own control message sent afterwards."""
    granted = reader.subscribe(topic)
    assert granted in (1, 0x80)  # 2.0.11 grants and filters each delivery instead
    reader.subscribe(control_topic)
    rightful.subscribe(topic)
    secret, control = _marker("secret"), _marker("control")
    publisher.publish(topic, secret)
    publisher.publish(control_topic, control)
    assert rightful.wait_for(secret) == topic, "the message was never published"
    assert reader.wait_for(control) == control_topic, "control lost: the test proves nothing"
    assert not reader.got(secret), f"{topic} was delivered to a device that may not read it"


# Authentication and TLS -------------------------------------------------------------------


def test_anonymous_clients_are_refused(site: ProvisionResult, site_broker: Broker,
                                       peers: list[Peer]) -> None:
    peer = Peer(site_broker.port, username=None, password=None, ca=site.ca_path)
    peers.append(peer)
    assert peer.connect().value == 0x87  # v3.1.1 return code 5, "not authorized"


def test_a_wrong_password_is_refused(site: ProvisionResult, site_broker: Broker,
                                     peers: list[Peer]) -> None:
    peer = Peer(site_broker.port, username="lane-in1", password="not-the-password",
                ca=site.ca_path)
    peers.append(peer)
    assert peer.connect().value == 0x87


def test_an_unknown_user_is_refused(site: ProvisionResult, site_broker: Broker,
                                    peers: list[Peer]) -> None:
    peer = Peer(site_broker.port, username="lane-in9", password=site.lane("in1").password,
                ca=site.ca_path)
    peers.append(peer)
    assert peer.connect().value == 0x87


@pytest.mark.parametrize("trusts", ["system CAs", "another site's CA"])
def test_a_client_without_the_site_ca_fails_the_tls_handshake(
    trusts: str, site: ProvisionResult, site_broker: Broker, tmp_path: Path
) -> None:
    ca: Path | None = None
    if trusts == "another site's CA":
        ca = tmp_path / "other-ca.crt"
        ca.write_bytes(new_ca("other", now=NOW).cert_pem())
    gateway = site.gateway
    peer = Peer(site_broker.port, username=gateway.username, password=gateway.password, ca=ca)
    with pytest.raises(ssl.SSLCertVerificationError):
        peer.client.connect(HOST, site_broker.port)
    peer.close()


def test_plain_mqtt_on_the_tls_port_gets_no_connack(site_broker: Broker) -> None:
    connect = b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x0a\x00\x02pg"
    with socket.create_connection((HOST, site_broker.port), timeout=TIMEOUT) as sock:
        sock.sendall(connect)
        try:
            reply = sock.recv(4)
        except ConnectionResetError:
            reply = b""
    assert not reply.startswith(b"\x20"), "the TLS port answered plain MQTT"


def test_every_device_connects_with_its_own_bundle(site: ProvisionResult, site_broker: Broker,
                                                   peers: list[Peer]) -> None:
    for creds in site.devices.values():
        bundle = load_bundle(creds.config_path)
        peer = Peer(site_broker.port, username=bundle.broker.username,
                    password=bundle.broker.password.get_secret_value(),
                    ca=bundle.broker.ca_file,
                    client_id=bundle.broker.client_id)
        peers.append(peer)
        assert peer.connect().value == 0, creds.device_id


def test_a_device_cannot_kick_the_gateway_off_by_taking_its_client_id(
    device: PeerFactory, gateway: Peer
) -> None:
    impostor = device("lane-in1", client_id="gateway")  # becomes "lane-in1" on the broker
    hello = _marker("still-here")
    impostor.publish(topics.lane_event(SITE, "in1"), hello)
    assert gateway.wait_for(hello) is not None
    assert not gateway.disconnected.is_set()


def test_the_local_plain_listener_still_wants_a_password(
    site: ProvisionResult, site_broker: Broker, peers: list[Peer]
) -> None:
    local = _local_port(site_broker)
    anonymous = Peer(local, username=None, password=None, ca=None, tls=False)
    allowed = Peer(local, username="gateway", password=site.gateway.password, ca=None, tls=False)
    peers += [anonymous, allowed]
    assert anonymous.connect().value == 0x87
    assert allowed.connect().value == 0


def _local_port(broker: Broker) -> int:
    """The port of the broker's plain 127.0.0.1 listener, read back from its config."""
    conf = (broker.workdir / "mosquitto.conf").read_text(encoding="utf-8")
    ports = [int(line.split()[1]) for line in conf.splitlines() if line.startswith("listener ")]
    (local,) = [p for p in ports if p != broker.port]
    return local


# What each device may do ------------------------------------------------------------------


ALLOWED_TO_GATEWAY = [
    ("lane-in1", topics.lane_event(SITE, "in1")),
    ("lane-in1", topics.lane_state(SITE, "in1")),
    ("lane-in1", topics.lane_decide(SITE, "in1")),
    ("sensor-flood1", topics.sensor_reading(SITE, "flood1")),
    ("sensor-fire1", topics.sensor_state(SITE, "fire1")),
    ("sensor-fire1", topics.alarm(SITE, "fire")),
    ("patrol-reader1", topics.patrol_tap(SITE, "reader1")),
    ("staff-ops1", f"{topics.alert(SITE, 'a17')}/ack/ops1"),
]


@pytest.mark.parametrize(("sender", "topic"), ALLOWED_TO_GATEWAY)
def test_what_a_device_may_publish_reaches_the_gateway(
    sender: str, topic: str, device: PeerFactory, gateway: Peer
) -> None:
    payload = _marker("allowed")
    device(sender).publish(topic, payload)
    assert gateway.wait_for(payload) == topic


ALLOWED_FROM_GATEWAY = [
    ("lane-in1", topics.lane_cmd(SITE, "in1")),
    ("lane-in1", topics.lane_decide_reply(SITE, "in1")),
    ("lane-in1", f"{ROOT}/lane/in1/replica/sessions"),
    ("lane-in1", topics.alarm(SITE, "flood")),
    ("staff-ops2", topics.alert(SITE, "a18")),
]


@pytest.mark.parametrize(("receiver", "topic"), ALLOWED_FROM_GATEWAY)
def test_what_the_gateway_sends_a_device_arrives(
    receiver: str, topic: str, device: PeerFactory, gateway: Peer
) -> None:
    peer = device(receiver)
    assert peer.subscribe(topic) == 1
    payload = _marker("allowed")
    gateway.publish(topic, payload)
    assert peer.wait_for(payload) == topic


def test_the_fire_panel_node_sets_the_fire_alarm_for_the_lanes(device: PeerFactory) -> None:
    lane = device("lane-out1")
    lane.subscribe(topics.all_alarms(SITE))
    payload = _marker("fire")
    device("sensor-fire1").publish(topics.alarm(SITE, "fire"), payload, retain=True)
    assert lane.wait_for(payload) == topics.alarm(SITE, "fire")


# Denials: lanes ---------------------------------------------------------------------------


def test_a_lane_cannot_publish_another_lanes_events(device: PeerFactory, gateway: Peer) -> None:
    assert_publish_denied(device("lane-in1"), topics.lane_event(SITE, "out1"),
                          control_topic=topics.lane_event(SITE, "in1"), observer=gateway)


@pytest.mark.parametrize("leaf", ["state", "decide"])
def test_a_lane_cannot_speak_for_another_lane(leaf: str, device: PeerFactory,
                                              gateway: Peer) -> None:
    assert_publish_denied(device("lane-in1"), f"{ROOT}/lane/out1/{leaf}",
                          control_topic=topics.lane_event(SITE, "in1"), observer=gateway)


@pytest.mark.parametrize("target", ["in1", "out1"])
def test_a_lane_cannot_publish_any_lanes_commands(target: str, device: PeerFactory,
                                                  gateway: Peer) -> None:
    assert_publish_denied(device("lane-in1"), topics.lane_cmd(SITE, target),
                          control_topic=topics.lane_event(SITE, "in1"), observer=gateway)


@pytest.mark.parametrize("leaf", ["decide/reply", "replica/sessions"])
def test_a_lane_cannot_forge_what_the_gateway_sends(leaf: str, device: PeerFactory,
                                                    gateway: Peer) -> None:
    assert_publish_denied(device("lane-in1"), f"{ROOT}/lane/out1/{leaf}",
                          control_topic=topics.lane_event(SITE, "in1"), observer=gateway)


@pytest.mark.parametrize("kind", topics.ALARM_KINDS)
def test_a_lane_cannot_set_alarms(kind: str, device: PeerFactory, gateway: Peer) -> None:
    assert_publish_denied(device("lane-in1"), topics.alarm(SITE, kind),
                          control_topic=topics.lane_event(SITE, "in1"), observer=gateway)


def test_a_lane_cannot_read_another_lanes_commands(device: PeerFactory, gateway: Peer) -> None:
    assert_cannot_read(device("lane-in1"), topics.lane_cmd(SITE, "out1"), publisher=gateway,
                       control_topic=topics.lane_cmd(SITE, "in1"), rightful=device("lane-out1"))


@pytest.mark.parametrize("leaf", ["decide/reply", "replica/passes"])
def test_a_lane_cannot_read_another_lanes_replies_or_replica(
    leaf: str, device: PeerFactory, gateway: Peer
) -> None:
    assert_cannot_read(device("lane-in1"), f"{ROOT}/lane/out1/{leaf}", publisher=gateway,
                       control_topic=topics.lane_cmd(SITE, "in1"), rightful=device("lane-out1"))


def test_a_lane_subscribed_to_everything_gets_only_its_own(device: PeerFactory,
                                                           gateway: Peer) -> None:
    """A wildcard is granted, but delivery is filtered, retained messages included."""
    others_state, alert = _marker("state"), _marker("alert")
    device("lane-out1").publish(topics.lane_state(SITE, "out1"), others_state, retain=True)
    gateway.publish(topics.alert(SITE, "a19"), alert, retain=True)
    greedy = device("lane-in1")
    greedy.subscribe("#")
    command, other_command = _marker("cmd"), _marker("other")
    gateway.publish(topics.lane_cmd(SITE, "out1"), other_command)
    gateway.publish(topics.lane_cmd(SITE, "in1"), command)
    assert greedy.wait_for(command) == topics.lane_cmd(SITE, "in1")
    assert not greedy.got(other_command)
    assert not greedy.got(others_state)
    assert not greedy.got(alert)


def test_a_last_will_on_another_lanes_state_is_never_published(
    site: ProvisionResult, site_broker: Broker, peers: list[Peer], gateway: Peer
) -> None:
    """2.0.11 accepts the CONNECT with a forbidden will and checks it only when it fires."""
    creds = site.lane("in1")
    forged = (topics.lane_state(SITE, "out1"), _marker("forged-offline"))
    own = (topics.lane_state(SITE, "in1"), _marker("offline"))
    for will in (forged, own):
        peer = Peer(site_broker.port, username=creds.username, password=creds.password,
                    ca=creds.ca_path, will=will)
        peers.append(peer)
        assert peer.connect().value == 0
        peer.client.loop_stop()
        sock = peer.client.socket()
        assert sock is not None
        sock.close()  # vanish like a pulled cable: the broker publishes the will
        time.sleep(0.2)  # let the broker see this one go before the next
    assert gateway.wait_for(own[1]) == own[0], "control will lost: the test proves nothing"
    assert not gateway.got(forged[1])


# Denials: sensors, patrol readers, staff, gateway -----------------------------------------


def test_a_sensor_cannot_publish_lane_events(device: PeerFactory, gateway: Peer) -> None:
    assert_publish_denied(device("sensor-fire1"), topics.lane_event(SITE, "in1"),
                          control_topic=topics.sensor_reading(SITE, "fire1"), observer=gateway)


@pytest.mark.parametrize(("sensor", "kind"), [
    ("sensor-flood1", "fire"), ("sensor-flood1", "flood"), ("sensor-fire1", "flood"),
])
def test_only_the_fire_panel_node_may_set_an_alarm_and_only_fire(
    sensor: str, kind: str, device: PeerFactory, gateway: Peer
) -> None:
    node = sensor.removeprefix("sensor-")
    assert_publish_denied(device(sensor), topics.alarm(SITE, kind),
                          control_topic=topics.sensor_reading(SITE, node), observer=gateway)


def test_a_sensor_cannot_publish_another_sensors_readings(device: PeerFactory,
                                                          gateway: Peer) -> None:
    assert_publish_denied(device("sensor-flood1"), topics.sensor_reading(SITE, "fire1"),
                          control_topic=topics.sensor_reading(SITE, "flood1"), observer=gateway)


@pytest.mark.parametrize("topic", [
    topics.patrol_tap(SITE, "reader2"), topics.lane_event(SITE, "in1"),
    topics.sensor_reading(SITE, "flood1"),
])
def test_a_patrol_reader_may_only_tap_as_itself(topic: str, device: PeerFactory,
                                               gateway: Peer) -> None:
    assert_publish_denied(device("patrol-reader1"), topic,
                          control_topic=topics.patrol_tap(SITE, "reader1"), observer=gateway)


def test_a_staff_app_cannot_command_a_barrier(device: PeerFactory, gateway: Peer) -> None:
    assert_publish_denied(device("staff-ops1"), topics.lane_cmd(SITE, "in1"),
                          control_topic=f"{topics.alert(SITE, 'a20')}/ack/ops1",
                          observer=gateway)


@pytest.mark.parametrize("topic", [
    f"{topics.alert(SITE, 'a21')}/ack/ops2",  # acknowledging as someone else
    topics.alert(SITE, "a21"),  # raising or resolving an alert
    topics.alarm(SITE, "fire"),
])
def test_a_staff_app_cannot_ack_as_someone_else_or_touch_alerts_and_alarms(
    topic: str, device: PeerFactory, gateway: Peer
) -> None:
    assert_publish_denied(device("staff-ops1"), topic,
                          control_topic=f"{topics.alert(SITE, 'a21')}/ack/ops1",
                          observer=gateway)


def test_a_monitor_sees_the_site_and_publishes_nothing(device: PeerFactory,
                                                      gateway: Peer) -> None:
    monitor = device("monitor-screen")
    monitor.subscribe(f"{ROOT}/#")
    event = _marker("event")
    device("lane-in1").publish(topics.lane_event(SITE, "in1"), event)
    assert monitor.wait_for(event) == topics.lane_event(SITE, "in1")
    for topic in (topics.lane_cmd(SITE, "in1"), topics.alarm(SITE, "fire"),
                  topics.lane_event(SITE, "in1")):
        assert_publish_denied(monitor, topic, control_topic=topics.lane_cmd(SITE, "out1"),
                              observer=gateway, control_from=gateway)


def test_a_staff_app_cannot_read_lane_commands(device: PeerFactory, gateway: Peer) -> None:
    assert_cannot_read(device("staff-ops1"), topics.lane_cmd(SITE, "in1"), publisher=gateway,
                       control_topic=topics.alert(SITE, "a22"), rightful=device("lane-in1"))


@pytest.mark.parametrize("topic", [topics.lane_event(SITE, "in1"),
                                   topics.sensor_reading(SITE, "fire1")])
def test_the_gateway_cannot_forge_device_messages(topic: str, device: PeerFactory) -> None:
    # Not the `gateway` fixture: a second login of the same user would replace its session.
    forger = device("gateway")
    forger.subscribe(f"{ROOT}/#")
    lane = device("lane-in1")
    lane.subscribe(topics.lane_cmd(SITE, "in1"))
    denied, control = _marker("denied"), _marker("control")
    forger.publish(topic, denied)
    forger.publish(topics.lane_cmd(SITE, "in1"), control)
    assert lane.wait_for(control) is not None
    assert forger.wait_for(control) is not None  # it reads its own command back
    assert not forger.got(denied)


def test_over_mqtt5_a_denied_publish_is_answered_not_authorized(
    site: ProvisionResult, site_broker: Broker, peers: list[Peer]
) -> None:
    creds = site.lane("in1")
    peer = Peer(site_broker.port, username=creds.username, password=creds.password,
                ca=creds.ca_path, protocol=MQTTProtocolVersion.MQTTv5)
    peers.append(peer)
    assert peer.connect().value == 0
    denied = peer.publish(topics.lane_cmd(SITE, "in1"), _marker("denied"))
    allowed = peer.publish(topics.lane_event(SITE, "in1"), _marker("allowed"))
    assert denied is not None and denied.value == 0x87  # Not authorized
    assert allowed is not None and not allowed.is_failure  # 0x10: no subscribers, fine


# Limits -----------------------------------------------------------------------------------


def test_an_oversized_payload_disconnects_only_its_sender(device: PeerFactory, gateway: Peer,
                                                          site_broker: Broker) -> None:
    big = device("lane-in1")
    other = device("lane-out1")
    before, after = _marker("before"), _marker("after")
    other.publish(topics.lane_event(SITE, "out1"), before)
    big.client.reconnect_delay_set(min_delay=60, max_delay=60)  # stay away once thrown out
    big.client.publish(topics.lane_event(SITE, "in1"), b"x" * (MAX_PACKET + 1), qos=1)
    assert big.disconnected.wait(TIMEOUT), "the oversized sender was not disconnected"
    other.publish(topics.lane_event(SITE, "out1"), after)
    assert gateway.wait_for(before) and gateway.wait_for(after)
    assert not other.disconnected.is_set() and not gateway.disconnected.is_set()
    assert not any(len(payload) > MAX_PACKET for _t, payload in gateway.seen)
    assert "lane-in1 disconnected due to oversize packet" in site_broker.log_text()


# Rotation ---------------------------------------------------------------------------------


def test_a_rotated_password_is_refused_after_a_reload(tmp_path: Path, peers: list[Peer]) -> None:
    result = provision_site(SiteInventory.model_validate(INVENTORY), tmp_path / "site", now=NOW)
    broker = _start_site_broker(result, tmp_path / "broker")
    try:
        old = result.lane("in1")
        connected = Peer(broker.port, username=old.username, password=old.password,
                         ca=old.ca_path)
        connected.client.reconnect_delay_set(min_delay=60, max_delay=60)
        peers.append(connected)
        assert connected.connect().value == 0
        rotated = rotate_secret(tmp_path / "site", "lane-in1/password", now=NOW)
        broker.reload()
        assert connected.disconnected.wait(TIMEOUT), "the old login outlived the reload"
        stale = Peer(broker.port, username=old.username, password=old.password, ca=old.ca_path)
        fresh_creds = rotated.lane("in1")
        fresh = Peer(broker.port, username=fresh_creds.username,
                     password=fresh_creds.password, ca=fresh_creds.ca_path)
        untouched = rotated.lane("out1")
        other = Peer(broker.port, username=untouched.username, password=untouched.password,
                     ca=untouched.ca_path)
        peers += [stale, fresh, other]
        assert stale.connect().value == 0x87
        assert fresh.connect().value == 0
        assert other.connect().value == 0
    finally:
        broker.stop()


# Bridge to a fleet broker -----------------------------------------------------------------


@dataclass(frozen=True)
class Bridged:
    site: ProvisionResult
    site_broker: Broker
    uplink_broker: Broker
    fleet_broker: Broker
    fleet_ca: Path
    ops_password: str


@pytest.fixture(scope="module")
def bridged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridged]:
    """A fleet broker (its own CA, an operator user, the site's bridge user and ACL block
    as ``init`` wrote them), a site broker, and the site's uplink broker bridging the two."""
    base = tmp_path_factory.mktemp("bridge")
    fleet_dir = base / "fleet"
    fleet_dir.mkdir()
    fleet_ca = new_ca("fleet", now=NOW)
    fleet_ca.write(key_path=fleet_dir / "ca.key", cert_path=fleet_dir / "ca.crt")
    issue_server_cert(fleet_ca, ("localhost", HOST), now=NOW).write(
        key_path=fleet_dir / "server.key", cert_path=fleet_dir / "server.crt")
    fleet_conf = BrokerConf(
        port=0, bind_address=HOST, cafile=fleet_dir / "ca.crt",
        certfile=fleet_dir / "server.crt", keyfile=fleet_dir / "server.key",
        password_file=fleet_dir / "passwd", acl_file=fleet_dir / "acl",
        persistence_dir=fleet_dir / "data", run_as_user=RUN_AS,
    )
    (fleet_dir / "data").mkdir()
    # Provision first (the fleet's port is not known yet), so the fleet starts with the
    # site's bridge user and ACL block in place, as an operator would append them.
    inventory = SiteInventory.model_validate({
        **INVENTORY,
        "fleet": {"address": HOST, "port": 8883, "ca_file": str(fleet_dir / "ca.crt")},
    })
    result = provision_site(inventory, base / "site", now=NOW)
    assert result.bridge is not None and result.uplink is not None
    (fleet_dir / "passwd").write_text(
        password_line("fleet-ops", "ops-password") + "\n"
        + result.bridge.fleet_password_line.read_text()
    )
    (fleet_dir / "acl").write_text(
        "user fleet-ops\ntopic readwrite parkguard/#\n\n"
        + result.bridge.fleet_acl_block.read_text()
    )
    fleet = Broker(base / "fleet-run",
                   lambda port: render_mosquitto_conf(replace(fleet_conf, port=port)),
                   ca=fleet_dir / "ca.crt").start()
    try:
        site_broker = _start_site_broker(result, base / "site-run", local_port=free_port())
        uplink = result.uplink
        # The inventory said 8883; point the bridge at the port the fleet really got.
        to_fleet = replace(uplink.conf.fleet, port=fleet.port)
        uplink_broker = Broker(base / "uplink-run", lambda port: uplink.render_conf(
            port=port, site_port=_local_port(site_broker), fleet=to_fleet, run_as_user=RUN_AS),
            ca=None).start()
        try:
            yield Bridged(result, site_broker, uplink_broker, fleet, fleet_dir / "ca.crt",
                          "ops-password")
        finally:
            uplink_broker.stop()
            site_broker.stop()
    finally:
        fleet.stop()


@pytest.fixture
def fleet_ops(bridged: Bridged, peers: list[Peer]) -> Peer:
    """An operator on the fleet broker, watching every site, once the bridge is up."""
    peer = Peer(bridged.fleet_broker.port, username="fleet-ops", password=bridged.ops_password,
                ca=bridged.fleet_ca)
    peers.append(peer)
    assert peer.connect().value == 0
    peer.subscribe("parkguard/#")
    assert peer.wait_for(b"1") == notification_topic(SITE), "the bridge never came up"
    return peer


def _site_peer(bridged: Bridged, device_id: str, peers: list[Peer]) -> Peer:
    creds = bridged.site.device(device_id)
    peer = Peer(bridged.site_broker.port, username=creds.username, password=creds.password,
                ca=creds.ca_path)
    peers.append(peer)
    assert peer.connect().value == 0
    return peer


def test_the_bridge_carries_lane_events_out_and_fleet_commands_in(
    bridged: Bridged, fleet_ops: Peer, peers: list[Peer]
) -> None:
    lane = _site_peer(bridged, "lane-in1", peers)
    lane.subscribe(topics.lane_cmd(SITE, "in1"))
    event = _marker("event")
    lane.publish(topics.lane_event(SITE, "in1"), event)
    assert fleet_ops.wait_for(event) == topics.lane_event(SITE, "in1")

    from_fleet = _marker("fleet-cmd")
    fleet_ops.publish(topics.lane_cmd(SITE, "in1"), from_fleet)
    assert lane.wait_for(from_fleet) == topics.lane_cmd(SITE, "in1")

    # A command the site gateway sends goes out for the record and is not echoed back.
    gateway = _site_peer(bridged, "gateway", peers)
    from_site = _marker("site-cmd")
    gateway.publish(topics.lane_cmd(SITE, "in1"), from_site)
    assert fleet_ops.wait_for(from_site) == topics.lane_cmd(SITE, "in1")
    assert lane.wait_for(from_site) is not None
    settle = _marker("settle")
    lane.publish(topics.lane_event(SITE, "in1"), settle)
    assert fleet_ops.wait_for(settle) is not None
    fleet_ops.publish(topics.lane_cmd(SITE, "in1"), settle)
    assert lane.wait_for(settle) is not None  # anything looping back would be here by now
    assert lane.count(from_fleet) == 1 and lane.count(from_site) == 1
    assert fleet_ops.count(from_fleet) == 1 and fleet_ops.count(from_site) == 1


def test_a_sites_bridge_user_cannot_publish_into_another_sites_tree(
    bridged: Bridged, fleet_ops: Peer, peers: list[Peer]
) -> None:
    """Runs last against the bridge: logging in as the bridge user replaces its session."""
    creds = bridged.site.bridge
    assert creds is not None
    impostor = Peer(bridged.fleet_broker.port, username=creds.username,
                    password=creds.password, ca=bridged.fleet_ca)
    impostor.client.reconnect_delay_set(min_delay=60, max_delay=60)
    peers.append(impostor)
    assert impostor.connect().value == 0
    assert_publish_denied(impostor, topics.lane_cmd("other-site", "in1"),
                          control_topic=topics.lane_event(SITE, "in1"), observer=fleet_ops)
