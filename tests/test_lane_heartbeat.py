"""The lane's state heartbeat (issue 24): a quiet lane repeats its retained state at least
every ``[timing] state_heartbeat_s`` on its own clock, word for word, so the control room
can tell a quiet lane from a silent one; the gateway takes a repeat as "heard" only (no
replica snapshot, no row); and the live view (``/api/lanes``, ``[web] lane_stale_s`` 35 s by
default) keeps a beating lane fresh through a quiet hour and greys one whose heartbeats
stopped. Real Mosquitto, gateway and lane nodes for the live view; every wait of time is a
step of the manual clock, never a sleep.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from firmware.lane.config import LaneTiming
from gateway.web import WebSettings, create_web_app
from gateway.web.lanes import LaneBoard
from simulator.live import LiveSettings, LiveTraffic
from simulator.site import SimulatedSite
from tests.helpers import eventually
from tests.lane_harness import MemoryLane
from tests.test_web_auth import add_people, login

HEARTBEAT = timedelta(seconds=10)


def states(lane: MemoryLane) -> list[bytes]:
    return lane.published("/state")


# --- the lane ---------------------------------------------------------------------------------


def test_a_quiet_lane_repeats_its_state_word_for_word_every_heartbeat(tmp_path: Path) -> None:
    with MemoryLane(tmp_path) as lane:
        first = states(lane)
        assert len(first) == 1  # said online on connect
        for _ in range(24):  # two quiet minutes in 5 s steps
            lane.step(seconds=5)
        said = states(lane)
        assert len(said) == 1 + 12 and set(said) == {first[0]}  # same bytes, same ts
        assert lane.controller.status.beats == 12
        assert lane.types() == []  # a heartbeat is no event: nothing journaled, nothing sent


def test_a_long_jump_of_the_clock_brings_one_heartbeat_not_a_burst(tmp_path: Path) -> None:
    with MemoryLane(tmp_path) as lane:
        lane.step(hours=1)
        assert len(states(lane)) == 2
        lane.step(seconds=9)
        assert len(states(lane)) == 2  # the next one is due 10 s after the last
        lane.step(seconds=1)
        assert len(states(lane)) == 3


def test_the_heartbeat_is_configurable_within_bounds(tmp_path: Path) -> None:
    with MemoryLane(tmp_path, timing=LaneTiming(state_heartbeat_s=30)) as lane:
        for _ in range(12):  # a minute in 5 s steps
            lane.step(seconds=5)
        assert len(states(lane)) == 1 + 2
    for bad in (0, 0.5, 61):
        with pytest.raises(ValidationError, match="state_heartbeat_s"):
            LaneTiming(state_heartbeat_s=bad)


def test_a_change_restarts_the_heartbeat_and_goes_out_freshly_stamped(tmp_path: Path) -> None:
    with MemoryLane(tmp_path) as lane:
        lane.step(seconds=6)
        lane.controller.status.barrier("open")  # nobody published it (a lost update)
        lane.step(seconds=4)  # the heartbeat says it, with a new stamp
        said = states(lane)
        assert len(said) == 2 and said[0] != said[1] and b'"barrier":"open"' in said[1]
        assert lane.controller.status.beats == 0  # a fresh state, not a repeat
        lane.step(seconds=10)
        assert states(lane)[-1] == said[1]


def test_a_lane_cut_off_from_the_broker_does_not_spin_or_queue_heartbeats(
        tmp_path: Path) -> None:
    with MemoryLane(tmp_path) as lane:
        lane.bus.drop()
        for _ in range(6):
            lane.clock.advance(timedelta(seconds=10))
            lane.controller.wait_idle()  # it blocks again: a skipped beat moves on too
        assert lane.controller.status.beats == 0
        due = lane.controller.status.next_beat()
        assert due is not None and due > lane.clock.now()


def test_a_lane_that_started_without_the_broker_beats_once_it_is_reached(
        tmp_path: Path) -> None:
    lane = MemoryLane(tmp_path)
    lane.watcher.start()
    lane.controller.start()  # the bus is not up: nothing said, the worker waits
    try:
        lane.controller.wait_idle()
        assert lane.controller.status.next_beat() is None and states(lane) == []
        lane.bus.start()  # reached: the connect says the state, the worker learns of it
        lane.step(seconds=10)
        assert len(states(lane)) == 2 and lane.controller.status.beats == 1
    finally:
        lane.__exit__()


# --- the gateway and the live view, on real Mosquitto -------------------------------------------


@pytest.fixture
def live(site: SimulatedSite) -> Iterator[tuple[TestClient, LaneBoard]]:
    add_people(site.gateway)
    web = create_web_app(site.gateway, settings=WebSettings(), clock=site.clock)
    with TestClient(web) as client:
        assert login(client, "gina") == 303
        yield client, web.state.web.board


def _heard_latest(site: SimulatedSite, board: LaneBoard, lanes: tuple[str, ...]) -> None:
    """Wait until the board heard what each lane last said (its heartbeat, if one was due):
    the lane's worker is idle again, so it has handed its message to the broker."""
    for name in lanes:
        controller = site.lanes[name].node.controller
        controller.wait_idle()
        due = controller.status.next_beat()
        if due is None:  # nothing said since it connected (heard at start)
            continue
        said = due - HEARTBEAT

        def heard(name: str = name, said: datetime = said) -> bool:
            return board.heard().get(name, said - HEARTBEAT) >= said

        eventually(heard, timeout=10, what=f"{name}'s heartbeat at the dashboard")


def silence(site: SimulatedSite, lane: str) -> None:
    """Stop ``lane``'s worker with its connection up: no goodbye, no Last Will, and no more
    heartbeats (a hung lane, or one whose messages stopped before the broker noticed)."""
    controller = site.lanes[lane].node.controller
    controller.waiter.stop()
    worker = controller._worker
    assert worker is not None
    worker.join(timeout=10)
    assert not worker.is_alive()


def _liveness(client: TestClient) -> dict[str, dict[str, object]]:
    answer = client.get("/api/lanes").json()
    assert answer["bus_connected"]
    return {lane["lane"]: lane["liveness"] for lane in answer["lanes"]}


def _rows(site: SimulatedSite) -> int:
    """Every row in the gateway's database (read on its worker, which owns the connection)."""
    db = site.gateway.store.db

    def count() -> int:
        return sum(db.table(table).count for table in db.table_names())

    return site.gateway.service.call(count)


@pytest.mark.integration
def test_a_beating_lane_stays_fresh_through_a_quiet_hour_and_writes_nothing(
        site: SimulatedSite, live: tuple[TestClient, LaneBoard]) -> None:
    client, board = live
    lanes = tuple(site.lanes)
    _heard_latest(site, board, lanes)
    rows, chunks = _rows(site), site.gateway.replicas.chunks_sent
    for step in range(1, 721):  # 3 a.m.: an hour with no car, in 5 s steps
        site.clock.advance(timedelta(seconds=5))
        _heard_latest(site, board, lanes)
        seen = _liveness(client)
        for name in lanes:
            assert not seen[name]["stale"], (step, name, seen[name])
            age = seen[name]["age_s"]
            assert isinstance(age, int) and age < HEARTBEAT.total_seconds(), (step, name, age)
    beats = {name: site.lanes[name].node.controller.status.beats for name in lanes}
    assert all(count >= 359 for count in beats.values()), beats
    site.gateway.service.wait_idle()
    assert site.gateway.replicas.chunks_sent == chunks  # no snapshot per heartbeat
    assert _rows(site) == rows  # no event, audit or health row per heartbeat


@pytest.mark.integration
def test_a_lane_whose_heartbeats_stop_turns_stale_after_lane_stale_s(
        site: SimulatedSite, live: tuple[TestClient, LaneBoard]) -> None:
    client, board = live
    _heard_latest(site, board, ("in1", "out1"))
    silence(site, "in1")
    for _ in range(7):  # 35 s: not yet
        site.clock.advance(timedelta(seconds=5))
        _heard_latest(site, board, ("out1",))
    seen = _liveness(client)
    assert seen["in1"]["age_s"] == 35 and not seen["in1"]["stale"]
    site.clock.advance(timedelta(seconds=5))
    _heard_latest(site, board, ("out1",))
    seen = _liveness(client)
    assert seen["in1"]["stale"] and seen["in1"]["age_s"] == 40
    assert "lane silent" in str(seen["in1"]["why"])
    assert seen["in1"]["seen"] == "40 秒前 last seen 40 s ago"
    assert not seen["out1"]["stale"]  # the clock moved for both: out1 kept beating


@pytest.mark.integration
def test_the_served_demos_live_traffic_keeps_its_lanes_fresh(
        site: SimulatedSite, live: tuple[TestClient, LaneBoard]) -> None:
    """``parkguard demo --serve`` (simulator/live.py): the site's clock jumps 60 s per car
    while it fills, then 8 s per real 8 s; lanes beat on that clock, so with the default
    35 s none turns grey, the one that sees no car included."""
    client, board = live
    lanes = tuple(site.lanes)
    traffic = LiveTraffic(site, LiveSettings(fewest=3, most=4, seed=3))
    traffic.fill()
    for step in range(20):
        if step:
            traffic.step(8.0)
        _heard_latest(site, board, lanes)
        seen = _liveness(client)
        assert not any(seen[name]["stale"] for name in lanes), (step, seen)
    assert traffic.moves >= 20
