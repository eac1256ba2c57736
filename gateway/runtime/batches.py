"""The worker's steps: a batch of lane events stored in one transaction, decide requests
answered at once and written after, and what a failed commit undoes.

Three rules make ingestion safe and quick (docs/ingestion.md):

* **ack after commit**: a lane event is acknowledged to the broker only once the
  transaction that stored it has committed (``synchronous=FULL``), so a SIGKILL or a power
  cut loses nothing the lane was told is delivered: the broker redelivers the rest, and
  ``event_id`` dedupes it;
* **batches**: up to ``batch_size`` queued lane events are stored in one transaction (one
  fsync), then acknowledged together;
* **decides first**: decide requests wait in their own queue, which the worker empties
  before it takes the next batch, so a lane's deadline never waits behind a burst of
  events. A decision is written before any event that arrived after its request, so the
  ``passed`` that needs it always finds it.

A payload that fails validation is counted, logged with its reason and dead-lettered (in
the batch's transaction), and the loop goes on with the next message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import NamedTuple, TypeVar

from gateway.runtime.decide import BACKLOG_SENSITIVE, Decider, Verdict, kept_json
from gateway.runtime.effects import AfterCommit
from gateway.runtime.inbox import Inbound, Inbox
from gateway.runtime.ingest import Ingester
from gateway.runtime.tally import Tally
from gateway.storage.store import GatewayStore
from parkguard.clock import Clock, utc_iso
from parkguard.errors import ContractError
from wire.bus import Bus, Receipt
from wire.contract import topics
from wire.contract.messages import LANE_EVENT_TYPES, DecideRequest
from wire.contract.window import ReceiptWindow

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Most lane events one transaction stores: enough to make the fsync of ``synchronous=FULL``
#: cheap per event, few enough that a transaction (and the acks it holds back) stays short.
BATCH_SIZE = 256

#: The longest the worker waits, after queuing decide replies, for the broker to have them
#: (its PUBACK) before it writes the decisions. paho's network thread, woken to send them,
#: needs the interpreter, and the decisions' transaction is Python-heavy: written at once,
#: it held the reply back by about 0.4 ms p50 (issue 23, simulator/bench_gate.py). The
#: reply's PUBACK usually comes within 0.3 ms; a later one only delays the write, never
#: the answer.
REPLY_HEADSTART_S = 0.002
_REPLY_POLL_S = 0.0001

Letters = list[tuple[Inbound, str]]


class _Answered(NamedTuple):
    """A decide request answered on the bus whose decision is not written yet."""

    item: Inbound
    request: DecideRequest
    verdict: Verdict
    at: datetime


class Batches:
    """What the worker does with the messages the inbox hands it (worker thread only)."""

    def __init__(self, *, site: str, clock: Clock, store: GatewayStore, bus: Bus,
                 inbox: Inbox, ingester: Ingester, decider: Decider, effects: AfterCommit,
                 tally: Tally, forget: Callable[[], None], batch_size: int = BATCH_SIZE,
                 window: ReceiptWindow | None = None) -> None:
        """``forget`` rereads from the file what the worker keeps in memory (the cars
        inside, the lot's count), after a transaction that could not commit. ``window``
        bounds a message's ``ts`` around its receipt: a lane event or decide request stamped
        far ahead or long ago is dead-lettered, never stored, billed or shown."""
        self._site = site
        self._clock = clock
        self._store = store
        self._bus = bus
        self._inbox = inbox
        self._ingester = ingester
        self._decider = decider
        self._effects = effects
        self._tally = tally
        self._forget = forget
        self.batch_size = batch_size
        self._window = window or ReceiptWindow()
        self._unrecorded: list[_Answered] = []

    def guard(self, step: Callable[[list[Inbound]], None], items: list[Inbound]) -> None:
        """Run one step of the loop; if its transaction could not commit, acknowledge
        nothing (the broker redelivers it all on the next connection) and reread what the
        worker keeps in memory from the file."""
        try:
            step(items)
        except Exception:
            self._tally.commit_failures += 1
            log.critical("gateway: %d messages not committed and not acknowledged; they come "
                         "back when the gateway reconnects", len(items), exc_info=True)
            self._unrecorded.clear()
            self._effects.drop()
            self._store.forget_seq_cache()
            self._forget()
            self._inbox.settle(items)

    # lane events ------------------------------------------------------------------

    def ingest(self, items: list[Inbound]) -> None:
        """Store a batch of lane events in one transaction, each in a savepoint of its own
        (a bad one is dead-lettered, not the batch); acknowledge them once committed.

        A decide request that arrives meanwhile cuts the batch short: what is done is
        committed and the rest goes back to the head of the queue, so a request waits for
        one event and one commit, not for a whole batch of billed exits.
        """
        stored = duplicates = 0
        letters: Letters = []
        with self._store.atomic():
            for index, item in enumerate(items):
                if index and self._inbox.cut_waiting():
                    self._inbox.put_back(items[index:])
                    items = items[:index]
                    break
                is_new, reason = self._attempt(partial(self._store_inbound, item))
                if reason is not None:
                    letters.append((item, reason))
                    self._write_dead_letter(item, reason)
                elif is_new:
                    stored += 1
                else:
                    duplicates += 1
        self._committed(items, stored=stored, duplicates=duplicates, letters=letters)
        self._tally.batches += 1

    def _store_inbound(self, item: Inbound) -> bool:
        message = self._window.receive(item.topic, item.payload, item.received_at)
        if not isinstance(message, LANE_EVENT_TYPES):
            raise ContractError(f"{type(message).__name__} is not a lane event")
        return self._ingester.store_event(message, item.received_at)

    def _attempt(self, work: Callable[[], T]) -> tuple[T | None, str | None]:
        """``work()`` in a savepoint: (its result, None), or (None, why) if it failed: the
        savepoint rolled back and the batch goes on without it."""
        try:
            with self._store.atomic():
                return work(), None
        except ContractError as error:
            return None, str(error)
        except Exception as error:  # never let one message stop the gateway
            log.exception("gateway: failed to handle a message")
            return None, f"handler error: {type(error).__name__}: {error}"

    def _committed(self, items: list[Inbound], *, stored: int = 0, duplicates: int = 0,
                   letters: Letters | None = None) -> None:
        """After the commit: acknowledge, tell the lanes and the lot-full sign, count, and
        tell ``wait_idle``."""
        for item in items:
            item.delivery.ack()
        self._effects.run()
        self._tally.events_stored += stored
        self._tally.duplicates += duplicates
        for item, reason in letters or ():
            self._tally.dead_letters += 1
            log.warning("gateway: dead-lettered message on %s: %s", item.topic, reason)
        self._inbox.settle(items)

    def _write_dead_letter(self, item: Inbound, reason: str) -> None:
        self._store.dead_letter(received_at=utc_iso(item.received_at), topic=item.topic,
                                payload=item.payload, reason=reason)

    def dead_letter_now(self, topic: str, payload: bytes, reason: str) -> None:
        """A message handled outside a batch (safety, patrols) that could not be used."""
        log.warning("gateway: dead-lettered message on %s: %s", topic, reason)
        self._tally.dead_letters += 1
        with self._store.atomic():
            self._store.dead_letter(received_at=utc_iso(self._clock.now()), topic=topic,
                                    payload=payload, reason=reason)

    # decide requests --------------------------------------------------------------

    def answer(self, items: list[Inbound]) -> None:
        """Answer each waiting request at once, then write the decisions in one transaction
        and acknowledge the requests.

        Answer first, write after: the lane is waiting on its deadline (and the worker steps
        aside until the broker has the replies, briefly, so paho's thread can send them
        before the write takes the interpreter). Every decision is written before the
        worker takes any lane event that arrived after its request (the pass that needs
        it): at the end of this step, or before a re-check ingests a batch.
        """
        letters: Letters = []
        too_late: list[Inbound] = []
        sent: list[Receipt] = []
        for item in items:
            try:
                request = self._window.receive(item.topic, item.payload, item.received_at)
                if not isinstance(request, DecideRequest):
                    raise ContractError(f"{type(request).__name__} is not a decide request")
                if self._past_deadline(request):
                    too_late.append(item)
                    continue
                now, verdict = self._decide(request)
            except ContractError as error:
                letters.append((item, str(error)))
                continue
            except Exception as error:
                log.exception("gateway: failed to decide on %s", item.topic)
                letters.append((item, f"handler error: {type(error).__name__}: {error}"))
                continue
            sent.append(self._bus.publish(topics.lane_decide_reply(self._site, request.lane),
                                          verdict.reply))
            self._unrecorded.append(_Answered(item, request, verdict, now))
        self._let_replies_go(sent)
        self._record_decisions(letters, skipped=too_late)

    @staticmethod
    def _let_replies_go(sent: list[Receipt]) -> None:
        """Step aside (the interpreter free) until the broker has the replies, for at most
        :data:`REPLY_HEADSTART_S`: the lanes wait for them, not for the decisions' write."""
        deadline = time.perf_counter() + REPLY_HEADSTART_S
        while any(receipt.acknowledged() is False for receipt in sent) \
                and time.perf_counter() < deadline:
            time.sleep(_REPLY_POLL_S)

    def _past_deadline(self, request: DecideRequest) -> bool:
        """A request the lane has stopped waiting for (queued while the broker or the gateway
        was down): the lane decided alone and journals that decision, so an answer now would
        only be a second, different verdict on the same car. Not answered, not recorded."""
        if self._clock.now() <= request.ts + timedelta(milliseconds=request.deadline_ms):
            return False
        self._tally.late_decisions_ignored += 1
        return True

    def _decide(self, request: DecideRequest) -> tuple[datetime, Verdict]:
        """The verdict, taken again after ingesting what is queued if it may only be due to
        events still waiting behind the request (see :data:`BACKLOG_SENSITIVE`)."""
        now = self._clock.now()
        verdict = self._decider.verdict(request, now)
        while verdict.reply.reason in BACKLOG_SENSITIVE or verdict.inexact:
            waiting = self._inbox.take_events(self.batch_size)
            if not waiting:
                break
            self._record_decisions()  # before any event that may need one of them
            self.guard(self.ingest, waiting)
            now = self._clock.now()
            verdict = self._decider.verdict(request, now)
        return now, verdict

    def _record_decisions(self, letters: Letters | None = None, *,
                          skipped: list[Inbound] | None = None) -> None:
        """Write the answered decisions (and dead letters) in one transaction; acknowledge
        them, and the requests skipped as too late."""
        answered, self._unrecorded = self._unrecorded, []
        if not answered and not letters:
            if skipped:
                self._committed(skipped)
            return
        with self._store.atomic():
            for entry in answered:
                _, reason = self._attempt(partial(self._record_decision, entry))
                if reason is not None:
                    log.error("gateway: decision %s not recorded: %s",
                              entry.request.correlation_id, reason)
            for item, reason in letters or ():
                self._write_dead_letter(item, reason)
        self._tally.decides_answered += len(answered)
        self._committed([entry.item for entry in answered] + [item for item, _ in letters or ()]
                        + list(skipped or ()), letters=letters)

    def _record_decision(self, entry: _Answered) -> None:
        request, reply = entry.request, entry.verdict.reply
        self._store.db.table("decisions").insert({
            "correlation_id": request.correlation_id, "lane": request.lane,
            "direction": request.direction, "plate": request.plate, "action": reply.action,
            "reason": reply.reason, "fee_fen": reply.fee_fen, "session_id": reply.session_id,
            "requested_at": utc_iso(request.ts), "answered_at": utc_iso(entry.at),
            "match": kept_json(entry.verdict.evidence), "bill": kept_json(entry.verdict.terms),
        }, ignore=True)
