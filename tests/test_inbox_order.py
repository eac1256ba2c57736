"""The worker's queue order (docs/ingestion.md): decides, then safety work, then lane events
and office jobs in arrival order; a waiting decide or safety job cuts a batch short."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.runtime.inbox import Inbound, Inbox, Job
from wire.bus import Delivery

AT = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)


def message(inbox: Inbox, name: str) -> Inbound:
    return inbox.received(Delivery(f"t/{name}", name.encode(), qos=1, mid=1), AT)


def names(work: object) -> list[str]:
    assert isinstance(work, list)
    return [item.payload.decode() for item in work]


def test_safety_jobs_come_after_decides_and_before_events_and_office_jobs_in_their_order(
) -> None:
    inbox = Inbox()
    office = Job.of(lambda: "office")
    inbox.put(message(inbox, "event-1"))
    inbox.put(office)
    fire, ack = Job.of(lambda: "fire"), Job.of(lambda: "ack")
    inbox.put_urgent(fire)
    inbox.put_urgent(ack)
    inbox.put_decide(message(inbox, "decide"))

    taken = [inbox.next(limit=10) for _ in range(5)]

    assert taken[0][0] == "decides" and names(taken[0][1]) == ["decide"]
    assert [work for _, work in taken[1:3]] == [fire, ack]
    assert taken[3][0] == "events" and names(taken[3][1]) == ["event-1"]
    assert taken[4] == ("job", office)


def test_a_waiting_safety_job_or_decide_asks_a_batch_under_way_to_stop() -> None:
    inbox = Inbox()
    assert not inbox.cut_waiting()
    inbox.put_urgent(Job.of(lambda: None))
    assert inbox.cut_waiting()
    inbox.next(limit=10)
    assert not inbox.cut_waiting()
    inbox.put_decide(message(inbox, "decide"))
    assert inbox.cut_waiting()
