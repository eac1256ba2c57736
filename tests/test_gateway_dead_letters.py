"""A malformed message is logged with its reason, dead-lettered, and never stops the gateway."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broker.runner import MosquittoBroker
from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from parkguard.clock import ManualClock
from simulator.site import settings_of
from tests.conftest import TEST_SITE
from tests.helpers import Recorder, eventually
from wire.contract import topics
from wire.contract.examples import EXAMPLES
from wire.contract.messages import DecideReply, DecideRequest

pytestmark = pytest.mark.integration

SITE = TEST_SITE
NOW = datetime(2026, 5, 6, 2, 0, tzinfo=UTC)
# An exit read on out1, asked now (a request older than its deadline is not answered).
GOOD = DecideRequest.model_validate({**EXAMPLES["DecideRequest"], "ts": NOW})

# What a buggy or compromised lane in1 can still put on its own topics (the ACL stops it
# from writing anywhere else, so a badly formed *topic* never reaches the gateway).
GARBAGE = [
    pytest.param(topics.lane_event(SITE, "in1"), b"\xff\xfe not json", "Invalid JSON",
                 id="not-json"),
    pytest.param(topics.lane_event(SITE, "in1"), b'{"type": "passed"}', "event_id",
                 id="missing-fields"),
    pytest.param(topics.lane_event(SITE, "in1"), b'{"type": "teleported", "seq": 1}',
                 "teleported", id="unknown-event-type"),
    pytest.param(topics.lane_decide(SITE, "in1"), GOOD.to_json(), "does not match",
                 id="lane-speaking-for-another"),
    pytest.param(topics.lane_decide(SITE, "in1"),
                 GOOD.model_copy(update={"lane": "in1"}).to_json().replace(b'"v":1', b'"v":2'),
                 "v: Input should be 1", id="future-version"),
]


@pytest.fixture
def gateway(broker: MosquittoBroker, tmp_path: Path) -> Iterator[GatewayApp]:
    config = GatewayConfig(
        site=SITE, database=tmp_path / "gw.db", broker=settings_of(broker.address("gateway")),
    )
    with GatewayApp(config, clock=ManualClock(NOW)) as app:
        yield app


@pytest.fixture
def lane_in1(broker: MosquittoBroker) -> Iterator[Recorder]:
    with Recorder(broker, topics.lane_decide_reply(SITE, "in1"), device="lane-in1") as lane:
        yield lane


@pytest.fixture
def lane_out1(broker: MosquittoBroker) -> Iterator[Recorder]:
    with Recorder(broker, topics.lane_decide_reply(SITE, "out1"), device="lane-out1") as lane:
        yield lane


@pytest.mark.parametrize(("topic", "payload", "reason_part"), GARBAGE)
def test_garbage_is_dead_lettered_with_its_reason_and_the_next_good_message_is_answered(
    gateway: GatewayApp, lane_in1: Recorder, lane_out1: Recorder, topic: str, payload: bytes,
    reason_part: str, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.runtime.service"):
        lane_in1.bus.publish_and_wait(topic, payload)
        eventually(lambda: gateway.service.dead_letters == 1, what="the garbage to arrive")
        lane_out1.bus.publish_and_wait(topics.lane_decide(SITE, "out1"), GOOD)
        eventually(lambda: bool(lane_out1.payloads()), what="the reply to the good request")
    reply = DecideReply.from_json(lane_out1.payloads()[0])
    assert reply.correlation_id == GOOD.correlation_id
    assert reply.reason == "no_entry_record"  # processed for real: nobody entered

    with gateway.store.reader() as db:
        letters = list(db.query("SELECT * FROM dead_letters"))
    assert len(letters) == 1
    assert letters[0]["topic"] == topic
    assert letters[0]["payload"] == payload
    assert reason_part in letters[0]["reason"]
    assert any(reason_part in r.getMessage() and topic in r.getMessage() for r in caplog.records)


def test_a_burst_of_garbage_loses_no_good_message(
    gateway: GatewayApp, lane_in1: Recorder, lane_out1: Recorder
) -> None:
    for i in range(50):
        lane_in1.bus.publish(topics.lane_event(SITE, "in1"), f"garbage {i}".encode())
        request = GOOD.model_copy(update={"correlation_id": f"corr{i:06d}"})
        lane_out1.bus.publish(topics.lane_decide(SITE, "out1"), request)
    eventually(lambda: len(lane_out1.payloads()) == 50, timeout=10, what="50 replies")
    eventually(lambda: gateway.store.count("dead_letters") == 50, what="50 dead letters")
    gateway.service.wait_idle()
    assert gateway.store.count("decisions") == 50


def test_a_request_the_lane_stopped_waiting_for_is_neither_answered_nor_recorded(
    gateway: GatewayApp, lane_out1: Recorder,
) -> None:
    """Queued while the broker was down: the lane decided alone long ago, so a gateway verdict
    now would be a second, different decision on the same car."""
    stale = GOOD.model_copy(update={"correlation_id": "stale0001",
                                    "ts": NOW - timedelta(minutes=5)})
    lane_out1.bus.publish_and_wait(topics.lane_decide(SITE, "out1"), stale)
    eventually(lambda: gateway.service.late_decisions_ignored == 1, what="the stale request")
    lane_out1.bus.publish_and_wait(topics.lane_decide(SITE, "out1"), GOOD)
    eventually(lambda: bool(lane_out1.payloads()), what="the reply to the fresh request")
    gateway.service.wait_idle()
    replies = [DecideReply.from_json(p).correlation_id for p in lane_out1.payloads()]
    assert replies == [GOOD.correlation_id]
    assert gateway.store.count("decisions") == 1
