"""A malformed message is logged with its reason, dead-lettered, and never stops the gateway."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker.contract import topics
from broker.contract.examples import EXAMPLES
from broker.contract.messages import DecideReply, DecideRequest
from broker.runner import MosquittoBroker
from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from parkguard.clock import ManualClock
from parkguard.configfile import BrokerSettings
from tests.helpers import Recorder, eventually

pytestmark = pytest.mark.integration

SITE = "dl"
NOW = datetime(2026, 5, 6, 2, 0, tzinfo=UTC)

GARBAGE = [
    pytest.param(topics.lane_event(SITE, "in1"), b"\xff\xfe not json", "Invalid JSON",
                 id="not-json"),
    pytest.param(topics.lane_event(SITE, "in1"), b'{"type": "passed"}', "event_id",
                 id="missing-fields"),
    pytest.param(topics.lane_event(SITE, "in1"), b'{"type": "teleported", "seq": 1}', "teleported",
                 id="unknown-event-type"),
    pytest.param(topics.lane_decide(SITE, "in1"),
                 DecideRequest.model_validate(EXAMPLES["DecideRequest"]).to_json(),
                 "does not match", id="lane-speaking-for-another"),
    pytest.param(topics.lane_decide(SITE, "out1"),
                 DecideRequest.model_validate(EXAMPLES["DecideRequest"]).to_json()
                 .replace(b'"v":1', b'"v":2'),
                 "v: Input should be 1", id="future-version"),
    pytest.param("parkguard/v1/dl/lane/UPPER/event", b"{}", "not a valid topic segment",
                 id="bad-topic"),
]


@pytest.fixture
def gateway(broker: MosquittoBroker, tmp_path: Path) -> Iterator[GatewayApp]:
    config = GatewayConfig(
        site=SITE, database=tmp_path / "gw.db",
        broker=BrokerSettings(host=broker.host, port=broker.port),
    )
    with GatewayApp(config, clock=ManualClock(NOW)) as app:
        yield app


@pytest.mark.parametrize(("topic", "payload", "reason_part"), GARBAGE)
def test_garbage_is_dead_lettered_with_its_reason_and_the_next_good_message_is_answered(
    gateway: GatewayApp, broker: MosquittoBroker, topic: str, payload: bytes, reason_part: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = DecideRequest.model_validate(EXAMPLES["DecideRequest"])  # exit on out1
    with caplog.at_level(logging.WARNING, logger="gateway.service"), \
            Recorder(broker, topics.lane_decide_reply(SITE, "out1"), name="out1") as lane:
        lane.bus.publish_and_wait(topic, payload)
        lane.bus.publish_and_wait(topics.lane_decide(SITE, "out1"), good)
        eventually(lambda: bool(lane.payloads()), what="the reply to the good request")
    reply = DecideReply.from_json(lane.payloads()[0])
    assert reply.correlation_id == good.correlation_id
    assert reply.reason == "no_entry_record"  # processed for real: nobody entered

    letters = list(gateway.store.db.query("SELECT * FROM dead_letters"))
    assert len(letters) == 1
    assert letters[0]["topic"] == topic
    assert letters[0]["payload"] == payload
    assert reason_part in letters[0]["reason"]
    assert gateway.service.dead_letters == 1
    assert any(reason_part in r.getMessage() and topic in r.getMessage() for r in caplog.records)


def test_a_burst_of_garbage_loses_no_good_message(
    gateway: GatewayApp, broker: MosquittoBroker
) -> None:
    good = DecideRequest.model_validate(EXAMPLES["DecideRequest"])
    with Recorder(broker, topics.lane_decide_reply(SITE, "out1"), name="out1") as lane:
        for i in range(50):
            lane.bus.publish(topics.lane_event(SITE, "in1"), f"garbage {i}".encode())
            request = good.model_copy(update={"correlation_id": f"corr{i:06d}"})
            lane.bus.publish(topics.lane_decide(SITE, "out1"), request)
        eventually(lambda: len(lane.payloads()) == 50, timeout=10, what="50 replies")
    gateway.service.wait_idle()
    assert gateway.store.count("dead_letters") == 50
    assert gateway.store.count("decisions") == 50
