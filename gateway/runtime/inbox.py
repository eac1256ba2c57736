"""The gateway worker's queues: decide requests first, then safety work (fire, flood,
acknowledgements), then lane events and office jobs in order.

Kept apart from the loop itself so the ordering rules (docs/ingestion.md) read in one place:
decides jump the queue, safety work comes next (a fire's alert must not wait behind a burst of
lane events and their fsync), a batch of lane events stops before the next office job, and
events not yet handled can be put back at the head in their order. The inbox also counts
the messages received and not yet settled (``wait_idle``) and carries office work to the
worker (``call``), so a desk that must run on the worker needs only the inbox, not the loop.

An empty inbox does not hold the worker for ever: :meth:`Inbox.next` hands it ``idle`` after
``idle_wake_s``, so an idle worker still goes round its loop and its heartbeat stays fresh for
systemd's watchdog (gateway/runtime/liveness.py); only a worker stuck in a job goes stale.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from wire.bus import Delivery

T = TypeVar("T")


@dataclass(slots=True)
class Inbound:
    topic: str
    payload: bytes
    received_at: datetime
    delivery: Delivery
    settled: bool = False  # handled and committed (or given up): no longer in flight


@dataclass(frozen=True, slots=True)
class Job(Generic[T]):
    work: Callable[[], T]
    result: Future[T]

    @classmethod
    def of(cls, work: Callable[[], T]) -> Job[T]:
        return cls(work, Future())

    def run(self) -> None:
        try:
            self.result.set_result(self.work())
        except BaseException as error:  # handed to the caller, who decides
            self.result.set_exception(error)


IDLE_WAKE_S = 5.0
"""The longest an idle worker waits for work before it goes round its loop anyway: well
inside the watchdog's staleness (gateway/runtime/liveness.py), and rare enough to cost
nothing."""

#: What the worker takes next: ("decides" | "events", messages), ("job", job) — an urgent
#: or an ordered one — ("idle", None) when nothing came for a while, or ("stop", None).
Work = tuple[Literal["decides", "events", "job", "idle", "stop"],
             list[Inbound] | Job[Any] | None]


class Inbox:
    """The worker's three queues: decide requests first; urgent jobs (safety messages, in
    their arrival order) next; lane events and office jobs in arrival order after them."""

    def __init__(self, *, idle_wake_s: float = IDLE_WAKE_S) -> None:
        """``idle_wake_s``: how long :meth:`next` waits on an empty inbox before it says
        ``idle`` (tests pass a short one with a short watchdog staleness)."""
        if idle_wake_s <= 0:
            raise ValueError("idle_wake_s must be positive")
        self.idle_wake_s = idle_wake_s
        self._ready = threading.Condition()
        self._decides: deque[Inbound] = deque()
        self._urgent: deque[Job[Any]] = deque()
        self._ordered: deque[Inbound | Job[Any]] = deque()
        self._stopping = False
        self._served = False  # a worker is taking work from this inbox
        self._idle = threading.Condition()
        self._in_flight = 0

    # receiving --------------------------------------------------------------------

    def received(self, delivery: Delivery, at: datetime) -> Inbound:
        """A message from the bus, counted as in flight until :meth:`settle`."""
        with self._idle:
            self._in_flight += 1
        return Inbound(delivery.topic, delivery.payload, at, delivery)

    def put_decide(self, item: Inbound) -> None:
        with self._ready:
            self._decides.append(item)
            self._ready.notify()

    def put_urgent(self, job: Job[Any]) -> None:
        """Safety work: taken before any lane event or office job still waiting, and a
        batch of lane events under way stops for it, as for a decide. Urgent jobs keep their
        order among themselves (a node's readings, then the acknowledgements of its alarm)."""
        with self._ready:
            self._urgent.append(job)
            self._ready.notify()

    def put(self, item: Inbound | Job[Any]) -> None:
        with self._ready:
            self._ordered.append(item)
            self._ready.notify()

    def settle(self, items: list[Inbound]) -> None:
        """These messages are dealt with: ``wait_idle`` stops counting them."""
        fresh = [item for item in items if not item.settled]
        for item in fresh:
            item.settled = True
        with self._idle:
            self._in_flight -= len(fresh)
            self._idle.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every message received so far has been settled."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    # office work ------------------------------------------------------------------

    def call(self, work: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``work`` on the worker, between messages, and return its result (its
        exception reaches the caller). With no worker serving the inbox, the caller's thread
        is the only one and runs it at once."""
        if not self._served:
            return work()
        job = Job.of(work)
        self.put(job)
        return job.result.result(timeout)

    def serve(self, serving: bool) -> None:
        """Said by the worker: from now on (True, before its thread starts) or no longer
        (False, as it ends) it takes work from this inbox."""
        self._served = serving

    # the worker's side ------------------------------------------------------------

    def stop(self) -> None:
        """Let the worker finish what is queued, then end."""
        with self._ready:
            self._stopping = True
            self._ready.notify()

    def next(self, limit: int) -> Work:
        """Block until there is work: every waiting decide; else the next urgent job; else
        the next ordered job; else up to ``limit`` lane events (stopping before a job); else,
        once stopped, ``stop``; else, after ``idle_wake_s`` with none of these, ``idle``."""
        with self._ready:
            waited = False
            while True:
                if self._decides:
                    decides = list(self._decides)
                    self._decides.clear()
                    return "decides", decides
                if self._urgent:
                    return "job", self._urgent.popleft()
                if self._ordered:
                    head = self._ordered[0]
                    if isinstance(head, Job):
                        self._ordered.popleft()
                        return "job", head
                    return "events", self._take_events(limit)
                if self._stopping:
                    return "stop", None
                if waited:
                    return "idle", None
                waited = not self._ready.wait(self.idle_wake_s)

    def cut_waiting(self) -> bool:
        """A decide or urgent job is waiting, so a batch of lane events under way should
        stop and commit what it has."""
        return bool(self._decides or self._urgent)  # a racy peek: the next look catches up

    def put_back(self, items: list[Inbound]) -> None:
        """Return untouched lane events to the head of the ordered queue, in order."""
        with self._ready:
            self._ordered.extendleft(reversed(items))

    def take_events(self, limit: int) -> list[Inbound]:
        """The lane events at the head of the ordered queue, without waiting (maybe none)."""
        with self._ready:
            return self._take_events(limit)

    def _take_events(self, limit: int) -> list[Inbound]:
        batch: list[Inbound] = []
        while self._ordered and len(batch) < limit:
            head = self._ordered[0]
            if not isinstance(head, Inbound):
                break
            batch.append(head)
            self._ordered.popleft()
        return batch

    def depth(self) -> dict[str, int]:
        """What is waiting, by queue, and the messages received but not yet committed
        (``in_flight``): the ``parkguard_ingest_queue_depth`` gauge (gateway/web/metrics.py)."""
        with self._ready:
            events = sum(1 for item in self._ordered if isinstance(item, Inbound))
            depth = {"decides": len(self._decides), "urgent": len(self._urgent),
                     "events": events, "jobs": len(self._ordered) - events}
        with self._idle:
            depth["in_flight"] = self._in_flight
        return depth
