"""The gateway's ingestion loop: ack after commit, batches, decides first, sequence gaps.

These drive the real :class:`~gateway.runtime.service.Gateway` (its worker, its SQLite file) with
deliveries made here, whose ``ack`` we watch; the bus never connects. The end-to-end proof
(a SIGKILLed gateway subprocess under traffic) is tests/test_gateway_crash.py.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from parkguard.clock import ManualClock
from wire.bus import Delivery
from wire.contract import topics
from wire.contract.messages import DecideReply, DecideRequest, Passed, VehicleDetected

SITE = "test"
NOW = datetime(2026, 5, 6, 2, 0, tzinfo=UTC)
PLATE = "粤B3K9Z1"


class WatchedDelivery(Delivery):
    """A delivery that runs ``on_ack`` when the gateway acknowledges it."""

    __slots__ = ("on_ack", "was_acked")

    def __init__(self, topic: str, payload: bytes, on_ack: Callable[[], None]) -> None:
        super().__init__(topic, payload, qos=1, mid=0)
        self.on_ack = on_ack
        self.was_acked = False

    def ack(self) -> None:
        self.on_ack()
        self.was_acked = True


@pytest.fixture
def app(tmp_path: Path) -> Iterator[GatewayApp]:
    config = GatewayConfig(site=SITE, database=tmp_path / "gw.db")
    gateway = GatewayApp(config, clock=ManualClock(NOW))
    gateway.service.start()  # the worker, without a broker: we hand it deliveries
    try:
        yield gateway
    finally:
        gateway.service.stop()
        gateway.store.close()


def committed(app: GatewayApp, where: str = "1 = 1", params: tuple[Any, ...] = ()) -> int:
    """Rows of ``events`` another connection can see: committed ones only."""
    return app.store.count("events", where, params)


def event(seq: int, *, lane: str = "in1", event_id: str | None = None) -> bytes:
    return VehicleDetected(event_id=event_id or uuid.uuid4().hex, seq=seq,
                           ts=NOW + timedelta(seconds=seq), lane=lane).to_json()


def deliver(app: GatewayApp, payload: bytes, *, lane: str = "in1",
            on_ack: Callable[[], None] = lambda: None) -> WatchedDelivery:
    delivery = WatchedDelivery(topics.lane_event(SITE, lane), payload, on_ack)
    app.service._enqueue_event(delivery)
    return delivery


def hold_worker(app: GatewayApp) -> threading.Event:
    """Park the worker in an office job until the returned event is set, so messages pile
    up behind it as they do behind a slow batch or after a restart."""
    release, parked = threading.Event(), threading.Event()

    def job() -> None:
        parked.set()
        release.wait(10)

    threading.Thread(target=app.service.call, args=(job,), daemon=True).start()
    parked.wait(5)
    return release


def keep_replies(app: GatewayApp) -> list[DecideReply]:
    """Every decide reply the gateway publishes from now on, in order."""
    replies: list[DecideReply] = []
    publish = app.bus.publish

    def keep(topic: str, payload: Any, **options: Any) -> Any:
        if isinstance(payload, DecideReply):
            replies.append(payload)
        return publish(topic, payload, **options)

    setattr(app.bus, "publish", keep)  # noqa: B010
    return replies


def test_an_event_is_acknowledged_only_once_another_connection_can_read_it(
    app: GatewayApp,
) -> None:
    seen_at_ack: list[int] = []

    def look(event_id: str) -> Callable[[], None]:
        return lambda: seen_at_ack.append(committed(app, "event_id = ?", (event_id,)))

    ids = [uuid.uuid4().hex for _ in range(50)]
    deliveries = [deliver(app, event(i + 1, event_id=event_id), on_ack=look(event_id))
                  for i, event_id in enumerate(ids)]

    assert app.service.wait_idle()
    assert all(d.was_acked for d in deliveries)
    assert seen_at_ack == [1] * 50


def test_a_backlog_is_stored_in_a_few_transactions_not_one_each(app: GatewayApp) -> None:
    release = hold_worker(app)
    for i in range(600):
        deliver(app, event(i + 1))
    batches = app.service.batches
    release.set()

    assert app.service.wait_idle()
    assert committed(app) == 600
    assert app.service.events_stored == 600
    assert app.service.batches - batches == 3  # 256 + 256 + 88


def test_a_bad_event_in_a_batch_is_dead_lettered_alone(app: GatewayApp) -> None:
    release = hold_worker(app)
    good = [deliver(app, event(1)), deliver(app, b"not json at all"), deliver(app, event(2))]
    release.set()

    assert app.service.wait_idle()
    assert committed(app) == 2
    assert app.store.count("dead_letters") == 1
    assert all(d.was_acked for d in good)


def test_a_decide_request_is_answered_before_the_burst_of_events_queued_ahead_of_it(
    app: GatewayApp,
) -> None:
    stored_when_answered: list[int] = []
    publish = app.bus.publish

    def watch(topic: str, payload: Any, **options: Any) -> Any:
        if topic.endswith("/decide/reply"):
            stored_when_answered.append(committed(app))
        return publish(topic, payload, **options)

    setattr(app.bus, "publish", watch)  # noqa: B010
    release = hold_worker(app)
    for i in range(500):
        deliver(app, event(i + 1))
    request = DecideRequest(correlation_id="c0ffee0001", lane="in2", direction="entry",
                            plate=PLATE, confidence=0.99, char_confidences=(0.99,) * 7,
                            ts=NOW, deadline_ms=300)
    decide = WatchedDelivery(topics.lane_decide(SITE, "in2"), request.to_json(), lambda: None)
    app.service._enqueue_decide(decide)
    release.set()

    assert app.service.wait_idle()
    assert stored_when_answered == [0]
    assert decide.was_acked
    assert app.store.decision("c0ffee0001") is not None


def test_an_exit_read_waits_for_the_queued_entry_of_its_car_instead_of_refusing_it(
    app: GatewayApp,
) -> None:
    replies = keep_replies(app)
    release = hold_worker(app)
    entered = Passed(event_id=uuid.uuid4().hex, seq=1, ts=NOW, lane="in1", direction="entry",
                     plate=PLATE, correlation_id="e0000001")  # the lane let it in alone
    deliver(app, entered.to_json())
    assert isinstance(app.clock, ManualClock)
    app.clock.advance(timedelta(hours=1))  # it leaves an hour later by both clocks (the window)
    request = DecideRequest(correlation_id="x0000001", lane="out1", direction="exit",
                            plate=PLATE, confidence=0.99, char_confidences=(0.99,) * 7,
                            ts=NOW + timedelta(hours=1), deadline_ms=300)
    app.service._enqueue_decide(
        WatchedDelivery(topics.lane_decide(SITE, "out1"), request.to_json(), lambda: None))
    release.set()

    assert app.service.wait_idle()
    # found inside: the hour is owed, so the car waits to pay (not "no entry record")
    assert [(r.action, r.reason) for r in replies] == [("refuse", "payment_due")]


def test_an_exit_read_one_confusion_from_another_car_waits_for_its_own_queued_entry(
    app: GatewayApp,
) -> None:
    """粤B08Z55 and 粤B062S5 are one confusion apart for the matcher (8/6 after Z/2, 5/S).
    With 粤B062S5 inside and 粤B08Z55's entry still queued (a restart's backlog), the exit's
    read must not be settled on the other car: that closed the wrong session, and the crash
    test (tests/test_gateway_crash.py) once ended with a car left inside."""
    replies = keep_replies(app)
    other = Passed(event_id=uuid.uuid4().hex, seq=1, ts=NOW, lane="in1", direction="entry",
                   plate="粤B062S5", correlation_id="e0000001")
    deliver(app, other.to_json())
    assert app.service.wait_idle()
    release = hold_worker(app)
    entered = Passed(event_id=uuid.uuid4().hex, seq=1, ts=NOW, lane="in2", direction="entry",
                     plate="粤B08Z55", correlation_id="e0000002")  # let in alone, queued
    deliver(app, entered.to_json(), lane="in2")
    request = DecideRequest(correlation_id="x0000001", lane="out1", direction="exit",
                            plate="粤B08Z55", confidence=0.99, char_confidences=(0.99,) * 7,
                            ts=NOW, deadline_ms=300)
    app.service._enqueue_decide(
        WatchedDelivery(topics.lane_decide(SITE, "out1"), request.to_json(), lambda: None))
    release.set()

    assert app.service.wait_idle()
    own = app.store.db.execute("SELECT session_id FROM sessions WHERE plate = ?",
                               ["粤B08Z55"]).fetchone()[0]
    assert [(r.action, r.session_id) for r in replies] == [("open", own)]


def test_a_jump_in_seq_is_recorded_as_an_open_gap_with_a_warning(
    app: GatewayApp, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.storage.store"):
        for seq in (1, 2, 6):
            deliver(app, event(seq))
        assert app.service.wait_idle()
    [gap] = app.store.open_gaps()
    assert (gap.lane, gap.from_seq, gap.to_seq, gap.filled_at) == ("in1", 3, 5, None)
    assert any("skipped seq 3..5" in r.getMessage() for r in caplog.records)


def test_a_gap_is_marked_filled_only_when_every_missing_seq_has_arrived(
    app: GatewayApp,
) -> None:
    for seq in (1, 5):
        deliver(app, event(seq))
    assert app.service.wait_idle()
    for seq in (3, 2):
        deliver(app, event(seq))
    assert app.service.wait_idle()
    assert [(g.from_seq, g.to_seq) for g in app.store.open_gaps()] == [(2, 4)]

    deliver(app, event(4))
    assert app.service.wait_idle()
    assert app.store.open_gaps() == []
    with app.store.reader() as db:
        [row] = list(db.query("SELECT * FROM seq_gaps"))
    assert row["filled_at"] is not None


def test_out_of_order_is_late_not_duplicate_and_a_redelivery_is_a_duplicate(
    app: GatewayApp,
) -> None:
    first = uuid.uuid4().hex
    deliver(app, event(2))
    deliver(app, event(1, event_id=first))  # late: stored
    deliver(app, event(1, event_id=first))  # the same event again: not stored
    deliver(app, event(1))  # a different event that reuses seq 1 (a rebooted lane): stored

    assert app.service.wait_idle()
    assert committed(app) == 3
    assert (app.service.events_stored, app.service.duplicates) == (3, 1)
    assert app.store.open_gaps() == []


def test_gaps_are_tracked_per_lane(app: GatewayApp) -> None:
    deliver(app, event(1, lane="in1"), lane="in1")
    deliver(app, event(7, lane="out1"), lane="out1")  # a lane's first event opens no gap
    deliver(app, event(9, lane="out1"), lane="out1")
    deliver(app, event(2, lane="in1"), lane="in1")

    assert app.service.wait_idle()
    assert [(g.lane, g.from_seq, g.to_seq) for g in app.store.open_gaps()] == [("out1", 8, 8)]
    assert app.store.open_gaps("in1") == []


def test_the_highest_seq_survives_a_restart(tmp_path: Path) -> None:
    config = GatewayConfig(site=SITE, database=tmp_path / "gw.db")
    for seqs in ((1, 2, 3), (4, 8)):
        gateway = GatewayApp(config, clock=ManualClock(NOW))
        gateway.service.start()
        for seq in seqs:
            deliver(gateway, event(seq))
        assert gateway.service.wait_idle()
        gateway.service.stop()
        gateway.store.close()
    gateway = GatewayApp(config, clock=ManualClock(NOW))
    try:
        assert [(g.from_seq, g.to_seq) for g in gateway.store.open_gaps()] == [(5, 7)]
    finally:
        gateway.store.close()
