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


def node_ms(workdir: Path) -> int:
    """The clock (``ticks_ms``) of a firmware node on the MicroPython unix port, read at the top
    of a loop pass that began after this call (``sim_clock.ask`` in firmware/sensor/sim), so
    that pass and every later one see what the caller changed before."""
    ask, answer = workdir / "sim_clock.ask", workdir / "sim_clock"
    answer.unlink(missing_ok=True)
    ask.touch()
    eventually(lambda: not ask.exists() and answer.exists(), what="the node's clock")
    return int(answer.read_text("utf-8"))


def wait_node_ms(workdir: Path, ms: int, *, since: int | None = None) -> None:
    """Wait until a node's own clock has run ``ms`` past ``since`` (default: its clock now) and
    the loop pass that got there has finished: all the node does for an input held that long,
    or for a timer that short, is done (a reading is in its outbox, an output is driven)."""
    start = node_ms(workdir) if since is None else since
    while node_ms(workdir) - start < ms:
        pass
    node_ms(workdir)  # answered by the next pass: the one that got there has finished


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
