"""Small helpers shared by the integration tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from broker.bus import BrokerAddress, MqttBus
from broker.runner import MosquittoBroker


def address_of(broker: MosquittoBroker) -> BrokerAddress:
    return BrokerAddress(broker.host, broker.port)


def eventually(condition: Callable[[], bool], *, timeout: float = 5.0, what: str = "") -> None:
    """Wait (real time) for something another thread or process does; fail loudly if it never
    happens."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(0.002)


def give_the_lane_time_to_misbehave(seconds: float = 0.05) -> None:
    """Real time for a wrong action to show (a boom lowered, a decision made too early).

    Only ever used before asserting that something did NOT happen.
    """
    time.sleep(seconds)


class Recorder:
    """A plain MQTT client that keeps every message it sees on a filter."""

    def __init__(self, broker: MosquittoBroker, topic_filter: str, *, name: str = "recorder"):
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.bus = MqttBus(address_of(broker), client_id=name)
        self.bus.subscribe(topic_filter, self._keep)
        self.bus.start()

    def _keep(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self.messages.append((topic, payload))

    def payloads(self) -> list[bytes]:
        with self._lock:
            return [p for _t, p in self.messages]

    def close(self) -> None:
        self.bus.stop()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()
