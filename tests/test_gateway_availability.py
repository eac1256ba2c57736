"""The gateway's retained ``gateway/availability`` (issue 23): a lane that knows the gateway is
gone decides from its replica at once, asks again when it is back, and decides a car that
was waiting at the change exactly once.

With the real Mosquitto (the provisioned test site, its ACLs) and the real gateway: its
connection dies without a goodbye (the broker's Last Will says ``offline``), it stops
cleanly (it says ``offline`` itself), it comes back (``online``). The lanes run on a manual
clock that the tests never move while a car is deciding: a lane that waited out its decide
deadline would never decide, so a verdict at all proves it did not wait. A lane cut off from
the broker itself (the broker stopped) decides the same way, and releases a car that was
waiting when its connection dropped. The edge cases of the lane's side (a cleared or foreign
payload, a reply after ``offline``, a reply after the lane's own connection dropped) run on
the in-memory bus.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.runner import MosquittoBroker
from firmware.lane.events import Verdict
from gateway.app import GatewayApp
from gateway.runtime.inbox import Job
from parkguard.clock import ManualClock
from parkguard.errors import ContractError
from simulator.site import SimulatedLane, SimulatedSite
from tests.conftest import SITE_START, TEST_SITE
from tests.helpers import Recorder, eventually
from tests.lane_harness import MemoryLane
from wire.contract import topics
from wire.contract.messages import DecideReply, GatewayAvailability, decode
from wire.memory import MemoryBroker, MemoryBus
from wire.mqtt import MqttBus

WAIT_S = 30.0  # bound on waits for what must happen (they return as soon as it does)


def availability(state: str, site: str = TEST_SITE) -> bytes:
    return GatewayAvailability.model_validate(
        {"site": site, "state": state, "ts": SITE_START}).to_json()


# The contract and the ACL -------------------------------------------------------------------


def test_the_topic_is_in_the_tree_and_a_payload_for_another_site_is_refused() -> None:
    topic = topics.gateway_availability("mall-b2")
    assert topic == "parkguard/v1/mall-b2/gateway/availability"
    assert topics.parse_topic(topic).kind == "gateway_availability"
    assert decode(topic, availability("offline", "mall-b2")) == GatewayAvailability(
        site="mall-b2", state="offline", ts=SITE_START)
    with pytest.raises(ContractError, match="site"):
        decode(topic, availability("offline", "other"))
    with pytest.raises(ContractError, match="state"):
        decode(topic, json.dumps({"v": 1, "site": "mall-b2", "state": "down",
                                  "ts": "2026-05-06T02:00:00.000Z"}))


def test_only_the_gateway_may_say_it_and_lanes_may_hear_it(broker: MosquittoBroker) -> None:
    """A lane that could publish ``offline`` would make every lane stop asking."""
    topic = topics.gateway_availability(TEST_SITE)
    with Recorder(broker, topic, device="lane-out1") as lane_heard:
        with MqttBus(broker.address("lane-in1"), client_id="lane-in1") as liar:
            liar.publish_and_wait(topic, availability("offline"), retain=True)  # denied
        with MqttBus(broker.address("gateway"), client_id="gateway") as gateway:
            gateway.publish_and_wait(topic, availability("online"), retain=True)
        eventually(lambda: lane_heard.payloads() != [], timeout=WAIT_S, what="the gateway")
        assert [json.loads(p)["state"] for p in lane_heard.payloads()] == ["online"]


# With the real gateway --------------------------------------------------------------------


def arrive(lane: SimulatedLane, plate: str) -> None:
    lane.camera.show(plate)
    lane.wiring.arming.drive_high()


def pass_through(lane: SimulatedLane) -> None:
    """The car that was let go drives over the safety loop; the barrier comes down."""
    controller, pins = lane.node.controller, lane.wiring
    eventually(lambda: bool(pins.relay.state), timeout=WAIT_S, what="barrier up")
    pins.safety.drive_high()
    pins.arming.drive_low()
    pins.safety.drive_low()
    eventually(lambda: controller.barrier_position == "closed" and not pins.relay.state,
               timeout=WAIT_S, what="barrier down")


def decided(lane: SimulatedLane, before: int) -> Verdict:
    """The verdict for the car at ``lane``, with the clock standing still."""
    controller = lane.node.controller
    eventually(lambda: controller.verdicts > before, timeout=WAIT_S,
               what=f"{controller.lane}: a verdict")
    verdict = controller.last_verdict
    assert verdict is not None
    return verdict


def drive(lane: SimulatedLane, plate: str) -> Verdict:
    before = lane.node.controller.verdicts
    arrive(lane, plate)
    verdict = decided(lane, before)
    assert verdict.action == "open", verdict
    pass_through(lane)
    return verdict


def gateway_heard(site: SimulatedSite, state: str) -> None:
    for lane in site.lanes.values():
        eventually(lambda lane=lane: lane.node.controller.gateway_availability == state,  # type: ignore[misc]
                   timeout=WAIT_S, what=f"{lane.node.config.lane} hears the gateway {state}")


def restart_gateway(site: SimulatedSite) -> None:
    """The gateway process comes back on the same database (the old one is already gone)."""
    site.gateway.stop()
    site.gateway = GatewayApp(site.gateway_config, clock=site.clock, allow_simulated=True)
    site.gateway.start()


def decision_events(lane: SimulatedLane, correlation_id: str) -> list[dict[str, object]]:
    """The ``decision`` events the lane journaled for one car."""
    path = lane.node.config.journal_path()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT payload FROM events WHERE type = 'decision'").fetchall()
    finally:
        db.close()
    found = [json.loads(payload) for (payload,) in rows]
    return [d for d in found if d["correlation_id"] == correlation_id]


def car_waiting_on_a_hung_gateway(site: SimulatedSite, plate: str
                                  ) -> tuple[SimulatedLane, int, threading.Event]:
    """A car at entry lane in1 has asked and waits: the gateway's worker is stuck, so the
    request queues unanswered (the clock never reaches the deadline). Returns the lane, its
    verdict count before the car, and the event that frees the worker."""
    entry = site.lanes["in1"]
    controller = entry.node.controller
    gateway_heard(site, "online")
    hung, release = threading.Event(), threading.Event()

    def hang() -> None:
        hung.set()
        release.wait(WAIT_S)

    site.gateway.inbox.put(Job.of(hang))
    assert hung.wait(WAIT_S)
    before = controller.verdicts
    arrive(entry, plate)
    eventually(lambda: controller.last_decide_request is not None
               and controller.last_decide_request.plate == plate, timeout=WAIT_S,
               what="the decide request")
    controller.wait_idle(WAIT_S)
    assert controller.verdicts == before
    return entry, before, release


def test_the_last_will_stops_the_asking_and_the_gateway_back_starts_it_again(
    site: SimulatedSite,
) -> None:
    entry, exit_ = site.lanes["in1"], site.lanes["out1"]
    gateway_heard(site, "online")
    assert drive(entry, "粤B10001").decided_by == "gateway"
    site.settle()
    eventually(lambda: exit_.node.replica.sessions_inside == 1, timeout=WAIT_S,
               what="the exit lane's replica holds the car")

    site.gateway.bus.drop()  # type: ignore[attr-defined]  # the connection dies, no goodbye
    gateway_heard(site, "offline")
    asked = exit_.node.controller.last_decide_request
    verdict = drive(exit_, "粤B10001")  # the clock stands still: no deadline could pass
    assert (verdict.decided_by, verdict.reason, verdict.wait_ms) == ("lane", "offline_free", 0)
    assert exit_.node.controller.last_decide_request is asked, "asked a gateway that is gone"
    assert drive(entry, "粤B10002").reason == "offline_visitor_entry"

    restart_gateway(site)
    gateway_heard(site, "online")
    emitted = sum(lane.node.controller.events_emitted for lane in site.lanes.values())
    eventually(lambda: site.gateway.store.count("events") >= emitted, timeout=WAIT_S,
               what="the journaled offline passages at the new gateway")
    verdict = drive(entry, "粤B10003")
    assert verdict.decided_by == "gateway", verdict
    assert entry.node.controller.last_decide_request is not None
    assert entry.node.controller.last_decide_request.plate == "粤B10003"


def test_a_car_waiting_for_the_gateway_when_it_dies_is_decided_once_from_the_replica(
    site: SimulatedSite,
) -> None:
    entry, before, release = car_waiting_on_a_hung_gateway(site, "粤B20001")
    controller = entry.node.controller

    site.gateway.bus.drop()  # type: ignore[attr-defined]
    verdict = decided(entry, before)
    assert (verdict.decided_by, verdict.reason) == ("lane", "offline_visitor_entry")
    pass_through(entry)
    request = controller.last_decide_request
    assert request is not None

    release.set()  # the old gateway answers into a dead connection; the new one answers the
    restart_gateway(site)  # request the broker kept for it, long after the lane decided
    gateway_heard(site, "online")
    eventually(lambda: controller.late_replies >= 1, timeout=WAIT_S, what="the late reply")
    controller.wait_idle(WAIT_S)
    assert controller.verdicts == before + 1
    assert [d["decided_by"] for d in decision_events(entry, request.correlation_id)] == ["lane"]


def test_a_lane_cut_off_from_the_broker_decides_at_once_and_a_waiting_car_is_decided_once(
    site: SimulatedSite, broker: MosquittoBroker,
) -> None:
    entry, before, release = car_waiting_on_a_hung_gateway(site, "粤B60001")
    controller = entry.node.controller
    waiting = controller.last_decide_request
    assert waiting is not None

    broker.stop()  # the lane's own connection goes: the waiting car is released at once
    verdict = decided(entry, before)
    assert (verdict.decided_by, verdict.reason) == ("lane", "offline_visitor_entry")
    # Mosquitto, stopping, may first send the gateway's Last Will, which releases the car
    # too; the lane's own disconnect can come a moment after (a loaded run saw it still up)
    eventually(lambda: not entry.node.bus.connected.is_set(), timeout=WAIT_S,
               what="the lane to see its own connection gone")
    assert controller.gateway_availability is None  # forgotten with the connection
    pass_through(entry)

    # The next car, broker still down: decided at once, nobody asked.
    verdict = drive(entry, "粤B60002")
    assert (verdict.decided_by, verdict.reason, verdict.wait_ms) == (
        "lane", "offline_visitor_entry", 0)
    assert controller.last_decide_request is waiting, "asked through a dead connection"

    release.set()
    broker.start()  # back: the retained state comes again and the lane asks again
    gateway_heard(site, "online")
    emitted = sum(lane.node.controller.events_emitted for lane in site.lanes.values())
    eventually(lambda: site.gateway.store.count("events") >= emitted, timeout=WAIT_S,
               what="the journaled offline passages at the gateway")
    verdict = drive(entry, "粤B60003")
    assert verdict.decided_by == "gateway", verdict
    controller.wait_idle(WAIT_S)
    assert controller.verdicts == before + 3
    assert [d["decided_by"] for d in decision_events(entry, waiting.correlation_id)] == ["lane"]


def test_a_clean_stop_says_offline_and_a_start_says_online(
    site: SimulatedSite, broker: MosquittoBroker,
) -> None:
    topic = topics.gateway_availability(TEST_SITE)
    with Recorder(broker, topic, device="monitor-watch1") as watcher:
        gateway_heard(site, "online")
        # the watcher's subscription is answered with the retained state before anything moves
        eventually(lambda: len(watcher.payloads()) >= 1, timeout=WAIT_S,
                   what="the retained state at the watcher")
        site.gateway.stop()
        gateway_heard(site, "offline")
        assert drive(site.lanes["in1"], "粤B30001").decided_by == "lane"
        site.gateway = GatewayApp(site.gateway_config, clock=site.clock, allow_simulated=True)
        site.gateway.start()
        gateway_heard(site, "online")
        assert drive(site.lanes["in1"], "粤B30002").decided_by == "gateway"
        states = [json.loads(p)["state"] for p in watcher.payloads()]
    assert states == ["online", "offline", "online"]  # the retained one, then the news


# The lane's side on the in-memory bus -------------------------------------------------------


@pytest.fixture
def lane(tmp_path: Path, memory: MemoryBroker) -> Iterator[MemoryLane]:
    with MemoryLane(tmp_path, lane="in9", broker=memory, clock=ManualClock(SITE_START)) as running:
        yield running


@pytest.fixture
def gateway(memory: MemoryBroker) -> Iterator[MemoryBus]:
    bus = memory.bus("gateway").start()
    yield bus
    bus.stop()


def say(lane: MemoryLane, gateway: MemoryBus, payload: bytes) -> None:
    gateway.publish_and_wait(topics.gateway_availability(TEST_SITE), payload, retain=True)
    lane.settle()


def car(lane: MemoryLane, plate: str) -> int:
    """A car arrives; the verdicts so far (before it)."""
    before = lane.controller.verdicts
    lane.camera.show(plate)
    lane.pins.arming.drive_high()
    lane.settle()
    return before


def leave(lane: MemoryLane) -> None:
    lane.pins.safety.drive_high()
    lane.pins.arming.drive_low()
    lane.pins.safety.drive_low()
    lane.settle()


def test_a_cleared_or_foreign_availability_means_ask_and_wait_again(
    lane: MemoryLane, gateway: MemoryBus,
) -> None:
    controller = lane.controller
    say(lane, gateway, availability("offline"))
    before = car(lane, "粤B40001")
    assert controller.verdicts == before + 1, "offline: decided at once"
    leave(lane)

    say(lane, gateway, availability("offline", site="other"))  # not ours: ignored
    say(lane, gateway, b"{not json")  # broken: ignored, the last word stands
    assert controller.gateway_availability == "offline"

    say(lane, gateway, b"")  # the retained state cleared: nobody knows
    assert controller.gateway_availability is None
    before = car(lane, "粤B40002")
    assert controller.verdicts == before, "decided before its deadline"
    lane.step(milliseconds=controller.config.timing.decide_deadline_ms)
    assert controller.verdicts == before + 1
    assert controller.last_verdict is not None and controller.last_verdict.decided_by == "lane"
    leave(lane)


def test_a_reply_racing_offline_is_late_and_the_car_is_decided_once(
    lane: MemoryLane, gateway: MemoryBus,
) -> None:
    controller = lane.controller
    say(lane, gateway, availability("online"))
    before = car(lane, "粤B50001")
    request = controller.last_decide_request
    assert request is not None and controller.verdicts == before, "asking, waiting"
    say(lane, gateway, availability("offline"))
    assert controller.verdicts == before + 1
    reply = DecideReply(correlation_id=request.correlation_id, action="refuse",
                        reason="blacklisted", ts=SITE_START)
    gateway.publish_and_wait(topics.lane_decide_reply(TEST_SITE, "in9"), reply)
    lane.settle()
    assert controller.late_replies == 1
    assert controller.verdicts == before + 1
    verdict = controller.last_verdict
    assert verdict is not None and (verdict.decided_by, verdict.action) == ("lane", "open")
    leave(lane)
    assert [e["decided_by"] for e in lane.events("decision")] == ["lane"]


def test_a_car_waiting_when_the_lanes_connection_drops_is_decided_once_from_the_replica(
    lane: MemoryLane, gateway: MemoryBus,
) -> None:
    controller = lane.controller
    say(lane, gateway, availability("online"))
    before = car(lane, "粤B70001")
    request = controller.last_decide_request
    assert request is not None and controller.verdicts == before, "asking, waiting"

    lane.bus.drop()  # the lane's link dies; nothing to settle on while it is down
    eventually(lambda: controller.verdicts == before + 1, timeout=WAIT_S,
               what="the waiting car decided from the replica")
    verdict = controller.last_verdict
    assert verdict is not None and verdict.decided_by == "lane", verdict
    assert verdict.reason.startswith("offline_") and verdict.action == "open", verdict
    assert controller.gateway_availability is None

    lane.bus.start()  # back: the retained ``online`` comes again
    lane.settle()
    assert controller.gateway_availability == "online"
    reply = DecideReply(correlation_id=request.correlation_id, action="refuse",
                        reason="blacklisted", ts=SITE_START)
    gateway.publish_and_wait(topics.lane_decide_reply(TEST_SITE, "in9"), reply)
    lane.settle()
    assert controller.late_replies == 1
    assert controller.verdicts == before + 1
    leave(lane)
    assert [e["decided_by"] for e in lane.events("decision")] == ["lane"]
