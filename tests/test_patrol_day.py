"""A day of three shifts through the in-memory broker, on a manual clock.

Handheld readers (a Python stand-in publishing exactly what the firmware will: a
``PatrolTap`` per tap, buffered while out of signal and uploaded in ``seq`` order) tap
simulated NTAG 424 DNA tags; the gateway side receives on ``patrol/+/tap`` and ingests on
one thread. The day holds a complete round, a late round, a missed checkpoint, a cloned
tag, a replayed tap, a too-fast round and a reader offline for two hours; the report shows
each as it happened.

The broker here only carries QoS 1 messages in order, so it is the in-memory twin
(``wire.memory``); the readers against the real, locked-down Mosquitto are
``tests/test_patrol_reader.py``.
"""

from __future__ import annotations

import csv
import io
import queue
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.patrols.desk import PatrolDesk
from gateway.patrols.reports import day_report, page, render_html, rounds_csv, taps_csv
from gateway.storage.store import GatewayStore
from parkguard.clock import ManualClock
from parkguard.core.patrol import load_patrol_config, simulate_tap
from wire.contract import topics
from wire.contract.messages import PatrolTap, decode
from wire.memory import MemoryBroker

SITE = "patrolday"
EXAMPLE = Path(__file__).resolve().parents[1] / "docs/examples/patrols.toml"
CONFIG = load_patrol_config(EXAMPLE)
DAY = date(2026, 5, 6)
MIDNIGHT = datetime(2026, 5, 5, 16, 0, tzinfo=UTC)  # 00:00 in Shanghai


class Tags:
    """The site's NTAG 424 DNA tags: each read increments the tag's counter."""

    def __init__(self) -> None:
        self.counters = {c.id: 100 for c in CONFIG.checkpoints}

    def read(self, checkpoint: str) -> tuple[str, str]:
        point = CONFIG.checkpoint[checkpoint]
        self.counters[checkpoint] += 1
        assert point.key is not None
        return point.tag, simulate_tap(bytes.fromhex(point.key.get_secret_value()), point.tag,
                                       self.counters[checkpoint])


class Reader:
    """What the handheld firmware does: one seq per tap, buffer offline, upload in order."""

    def __init__(self, broker: MemoryBroker, reader: str, clock: ManualClock) -> None:
        self.id, self.clock, self.seq, self.online = reader, clock, 0, True
        self.buffer: list[PatrolTap] = []
        self.broker = broker
        self.bus = broker.bus(f"patrol-{reader}").start()

    def tap(self, tag_id: str, sun: str | None, badge: str) -> PatrolTap:
        self.seq += 1
        local = self.clock.now().astimezone(CONFIG.zone).replace(tzinfo=None, microsecond=0)
        tap = PatrolTap(reader=self.id, seq=self.seq, tag_id=tag_id, sun=sun, badge=badge,
                        reader_time=local)
        self.buffer.append(tap)
        if self.online:
            self.upload()
        return tap

    def upload(self) -> None:
        self.online = True
        for tap in self.buffer:
            sent = tap.model_copy(update={"uploaded": self.clock.now()})
            self.bus.publish_and_wait(topics.patrol_tap(SITE, self.id), sent)
        self.buffer.clear()
        self.broker.settle()  # received now, before the clock moves on


class Gateway:
    """The gateway side: subscribe to every reader, ingest on one thread in arrival order."""

    def __init__(self, broker: MemoryBroker, clock: ManualClock, workdir: Path) -> None:
        self.broker = broker
        self.clock = clock
        self.inbox: queue.Queue[tuple[str, bytes, datetime]] = queue.Queue()
        self.store = GatewayStore.open(workdir / "gateway.db")
        self.alerts: list[dict[str, Any]] = []
        self.desk = PatrolDesk(self.store.db, config=CONFIG, clock=clock,
                               raise_alert=self._alert)
        self.bus = broker.bus("gateway-patrols")
        self.bus.subscribe(topics.all_patrol_taps(SITE),
                           lambda t, p: self.inbox.put((t, p, self.clock.now())))
        self.bus.start()
        self.arrived: list[tuple[str, int]] = []
        self.outcomes: dict[tuple[str, int], Any] = {}

    def _alert(self, key: str, **fields: Any) -> None:
        self.alerts.append({"key": key, **fields})

    def drain(self, expect: int) -> None:
        self.broker.settle()  # every tap published so far is in the inbox
        assert len(self.arrived) + self.inbox.qsize() == expect
        while not self.inbox.empty():
            topic, payload, received = self.inbox.get()
            tap = decode(topic, payload)
            assert isinstance(tap, PatrolTap)
            self.arrived.append((tap.reader, tap.seq))
            self.outcomes[(tap.reader, tap.seq)] = self.desk.ingest(tap, received)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[ManualClock, Gateway, dict[str, Reader]]]:
    clock = ManualClock(MIDNIGHT)
    broker = MemoryBroker()
    gateway = Gateway(broker, clock, tmp_path)
    readers = {r: Reader(broker, r, clock) for r in ("r1", "r2", "r3")}
    try:
        yield clock, gateway, readers
    finally:
        for reader in readers.values():
            reader.bus.stop()
        gateway.bus.stop()
        gateway.store.close()
        broker.close()


def at(clock: ManualClock, hh: int, mm: int, ss: int = 0) -> None:
    clock.set(MIDNIGHT + timedelta(hours=hh, minutes=mm, seconds=ss))


def walk(clock: ManualClock, reader: Reader, tags: Tags, badge: str,
         stops: list[tuple[int, int, int, str]]) -> list[PatrolTap]:
    out = []
    for hh, mm, ss, point in stops:
        at(clock, hh, mm, ss)
        out.append(reader.tap(*tags.read(point), badge))
    return out


def test_a_day_of_three_shifts(rig: tuple[ManualClock, Gateway, dict[str, Reader]]) -> None:
    clock, gw, readers = rig
    r1, r2, r3 = readers["r1"], readers["r2"], readers["r3"]
    tags = Tags()
    sent = 0

    # Shift c (00-08): zhao walks B1 in order in 12 minutes — complete.
    walk(clock, r3, tags, "G003", [(1, 0, 0, "b1-ramp"), (1, 3, 0, "b1-booth"),
                                   (1, 7, 0, "b1-east"), (1, 12, 0, "b1-pump")])
    sent += 4
    # 02:00 a cloned booth tag (made without the key) tapped from the booth
    at(clock, 2, 0)
    r3.tap(CONFIG.checkpoint["b1-booth"].tag,
           simulate_tap(bytes(16), CONFIG.checkpoint["b1-booth"].tag, 500), "G003")
    sent += 1
    gw.drain(sent)
    # 02:05 a copy of the 01:03 booth message (as it went over the air) replayed
    at(clock, 2, 5)
    booth_sun = gw.store.db.execute(
        "SELECT sun FROM patrol_taps WHERE reader = 'r3' AND seq = 2").fetchone()[0]
    r3.tap(CONFIG.checkpoint["b1-booth"].tag, booth_sun, "G003")
    sent += 1

    # Shift a (08-16): wang walks B1 but takes 45 minutes — late.
    walk(clock, r1, tags, "G001", [(8, 30, 0, "b1-ramp"), (8, 45, 0, "b1-booth"),
                                   (9, 0, 0, "b1-east"), (9, 15, 0, "b1-pump")])
    sent += 4
    # 10:00-12:00 chen's reader r2 is out of signal: his full round buffers
    r2.online = False
    walk(clock, r2, tags, "S001", [(10, 0, 0, "b1-ramp"), (10, 2, 0, "b1-booth"),
                                   (10, 5, 0, "b1-east"), (10, 8, 0, "b1-pump"),
                                   (10, 12, 0, "b2-west"), (10, 16, 0, "b2-east")])
    # ... while wang taps the booth at 11:00 with a newer counter, which arrives first
    walk(clock, r1, tags, "G001", [(11, 0, 0, "b1-booth")])
    sent += 1
    gw.drain(sent)
    at(clock, 12, 0)
    r2.upload()
    sent += 6
    # 13:00 chen's second round is too fast: B1 pump to B2 west (70 m + a level) in 10 s
    walk(clock, r2, tags, "S001", [(13, 0, 0, "b1-ramp"), (13, 2, 0, "b1-booth"),
                                   (13, 5, 0, "b1-east"), (13, 8, 0, "b1-pump"),
                                   (13, 8, 10, "b2-west"), (13, 12, 0, "b2-east")])
    sent += 6
    # the captain spot-checks three points
    walk(clock, r2, tags, "C001", [(14, 0, 0, "b1-ramp"), (14, 2, 0, "b1-booth"),
                                   (14, 5, 0, "b1-east")])
    sent += 3
    # Shift b (16-24): li walks B2 but skips the east ramp — missed checkpoint.
    walk(clock, r3, tags, "G002", [(17, 0, 0, "b2-west"), (17, 3, 0, "b2-extinguisher"),
                                   (17, 10, 0, "b2-hydrant")])
    sent += 3
    gw.drain(sent)
    at(clock, 22, 0)
    overdue = gw.desk.check_overdue(lookback=timedelta(hours=22))  # since midnight
    assert gw.desk.check_overdue(lookback=timedelta(hours=22)) == []  # alerted once
    at(clock, 24, 0, 1)
    report = day_report(gw.desk, DAY)

    # --- the taps: cloned and replayed refused; the offline upload arrived late, in order
    refused = {(t.reader, t.seq): t.reason for t in report.refused}
    assert refused == {("r3", 5): "cloned", ("r3", 6): "replayed"}
    assert {a["key"] for a in gw.alerts if a["kind"] == "patrol_tag"} == {
        f"patrol-tag:{CONFIG.checkpoint['b1-booth'].tag}:cloned",
        f"patrol-tag:{CONFIG.checkpoint['b1-booth'].tag}:replayed"}
    offline = [s for r, s in gw.arrived if r == "r2"][:6]
    assert offline == [1, 2, 3, 4, 5, 6]
    assert gw.arrived.index(("r1", 5)) < gw.arrived.index(("r2", 2))  # out of order arrival
    late_upload = next(t for t in report.taps if (t.reader, t.seq) == ("r2", 2))
    assert late_upload.status == "accepted" and late_upload.delay_min == 118
    assert report.seq_gaps == {}

    # --- the rounds, each as it happened
    by = {(r.obligation, r.subject): r for r in report.obligations}
    shift = {r.window.shift: r for r in report.obligations if r.obligation == "guard-round"
             and r.subject in ("zhao", "wang", "li")
             and r.window.start >= MIDNIGHT}
    assert shift["c"].status == "met" and shift["c"].rounds[0].status == "done"
    assert shift["a"].status == "late" and shift["a"].rounds[0].minutes == 45
    assert shift["b"].status == "missed"
    assert shift["b"].rounds[0].missed == ("b2-east",)
    squad = by[("squad-patrol", "chen")]
    assert [r.status for r in squad.rounds] == ["done", "impossible"]
    assert squad.rounds[1].fast_legs[0].from_checkpoint == "b1-pump"
    assert squad.status == "missed" and squad.counted == 1
    assert by[("captain-spot", "zhou")].status == "met"

    # --- the missed guard round was escalated to the squad leader before the shift ended
    assert [(r.obligation, r.subject, r.escalate_to) for r in overdue] == [
        ("guard-round", "li", "chen")]
    assert overdue[0].status == "overdue" and overdue[0].window.label == "2026-05-06 b"
    alert = next(a for a in gw.alerts if a["kind"] == "patrol_overdue")
    assert alert["team"] == "patrol-squad_leader" and "陈班长" in alert["detail"]

    # --- the CSV and the printable page say the same
    rounds = list(csv.DictReader(io.StringIO(rounds_csv(report))))
    assert {row["状态 status"] for row in rounds} >= {
        "完成 done", "逾时完成 late", "未完成 missed", "不可能(过快) impossible"}
    taps = list(csv.DictReader(io.StringIO(taps_csv(report))))
    assert [row["原因 reason"] for row in taps if row["结果 status"] == "拒绝 refused"] == [
        "cloned", "replayed"]
    html = render_html(page(report))
    assert "Refused taps" in html and "<script" not in html

    # --- a redelivered tap is stored once
    again = gw.desk.ingest(r1.buffer[0] if r1.buffer else PatrolTap(
        reader="r1", seq=1, tag_id=CONFIG.checkpoint["b1-ramp"].tag, sun=None, badge="G001",
        reader_time=datetime(2026, 5, 6, 8, 30)), clock.now())
    assert again.duplicate and again.status == "accepted"
