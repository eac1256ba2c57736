"""A malformed message is logged with its reason, dead-lettered, and never stops the gateway.

The gateway runs whole (``GatewayApp``) on the in-memory broker: these are broker semantics
(QoS 1, manual acks), not ACLs, so no Mosquitto is started and nothing waits on real time
beyond the worker's own commits (``MemoryBroker.settle`` + ``wait_idle``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.app import GatewayApp, gateway_client_id
from gateway.config import GatewayConfig
from parkguard.clock import ManualClock
from parkguard.configfile import BrokerSettings
from tests.conftest import TEST_SITE
from wire.contract import topics
from wire.contract.examples import EXAMPLES
from wire.contract.messages import DecideReply, DecideRequest
from wire.memory import MemoryBroker, MemoryBus

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


class Lane:
    """A lane's connection to the memory broker that keeps the decide replies it gets."""

    def __init__(self, broker: MemoryBroker, lane: str) -> None:
        self.replies: list[bytes] = []
        self.bus = broker.bus(f"lane-{lane}")
        self.bus.subscribe(topics.lane_decide_reply(SITE, lane),
                           lambda _topic, payload: self.replies.append(payload))
        self.bus.start()


@pytest.fixture
def broker() -> Iterator[MemoryBroker]:
    memory = MemoryBroker()
    yield memory
    memory.close()


@pytest.fixture
def gateway(broker: MemoryBroker, tmp_path: Path) -> Iterator[GatewayApp]:
    config = GatewayConfig(site=SITE, database=tmp_path / "gw.db",
                           broker=BrokerSettings(host="memory"))
    bus = MemoryBus(broker, client_id=gateway_client_id(SITE), persistent=True,
                    manual_ack=True)
    with GatewayApp(config, clock=ManualClock(NOW), bus=bus) as app:
        yield app


@pytest.fixture
def lane_in1(broker: MemoryBroker) -> Lane:
    return Lane(broker, "in1")


@pytest.fixture
def lane_out1(broker: MemoryBroker) -> Lane:
    return Lane(broker, "out1")


def handled(broker: MemoryBroker, gateway: GatewayApp) -> None:
    """Everything published so far delivered, handled by the worker and answered."""
    broker.settle()
    assert gateway.service.wait_idle()
    broker.settle()  # the replies the worker published


@pytest.mark.parametrize(("topic", "payload", "reason_part"), GARBAGE)
def test_garbage_is_dead_lettered_with_its_reason_and_the_next_good_message_is_answered(
    broker: MemoryBroker, gateway: GatewayApp, lane_in1: Lane, lane_out1: Lane, topic: str,
    payload: bytes, reason_part: str, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.runtime.batches"):
        lane_in1.bus.publish(topic, payload)
        handled(broker, gateway)
        assert gateway.service.dead_letters == 1
        lane_out1.bus.publish(topics.lane_decide(SITE, "out1"), GOOD)
        handled(broker, gateway)
    assert len(lane_out1.replies) == 1
    reply = DecideReply.from_json(lane_out1.replies[0])
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
    broker: MemoryBroker, gateway: GatewayApp, lane_in1: Lane, lane_out1: Lane
) -> None:
    for i in range(50):
        lane_in1.bus.publish(topics.lane_event(SITE, "in1"), f"garbage {i}".encode())
        request = GOOD.model_copy(update={"correlation_id": f"corr{i:06d}"})
        lane_out1.bus.publish(topics.lane_decide(SITE, "out1"), request)
    handled(broker, gateway)
    assert len(lane_out1.replies) == 50
    assert gateway.store.count("dead_letters") == 50
    assert gateway.store.count("decisions") == 50


def test_a_request_the_lane_stopped_waiting_for_is_neither_answered_nor_recorded(
    broker: MemoryBroker, gateway: GatewayApp, lane_out1: Lane,
) -> None:
    """Queued while the broker was down: the lane decided alone long ago, so a gateway verdict
    now would be a second, different decision on the same car."""
    stale = GOOD.model_copy(update={"correlation_id": "stale0001",
                                    "ts": NOW - timedelta(minutes=5)})
    lane_out1.bus.publish(topics.lane_decide(SITE, "out1"), stale)
    handled(broker, gateway)
    assert gateway.service.late_decisions_ignored == 1
    lane_out1.bus.publish(topics.lane_decide(SITE, "out1"), GOOD)
    handled(broker, gateway)
    replies = [DecideReply.from_json(p).correlation_id for p in lane_out1.replies]
    assert replies == [GOOD.correlation_id]
    assert gateway.store.count("decisions") == 1
