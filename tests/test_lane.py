"""The lane's gate sequence on mock pins, the in-memory bus and a manual clock: safety, odd
cases, the decide deadline. Nothing here sleeps: "it did not happen" is asserted after the
lane has settled (bus, outbox and worker idle) and the clock has been stepped."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.lane_harness import MemoryLane
from wire.contract import topics
from wire.contract.messages import WireMessage

SITE_LANE = "in9"


@pytest.fixture
def lane(tmp_path: Path) -> Iterator[MemoryLane]:
    with MemoryLane(tmp_path, lane=SITE_LANE) as running:
        yield running


def arrive_and_see_the_barrier_rise(lane: MemoryLane) -> None:
    """A known car arrives; nobody answers, so the entry lane opens alone at its deadline."""
    lane.camera.show("粤B12345")
    lane.pins.arming.drive_high()
    lane.settle()
    lane.step(milliseconds=lane.config.timing.decide_deadline_ms)
    assert lane.pins.relay.state, "barrier up"


def test_the_barrier_stays_up_while_a_vehicle_stands_under_it(lane: MemoryLane) -> None:
    arrive_and_see_the_barrier_rise(lane)
    pins = lane.pins
    pins.safety.drive_high()
    pins.arming.drive_low()
    # The car stops under the boom. However long it stands there, the boom stays up.
    for _ in range(5):
        lane.step(minutes=10)
        assert pins.relay.state, "barrier lowered onto a vehicle"
    pins.safety.drive_low()
    lane.settle()
    assert not pins.relay.state, "barrier down once the loop is clear"
    assert "passed" in lane.types()


def test_a_driver_who_backs_out_leaves_the_barrier_closed_and_a_fault_reported(
    lane: MemoryLane,
) -> None:
    arrive_and_see_the_barrier_rise(lane)
    lane.pins.arming.drive_low()  # reverses away without touching the safety loop
    lane.settle()
    assert not lane.pins.relay.state
    assert lane.faults() == ["vehicle_backed_out"]
    assert "passed" not in lane.types()


def test_two_cars_on_one_opening_are_reported_as_a_tailgate(lane: MemoryLane) -> None:
    arrive_and_see_the_barrier_rise(lane)
    pins = lane.pins
    for _ in range(2):  # bumper to bumper: two vehicles cross the safety loop
        pins.safety.drive_high()
        pins.safety.drive_low()
    pins.arming.drive_low()
    lane.settle()
    assert [event["vehicles"] for event in lane.events("tailgate")] == [2]


def test_the_lane_deadline_counts_from_the_request_not_from_when_its_thread_waits(
    lane: MemoryLane, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The request tells the gateway ``ts + deadline_ms``; a lane thread that is late to its
    own wait (a loaded Pi) must not give the gateway longer than that."""
    publish = lane.bus.publish

    def late_after_asking(topic: str, payload: bytes | WireMessage, **kw: object) -> object:
        sent = publish(topic, payload, **kw)  # type: ignore[arg-type]
        if topic == topics.lane_decide(lane.config.site, SITE_LANE):
            lane.clock.advance(timedelta(milliseconds=250))  # descheduled before waiting
        return sent

    monkeypatch.setattr(lane.bus, "publish", late_after_asking)
    lane.camera.show("粤B54321")
    lane.pins.arming.drive_high()
    lane.settle()
    assert lane.controller.last_decide_request is not None
    assert lane.controller.verdicts == 0
    lane.step(milliseconds=60)  # 310 ms after the request's ts
    verdict = lane.controller.last_verdict
    assert verdict is not None and verdict.decided_by == "lane"


def test_with_the_gateway_silent_the_lane_decides_alone_after_its_deadline(
    lane: MemoryLane,
) -> None:
    pins = lane.pins
    lane.camera.show("粤B54321")
    pins.arming.drive_high()
    lane.settle()
    assert "plate_read" in lane.types()
    assert lane.controller.last_decide_request is not None
    # Nobody answers. Before the deadline the barrier stays down ...
    lane.step(milliseconds=200)
    assert not pins.relay.state
    assert lane.controller.verdicts == 0
    # ... and once the lane's clock passes 300 ms it decides alone.
    lane.step(milliseconds=150)
    assert pins.relay.state, "offline opening"
    verdict = lane.controller.last_verdict
    assert verdict is not None
    assert (verdict.decided_by, verdict.reason) == ("lane", "offline_entry")
    assert [d["decided_by"] for d in lane.events("decision")] == ["lane"]
