"""The in-memory bus keeps the promises of the real one (wire.bus), so code tested on it
behaves the same against Mosquitto: order, retained messages, Last Wills, persistent
sessions, manual acknowledgement and handler errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from wire.bus import Bus, Delivery
from wire.memory import MemoryBroker, MemoryBus
from wire.mqtt import Will


@pytest.fixture
def broker() -> Iterator[MemoryBroker]:
    broker = MemoryBroker()
    yield broker
    broker.close()


def _recorder(bus: MemoryBus, topic_filter: str) -> list[tuple[str, bytes]]:
    seen: list[tuple[str, bytes]] = []
    bus.subscribe(topic_filter, lambda t, p: seen.append((t, p)))
    return seen


def test_it_is_a_bus(broker: MemoryBroker) -> None:
    assert isinstance(broker.bus("x"), Bus)


def test_messages_arrive_in_order_on_the_brokers_thread_not_the_publishers(
        broker: MemoryBroker) -> None:
    sub, pub = broker.bus("sub"), broker.bus("pub").start()
    threads: list[str] = []
    sub.subscribe("a/#", lambda _t, _p: threads.append(threading.current_thread().name))
    seen = _recorder(sub, "a/+")
    sub.start()
    for n in range(50):
        pub.publish(f"a/{n % 3}", str(n).encode())
    broker.settle()
    assert [p for _t, p in seen] == [str(n).encode() for n in range(50)]
    assert set(threads) == {"memory-broker"}


def test_retained_messages_reach_late_subscribers_and_an_empty_payload_clears_them(
        broker: MemoryBroker) -> None:
    pub = broker.bus("pub").start()
    pub.publish("site/alarm/fire", b'{"active": true}', retain=True)
    pub.publish("site/alarm/flood", b"x", retain=True)
    pub.publish("site/alarm/flood", b"", retain=True)
    broker.settle()
    late = broker.bus("late")
    seen = _recorder(late, "site/alarm/#")
    late.start()
    broker.settle()
    assert seen == [("site/alarm/fire", b'{"active": true}')]
    assert broker.retained("site/alarm/flood") is None


def test_a_dropped_client_leaves_its_will_and_a_clean_goodbye_does_not(
        broker: MemoryBroker) -> None:
    watcher = broker.bus("watch")
    seen = _recorder(watcher, "lane/+/state")
    watcher.start()
    will = Will("lane/in1/state", b"offline")
    broker.bus("in1", will=will).start().drop()
    broker.bus("in2", will=Will("lane/in2/state", b"offline")).start().stop()
    broker.settle()
    assert seen == [("lane/in1/state", b"offline")]
    assert broker.retained("lane/in1/state") == b"offline"


def test_a_persistent_session_gets_what_was_published_while_it_was_away(
        broker: MemoryBroker) -> None:
    gateway = broker.bus("gw", persistent=True)
    seen = _recorder(gateway, "lane/#")
    gateway.start()
    gateway.stop()
    lane = broker.bus("in1").start()
    lane.publish("lane/in1/event", b"1")
    lane.publish("lane/in1/event", b"2", qos=0)  # QoS 0 is not kept for the absent
    broker.settle()
    assert seen == []
    gateway.start()
    broker.settle()
    assert seen == [("lane/in1/event", b"1")]


def test_what_a_manual_ack_consumer_did_not_acknowledge_comes_again_after_a_reconnect(
        broker: MemoryBroker) -> None:
    gateway = broker.bus("gw", persistent=True, manual_ack=True)
    got: list[Delivery] = []
    gateway.subscribe_deliveries("lane/#", got.append)
    gateway.start()
    lane = broker.bus("in1").start()
    lane.publish("lane/in1/event", b"kept")
    lane.publish("lane/in1/event", b"acked")
    broker.settle()
    got[1].ack()
    gateway.drop()
    gateway.start()
    broker.settle()
    assert [(d.payload, d.redelivered) for d in got] == [
        (b"kept", False), (b"acked", False), (b"kept", True)]


def test_a_qos1_publish_while_disconnected_waits_for_the_connection(
        broker: MemoryBroker) -> None:
    sub = broker.bus("sub")
    seen = _recorder(sub, "t")
    sub.start()
    lane = broker.bus("in1")
    receipt = lane.publish("t", b"later")
    assert receipt.acknowledged() is False
    lane.start()
    broker.settle()
    assert receipt.acknowledged() is True
    assert seen == [("t", b"later")]


def test_a_handler_that_raises_is_counted_and_reported_and_the_bus_goes_on(
        broker: MemoryBroker) -> None:
    errors: list[tuple[str, bytes, BaseException]] = []
    sub = broker.bus("sub", on_handler_error=lambda t, p, e: errors.append((t, p, e)))

    def bad(_topic: str, payload: bytes) -> None:
        if payload == b"boom":
            raise ValueError("bad payload")

    sub.subscribe("t", bad)
    seen = _recorder(sub, "t")
    sub.start()
    pub = broker.bus("pub").start()
    pub.publish("t", b"boom")
    pub.publish("t", b"fine")
    broker.settle()
    assert sub.handler_errors == 1
    assert [(t, p) for t, p, _e in errors] == [("t", b"boom")]
    assert [p for _t, p in seen] == [b"boom", b"fine"]


def test_a_second_connection_with_the_same_client_id_takes_over(broker: MemoryBroker) -> None:
    first = broker.bus("in1").start()
    second = broker.bus("in1").start()
    assert not first.connected.is_set()
    assert second.connected.is_set()
