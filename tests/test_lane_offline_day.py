"""Acceptance (issue 7): a spell with the broker stopped, 200 cars through the lanes deciding
alone, then the broker back: the gateway holds every event exactly once and flags nothing.

A :class:`~simulator.site.SimulatedSite` (in-process gateway, two entry and two exit lanes on
mock pins, real Mosquitto, real SQLite journals) on a manual clock:

1. online: :data:`INSIDE` cars drive in; the gateway answers and publishes its replica (the
   retained snapshot at start, a ``session_opened`` delta per car) to every lane;
2. the broker is stopped (SIGTERM; persistence on). :data:`INSIDE` cars leave by the exit
   lanes, priced from the exit lanes' replicas (each shows a 付款码 to the lane's scanner:
   journaled, the barrier opens at once, the gateway charges it later), and
   :data:`NEWCOMERS` new cars come in by the entry lanes: 200 passages, every decision
   ``decided_by: "lane"``, ``offline_...``. A lane that knows its own connection is down
   asks nobody (issue 23): each car is decided at once, with the clock standing still, and
   no decide request waits in paho's queue to reach the gateway after the outage;
3. the broker comes back: the lanes' outboxes replay their journals, the gateway ingests;
4. online again: the newcomers leave, the gateway answering (its deltas have told the exit
   lanes about them).

Then every event in the four lanes' journals is in the gateway's ``events`` table exactly
once (and nothing else is), each lane's ``seq`` runs 1..n without a gap, there is no open
conflict (the traffic was consistent: every exit had its entry, nobody entered twice),
every session is closed, and the gateway answered none of the 200 decisions the lanes took
alone (none was asked).
"""

from __future__ import annotations

import itertools
import json
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from parkguard.clock import ManualClock
from simulator.site import SimulatedLane, SimulatedSite
from simulator.traffic import random_plate
from tests.conftest import SITE_START, TEST_SITE
from tests.helpers import eventually, journal_events

pytestmark = pytest.mark.integration

INSIDE = 100
"""Cars that came in online and leave while the broker is down (exit lanes decide)."""
NEWCOMERS = 100
"""Cars that come in while the broker is down (entry lanes decide) and leave online."""
SEED = 20260507
ENTRIES = ("in1", "in2")
EXITS = ("out1", "out2")
BETWEEN_CARS = timedelta(seconds=40)
CODES = itertools.count(1)


def drive_offline(site: SimulatedSite, lane_id: str, plate: str) -> tuple[str, str, int]:
    """One car at a lane cut off from the broker: arrive, take the lane's own verdict (at
    once: the clock stands still, so a lane that waited out its decide deadline would never
    decide), pay a fee due with a 付款码 at the lane's scanner, pass. Returns ("open" if it
    went through, reason, fee)."""
    lane: SimulatedLane = site.lanes[lane_id]
    controller, pins = lane.node.controller, lane.wiring
    before, asked = controller.verdicts, controller.last_decide_request
    lane.camera.show(plate)
    pins.arming.drive_high()
    eventually(lambda: controller.verdicts > before, timeout=30,
               what=f"{lane_id}: a verdict for {plate} without its deadline passing")
    verdict = controller.last_verdict
    assert verdict is not None and verdict.decided_by == "lane", verdict
    assert verdict.wait_ms == 0, verdict
    assert controller.last_decide_request is asked, f"{lane_id} asked with the broker down"
    if verdict.payment_due:  # offline only a 付款码 takes the money: out at once
        lane.scanner.scan(f"13{next(CODES):016d}")  # a WeChat Pay 付款码's shape, each new
    if verdict.action == "open" or verdict.payment_due:
        eventually(lambda: bool(pins.relay.state), what=f"{lane_id} barrier up")
        pins.safety.drive_high()
        pins.arming.drive_low()
        pins.safety.drive_low()
        eventually(lambda: controller.barrier_position == "closed" and not pins.relay.state,
                   what=f"{lane_id} barrier down")
        return "open", verdict.reason, verdict.fee_fen
    pins.arming.drive_low()
    return verdict.action, verdict.reason, verdict.fee_fen


@dataclass
class OfflineDay:
    """What the scenario left behind, read back once for the tests below."""

    plates: list[str]
    offline: list[tuple[str, str, int]]  # (action, reason, fee) of the 200 offline passages
    unsent: int  # events the outage held back in the journals
    decided_online: int
    journaled: dict[str, list[tuple[int, str]]]  # lane -> (seq, event_id) from its journal
    stored: list[tuple[str, int, str]]  # (lane, seq, event_id) in the gateway's events table
    sessions: list[tuple[str, str, int, str | None]]  # plate, state, fee, review
    decided_by: dict[str, int]
    conflicts: list[object]
    gaps: list[object]
    answered_late: int  # lane-alone decisions the gateway also answered (a stale decide)
    debts: tuple[int, int]  # (count, fen) of debts booked
    late_replies: dict[str, int]
    wall_s: float


@pytest.fixture(scope="module")
def offline_day(tmp_path_factory: pytest.TempPathFactory,
                test_site: ProvisionResult) -> Iterator[OfflineDay]:
    workdir = tmp_path_factory.mktemp("offline-day")
    with MosquittoBroker(workdir / "mosquitto", site=test_site) as broker:
        yield _run_offline_day(broker, test_site, workdir)


def _run_offline_day(broker: MosquittoBroker, test_site: ProvisionResult,
                     workdir: Path) -> OfflineDay:
    started = time.monotonic()
    rng = random.Random(SEED)
    plates: list[str] = []
    while len(plates) < INSIDE + NEWCOMERS:
        plate = random_plate(rng)
        if plate not in plates:
            plates.append(plate)
    inside, newcomers = plates[:INSIDE], plates[INSIDE:]
    clock = ManualClock(SITE_START)
    site = SimulatedSite(site=TEST_SITE, broker=broker.address, workdir=workdir, clock=clock,
                         entry_lanes=ENTRIES, exit_lanes=EXITS,
                         lane_keys=test_site.device("gateway").lane_keys)
    offline: list[tuple[str, str, int]] = []
    try:
        site.start()
        # 1. online: cars come in; every lane's replica learns of them.
        for index, plate in enumerate(inside):
            passage = site.drive(ENTRIES[index % 2], plate)
            assert passage.opened, (plate, passage.reason)
            site.settle()
            clock.advance(BETWEEN_CARS)
        for lane in site.lanes.values():
            eventually(lambda lane=lane: lane.node.replica.sessions_inside == INSIDE,  # type: ignore[misc]
                       timeout=10, what=f"{lane.node.config.lane}'s replica holds every car")
        decided_online = sum(lane.node.controller.verdicts for lane in site.lanes.values())

        # 2. the broker goes away; 200 cars pass, every lane deciding from its replica.
        broker.stop()
        for lane in site.lanes.values():
            eventually(lambda lane=lane: not lane.node.bus.connected.is_set(),  # type: ignore[misc]
                       what="lanes see the broker gone")
        clock.advance(timedelta(hours=2))  # the cars inside have stayed long enough to pay
        for index in range(max(INSIDE, NEWCOMERS)):
            if index < INSIDE:
                offline.append(drive_offline(site, EXITS[index % 2], inside[index]))
            if index < NEWCOMERS:
                offline.append(drive_offline(site, ENTRIES[index % 2], newcomers[index]))
            clock.advance(BETWEEN_CARS)
        unsent = sum(lane.node.journal.unsent_count() for lane in site.lanes.values())

        # 3. the broker is back: the journals replay, the gateway ingests.
        broker.start()
        for lane in site.lanes.values():
            eventually(lambda lane=lane: lane.node.journal.unsent_count() == 0,  # type: ignore[misc]
                       timeout=30, what=f"{lane.node.config.lane}'s journal replayed")
        site.settle(timeout=30)

        # 4. online again: the newcomers leave, the gateway answering.
        for lane_id in EXITS:
            lane = site.lanes[lane_id]
            eventually(lambda lane=lane: lane.node.replica.sessions_inside == NEWCOMERS,  # type: ignore[misc]
                       timeout=15, what=f"{lane_id} told of the cars that came in offline")
        clock.advance(timedelta(hours=1))
        for index, plate in enumerate(newcomers):
            lane_id = EXITS[index % 2]
            passage = site.drive(lane_id, plate)
            assert passage.opened, (plate, passage.reason)
            last = site.lanes[lane_id].node.controller.last_verdict
            assert last is not None and last.decided_by == "gateway", (plate, last)
            site.settle()
            clock.advance(BETWEEN_CARS)
        site.settle()
        conflicts: list[object] = list(site.gateway.service.call(
            site.gateway.reconciler.open_conflicts))
        gaps: list[object] = list(site.gateway.store.open_gaps())
        late = {lane_id: lane.node.controller.late_replies for lane_id, lane in site.lanes.items()}
    finally:
        site.stop()

    journaled = {lane: journal_events(workdir / f"lane-{lane}.db") for lane in ENTRIES + EXITS}
    db = sqlite3.connect(f"file:{workdir / 'gateway.db'}?mode=ro", uri=True)
    try:
        stored = [(str(lane), int(seq), str(event_id)) for lane, seq, event_id in db.execute(
            "SELECT lane, seq, event_id FROM events")]
        sessions = [(str(p), str(s), int(f), r) for p, s, f, r in db.execute(
            "SELECT plate, state, fee_fen, review FROM sessions")]
        decided_by = dict(db.execute(
            "SELECT json_extract(payload, '$.decided_by'), count(*) FROM events "
            "WHERE type = 'decision' GROUP BY 1").fetchall())
        alone = [str(row[0]) for row in db.execute(
            "SELECT json_extract(payload, '$.correlation_id') FROM events "
            "WHERE type = 'decision' AND json_extract(payload, '$.decided_by') = 'lane'")]
        answered_late = int(db.execute(
            "SELECT count(*) FROM decisions WHERE correlation_id IN "
            "(SELECT value FROM json_each(?))", [json.dumps(alone)]).fetchone()[0])
        count, fen = db.execute(
            "SELECT count(*), coalesce(sum(amount_fen), 0) FROM debts").fetchone()
    finally:
        db.close()
    return OfflineDay(
        plates=plates, offline=offline, unsent=unsent, decided_online=decided_online,
        journaled=journaled, stored=stored, sessions=sessions, decided_by=decided_by,
        conflicts=conflicts, gaps=gaps, answered_late=answered_late,
        debts=(int(count), int(fen)), late_replies=late, wall_s=time.monotonic() - started)


@pytest.mark.timeout(120)
def test_two_hundred_cars_decided_offline_reach_the_gateway_once_and_nothing_is_flagged(
    offline_day: OfflineDay,
) -> None:
    day = offline_day
    assert len(day.offline) == INSIDE + NEWCOMERS == 200
    assert all(action == "open" for action, _, _ in day.offline), \
        Counter(reason for _, reason, _ in day.offline)
    assert all(reason.startswith("offline_") for _, reason, _ in day.offline)
    assert sum(fee for _, _, fee in day.offline) > 0  # exits priced the stays from the replica
    assert day.unsent > 0  # the outage really held events back
    assert day.decided_online >= INSIDE

    # Every journaled event is in the gateway exactly once, and nothing else is.
    stored_ids = [event_id for _, _, event_id in day.stored]
    journaled_ids = [event_id for events in day.journaled.values() for _, event_id in events]
    assert len(stored_ids) == len(set(stored_ids)) == len(journaled_ids)
    assert set(stored_ids) == set(journaled_ids)
    for lane, events in day.journaled.items():
        assert [seq for seq, _ in events] == list(range(1, len(events) + 1)), lane
        at_gateway = sorted(seq for stored_lane, seq, _ in day.stored if stored_lane == lane)
        assert at_gateway == list(range(1, len(events) + 1)), lane
    assert day.gaps == []
    # Consistent traffic: nothing flagged, everyone in and out exactly once.
    assert day.conflicts == []
    assert Counter(plate for plate, *_ in day.sessions) == Counter(day.plates)
    assert {state for _, state, _, _ in day.sessions} == {"closed"}
    assert day.decided_by.get("lane", 0) == 200
    # Nobody was asked while the broker was down: no decide request waited in a queue to
    # be answered after the outage.
    assert day.answered_late == 0
    assert day.late_replies == dict.fromkeys(ENTRIES + EXITS, 0)
    print(f"\noffline day: {len(stored_ids)} events from 4 journals, each stored once; "
          f"{day.unsent} held back during the outage; decisions {day.decided_by}; "
          f"{day.answered_late} of 200 lane-alone decisions also answered by the gateway; "
          f"debts {day.debts}; fees {sum(f for _, _, f, _ in day.sessions)} fen; "
          f"{day.wall_s:.1f} s")


def test_a_decision_the_lane_took_alone_is_not_replaced_by_a_late_gateway_answer(
    offline_day: OfflineDay,
) -> None:
    assert offline_day.debts == (0, 0)  # every driver paid what the lane asked
    left_offline = [review for _, _, _, review in offline_day.sessions
                    if review and "unreachable" in review]
    others = Counter(review for _, _, _, review in offline_day.sessions
                     if not (review and "unreachable" in review))
    assert len(left_offline) == INSIDE, others  # the exits the lanes decided alone say so
