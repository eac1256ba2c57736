"""With the gateway gone the lane decides from its replica, with the gateway's own pure cores.

The test plays the gateway's replica publisher (snapshot in chunks, deltas, capacity on
``lane/{lane}/replica/...``; a snapshot of one chunk may be retained here, so a lane that
starts later still finds it) but never answers a decide request. Mock pins, the in-memory
bus, a manual clock so the fee is exact (no sleeps: each step settles the lane).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from firmware.lane.controller import Verdict
from firmware.lane.devices.display import RecordingDisplay
from gateway.money.pricing import EXAMPLE_TARIFF, SitePricing
from parkguard.clock import ManualClock
from parkguard.core.tariffs import format_yuan, parse_tariff_document, quote
from tests.conftest import SITE_START, TEST_SITE
from tests.lane_harness import MemoryLane
from wire.contract import topics
from wire.contract.chunks import split_snapshot
from wire.contract.messages import (
    CapacityState,
    LevelState,
    ReplicaDelta,
    ReplicaListEntry,
    ReplicaPass,
    ReplicaPrepaid,
    ReplicaSession,
    ReplicaSnapshot,
    ReplicaTariff,
    WireMessage,
)
from wire.memory import MemoryBroker

SITE = TEST_SITE
NOW = SITE_START
EPOCH = "0123456789abcdef"
VISITOR, PASS_CAR, PREPAID, BANNED, STRANGER = (
    "粤B11111", "粤B22222", "粤B33333", "粤B66666", "粤B99999")


def snapshot(version: int = 5) -> ReplicaSnapshot:
    text = EXAMPLE_TARIFF.read_text(encoding="utf-8")
    return ReplicaSnapshot(
        site=SITE, epoch=EPOCH, version=version, taken_at=NOW - timedelta(minutes=1),
        sessions=(
            ReplicaSession(session_id="s-visitor", plate=VISITOR,
                           entry_at=NOW - timedelta(hours=3, minutes=10), access="visitor"),
            ReplicaSession(session_id="s-pass", plate=PASS_CAR,
                           entry_at=NOW - timedelta(hours=5), access="pass", pass_id="P1"),
            ReplicaSession(session_id="s-prepaid", plate=PREPAID,
                           entry_at=NOW - timedelta(hours=2), access="visitor"),
        ),
        passes=(
            ReplicaPass(pass_id="P1", kind="monthly", holder="王*", plates=(PASS_CAR,),
                        valid_from=NOW - timedelta(days=10), valid_until=NOW + timedelta(days=20)),
            ReplicaPass(pass_id="P2", kind="monthly", holder="李*", plates=("粤B44444",),
                        valid_from=NOW - timedelta(days=10), valid_until=NOW + timedelta(days=20)),
        ),
        lists=(ReplicaListEntry(list_name="blacklist", plate=BANNED, reason="fraud"),),
        tariff=ReplicaTariff.of(text, source=str(EXAMPLE_TARIFF)),
        prepaid=(ReplicaPrepaid(session_id="s-prepaid", paid_fen=1_000,
                                grace_until=NOW + timedelta(minutes=10)),),
    )


def capacity(full: bool) -> CapacityState:
    occupied = 100 if full else 3
    return CapacityState(site=SITE, total=100, occupied=occupied, free=100 - occupied,
                         full=full, levels={"B2": LevelState(capacity=100, occupied=occupied,
                                                             full=full)}, ts=NOW)


class Gateway:
    """What the test may do as the gateway: publish replicas; it never answers a decide."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.bus = broker.bus("gateway")
        self.asked: list[dict[str, object]] = []
        self.bus.subscribe(topics.all_lane(SITE, "decide"),
                           lambda _t, p: self.asked.append(json.loads(p)))
        self.bus.start()

    def publish(self, lane: str, part: str, message: WireMessage | bytes, *,
                retain: bool) -> None:
        topic = topics.lane_replica(SITE, lane, part)
        if isinstance(message, ReplicaSnapshot):
            for chunk in split_snapshot(message, max_payload=200_000, snapshot_id="abcdef0123"):
                self.bus.publish_and_wait(topic, chunk, retain=retain)
            return
        self.bus.publish_and_wait(topic, message, retain=retain)


@pytest.fixture
def gateway(memory: MemoryBroker) -> Iterator[Gateway]:
    gw = Gateway(memory)
    yield gw
    gw.bus.stop()


@contextmanager
def lane(memory: MemoryBroker, lane_id: str, direction: str,
         tmp_path: Path) -> Iterator[MemoryLane]:
    with MemoryLane(tmp_path, lane=lane_id, direction=direction,  # type: ignore[arg-type]
                    broker=memory, clock=ManualClock(NOW),
                    display=RecordingDisplay()) as running:
        yield running


def screen(lane: MemoryLane) -> RecordingDisplay:
    shown: RecordingDisplay = lane.controller.screen  # type: ignore[assignment]
    return shown


def offline(lane: MemoryLane, gateway: Gateway, plate: str) -> Verdict:
    """Drive a car up, let the gateway stay silent past the deadline, take the verdict, and
    let the car go through (or back off)."""
    controller = lane.controller
    before, asked = controller.verdicts, len(gateway.asked)
    lane.camera.show(plate)
    lane.pins.arming.drive_high()
    lane.settle()
    assert len(gateway.asked) == asked + 1, "decide request"
    assert controller.verdicts == before, "decided before the deadline"
    lane.step(milliseconds=400)
    assert controller.verdicts == before + 1, "the lane's own verdict"
    verdict = controller.last_verdict
    assert verdict is not None and verdict.decided_by == "lane"
    if verdict.action == "open":
        assert lane.relay_up
        lane.pins.safety.drive_high()
        lane.pins.arming.drive_low()
        lane.pins.safety.drive_low()
        lane.settle()
        assert not lane.relay_up, "barrier down"
    else:
        lane.pins.arming.drive_low()
        lane.settle()
    return verdict


def test_an_entry_lane_alone_refuses_the_blacklist_and_visitors_when_full(
    memory: MemoryBroker, gateway: Gateway, tmp_path: Path
) -> None:
    gateway.publish("in1", "snapshot", snapshot(), retain=True)
    with lane(memory, "in1", "entry", tmp_path) as in1:
        assert in1.node.replica.has_snapshot
        banned = offline(in1, gateway, BANNED)
        assert (banned.action, banned.reason) == ("refuse", "offline_blacklisted")
        assert screen(in1).current == ("禁止入场 请联系管理处",
                                      "Entry refused: please call the office")
        assert offline(in1, gateway, "粤B44444").reason == "offline_pass_entry"
        assert offline(in1, gateway, "粤B55555").reason == "offline_visitor_entry"
        gateway.publish("in1", "capacity", capacity(full=True), retain=True)
        in1.settle()
        assert in1.node.replica.capacity is not None
        full = offline(in1, gateway, "粤B77777")
        assert (full.action, full.reason) == ("refuse", "offline_lot_full")
        assert screen(in1).current == ("车位已满", "Car park full")
        assert offline(in1, gateway, "粤B44444").action == "open"  # pass cars still enter


def test_an_exit_lane_alone_prices_the_stay_as_the_gateway_would(
    memory: MemoryBroker, gateway: Gateway, tmp_path: Path
) -> None:
    gateway.publish("out1", "snapshot", snapshot(), retain=True)
    with lane(memory, "out1", "exit", tmp_path) as out1:
        assert out1.node.replica.has_snapshot
        visitor = offline(out1, gateway, VISITOR)
        left_at = NOW + timedelta(milliseconds=400)
        entered = NOW - timedelta(hours=3, minutes=10)
        document = parse_tariff_document(EXAMPLE_TARIFF.read_text(encoding="utf-8"))
        core = quote(document.book, entry=entered, exit=left_at, plate=VISITOR,
                     calendar=document.calendar, timezone=document.zone).total_fen
        billing = SitePricing.from_file(EXAMPLE_TARIFF).quote(plate=VISITOR, entry=entered,
                                                              exit=left_at).total_fen
        assert core == billing > 0
        # A fee due: the barrier stays down (offline only a 付款码 can take the money).
        assert (visitor.action, visitor.reason, visitor.fee_fen, visitor.session_id) == (
            "refuse", "offline_payment_due", core, "s-visitor")
        assert screen(out1).shown[-2:] == [(
            f"{VISITOR} 停3小时11分 应付{format_yuan(core)}",
            f"Stay 3h 11m: pay {format_yuan(core)} - show pay code"),
            ("欢迎光临", "Welcome")]  # it backed out: its fee leaves the screen with it
        assert screen(out1).qrs[-2] is None  # no pay page to link to offline

        pass_car = offline(out1, gateway, PASS_CAR)
        assert (pass_car.reason, pass_car.fee_fen) == ("offline_pass", 0)
        prepaid = offline(out1, gateway, PREPAID)
        assert (prepaid.reason, prepaid.fee_fen) == ("offline_prepaid", 0)
        assert "一路平安" in screen(out1).shown[-1][0]

        nobody = offline(out1, gateway, STRANGER)
        assert (nobody.action, nobody.reason) == ("refuse", "offline_no_entry_record")
        assert screen(out1).current == ("无入场记录 请按帮助键", "No entry record: press Help")

        passed = out1.events("passed")
        assert [(p["plate"], p["fee_fen"], p["settled"]) for p in passed] == [
            (PASS_CAR, 0, "decision"), (PREPAID, 0, "decision")]  # the visitor backed out
        assert {d["decided_by"] for d in out1.events("decision")} == {"lane"}


def test_deltas_apply_in_order_a_gap_waits_for_a_snapshot_and_the_replica_survives_reboot(
    memory: MemoryBroker, gateway: Gateway, tmp_path: Path
) -> None:
    gateway.publish("out1", "snapshot", snapshot(version=5), retain=True)
    late = ReplicaSession(session_id="s-late", plate="粤B12121", entry_at=NOW - timedelta(hours=1),
                          access="visitor")
    with lane(memory, "out1", "exit", tmp_path) as out1:
        assert out1.node.replica.has_snapshot
        gateway.publish("out1", "delta", ReplicaDelta(site=SITE, epoch=EPOCH, version=6, ts=NOW,
                                                      kind="session_opened", data=late),
                        retain=False)
        out1.settle()
        assert out1.node.replica.version == 6, "delta applied"
        gap = ReplicaDelta(site=SITE, epoch=EPOCH, version=9, ts=NOW, kind="session_opened",
                           data=late.model_copy(update={"session_id": "s-gap",
                                                        "plate": "粤B13131"}))
        gateway.publish("out1", "delta", gap, retain=False)
        out1.settle()
        assert out1.node.replica.waiting_for_snapshot, "gap seen"
        assert out1.node.replica.version == 6
        assert "replica_gap" in out1.faults()
    # The gateway is gone and so is the retained snapshot: the lane still has its replica.
    gateway.publish("out1", "snapshot", b"", retain=True)
    with lane(memory, "out1", "exit", tmp_path) as again:
        assert again.node.replica.version == 6
        verdict = offline(again, gateway, "粤B12121")
        assert (verdict.reason, verdict.session_id) == ("offline_payment_due", "s-late")


def test_a_lane_alone_with_a_full_journal_card_still_decides_and_loses_no_event(
    memory: MemoryBroker, gateway: Gateway, tmp_path: Path
) -> None:
    """A full card (SQLite answers SQLITE_FULL) must not stop the lane: the gateway is
    silent, the lane decides from its replica, and the events it could not journal are held
    and journaled, in order, once there is room, followed by a ``journal_full`` fault."""
    gateway.publish("in1", "snapshot", snapshot(), retain=True)
    with lane(memory, "in1", "entry", tmp_path) as in1:
        journal = in1.node.journal
        with journal._lock:  # what the scenario engine's disk_full fault does
            pages = journal._db.execute("PRAGMA page_count").fetchone()[0]
            journal._db.execute(f"PRAGMA max_page_count={int(pages)}")
        cars = [f"粤B6{n:04d}" for n in range(40)]  # enough events to need new pages
        for plate in cars:
            assert offline(in1, gateway, plate).action == "open"
        assert in1.node.controller.events.journal_failures > 0
        with journal._lock:
            journal._db.execute("PRAGMA max_page_count=4294967294")
        assert offline(in1, gateway, "粤B77777").action == "open"
        in1.settle()
        events = [json.loads(p) for t, p in in1.messages if t.endswith("/event")]
        seqs = sorted({e["seq"] for e in events})
        assert seqs == list(range(1, len(seqs) + 1))  # none lost, no gap
        # sent at once while refused, and again from the journal: one event id per seq
        assert len({(e["seq"], e["event_id"]) for e in events}) == len(seqs)
        journaled = [seq for seq, _id, _sent in in1.node.journal.events()]
        assert journaled == seqs  # every event on the card once there was room
        faults = {e["event_id"]: e for e in events if e["type"] == "fault"}
        assert [f["code"] for f in faults.values()] == ["journal_full"]
