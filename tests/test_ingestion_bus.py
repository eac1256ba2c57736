"""MqttBus manual acknowledgements on a real Mosquitto: what is not acked comes back."""

from __future__ import annotations

import threading

import pytest

from broker.runner import MosquittoBroker
from parkguard.errors import BrokerError
from tests.conftest import TEST_SITE
from tests.helpers import eventually
from wire.bus import Delivery
from wire.contract import topics
from wire.mqtt import MqttBus

pytestmark = pytest.mark.integration

TOPIC = topics.lane_event(TEST_SITE, "in1")
EVERY_EVENT = topics.all_lane(TEST_SITE, "event")


class Inbox:
    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()

    def __call__(self, delivery: Delivery) -> None:
        with self._lock:
            self.deliveries.append(delivery)

    def payloads(self) -> list[bytes]:
        with self._lock:
            return [d.payload for d in self.deliveries]


def consumer(broker: MosquittoBroker, inbox: Inbox) -> MqttBus:
    bus = MqttBus(broker.address("gateway"), client_id="gateway-acks", persistent=True,
                  manual_ack=True)
    bus.subscribe_deliveries(EVERY_EVENT, inbox)
    return bus.start()


def test_a_message_not_acknowledged_is_redelivered_after_a_crash_and_an_acked_one_is_not(
    broker: MosquittoBroker,
) -> None:
    first = Inbox()
    bus = consumer(broker, first)
    with MqttBus(broker.address("lane-in1"), client_id="lane-in1") as lane:
        lane.publish_and_wait(TOPIC, b'{"n": 1}')
        lane.publish_and_wait(TOPIC, b'{"n": 2}')
        eventually(lambda: len(first.deliveries) == 2, what="both messages")
        first.deliveries[0].ack()
        eventually(lambda: bus.acks_sent == 1, what="the ack to leave")
        bus.drop()  # crash before the second one was committed

        again = Inbox()
        restarted = consumer(broker, again)
        try:
            eventually(lambda: len(again.deliveries) == 1, what="the redelivery")
            assert again.payloads() == [b'{"n": 2}']
            assert again.deliveries[0].redelivered
            again.deliveries[0].ack()
            eventually(lambda: restarted.acks_sent == 1, what="the ack to leave")
        finally:
            restarted.stop()


def test_an_ack_from_before_a_reconnect_is_not_sent_on_the_new_connection(
    broker: MosquittoBroker,
) -> None:
    inbox = Inbox()
    bus = consumer(broker, inbox)
    try:
        with MqttBus(broker.address("lane-in1"), client_id="lane-in1") as lane:
            lane.publish_and_wait(TOPIC, b'{"n": 1}')
            eventually(lambda: len(inbox.deliveries) == 1, what="the message")
            old = inbox.deliveries[0]
            sock = bus._client.socket()  # the network drops; paho reconnects by itself
            assert sock is not None
            sock.close()
            eventually(lambda: len(inbox.deliveries) == 2, timeout=15, what="the redelivery")
            old.ack()
            assert bus.stale_acks == 1
            inbox.deliveries[1].ack()
            assert bus.acks_sent == 1
    finally:
        bus.stop()


def test_plain_subscribers_on_a_manual_ack_bus_are_acknowledged_as_before(
    broker: MosquittoBroker,
) -> None:
    got: list[bytes] = []
    bus = MqttBus(broker.address("gateway"), client_id="gateway-plain", persistent=True,
                  manual_ack=True)
    bus.subscribe(EVERY_EVENT, lambda _topic, payload: got.append(payload))
    bus.start()
    with MqttBus(broker.address("lane-in1"), client_id="lane-in1") as lane:
        lane.publish_and_wait(TOPIC, b'{"n": 1}')
        eventually(lambda: got == [b'{"n": 1}'], what="the message")
        eventually(lambda: bus.acks_sent == 1, what="the automatic ack")
        bus.drop()
        again = MqttBus(broker.address("gateway"), client_id="gateway-plain", persistent=True)
        more: list[bytes] = []
        again.subscribe(EVERY_EVENT, lambda _topic, payload: more.append(payload))
        again.start()
        try:
            lane.publish_and_wait(TOPIC, b'{"n": 2}')
            eventually(lambda: more == [b'{"n": 2}'], what="only the new message")
        finally:
            again.stop()


def test_taking_deliveries_needs_manual_acks_chosen_before_the_bus_starts(
    broker: MosquittoBroker,
) -> None:
    bus = MqttBus(broker.address("gateway"), client_id="gateway-auto")
    with pytest.raises(BrokerError, match="manual_ack=True"):
        bus.subscribe_deliveries(EVERY_EVENT, Inbox())
    with bus:
        with pytest.raises(BrokerError, match="before the bus starts"):
            bus.enable_manual_ack()
