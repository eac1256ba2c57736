"""The lane's gate sequence on mock pins and the real broker: safety, odd cases, offline."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from gpiozero.pins.mock import MockFactory

from broker.runner import MosquittoBroker
from firmware.lane.config import LaneConfig
from firmware.lane.node import LaneNode
from parkguard.clock import ManualClock
from simulator.camera import GroundTruthReader, SimulatedCamera
from simulator.driver import SimulatedLaneWiring
from simulator.site import SimulatedSite, settings_of
from tests.conftest import SITE_START, TEST_SITE
from tests.helpers import Recorder, eventually, give_the_lane_time_to_misbehave
from wire.contract import topics

pytestmark = pytest.mark.integration

SITE = TEST_SITE
START = SITE_START



@pytest.fixture
def events(broker: MosquittoBroker) -> Iterator[Recorder]:
    with Recorder(broker, topics.all_lane(SITE, "event"), device="monitor-watch1") as recorder:
        yield recorder


def arrive_and_see_the_barrier_rise(site: SimulatedSite, lane_id: str) -> SimulatedLaneWiring:
    lane = site.lanes[lane_id]
    lane.camera.show("粤B12345")
    lane.wiring.arming.drive_high()
    eventually(lambda: bool(lane.wiring.relay.state), what="barrier up")
    return lane.wiring


def event_types(recorder: Recorder) -> list[str]:
    return [json.loads(p)["type"] for p in recorder.payloads()]


def test_the_barrier_stays_up_while_a_vehicle_stands_under_it(
    site: SimulatedSite, events: Recorder
) -> None:
    pins = arrive_and_see_the_barrier_rise(site, "in1")
    pins.safety.drive_high()
    pins.arming.drive_low()
    # The car stops under the boom. However long it stands there, the boom stays up.
    for _ in range(5):
        site.clock.advance(timedelta(minutes=10))
        give_the_lane_time_to_misbehave()
        assert pins.relay.state, "barrier lowered onto a vehicle"
    pins.safety.drive_low()
    eventually(lambda: not pins.relay.state, what="barrier down once the loop is clear")
    eventually(lambda: "passed" in event_types(events), what="passed event")


def test_a_driver_who_backs_out_leaves_the_barrier_closed_and_a_fault_reported(
    site: SimulatedSite, events: Recorder
) -> None:
    pins = arrive_and_see_the_barrier_rise(site, "in1")
    pins.arming.drive_low()  # reverses away without touching the safety loop
    eventually(lambda: not pins.relay.state, what="barrier down")
    eventually(lambda: "fault" in event_types(events), what="fault event")
    fault = next(json.loads(p) for p in events.payloads() if json.loads(p)["type"] == "fault")
    assert fault["code"] == "vehicle_backed_out"
    assert "passed" not in event_types(events)


def test_two_cars_on_one_opening_are_reported_as_a_tailgate(
    site: SimulatedSite, events: Recorder
) -> None:
    pins = arrive_and_see_the_barrier_rise(site, "in1")
    for _ in range(2):  # bumper to bumper: two vehicles cross the safety loop
        pins.safety.drive_high()
        pins.safety.drive_low()
    pins.arming.drive_low()
    eventually(lambda: "tailgate" in event_types(events), what="tailgate event")
    tailgate = next(json.loads(p) for p in events.payloads()
                    if json.loads(p)["type"] == "tailgate")
    assert tailgate["vehicles"] == 2


def test_the_lane_deadline_counts_from_the_request_not_from_when_its_thread_waits(
    broker: MosquittoBroker, events: Recorder, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The request tells the gateway ``ts + deadline_ms``; a lane thread that is late to its
    own wait (a loaded Pi) must not give the gateway longer than that."""
    clock = ManualClock(START)
    config = LaneConfig(site=SITE, lane="in9", direction="entry",
                        broker=settings_of(broker.address("lane-in9")))
    factory = MockFactory()
    camera = SimulatedCamera(clock=clock)
    with LaneNode(config, clock=clock, camera=camera, reader=GroundTruthReader(),
                  pin_factory=factory) as node:
        publish = node.bus.publish

        def late_after_asking(topic: str, payload: object, **kw: object) -> object:
            sent = publish(topic, payload, **kw)  # type: ignore[arg-type]
            if topic == topics.lane_decide(SITE, "in9"):
                clock.advance(timedelta(milliseconds=250))  # descheduled before waiting
            return sent

        monkeypatch.setattr(node.bus, "publish", late_after_asking)
        camera.show("粤B54321")
        SimulatedLaneWiring(config, factory).arming.drive_high()
        eventually(lambda: node.controller.last_decide_request is not None, what="decide request")
        clock.advance(timedelta(milliseconds=60))  # 310 ms after the request's ts
        eventually(lambda: node.controller.verdicts == 1, what="the lane deciding alone")
        verdict = node.controller.last_verdict
        assert verdict is not None and verdict.decided_by == "lane"


def test_with_the_gateway_silent_the_lane_decides_alone_after_its_deadline(
    broker: MosquittoBroker, events: Recorder
) -> None:
    clock = ManualClock(START)
    config = LaneConfig(site=SITE, lane="in9", direction="entry",
                        broker=settings_of(broker.address("lane-in9")))
    factory = MockFactory()
    camera = SimulatedCamera(clock=clock)
    with LaneNode(config, clock=clock, camera=camera, reader=GroundTruthReader(),
                  pin_factory=factory) as node:
        pins = SimulatedLaneWiring(config, factory)
        camera.show("粤B54321")
        pins.arming.drive_high()
        eventually(lambda: "plate_read" in event_types(events), what="plate read")
        # The deadline counts from the request's ts: advance only once the lane has asked.
        eventually(lambda: node.controller.last_decide_request is not None, what="decide request")
        # Nobody answers. Before the deadline the barrier stays down ...
        clock.advance(timedelta(milliseconds=200))
        give_the_lane_time_to_misbehave()
        assert not pins.relay.state
        assert node.controller.verdicts == 0
        # ... and once the lane's clock passes 300 ms it decides alone.
        clock.advance(timedelta(milliseconds=150))
        eventually(lambda: bool(pins.relay.state), what="offline opening")
        verdict = node.controller.last_verdict
        assert verdict is not None
        assert (verdict.decided_by, verdict.reason) == ("lane", "offline_entry")
        eventually(lambda: "decision" in event_types(events), what="decision event")
        decision = next(json.loads(p) for p in events.payloads()
                        if json.loads(p)["type"] == "decision")
        assert decision["decided_by"] == "lane"
