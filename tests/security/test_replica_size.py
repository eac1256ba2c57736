"""A big site must not knock its own gateway off the bus (issue 22, item 1).

The probe: past about 1 950 cars inside, the lanes' replica snapshot was larger than the
broker's ``max_packet_size`` (262 144 B); Mosquitto disconnected the gateway and paho resent
the same QoS 1 packet on every reconnect, so the gateway never stayed on the bus and decide
requests went unanswered. These run the real gateway against the real, provisioned Mosquitto:

- 20 000 cars inside and 5 000 passes: the snapshot reaches a lane in chunks and the lane
  assembles all of it, the gateway is never disconnected and keeps answering decides;
- a message over the limit is refused by the bus before paho holds it (so a reconnect
  resends nothing), named with its topic and size, and the gateway raises an alert.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from firmware.lane.replica import LaneReplica
from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from gateway.storage.store import GatewayStore
from parkguard.clock import ManualClock, utc_iso
from simulator.site import settings_of
from tests.conftest import SITE_START, TEST_SITE
from tests.helpers import eventually
from tests.test_web_alerts import SAFETY
from wire.contract import topics
from wire.contract.messages import DecideReply, DecideRequest
from wire.memory import MemoryBroker
from wire.mqtt import MqttBus, PacketTooLarge

pytestmark = pytest.mark.integration

CARS, PASSES = 20_000, 5_000


def _ms(days: int) -> int:
    return int((SITE_START + timedelta(days=days)).timestamp() * 1000)


def fill_big_site(database: Path) -> None:
    """20 000 open sessions and 5 000 monthly passes, written straight into SQLite (the desks
    would take minutes car by car; the replica reads only these tables)."""
    store = GatewayStore.open(database)
    db = store.db
    entered = utc_iso(SITE_START - timedelta(hours=2))
    with db.conn:
        db.table("sessions").insert_all(({
            "session_id": f"s-{n:06d}", "plate": f"粤B{n:05d}", "state": "open",
            "entry_lane": "in1", "entry_at": entered, "fee_fen": 0, "access": "visitor",
        } for n in range(CARS)), batch_size=2000)
        db.table("passes").insert_all(({
            "pass_id": f"P-{n:05d}", "kind": "monthly", "holder": "王芳",
            "valid_from_ms": _ms(-10), "valid_until_ms": _ms(20), "max_inside": 1,
            "issued_at_ms": _ms(-10),
        } for n in range(PASSES)), batch_size=2000)
        db.table("pass_plates").insert_all(({"pass_id": f"P-{n:05d}", "plate": f"沪A{n:05d}"}
                                      for n in range(PASSES)), batch_size=2000)
    store.close()


def gateway_config(broker: MosquittoBroker, test_site: ProvisionResult, tmp_path: Path,
                   **extra: Any) -> GatewayConfig:
    return GatewayConfig(
        site=TEST_SITE, database=tmp_path / "gateway.db",
        broker=settings_of(broker.address("gateway")),
        lane_keys={lane: SecretStr(key.hex())
                   for lane, key in test_site.device("gateway").lane_keys.items()},
        **extra)


class Lane:
    """Lane in1 on the real broker: its replica fed from its topics, and decide requests."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.replica = LaneReplica(site=TEST_SITE, lane="in1")
        self.replies: dict[str, DecideReply] = {}
        self._lock = threading.Lock()
        self.bus = MqttBus(broker.address("lane-in1"), client_id="lane-in1")
        for topic in self.replica.topics():
            self.bus.subscribe(topic, self._on_replica)
        self.bus.subscribe(topics.lane_decide_reply(TEST_SITE, "in1"), self._on_reply)

    def _on_replica(self, topic: str, payload: bytes) -> None:
        self.replica.on_message(topic, payload)

    def _on_reply(self, _topic: str, payload: bytes) -> None:
        reply = DecideReply.from_json(payload)
        with self._lock:
            self.replies[reply.correlation_id] = reply

    def ask(self, plate: str) -> str:
        correlation = uuid.uuid4().hex
        self.bus.publish_and_wait(topics.lane_decide(TEST_SITE, "in1"), DecideRequest(
            correlation_id=correlation, lane="in1", direction="entry", plate=plate,
            confidence=0.99, ts=SITE_START, deadline_ms=5000))
        return correlation

    def answered(self, correlations: list[str]) -> bool:
        with self._lock:
            return all(c in self.replies for c in correlations)


@pytest.fixture
def lane(broker: MosquittoBroker) -> Iterator[Lane]:
    running = Lane(broker)
    running.bus.start()
    yield running
    running.bus.stop()


def test_a_20000_car_site_reaches_its_lanes_and_the_gateway_stays_on_the_bus(
    broker: MosquittoBroker, test_site: ProvisionResult, tmp_path: Path, lane: Lane
) -> None:
    fill_big_site(tmp_path / "gateway.db")
    app = GatewayApp(gateway_config(broker, test_site, tmp_path), clock=ManualClock(SITE_START))
    assert isinstance(app.bus, MqttBus)
    limit = app.bus.max_packet_size
    assert limit == 256 * 1024  # the provisioned broker's max_packet_size
    with app:  # publishes the snapshot to every lane at start
        asked = [lane.ask(f"京A{n:05d}") for n in range(10)]
        eventually(lambda: lane.answered(asked), timeout=30,
                   what="decide replies while the snapshot goes out")
        eventually(lambda: lane.replica.sessions_inside == CARS, timeout=60,
                   what="lane in1 to assemble the whole snapshot")
        asked = [lane.ask(f"京B{n:05d}") for n in range(10)]
        eventually(lambda: lane.answered(asked), timeout=30, what="decide replies after it")
        bus = app.bus
        assert (bus.disconnects, bus.oversized) == (0, 0)
        assert bus.connected.is_set()
    assert {r.action for r in lane.replies.values()} == {"open"}
    assert lane.replica.epoch == app.replicas.epoch and not lane.replica.waiting_for_snapshot
    assert lane.replica.rejected == 0
    verdict = lane.replica.entry("沪A00042", SITE_START)  # a pass car, from the replica alone
    assert (verdict.action, verdict.reason) == ("open", "offline_pass_entry")
    # Megabytes in many chunks, the same to each of the five lanes; none over the limit.
    lanes = len(app.replicas.lanes)
    assert lanes == 5 and app.replicas.chunks_sent % lanes == 0
    assert app.replicas.chunks_sent // lanes > CARS * 100 // limit


def test_a_message_over_the_packet_limit_is_refused_by_the_bus_and_raises_an_alert(
    broker: MosquittoBroker, test_site: ProvisionResult, tmp_path: Path
) -> None:
    safety = tmp_path / "safety.toml"
    safety.write_text(SAFETY, encoding="utf-8")
    config = gateway_config(broker, test_site, tmp_path, safety_file=safety,
                            sensors=dict(test_site.device("gateway").sensors))
    with GatewayApp(config, clock=ManualClock(SITE_START)) as app:
        bus = app.bus
        assert isinstance(bus, MqttBus)
        topic = topics.lane_replica(TEST_SITE, "in1", "delta")
        with pytest.raises(PacketTooLarge, match=rf"{topic}.*max_packet_size of 262144"):
            bus.publish(topic, b"x" * 300_000)
        assert bus.oversized == 1
        alerts = app.service.call(lambda: list(app.store.db.query(
            "SELECT kind, severity, detail FROM alerts")))
        assert [(a["kind"], a["severity"]) for a in alerts] == [("bus_oversize", "warning")]
        assert topic in alerts[0]["detail"] and "300" in alerts[0]["detail"]
        # paho never held it: a reconnect resends nothing, the gateway stays connected.
        bus.publish_and_wait(topic, b"")
        broker.restart()
        eventually(lambda: bus.disconnects == 1 and bus.connected.is_set(), timeout=20,
                   what="the gateway back on the bus after the broker restart")
        bus.publish_and_wait(topics.lane_replica(TEST_SITE, "in1", "capacity"), b"",
                             retain=True)
        assert bus.disconnects == 1 and bus.connected.is_set()


def test_the_in_memory_twin_refuses_the_same_way(tmp_path: Path) -> None:
    """Code tested on the twin meets the same limit it meets on the site."""
    broker = MemoryBroker()
    try:
        seen: list[bytes] = []
        watcher = broker.bus("watch").start()
        watcher.subscribe("t/#", lambda _t, payload: seen.append(payload))
        bus = broker.bus("gateway", max_packet_size=1024).start()
        refused: list[tuple[str, int, int]] = []
        bus.when_refused(lambda *refusal: refused.append(refusal))
        with pytest.raises(PacketTooLarge, match="t/big"):
            bus.publish("t/big", b"x" * 1024)
        bus.publish("t/small", b"x" * 1000)
        broker.settle()
        assert seen == [b"x" * 1000]
        assert refused == [("t/big", 1036, 1024)] and bus.oversized == 1
    finally:
        broker.close()
