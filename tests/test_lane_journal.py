"""No event is lost: the lane journals every event in SQLite before publishing it, marks it
sent on the broker's acknowledgement, and replays what was unsent, in ``seq`` order, after the
broker comes back or the lane restarts. Real Mosquitto, real SQLite file, mock pins."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from broker.runner import MosquittoBroker
from firmware.lane.config import CameraSettings, JournalSettings, LaneConfig, LaneTiming
from firmware.lane.journal import SCHEMA_VERSION, Journal, JournalRow
from firmware.lane.node import LaneNode
from parkguard.clock import SystemClock
from parkguard.errors import ConfigError
from simulator.camera import GroundTruthReader, SimulatedCamera
from simulator.driver import CarDriver, SimulatedLaneWiring
from simulator.site import settings_of
from tests.conftest import TEST_SITE
from tests.helpers import eventually
from wire.contract import topics
from wire.mqtt import MqttBus

pytestmark = pytest.mark.integration

SITE = TEST_SITE


class Watcher:
    """A persistent subscriber (clean session off): the broker keeps what it misses while the
    broker itself restarts, so the test sees everything the lane delivered, in order."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self._lock = threading.Lock()
        self.events: list[dict[str, object]] = []
        self.bus = MqttBus(broker.address("monitor-watch1"), client_id="monitor-watch1",
                           persistent=True)
        self.bus.subscribe(topics.lane_event(SITE, "in1"), self._keep)
        self.bus.start()

    def _keep(self, _topic: str, payload: bytes) -> None:
        with self._lock:
            self.events.append(json.loads(payload))

    def seqs(self) -> list[int]:
        with self._lock:
            return [int(e["seq"]) for e in self.events]  # type: ignore[call-overload]

    def ids(self) -> list[str]:
        with self._lock:
            return [str(e["event_id"]) for e in self.events]


@pytest.fixture
def watcher(broker: MosquittoBroker) -> Iterator[Watcher]:
    watcher = Watcher(broker)
    yield watcher
    watcher.bus.stop()


@contextmanager
def entry_lane(broker: MosquittoBroker, journal: Path) -> Iterator[tuple[LaneNode, CarDriver]]:
    clock = SystemClock()
    config = LaneConfig(site=SITE, lane="in1", direction="entry",
                        broker=settings_of(broker.address("lane-in1")),
                        timing=LaneTiming(decide_deadline_ms=30),
                        journal=JournalSettings(path=journal),
                        camera=CameraSettings(type="simulated"))
    factory = MockFactory()
    camera = SimulatedCamera(clock=clock)
    node = LaneNode(config, clock=clock, camera=camera, reader=GroundTruthReader(),
                    pin_factory=factory).start()
    try:
        yield node, CarDriver(SimulatedLaneWiring(config, factory), camera, node.controller)
    finally:
        node.stop()


def unsent(path: Path) -> int:
    journal = Journal(path)
    try:
        return journal.unsent_count()
    finally:
        journal.close()


def test_with_the_broker_down_events_are_journaled_and_all_arrive_once_in_order_after(
    broker: MosquittoBroker, watcher: Watcher, tmp_path: Path
) -> None:
    path = tmp_path / "lane-in1.db"
    with entry_lane(broker, path) as (node, driver):
        assert driver.drive_through("粤B10001").opened
        eventually(lambda: node.journal.unsent_count() == 0, what="first car acknowledged")
        broker.stop()
        eventually(lambda: not node.bus.connected.is_set(), what="lane sees the broker gone")
        for plate in ("粤B10002", "粤B10003", "粤B10004"):
            assert driver.drive_through(plate).opened  # the lane keeps working, offline
        journaled = node.journal.events()
        waiting = [seq for seq, _type, sent in journaled if not sent]
        assert len(waiting) >= 3 * 5, "every offline event is in the journal, unsent"
        assert waiting == list(range(waiting[0], journaled[-1][0] + 1))
        broker.start()
        eventually(lambda: node.journal.unsent_count() == 0, timeout=20,
                   what="journal drained once the broker is back")
        # The lane may still journal an event after the snapshot above (the last barrier
        # closing once its car has gone), so the watcher is held to the journal as it ends.
        last = journaled[-1][0]
        final = node.journal.events
        eventually(lambda: set(watcher.seqs()) >= {seq for seq, _t, _s in final()},
                   timeout=10, what="watcher has every journaled event")
    # QoS 1 is at least once: a message whose acknowledgement was lost in the outage may come
    # twice (the gateway dedupes by event_id). Every event arrives, first copies in seq order,
    # and a repeat is the same event (same id), never a new one.
    seqs = watcher.seqs()
    first_seen = list(dict.fromkeys(seqs))
    assert first_seen == list(range(1, len(first_seen) + 1)), "every event, in seq order"
    assert len(first_seen) >= last, "the offline events arrived"
    assert len(set(watcher.ids())) == len(first_seen), "repeats carry the same event_id"


def test_a_restarted_lane_replays_what_was_unsent_and_continues_its_seq(
    broker: MosquittoBroker, watcher: Watcher, tmp_path: Path
) -> None:
    path = tmp_path / "lane-in1.db"
    with entry_lane(broker, path) as (node, driver):
        driver.drive_through("粤B20001")
        eventually(lambda: node.journal.unsent_count() == 0, what="acknowledged")
        broker.stop()
        eventually(lambda: not node.bus.connected.is_set(), what="lane sees the broker gone")
        driver.drive_through("粤B20002")
        driver.drive_through("粤B20003")
        before = node.controller.last_seq
    # The lane went down with events unsent (as a power cut would leave them: they are in
    # the file, never acknowledged).
    left = unsent(path)
    assert left > 0
    broker.start()
    with entry_lane(broker, path) as (node, driver):
        eventually(lambda: node.journal.unsent_count() == 0, timeout=30, what="replayed")
        driver.drive_through("粤B20004")
        # The car's last event (the barrier closed) may come just after the driver saw the
        # boom down: read the lane's seq once its worker has nothing left to do.
        node.controller.wait_idle()
        final = node.controller.last_seq
        assert final > before
        assert node.controller.outbox.flush(30), "new events acknowledged"
        eventually(lambda: set(watcher.seqs()) >= set(range(1, final + 1)), timeout=30,
                   what="watcher has all")
    # QoS 1 is at least once: a repeat (an acknowledgement lost in the outage) is the same
    # event, never a new one; first copies come in seq order, none missing, none extra.
    seqs, ids = watcher.seqs(), watcher.ids()
    assert list(dict.fromkeys(seqs)) == list(range(1, final + 1))
    assert len(set(ids)) == final
    assert all(ids[seqs.index(seq)] == ids[index] for index, seq in enumerate(seqs))


def test_seq_continues_from_the_highest_journaled_event(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    for seq in (1, 2, 3):
        journal.append(JournalRow(seq, f"event-{seq:04d}", "fault", "t", b"{}"))
    journal.mark_sent([1, 2])
    journal.close()
    again = Journal(tmp_path / "j.db")
    try:
        assert again.last_seq() == 3
        assert [row.seq for row in again.unsent()] == [3]
    finally:
        again.close()


def test_a_journal_from_a_newer_schema_is_refused_by_name(tmp_path: Path) -> None:
    """A lane downgraded to older firmware must not write into a journal it does not
    understand: it stops at open, naming the file and both versions."""
    path = tmp_path / "lane-in1.db"
    Journal(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(ConfigError) as refused:
        Journal(path)
    message = str(refused.value)
    assert str(path) in message
    assert f"version {SCHEMA_VERSION + 1}" in message and f"version {SCHEMA_VERSION} " in message
    # The refusal released the file: once the version is one it knows, it opens again.
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    db.commit()
    db.close()
    Journal(path).close()


def test_a_row_written_without_waiting_for_the_card_is_published_only_once_synced(
    tmp_path: Path,
) -> None:
    """The online decision's rows (docs/lane.md): written with NORMAL, kept from the outbox
    until a FULL commit or a sync has put them on the card, so a power cut can only take rows
    nobody was told about."""
    journal = Journal(tmp_path / "j.db")
    try:
        journal.append(JournalRow(1, "event-0001", "barrier", "t", b"{}"))
        journal.append_many([JournalRow(2, "event-0002", "vehicle_detected", "t", b"{}"),
                             JournalRow(3, "event-0003", "plate_read", "t", b"{}")],
                            durable=False)
        journal.append_many([JournalRow(4, "event-0004", "decision", "t", b"{}")],
                            durable=False)
        assert journal.durable_seq == 1
        assert [row.seq for row in journal.unsent()] == [1]
        assert journal.unsent_count() == 4  # committed all the same (a crash keeps them)
        journal.append(JournalRow(5, "event-0005", "barrier", "t", b"{}"))  # its fsync: all
        assert journal.durable_seq == 5
        assert [row.seq for row in journal.unsent()] == [1, 2, 3, 4, 5]
        journal.append_many([JournalRow(6, "event-0006", "decision", "t", b"{}")],
                            durable=False)
        assert journal.sync() and not journal.sync()  # the second has nothing to do
        assert [row.seq for row in journal.unsent(after=5)] == [6]
        journal.append_many([JournalRow(7, "event-0007", "decision", "t", b"{}")],
                            durable=False)
    finally:
        journal.close()
    # A process that died after a NORMAL write: the next one syncs when it opens.
    again = Journal(tmp_path / "j.db")
    try:
        assert again.durable_seq == 7
        assert [row.seq for row in again.unsent(after=6)] == [7]
    finally:
        again.close()
