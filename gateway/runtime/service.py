"""The gateway's message loop: ingest lane events once each, answer decide requests, keep sessions.

MQTT callbacks only enqueue; one worker thread owns the database. Three rules make
ingestion safe and quick (docs/ingestion.md):

* **ack after commit** — a lane event is acknowledged to the broker only once the
  transaction that stored it has committed (``synchronous=FULL``), so a SIGKILL or a power
  cut loses nothing the lane was told is delivered: the broker redelivers the rest, and
  ``event_id`` dedupes it;
* **batches** — the worker stores up to :data:`BATCH_SIZE` queued lane events in one
  transaction (one fsync), then acknowledges them all;
* **decides first** — decide requests wait in their own queue, which the worker empties
  before it takes the next batch, so a lane's deadline never waits behind a burst of
  events. A decision is written before any event that arrived after its request, so the
  ``passed`` that needs it always finds it.

A payload that fails validation is counted, logged with its reason and dead-lettered (in
the batch's transaction), and the loop goes on with the next message.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from gateway.lanes.capacity import FULL_DISPLAY_EN, FULL_DISPLAY_ZH, LOT_FULL, Capacity
from gateway.lanes.reconcile import Reconciler
from gateway.lanes.replicas import ReplicaPublisher
from gateway.money.billing import Bill, Billing, shown_on_display
from gateway.money.merchants import MerchantError
from gateway.money.payments import Payment, PendingPayment
from gateway.patrols.desk import PatrolDesk
from gateway.runtime.inbox import Inbound, Inbox, Job
from gateway.runtime.inside import CarsInside
from gateway.safety.alarms import AlarmMonitor
from gateway.safety.alerts import AlertDesk
from gateway.storage.store import GatewayStore
from parkguard.clock import Clock, utc_iso
from parkguard.core.access import AccessError
from parkguard.core.plates import MatchPolicy, matchable_read
from parkguard.core.tariffs import format_yuan
from parkguard.errors import ContractError, ParkGuardError
from wire.contract import topics
from wire.contract.messages import (
    LANE_EVENT_TYPES,
    DecideReply,
    DecideRequest,
    Fault,
    HelpPressed,
    LaneEvent,
    LaneState,
    Passed,
    PatrolTap,
    PaymentCode,
    decode,
)
from wire.mqtt import Delivery, MqttBus

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Most lane events one transaction stores: enough to make the fsync of ``synchronous=FULL``
#: cheap per event, few enough that a transaction (and the acks it holds back) stays short.
BATCH_SIZE = 256
#: Verdicts that may only be wrong because events the lane sent earlier are still queued
#: (the car's entry ``passed`` not yet ingested, or its exit): the worker ingests what is
#: waiting and decides again before answering with one of these.
_BACKLOG_SENSITIVE = frozenset({"no_entry_record", "plate_ambiguous", "already_inside"})


class Gateway:
    """The site's authority for sessions and money, on the bus."""

    def __init__(
        self,
        *,
        site: str,
        clock: Clock,
        store: GatewayStore,
        bus: MqttBus,
        billing: Billing,
        matching: MatchPolicy | None = None,
        capacity: Capacity | None = None,
        replicas: ReplicaPublisher | None = None,
        reconciler: Reconciler | None = None,
    ) -> None:
        self.site = site
        self._clock = clock
        self.store = store
        self._bus = bus
        self.billing = billing
        self.pricing = billing.pricing
        self.capacity = capacity
        self.replicas = replicas
        self.reconciler = reconciler
        self.alarms: AlarmMonitor | None = None
        self.alerts: AlertDesk | None = None
        # What the lanes and the lot-full sign learn once the batch holding it has committed.
        self._after_commit: list[Callable[[], object]] = []
        self.inside = CarsInside(matching or MatchPolicy())
        for row in store.open_sessions():  # a restart forgets nobody inside
            self.inside.enter(row["plate"], row["session_id"])
        self.batch_size = BATCH_SIZE
        self._inbox = Inbox()
        # Answered decide requests whose decision is not written yet (worker thread only).
        self._unrecorded: list[tuple[Inbound, DecideRequest, DecideReply, datetime,
                                     str | None, str | None]] = []
        self._worker: threading.Thread | None = None
        self._idle = threading.Condition()
        self._in_flight = 0
        # Counted once committed: what the database holds, not what is in a transaction.
        self.dead_letters = 0
        self.duplicates = 0
        self.events_stored = 0
        self.batches = 0
        self.decides_answered = 0
        self.late_decisions_ignored = 0  # answers a lane had already decided without
        self.commit_failures = 0

    # lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker and subscribe; call before the bus starts (acks are manual)."""
        self._bus.enable_manual_ack()
        self._worker = threading.Thread(target=self._run, name="gateway", daemon=True)
        self._worker.start()
        self._bus.subscribe_deliveries(topics.all_lane(self.site, "event"), self._enqueue_event)
        self._bus.subscribe_deliveries(topics.all_lane(self.site, "decide"),
                                       self._enqueue_decide)
        if self.replicas is not None:
            self._bus.subscribe(topics.all_lane(self.site, "state"), self._lane_state)

    def attach_safety(self, alarms: AlarmMonitor, alerts: AlertDesk) -> None:
        """Fire, flood and supervision (docs/alarms-and-alerts.md): sensor readings, node
        states, the site alarms and staff acknowledgements are handled on the worker, in
        arrival order with lane events. Call before :meth:`start`."""
        self.alarms, self.alerts = alarms, alerts

        def reading(topic: str, payload: bytes) -> None:
            self._inbox.put(Job(lambda: self._safely(
                topic, payload, lambda: alarms.handle(decode(topic, payload))), Future()))

        def ack(topic: str, payload: bytes) -> None:
            self._inbox.put(Job(lambda: self._safely(
                topic, payload, lambda: alerts.handle_ack_message(topic, payload)), Future()))

        for topic_filter in (topics.all_sensor(self.site, "reading"),
                             topics.all_sensor(self.site, "state"),
                             topics.all_alarms(self.site)):
            self._bus.subscribe(topic_filter, reading)
        self._bus.subscribe(alerts.ack_filter(), ack)
        self._bus.when_connected(lambda: self._inbox.put(Job(alerts.republish, Future())))

    def attach_patrols(self, desk: PatrolDesk) -> None:
        """Checkpoint taps (docs/patrols.md), ingested on the worker in arrival order; a bad
        one is dead-lettered. Call before :meth:`start`."""

        def tap(topic: str, payload: bytes) -> None:
            received = self._clock.now()

            def handle() -> None:
                value = decode(topic, payload)
                if not isinstance(value, PatrolTap):
                    raise ContractError(f"{topic}: not a patrol tap")
                desk.ingest(value, received)

            self._inbox.put(Job(lambda: self._safely(topic, payload, handle), Future()))

        self._bus.subscribe(topics.all_patrol_taps(self.site), tap)

    def _safely(self, topic: str, payload: bytes, handle: Callable[[], object]) -> None:
        """A safety message handled on the worker; a bad one is dead-lettered."""
        try:
            handle()
        except (ContractError, ParkGuardError) as error:
            self._dead_letter_now(topic, payload, str(error))

    def _lane_state(self, topic: str, payload: bytes) -> None:
        """A lane that comes back online gets a fresh replica snapshot (it may have missed
        deltas while it was away)."""
        try:
            state = decode(topic, payload)
        except ContractError:
            return  # the lane's own retained state: not ours to dead-letter
        if isinstance(state, LaneState) and state.online and self.replicas is not None:
            replicas, lane = self.replicas, topics.parse_topic(topic).node
            if lane in replicas.lanes:
                self._inbox.put(Job(lambda: replicas.publish_snapshot(lanes=[lane]), Future()))

    def _dead_letter_now(self, topic: str, payload: bytes, reason: str) -> None:
        log.warning("gateway: dead-lettered message on %s: %s", topic, reason)
        self.dead_letters += 1
        with self.store.atomic():
            self.store.dead_letter(received_at=utc_iso(self._clock.now()), topic=topic,
                                   payload=payload, reason=reason)

    def stop(self) -> None:
        """Handle what is queued, then end the worker. Whatever the bus can no longer
        acknowledge (it stopped first) is redelivered next time and deduped."""
        self._inbox.stop()
        if self._worker is not None:
            self._worker.join(timeout=10)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every message received so far has been handled (tests, the simulator)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    # the pay page -------------------------------------------------------------------

    def bill_for(self, plate: str) -> Bill | None:
        """What the car inside with this plate would pay leaving now (the pay page), or None
        if no car with that plate is inside. The driver types or confirms the plate, so it
        is looked up as spelled (normalised), never guessed."""
        return self.call(lambda: self._bill_for(plate))

    def prepay(self, plate: str) -> PendingPayment | None:
        """Open a provider order for what this stay owes now; None if it owes nothing or
        the car is not inside. The provider's signed callback
        (``billing.payments.handle_callback``) records the payment and starts the grace
        time. Older debts are shown on the bill and collected at the exit."""

        def open_order() -> PendingPayment | None:
            bill = self._bill_for(plate)
            if bill is None or bill.stay_due_fen == 0:
                return None
            return self.billing.payments.start_prepayment(bill.session_id, bill.plate,
                                                          bill.stay_due_fen)

        return self.call(open_order)

    def payment_callback(self, body: bytes, signature: str) -> Payment:
        """The provider's signed "paid" notice, as its HTTP callback delivers it: recorded
        once however often it comes; a bad signature or unknown order raises and records
        nothing."""
        def record() -> Payment:
            payment = self.billing.payments.handle_callback(body, signature)
            if self.replicas is not None and payment.session_id is not None:
                self.replicas.paid(payment.session_id)
            return payment

        return self.call(record)

    def _bill_for(self, plate: str) -> Bill | None:
        session_id = self.inside.session_of(plate)
        session = self.store.session(session_id) if session_id else None
        return self.billing.bill(session, self._clock.now()) if session else None

    # the loop ----------------------------------------------------------------------

    def _enqueue_event(self, delivery: Delivery) -> None:
        self._inbox.put(self._inbound(delivery))

    def _enqueue_decide(self, delivery: Delivery) -> None:
        self._inbox.put_decide(self._inbound(delivery))

    def _inbound(self, delivery: Delivery) -> Inbound:
        with self._idle:
            self._in_flight += 1
        return Inbound(delivery.topic, delivery.payload, self._clock.now(), delivery)

    def _settle(self, items: list[Inbound]) -> None:
        """These messages are dealt with: ``wait_idle`` stops counting them."""
        fresh = [item for item in items if not item.settled]
        for item in fresh:
            item.settled = True
        with self._idle:
            self._in_flight -= len(fresh)
            self._idle.notify_all()

    def call(self, work: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``work`` on the worker thread, between messages, and return its result.

        The desks (passes, merchants, payments) write through the worker's connection; an
        office action (issue a pass, refund, override a fee) queues here so it is never
        interleaved with an exit being billed. Exceptions raised by ``work`` reach the caller.
        """
        if self._worker is None or not self._worker.is_alive():
            return work()  # not running: the caller's thread is the only one
        job: Job[T] = Job(self._office(work), Future())
        self._inbox.put(job)
        return job.result.result(timeout)

    def _office(self, work: Callable[[], T]) -> Callable[[], T]:
        """An office action, then tell the lanes if it changed passes or lists (the pay page
        and the dashboard's reads cost nothing more)."""

        def run() -> T:
            before = self.billing.access.changes
            result = work()
            if self.replicas is not None and self.billing.access.changes != before:
                self.replicas.passes_changed()
            return result

        return run

    def _run(self) -> None:
        while True:
            kind, work = self._inbox.next(self.batch_size)
            if work is None:
                return
            if isinstance(work, Job):
                work.run()
            elif kind == "decides":
                self._guard(self._answer, work)
            else:
                self._guard(self._ingest_batch, work)

    def _guard(self, step: Callable[[list[Inbound]], None], items: list[Inbound]) -> None:
        """Run one step of the loop; if its transaction could not commit, acknowledge
        nothing (the broker redelivers it all on the next connection) and reread what the
        worker keeps in memory from the file."""
        try:
            step(items)
        except Exception:
            self.commit_failures += 1
            log.critical("gateway: %d messages not committed and not acknowledged; they come "
                         "back when the gateway reconnects", len(items), exc_info=True)
            self._unrecorded.clear()
            self._after_commit.clear()
            if self.capacity is not None:
                self.capacity.load(self.store.open_sessions_by_lane())
            self.store.forget_seq_cache()
            self.inside = CarsInside(self.inside.policy)
            for row in self.store.open_sessions():
                self.inside.enter(row["plate"], row["session_id"])
            self._settle(items)

    def _ingest_batch(self, items: list[Inbound]) -> None:
        """Store a batch of lane events in one transaction, each in a savepoint of its own
        (a bad one is dead-lettered, not the batch); acknowledge them once committed.

        A decide request that arrives meanwhile cuts the batch short: what is done is
        committed and the rest goes back to the head of the queue, so a request waits for
        one event and one commit, not for a whole batch of billed exits.
        """
        stored = duplicates = 0
        letters: list[tuple[Inbound, str]] = []
        with self.store.atomic():
            for index, item in enumerate(items):
                if index and self._inbox.decides_waiting():
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
        self.batches += 1

    def _store_inbound(self, item: Inbound) -> bool:
        message = decode(item.topic, item.payload)
        if not isinstance(message, LANE_EVENT_TYPES):
            raise ContractError(f"{type(message).__name__} is not a lane event")
        return self._store_event(message, item.received_at)

    def _attempt(self, work: Callable[[], T]) -> tuple[T | None, str | None]:
        """``work()`` in a savepoint: (its result, None), or (None, why) if it failed — the
        savepoint rolled back and the batch goes on without it."""
        try:
            with self.store.atomic():
                return work(), None
        except ContractError as error:
            return None, str(error)
        except Exception as error:  # never let one message stop the gateway
            log.exception("gateway: failed to handle a message")
            return None, f"handler error: {type(error).__name__}: {error}"

    def _committed(self, items: list[Inbound], *, stored: int = 0, duplicates: int = 0,
                   letters: list[tuple[Inbound, str]] | None = None) -> None:
        """After the commit: acknowledge, tell the lanes and the lot-full sign, count, and
        tell ``wait_idle``."""
        for item in items:
            item.delivery.ack()
        tell, self._after_commit = self._after_commit, []
        for step in tell:
            try:
                step()
            except Exception:  # a lane replica or sign is late, never the books
                log.exception("gateway: could not publish a replica or capacity change")
        self.events_stored += stored
        self.duplicates += duplicates
        for item, reason in letters or ():
            self.dead_letters += 1
            log.warning("gateway: dead-lettered message on %s: %s", item.topic, reason)
        self._settle(items)

    def _write_dead_letter(self, item: Inbound, reason: str) -> None:
        self.store.dead_letter(
            received_at=utc_iso(item.received_at), topic=item.topic, payload=item.payload,
            reason=reason,
        )

    def _answer(self, items: list[Inbound]) -> None:
        """Answer each waiting request at once, then write the decisions in one transaction
        and acknowledge the requests.

        Answer first, write after: the lane is waiting on its deadline. Every decision is
        written before the worker takes any lane event that arrived after its request (the
        pass that needs it): at the end of this step, or before a re-check ingests a batch.
        """
        letters: list[tuple[Inbound, str]] = []
        too_late: list[Inbound] = []
        for item in items:
            try:
                request = decode(item.topic, item.payload)
                if not isinstance(request, DecideRequest):
                    raise ContractError(f"{type(request).__name__} is not a decide request")
                if self._past_deadline(request):
                    too_late.append(item)
                    continue
                now, reply, evidence, terms = self._decide(request)
            except ContractError as error:
                letters.append((item, str(error)))
                continue
            except Exception as error:
                log.exception("gateway: failed to decide on %s", item.topic)
                letters.append((item, f"handler error: {type(error).__name__}: {error}"))
                continue
            self._bus.publish(topics.lane_decide_reply(self.site, request.lane), reply)
            self._unrecorded.append((item, request, reply, now, evidence, terms))
        self._record_decisions(letters, skipped=too_late)

    def _past_deadline(self, request: DecideRequest) -> bool:
        """A request the lane has stopped waiting for (queued while the broker or the gateway
        was down): the lane decided alone and journals that decision, so an answer now would
        only be a second, different verdict on the same car. Not answered, not recorded."""
        if self._clock.now() <= request.ts + timedelta(milliseconds=request.deadline_ms):
            return False
        self.late_decisions_ignored += 1
        return True

    def _record_decisions(self, letters: list[tuple[Inbound, str]] | None = None, *,
                          skipped: list[Inbound] | None = None) -> None:
        """Write the answered decisions (and dead letters) in one transaction; acknowledge
        them, and the requests skipped as too late."""
        answered, self._unrecorded = self._unrecorded, []
        if not answered and not letters:
            if skipped:
                self._committed(skipped)
            return
        with self.store.atomic():
            for _item, request, reply, now, evidence, terms in answered:
                _, reason = self._attempt(partial(self._record_decision, request, reply, now,
                                                  evidence, terms))
                if reason is not None:
                    log.error("gateway: decision %s not recorded: %s", request.correlation_id,
                              reason)
            for item, reason in letters or ():
                self._write_dead_letter(item, reason)
        self.decides_answered += len(answered)
        self._committed([entry[0] for entry in answered] + [item for item, _ in letters or ()]
                        + list(skipped or ()), letters=letters)

    def _decide(self, request: DecideRequest
                ) -> tuple[datetime, DecideReply, str | None, str | None]:
        """The verdict, taken again after ingesting what is queued if it may only be due to
        events still waiting behind the request (see :data:`_BACKLOG_SENSITIVE`)."""
        now = self._clock.now()
        reply, evidence, terms = self._verdict(request, now)
        while reply.reason in _BACKLOG_SENSITIVE:
            waiting = self._inbox.take_events(self.batch_size)
            if not waiting:
                break
            self._record_decisions()  # before any event that may need one of them
            self._guard(self._ingest_batch, waiting)
            now = self._clock.now()
            reply, evidence, terms = self._verdict(request, now)
        return now, reply, evidence, terms

    # decisions ---------------------------------------------------------------------------

    def _record_decision(self, request: DecideRequest, reply: DecideReply, now: datetime,
                         evidence: str | None, bill: str | None) -> None:
        self.store.db.table("decisions").insert({
            "correlation_id": request.correlation_id, "lane": request.lane,
            "direction": request.direction, "plate": request.plate, "action": reply.action,
            "reason": reply.reason, "fee_fen": reply.fee_fen, "session_id": reply.session_id,
            "requested_at": utc_iso(request.ts), "answered_at": utc_iso(now), "match": evidence,
            "bill": bill,
        }, ignore=True)

    def _verdict(self, request: DecideRequest,
                 now: datetime) -> tuple[DecideReply, str | None, str | None]:
        """The reply, the matcher's evidence for an exit, and the terms (entry) or bill (exit)
        as JSON, all kept with the decision."""

        def reply(action: str, reason: str, zh: str, en: str, **extra: Any) -> DecideReply:
            return DecideReply(correlation_id=request.correlation_id, action=action,  # type: ignore[arg-type]
                               reason=reason, display_zh=zh[:64], display_en=en[:64], ts=now,
                               **extra)

        read = request.plate or request.identity  # a no-plate car: the kiosk's identity
        if read is None:
            return reply("refuse", "plate_unread", "未识别车牌 请按帮助键",
                         "Plate not read: press Help"), None, None
        if request.direction == "entry":
            reply_, terms = self._entry_verdict(read, request.lane, reply)
            return reply_, None, terms
        result, session_id = self.inside.match(matchable_read(read, request.char_confidences))
        evidence = json.dumps(result.evidence(), ensure_ascii=False)
        session = self.store.session(session_id) if session_id else None
        if result.outcome == "ambiguous":
            return reply("refuse", "plate_ambiguous", "车牌不清 请稍候 保安核实",
                         "Plate unclear: a guard will check"), evidence, None
        if session is None:
            return reply("refuse", "no_entry_record", "无入场记录 请按帮助键",
                         "No entry record: press Help"), evidence, None
        bill = self.billing.bill(session, now)
        if self.alarms is not None and self.alarms.billing_suspended():
            zh, en = self.alarms.lane_display("exit") or ("火警 请立即离场", "FIRE - LEAVE NOW")
            return (reply("open", "fire_free_exit", zh, en, session_id=session["session_id"]),
                    evidence, json.dumps(_fire_free(bill.as_json()), ensure_ascii=False))
        zh, en = bill.display()
        return (reply("open", bill.reason, zh, en, fee_fen=bill.due_fen,
                      session_id=session["session_id"]),
                evidence, json.dumps(bill.as_json(), ensure_ascii=False))
    def _entry_verdict(self, read: str, lane: str,
                       reply: Callable[..., DecideReply]) -> tuple[DecideReply, str | None]:
        """Alarms, blacklist, lot full, then whitelist, pass or visitor, with the terms kept
        for the entry; old debts are shown on the display (they are collected at the exit)."""
        closed = self.alarms.entries_closed() if self.alarms is not None else None
        if closed is not None and self.alarms is not None:
            zh, en = self.alarms.lane_display("entry") or ("暂停入场", "Entry closed")
            return reply("refuse", f"entries_closed_{closed}", zh, en), None
        plate = self.inside.spelling(read)
        shown = shown_on_display(plate)
        inside = self.inside.session_of(read)
        if inside is not None:
            return reply("open", "already_inside", f"{shown} 欢迎光临", f"Welcome {shown}",
                         session_id=inside), None
        access = self.billing.access.entry_access(plate)
        if access.refused:
            return reply("refuse", access.reason, access.display_zh, access.display_en), None
        if self.capacity is not None and not self.capacity.admits(access.kind, lane):
            return reply("refuse", LOT_FULL, f"{FULL_DISPLAY_ZH} 请勿进入",
                         f"Car park {FULL_DISPLAY_EN}"), None
        terms: dict[str, Any] = {"access": access.kind, "pass_id": access.pass_id,
                                 "reason": access.reason}
        zh, en = access.display_zh, access.display_en
        owed = sum(debt.amount_fen for debt in self.billing.payments.debts_for(plate))
        if owed:
            terms["owed_fen"] = owed
            zh = f"{shown} 欠费{format_yuan(owed)} 出场补缴"
            en = f"Unpaid {format_yuan(owed)}: pay at exit"
        elif access.reason == "no_pass":
            zh, en = f"{shown} 欢迎光临", f"Welcome {shown}"
        reason = {"visitor": "visitor_entry", "pass": "pass_entry",
                  "whitelisted": "whitelisted_entry"}[access.kind]
        if access.reason == "pass_in_use":
            reason = "pass_in_use"
        return (reply("open", reason, zh, en, session_id=f"s-{uuid.uuid4().hex[:16]}"),
                json.dumps(terms))

    # events ----------------------------------------------------------------------------

    def ingest(self, event: LaneEvent, received_at: datetime) -> bool:
        """Store one event once by ``event_id`` in a transaction of its own (or a savepoint of
        the caller's); say whether it was new. The worker batches through ``_store_event``."""
        with self.store.atomic():
            is_new = self._store_event(event, received_at)
        if is_new:
            self.events_stored += 1
        else:
            self.duplicates += 1
        return is_new

    def _store_event(self, event: LaneEvent, received_at: datetime) -> bool:
        """Store the event unless its ``event_id`` is known, note its ``seq``, and act on it:
        a pass opens or closes a session, a payment code is charged. True if it was new."""
        arrived = utc_iso(received_at)
        is_new = self.store.insert_event_once({
            "event_id": event.event_id, "lane": event.lane, "seq": event.seq,
            "type": event.type, "ts": utc_iso(event.ts),
            "payload": event.model_dump_json(), "received_at": arrived,
        })
        if not is_new:
            return False
        if isinstance(event, Passed):
            self._vehicle_passed(event)
            self._help_answered(event.lane, "a car went through")
        elif isinstance(event, HelpPressed):
            self._help_requested(event)
        elif isinstance(event, PaymentCode) and event.fee_fen:
            self._payment_code(event)
        elif isinstance(event, Fault) and event.code == "replica_gap" and self.replicas:
            replicas, lane = self.replicas, event.lane  # it missed deltas: a fresh snapshot
            self._after_commit.append(lambda: replicas.publish_snapshot(lanes=[lane]))
        self.store.track_seq(event.lane, event.seq, arrived)  # last: a failure above forgets it
        return True

    def _help_requested(self, event: HelpPressed) -> None:
        """The driver pressed the help button: the guard on duty is alerted (and the ladder
        escalates until someone acknowledges); a guard can open the lane remotely."""
        if self.alerts is None:
            log.warning("gateway: help pressed at %s and no alert roster to tell", event.lane)
            return
        alerts, lane = self.alerts, event.lane
        self._after_commit.append(lambda: alerts.raise_alert(
            f"help:{lane}", kind="help", severity="warning",
            title_zh=f"{lane} 车道求助", title_en=f"Help requested at lane {lane}",
            detail=f"help button pressed at {utc_iso(event.ts)}"))

    def _help_answered(self, lane: str, reason: str) -> None:
        """A car went through the lane (often on a guard's remote open): its help call is over."""
        if self.alerts is not None:
            alerts = self.alerts
            self._after_commit.append(
                lambda: alerts.resolve_key(f"help:{lane}", "gateway", reason))

    def _vehicle_passed(self, event: Passed) -> None:
        decision = self.store.decision(event.correlation_id)
        lane_decision = self.store.lane_decision(event.lane, event.correlation_id)
        if decision is not None and (lane_decision or {}).get("decided_by") == "lane":
            # The gateway answered after the lane's deadline (a request queued while the
            # broker or the gateway was down): the lane's own verdict is what happened.
            self.late_decisions_ignored += 1
            decision = None
        if event.direction == "entry":
            self._car_entered(event, decision)
        else:
            self._car_left(event, decision)

    def _lane_alone(self, event: Passed) -> str:
        """Why a passage has no gateway decision: a guard's manual open (the lane reports the
        command's nonce as the correlation id), or the lane deciding alone."""
        lane_decision = self.store.lane_decision(event.lane, event.correlation_id)
        reason = (lane_decision or {}).get("reason")
        if reason == "manual_open":
            return "opened by hand from the control room (lane.open in the audit log)"
        if reason == "fire_open":
            return "through a barrier held open by the fire alarm (not billed)"
        return "while the gateway was unreachable"

    def _car_entered(self, event: Passed, decision: dict[str, Any] | None) -> None:
        if decision and decision["reason"] == "already_inside":
            return
        session_id = (decision or {}).get("session_id") or f"s-{uuid.uuid4().hex[:16]}"
        read = event.plate or event.identity
        plate = self.inside.spelling(read) if read else ""
        review = None if decision else f"entered {self._lane_alone(event)}"
        if self.reconciler is not None and plate:
            inside_id = self.inside.session_of(plate)
            conflict = self.reconciler.check_entry(
                event, self.store.session(inside_id) if inside_id else None,
                "gateway" if decision else "lane")
            if conflict is not None:  # the car is inside all the same: open its session
                review = f"conflict {conflict.id}: {conflict.detail}"
        if not self.inside.enter(plate, session_id):
            review = f"entered without a plate the exit can match (read {event.plate!r})"
        terms = json.loads(decision["bill"]) if decision and decision.get("bill") else None
        if terms is None and plate:  # let in by the lane alone: the terms it would have had
            access = self.billing.access.entry_access(plate)
            if access.refused:
                review = f"{access.reason} car entered while the gateway was unreachable"
            terms = {"access": "visitor" if access.refused else access.kind,
                     "pass_id": access.pass_id}
        kind, pass_id = (terms or {}).get("access", "visitor"), (terms or {}).get("pass_id")
        if pass_id and not self._occupy(pass_id, session_id, plate):
            kind, pass_id = "visitor", None
        self.store.db.table("sessions").insert({
            "session_id": session_id, "plate": plate, "state": "open",
            "entry_lane": event.lane, "entry_at": utc_iso(event.ts),
            "entry_event_id": event.event_id, "fee_fen": 0, "tariff": self.pricing.source,
            "review": review, "entry_read": read, "access": kind, "pass_id": pass_id,
        }, ignore=True)
        if self.replicas is not None:
            replicas = self.replicas
            self._after_commit.append(lambda: replicas.session_opened(
                session_id, plate, event.ts, kind, pass_id))
        if self.capacity is not None:
            capacity = self.capacity
            self._after_commit.append(lambda: capacity.entered(session_id, event.lane, kind))

    def _occupy(self, pass_id: str, session_id: str, plate: str) -> bool:
        """Count the car on its pass; False (a visitor) when the pass already had its car
        inside or no longer holds the plate."""
        try:
            return self.billing.access.occupy(pass_id, session_id, plate)
        except AccessError as error:
            log.warning("gateway: session %s priced as a visitor: %s", session_id, error)
            return False

    def _car_left(self, event: Passed, decision: dict[str, Any] | None) -> None:
        session_id = decision["session_id"] if decision else None
        evidence = decision["match"] if decision else None
        read = event.plate or event.identity
        if session_id is None and read:  # let out by the lane alone: find it now
            result, session_id = self.inside.match(matchable_read(read))
            evidence = json.dumps(result.evidence(), ensure_ascii=False)
        session = self.store.session(session_id) if session_id else None
        if session is None or session["state"] == "closed":
            self._exit_conflict(event, session, decision)
            return
        if decision and decision.get("bill"):
            bill = json.loads(decision["bill"])
            review = None
        else:  # let out by the lane alone: bill the stay as the lane priced it
            lane_decision = self.store.lane_decision(event.lane, event.correlation_id) or {}
            decided_at = lane_decision.get("ts")
            at = datetime.fromisoformat(decided_at) if decided_at else event.ts
            bill = self.billing.bill(session, at).as_json()
            if lane_decision.get("reason") == "fire_open":  # everyone out, nobody billed
                bill = _fire_free(bill)
            review = f"left {self._lane_alone(event)}"
        review = self._take_exit_money(session, bill, event) or review
        self.store.db.table("sessions").update(session["session_id"], {
            "state": "closed", "exit_lane": event.lane, "exit_at": utc_iso(event.ts),
            "exit_event_id": event.event_id, "fee_fen": bill["fee_fen"],
            "exit_read": read, "exit_match": evidence, "review": review,
        })
        self.billing.access.release(session["session_id"])
        self.inside.leave(session["session_id"])
        closed_id = session["session_id"]
        if self.replicas is not None:
            replicas = self.replicas
            self._after_commit.append(lambda: replicas.session_closed(closed_id, event.ts))
        if self.capacity is not None:
            capacity = self.capacity
            self._after_commit.append(lambda: capacity.left(closed_id))

    def _exit_conflict(self, event: Passed, session: dict[str, Any] | None,
                       decision: dict[str, Any] | None) -> None:
        """An exit with no open session (never seen coming in, or already out): recorded
        for a person to review, never merged into a session silently."""
        if self.reconciler is None:
            log.warning("gateway: exit at %s with no session to close", event.lane)
            return
        self.reconciler.check_exit(event, session, "gateway" if decision else "lane")

    def _take_exit_money(self, session: dict[str, Any], bill: dict[str, Any],
                         event: Passed) -> str | None:
        """Book what the lane collected, what the merchants' coupons paid, and any shortfall
        as a debt the plate's next entry shows; say what a person should look at, if any."""
        session_id, plate = session["session_id"], session["plate"]
        payments, collected = self.billing.payments, event.fee_fen
        stay_paid = min(collected, bill["stay_due_fen"])
        if stay_paid:
            payments.record_exit_payment(session_id, plate, stay_paid, "exit",
                                         idempotency_key=event.event_id)
        if bill["debts_fen"] and collected - stay_paid >= bill["debts_fen"]:
            payments.settle_debts(plate, "exit", "gateway", idempotency_key=event.event_id)
        note = None
        shortfall = bill["stay_due_fen"] - stay_paid
        if shortfall and plate:
            payments.record_debt(session_id, plate, shortfall,
                                 f"left {event.lane} without paying",
                                 idempotency_key=event.event_id)
            note = f"left without paying {format_yuan(shortfall)}: booked as a debt"
        for coupon_id, applied in bill["coupons"]:
            try:
                self.billing.merchants.redeem(coupon_id, session_id=session_id, plate=plate,
                                              applied_fen=applied)
            except MerchantError as error:
                log.warning("gateway: coupon %s not charged for %s: %s", coupon_id, session_id,
                            error)
                note = f"coupon {coupon_id} could not be charged: {error}"
        return note

    def _payment_code(self, event: PaymentCode) -> None:
        """A code scanned at a lane, live or from its journal: charge it once; a declined
        code becomes a debt on the plate."""
        plate = self.inside.spelling(event.plate) if event.plate else ""
        session_id = self.inside.session_of(plate) if plate else None
        if session_id is None and plate:
            session_id = self.store.last_session_id(plate)
        if session_id is None:
            raise ContractError(f"payment code at {event.lane} for plate {event.plate!r}, "
                                "which has no session: kept for a person to settle")
        self.billing.payments.pay_with_code(session_id, plate, event.code, event.fee_fen,
                                            captured_at=event.ts, event_id=event.event_id)


def _fire_free(bill: dict[str, Any]) -> dict[str, Any]:
    """A bill with billing suspended by the fire alarm: nothing due, nothing booked; the fee
    it would have been is kept for the record."""
    return {**bill, "fee_fen": 0, "stay_due_fen": 0, "debts_fen": 0, "due_fen": 0,
            "coupons": [], "reason": "fire_free_exit", "suspended_fee_fen": bill["fee_fen"]}
