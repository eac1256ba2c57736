"""Small helpers shared by the integration tests."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from broker.runner import MosquittoBroker
from parkguard.clock import ManualClock
from wire.mqtt import MqttBus


def eventually(condition: Callable[[], bool], *, timeout: float = 5.0, what: str = "") -> None:
    """Wait (real time) for something another thread or process does; fail loudly if it never
    happens."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(0.002)


def ticking(condition: Callable[[], bool], clock: ManualClock, what: str) -> None:
    """Advance a component's manual clock in small steps until ``condition`` holds (real-time
    bound): for waits on a timer the component may only start after some other thread acts,
    where a single step could come before the timer exists."""
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        clock.advance(timedelta(milliseconds=20))
        time.sleep(0.005)


def give_the_lane_time_to_misbehave(seconds: float = 0.05) -> None:
    """Real time for a wrong action to show (a boom lowered, a decision made too early).

    Only ever used before asserting that something did NOT happen.
    """
    time.sleep(seconds)


class Recorder:
    """An MQTT client of one provisioned device that keeps every message it sees on a filter.

    A watcher (``monitor-watch1``) reads everything and may publish nothing; a lane
    (``lane-in1``) reads and publishes what that lane may. The broker allows one
    connection per device: two recorders at once need two devices.
    """

    def __init__(self, broker: MosquittoBroker, topic_filter: str, *, device: str):
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.bus = MqttBus(broker.address(device), client_id=device)
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


def journal_events(path: Path) -> list[tuple[int, str]]:
    """(seq, event_id) of every event a lane journaled, read from its SQLite file."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [(int(s), str(e)) for s, e in db.execute(
            "SELECT seq, event_id FROM events ORDER BY seq")]
    finally:
        db.close()
