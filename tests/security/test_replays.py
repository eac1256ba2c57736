"""Replays that must stay harmless: a recorded lane command after the lane restarted, and a
lane that reports the same car coming in again and again.

The lane cases run a real lane node (mock pins, its SQLite journal) on the in-memory broker
and a manual clock; the occupancy case runs the gateway, lanes and the real, locked-down
Mosquitto of the provisioned test site.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from firmware.lane.commands import CommandVerifier
from firmware.lane.config import CommandSettings
from firmware.lane.journal import Journal
from gateway.lanes.capacity import CapacitySettings
from parkguard.clock import ManualClock
from simulator.site import SimulatedSite
from tests.conftest import SITE_START, TEST_SITE
from tests.lane_harness import MemoryLane
from wire.contract import topics
from wire.contract.messages import LaneCommand, Passed
from wire.memory import MemoryBroker

KEY = bytes(range(32))


def open_order(clock: ManualClock, *, nonce: str = "5e" * 16, valid_s: float = 30) -> LaneCommand:
    return LaneCommand(command="open", args={"lane": "in1"}, reason="help button",
                       issuer="guard:0042", nonce=nonce, issued=clock.now(),
                       expires=clock.now() + timedelta(seconds=valid_s)).signed(KEY)


# --- signed lane commands across a restart ------------------------------------------------


def keyed_lane(memory: MemoryBroker, tmp_path: Path, clock: ManualClock) -> MemoryLane:
    """Lane in1 with its journal at ``tmp_path/in1.db``: a second one is the same lane
    after a restart."""
    return MemoryLane(tmp_path, lane="in1", broker=memory, clock=clock,
                      commands=CommandSettings(hmac_key=SecretStr(KEY.hex())))


def test_a_recorded_open_is_refused_after_the_lane_restarted(
    memory: MemoryBroker, tmp_path: Path
) -> None:
    clock = ManualClock(SITE_START)
    order = open_order(clock)
    with memory.bus("gateway") as gateway, keyed_lane(memory, tmp_path, clock) as lane:
        gateway.publish_and_wait(topics.lane_cmd(TEST_SITE, "in1"), order.to_json())
        lane.settle()
        assert lane.relay_up, "the first open is obeyed"
        assert lane.controller.commands_done == 1
    clock.advance(timedelta(seconds=5))  # the lane is back within the order's 30 s

    with memory.bus("attacker-with-a-recording") as replayer, \
            keyed_lane(memory, tmp_path, clock) as restarted:
        assert not restarted.relay_up
        replayer.publish_and_wait(topics.lane_cmd(TEST_SITE, "in1"), order.to_json())
        restarted.settle()
        faults = restarted.events("fault")
        assert [f["code"] for f in faults] == ["command_rejected"]
        assert faults[0]["detail"].startswith("replayed:"), faults[0]["detail"]
        assert order.nonce in faults[0]["detail"]
        assert not restarted.relay_up, "the barrier rose for a replayed order"
        assert restarted.controller.commands_done == 0
        assert not restarted.events("decision")


def test_a_fresh_order_after_the_restart_is_still_obeyed(
    memory: MemoryBroker, tmp_path: Path
) -> None:
    clock = ManualClock(SITE_START)
    with memory.bus("gateway") as gateway:
        with keyed_lane(memory, tmp_path, clock) as lane:
            gateway.publish_and_wait(topics.lane_cmd(TEST_SITE, "in1"),
                                     open_order(clock).to_json())
            lane.settle()
        clock.advance(timedelta(seconds=5))
        with keyed_lane(memory, tmp_path, clock) as restarted:
            gateway.publish_and_wait(topics.lane_cmd(TEST_SITE, "in1"),
                                     open_order(clock, nonce="77" * 16).to_json())
            restarted.settle()
            assert restarted.relay_up and restarted.controller.commands_done == 1
            assert not restarted.events("fault")


def test_a_spent_nonce_stays_spent_when_the_clock_steps_back_after_a_restart(
    tmp_path: Path,
) -> None:
    """A Pi has no RTC: after a reboot its clock may run behind until NTP steps it. A nonce
    the lane already forgot (its order expired) must not become usable again."""
    clock = ManualClock(SITE_START)
    order = open_order(clock)
    journal = Journal(tmp_path / "lane.db")
    verifier = CommandVerifier(KEY, clock, "in1", spent=journal)
    assert verifier.check(order).accepted
    clock.advance(timedelta(minutes=2))
    assert verifier.check(open_order(clock, nonce="01" * 16)).accepted  # forgets the first
    assert verifier.remembered == 1
    journal.close()

    back_in_time = ManualClock(SITE_START + timedelta(seconds=10))
    journal = Journal(tmp_path / "lane.db")
    try:
        again = CommandVerifier(KEY, back_in_time, "in1", spent=journal)
        verdict = again.check(order)
        assert (verdict.accepted, verdict.reason) == (False, "replayed")
    finally:
        journal.close()


def test_an_order_whose_nonce_cannot_be_kept_is_refused(tmp_path: Path) -> None:
    clock = ManualClock(SITE_START)
    journal = Journal(tmp_path / "lane.db")
    verifier = CommandVerifier(KEY, clock, "in1", spent=journal)
    journal.close()  # the card went away
    verdict = verifier.check(open_order(clock))
    assert (verdict.accepted, verdict.reason) == (False, "unrecorded")


# --- a lane that reports the same car coming in again and again ----------------------------


@pytest.mark.integration
def test_entries_replayed_with_fresh_event_ids_count_one_car_and_are_flagged(
    broker: MosquittoBroker, tmp_path: Path, test_site: ProvisionResult,
) -> None:
    """Probe 12: 54 replayed entries of one plate opened 54 sessions and filled the lot."""
    with SimulatedSite(site=TEST_SITE, broker=broker.address, workdir=tmp_path,
                       clock=ManualClock(SITE_START), entry_lanes=("in1",),
                       exit_lanes=("out1",), capacity=CapacitySettings(total=3),
                       lane_keys=test_site.device("gateway").lane_keys) as site:
        assert site.drive("in1", "粤B12345").opened
        site.settle()
        for n in range(54):
            site.clock.advance(timedelta(seconds=7))
            site.replay_journal("in1", Passed(
                event_id=uuid.uuid4().hex, seq=90_000 + n, ts=site.clock.now(), lane="in1",
                direction="entry", plate="粤B12345", correlation_id=uuid.uuid4().hex,
                fee_fen=0))
        capacity = site.gateway.capacity
        assert capacity is not None
        with site.gateway.store.reader() as db:
            opened = db.execute("SELECT count(*) FROM sessions WHERE plate = ? "
                                "AND state = 'open'", ["粤B12345"]).fetchone()[0]
        conflicts = site.gateway.reconciler.open_conflicts()
        assert opened == 55  # every passage the lane reported is kept ...
        assert [c.kind for c in conflicts] == ["entry_while_inside"] * 54  # ... for a guard
        assert site.gateway.service.call(lambda: capacity.state().occupied) == 1
        visitor = site.drive("in1", "粤B22222")  # two spaces are still free
        site.settle()
        assert visitor.opened, visitor.reason
        assert site.gateway.service.call(lambda: capacity.state().occupied) == 2
