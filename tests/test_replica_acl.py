"""Who may send and read the lane replicas and the lot's capacity, on the locked-down broker.

The gateway alone publishes ``lane/{lane}/replica/{snapshot,delta,capacity}``; each lane reads
only its own; a read-only monitor reads them all. Over MQTT 3.1.1 Mosquitto acknowledges a
denied PUBLISH and drops it, and grants every SUBSCRIBE but filters deliveries, so a denial
is proven as in security/test_broker_acl.py: an observer allowed to see the topic does not get
the forged message, while a control message sent after it arrives (one client's messages are
forwarded in order).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from broker.runner import MosquittoBroker
from tests.conftest import TEST_SITE
from tests.helpers import Recorder, eventually
from wire.contract import topics
from wire.mqtt import MqttBus

pytestmark = pytest.mark.integration

ROOT = topics.site_root(TEST_SITE)
EVERY_REPLICA = f"{ROOT}/lane/+/replica/#"


def _marker(what: str) -> bytes:
    return f"{what}-{uuid.uuid4().hex}".encode()


def _got(recorder: Recorder, payload: bytes) -> bool:
    return payload in recorder.payloads()


def _primed(recorder: Recorder, topic: str, via: MqttBus) -> Recorder:
    """Wait until ``recorder``'s subscription is in force: a probe ``via`` sends on ``topic``
    arrives (Recorder returns once connected, before the broker has taken the SUBSCRIBE)."""
    probe = _marker("probe")
    deadline = time.monotonic() + 5
    while not _got(recorder, probe):
        assert time.monotonic() < deadline, f"{recorder.bus.client_id} never subscribed"
        via.publish(topic, probe)
        time.sleep(0.02)
    return recorder


@pytest.fixture
def gateway(broker: MosquittoBroker) -> Iterator[MqttBus]:
    with MqttBus(broker.address("gateway"), client_id="gateway") as bus:
        yield bus


@pytest.mark.parametrize("part", topics.REPLICA_PARTS)
def test_the_gateway_sends_a_lane_its_replica_and_monitors_see_it(
    part: str, broker: MosquittoBroker, gateway: MqttBus
) -> None:
    topic = topics.lane_replica(TEST_SITE, "in1", part)
    with Recorder(broker, f"{ROOT}/lane/in1/replica/#", device="lane-in1") as lane, \
            Recorder(broker, EVERY_REPLICA, device="monitor-watch1") as monitor:
        _primed(lane, topic, gateway)
        _primed(monitor, topic, gateway)
        payload = _marker(part)
        gateway.publish_and_wait(topic, payload, retain=part != "delta")
        eventually(lambda: _got(lane, payload) and _got(monitor, payload),
                   what=f"{part} at the lane and the monitor")


@pytest.mark.parametrize("target", ["in1", "out1"])
@pytest.mark.parametrize("part", topics.REPLICA_PARTS)
def test_a_lane_cannot_publish_a_replica_not_even_its_own(
    part: str, target: str, broker: MosquittoBroker, gateway: MqttBus
) -> None:
    control_topic = topics.lane_event(TEST_SITE, "in1")
    with Recorder(broker, "#", device="monitor-watch1") as observer, \
            Recorder(broker, control_topic, device="lane-in1") as lane:
        _primed(observer, topics.lane_replica(TEST_SITE, "in2", "delta"), gateway)
        forged, control = _marker("forged"), _marker("control")
        lane.bus.publish_and_wait(topics.lane_replica(TEST_SITE, target, part), forged,
                                  retain=True)
        lane.bus.publish_and_wait(control_topic, control)
        eventually(lambda: _got(observer, control), what="the control message")
        assert not _got(observer, forged)


@pytest.mark.parametrize("part", topics.REPLICA_PARTS)
def test_a_monitor_cannot_publish_a_replica(
    part: str, broker: MosquittoBroker, gateway: MqttBus
) -> None:
    with Recorder(broker, EVERY_REPLICA, device="monitor-watch1") as observer, \
            Recorder(broker, EVERY_REPLICA, device="monitor-watch2") as monitor:
        _primed(observer, topics.lane_replica(TEST_SITE, "in2", "delta"), gateway)
        forged, control = _marker("forged"), _marker("control")
        monitor.bus.publish_and_wait(topics.lane_replica(TEST_SITE, "in1", part), forged)
        gateway.publish_and_wait(topics.lane_replica(TEST_SITE, "in2", part), control)
        eventually(lambda: _got(observer, control), what="the control message")
        assert not _got(observer, forged)


@pytest.mark.parametrize("part", topics.REPLICA_PARTS)
def test_a_lane_cannot_read_another_lanes_replica(
    part: str, broker: MosquittoBroker, gateway: MqttBus
) -> None:
    with Recorder(broker, EVERY_REPLICA, device="lane-in1") as greedy, \
            Recorder(broker, f"{ROOT}/lane/out1/replica/#", device="lane-out1") as rightful:
        _primed(greedy, topics.lane_replica(TEST_SITE, "in1", "delta"), gateway)
        _primed(rightful, topics.lane_replica(TEST_SITE, "out1", "delta"), gateway)
        secret, control = _marker("secret"), _marker("control")
        gateway.publish_and_wait(topics.lane_replica(TEST_SITE, "out1", part), secret)
        gateway.publish_and_wait(topics.lane_replica(TEST_SITE, "in1", part), control)
        eventually(lambda: _got(rightful, secret), what="the rightful lane's replica")
        eventually(lambda: _got(greedy, control), what="the lane's own replica")
        assert not _got(greedy, secret)
