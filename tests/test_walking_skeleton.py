"""The walking skeleton's acceptance: one car in and out through the real broker and SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from broker.runner import MosquittoBroker
from parkguard.clock import ManualClock
from simulator.site import SimulatedSite
from tests.conftest import TEST_SITE
from tests.helpers import Recorder, eventually
from wire.contract import topics
from wire.contract.messages import LaneState
from wire.mqtt import MqttBus

pytestmark = pytest.mark.integration

SITE = TEST_SITE
PLATE = "粤B12345"
TEN_O_CLOCK = datetime(2026, 5, 6, 10, 0, tzinfo=UTC)

# Which wire each BCM number is on, from the default pin map.
PIN_ROLES = {"GPIO17": "arming", "GPIO27": "safety", "GPIO22": "relay"}

Timeline = list[tuple[str, str, bool]]


def recording_factory(lane: str, timeline: Timeline) -> MockFactory:
    """A mock board whose pins write every level change, in order, to one shared timeline."""

    class RecordingPin(MockPin):  # type: ignore[misc]
        def _change_state(self, value: bool) -> bool:
            changed: bool = super()._change_state(value)
            if changed:
                timeline.append((lane, PIN_ROLES.get(self.info.name, "?"), value))
            return changed

    return MockFactory(pin_class=RecordingPin)


@pytest.fixture
def timeline() -> Timeline:
    return []


@pytest.fixture
def site(broker: MosquittoBroker, tmp_path: Path, timeline: Timeline) -> Iterator[SimulatedSite]:
    clock = ManualClock(TEN_O_CLOCK)
    with SimulatedSite(
        site=SITE, broker=broker.address, workdir=tmp_path, clock=clock,
        entry_lanes=("in1",), exit_lanes=("out1",),
        pin_factory=lambda lane: recording_factory(lane, timeline),
    ) as running:
        yield running


def transitions(timeline: Timeline, lane: str) -> list[tuple[str, bool]]:
    return [(role, value) for who, role, value in timeline if who == lane]


def assert_barrier_closed_only_after_safety_cleared(steps: list[tuple[str, bool]]) -> None:
    relay_up = steps.index(("relay", True))
    relay_down = steps.index(("relay", False))
    safety_on = steps.index(("safety", True))
    safety_off = steps.index(("safety", False))
    assert steps.index(("arming", True)) < relay_up, steps
    assert relay_up < safety_on < safety_off < relay_down, steps


def test_a_car_enters_at_ten_and_leaves_at_half_past_eleven_paying_the_tariff(
    site: SimulatedSite, timeline: Timeline
) -> None:
    entry = site.drive("in1", PLATE)
    site.settle()
    site.clock.advance(timedelta(hours=1, minutes=30))
    exit_ = site.drive("out1", PLATE)
    site.settle()

    assert entry.opened and exit_.opened
    # the mall tariff by day: 15 min free, first hour 500 fen, then 200 fen per started 30 min
    assert exit_.fee_fen == 700
    for lane in ("in1", "out1"):
        assert_barrier_closed_only_after_safety_cleared(transitions(timeline, lane))

    with site.gateway.store.reader() as db:
        rows = list(db.query("SELECT * FROM sessions"))
    assert len(rows) == 1
    session = rows[0]
    assert session["plate"] == PLATE
    assert session["state"] == "closed"
    assert session["fee_fen"] == 700
    assert session["entry_at"] == "2026-05-06T10:00:00.000Z"
    assert session["exit_at"] == "2026-05-06T11:30:00.000Z"
    assert (session["entry_lane"], session["exit_lane"]) == ("in1", "out1")


def test_the_lane_state_is_retained_online_and_its_last_will_says_offline(
    site: SimulatedSite, broker: MosquittoBroker
) -> None:
    state_topic = topics.lane_state(SITE, "in1")
    with Recorder(broker, state_topic, device="monitor-watch1") as watcher:
        # A client that joins later still learns the lane is online: the state is retained.
        eventually(lambda: bool(watcher.payloads()), what="retained lane state")
        first = LaneState.from_json(watcher.payloads()[0])
        assert first.online and first.lane == "in1" and first.direction == "entry"

        lane_bus = site.lanes["in1"].node.bus
        assert isinstance(lane_bus, MqttBus)  # the real broker publishes the Last Will
        lane_bus.drop()  # the lane's connection dies without a goodbye

        def offline_seen() -> bool:
            return any(not LaneState.from_json(p).online for p in watcher.payloads())

        eventually(offline_seen, timeout=10, what="the lane's Last Will")
    with Recorder(broker, state_topic, device="monitor-watch2") as later:
        eventually(lambda: bool(later.payloads()), what="retained offline state")
        assert LaneState.from_json(later.payloads()[-1]).online is False


def test_a_clean_lane_shutdown_leaves_a_retained_offline_state(
    site: SimulatedSite, broker: MosquittoBroker
) -> None:
    site.lanes["out1"].node.controller.stop()
    with Recorder(broker, topics.lane_state(SITE, "out1"), device="monitor-watch1") as reader:
        eventually(lambda: bool(reader.payloads()), what="retained state")
        assert LaneState.from_json(reader.payloads()[-1]).online is False


def test_a_car_without_an_entry_record_is_refused_at_the_exit(site: SimulatedSite) -> None:
    passage = site.drive("out1", "粤B99999")
    assert not passage.opened
    assert passage.reason == "no_entry_record"
    assert not site.lanes["out1"].wiring.relay.state


def test_the_same_event_delivered_twice_is_stored_once(
    site: SimulatedSite, broker: MosquittoBroker
) -> None:
    site.drive("in1", PLATE)
    site.settle()
    with site.gateway.store.reader() as db:
        stored: list[dict[str, Any]] = list(db.query(
            "SELECT payload FROM events WHERE type = 'passed'"))
    assert len(stored) == 1
    payload = stored[0]["payload"].encode()
    # The lane's own connection sends it again, as a lane does after a reconnect.
    site.lanes["in1"].node.bus.publish_and_wait(topics.lane_event(SITE, "in1"), payload)
    eventually(lambda: site.gateway.service.duplicates == 1, what="duplicate to be seen")
    site.gateway.service.wait_idle()
    assert site.gateway.store.count("sessions") == 1
    assert site.gateway.store.count("events", "type = 'passed'") == 1
