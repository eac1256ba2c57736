"""The gateway's message loop: ingest lane events once each, answer decide requests, keep sessions.

MQTT callbacks only enqueue; one worker thread owns the database. A payload
that fails validation is counted, logged with its reason and dead-lettered,
and the loop goes on with the next message.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from broker.bus import MqttBus
from broker.contract import topics
from broker.contract.messages import (
    LANE_EVENT_TYPES,
    DecideReply,
    DecideRequest,
    LaneEvent,
    Passed,
    PaymentCode,
    decode,
)
from gateway.billing import Bill, Billing
from gateway.inside import CarsInside, ocr_read
from gateway.merchants import MerchantError
from gateway.payments import Payment, PendingPayment
from gateway.store import GatewayStore
from parkguard.clock import Clock, utc_iso
from parkguard.core.access import AccessError
from parkguard.core.plates import MatchPolicy
from parkguard.core.tariffs import format_yuan
from parkguard.errors import ContractError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Inbound:
    topic: str
    payload: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class _Job(Generic[T]):
    work: Callable[[], T]
    result: Future[T]

    def run(self) -> None:
        try:
            self.result.set_result(self.work())
        except BaseException as error:  # handed to the caller, who decides
            self.result.set_exception(error)


_STOP = object()


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
    ) -> None:
        self.site = site
        self._clock = clock
        self.store = store
        self._bus = bus
        self.billing = billing
        self.pricing = billing.pricing
        self.inside = CarsInside(matching or MatchPolicy())
        for row in store.open_sessions():  # a restart forgets nobody inside
            self.inside.enter(row["plate"], row["session_id"])
        self._inbox: queue.Queue[_Inbound | _Job[Any] | object] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._idle = threading.Condition()
        self._in_flight = 0
        self.dead_letters = 0
        self.duplicates = 0
        self.events_stored = 0

    # lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self._worker = threading.Thread(target=self._run, name="gateway", daemon=True)
        self._worker.start()
        self._bus.subscribe(topics.all_lane(self.site, "event"), self._enqueue)
        self._bus.subscribe(topics.all_lane(self.site, "decide"), self._enqueue)

    def stop(self) -> None:
        self._inbox.put(_STOP)
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
        return self.call(lambda: self.billing.payments.handle_callback(body, signature))

    def _bill_for(self, plate: str) -> Bill | None:
        session_id = self.inside.session_of(plate)
        session = self.store.session(session_id) if session_id else None
        return self.billing.bill(session, self._clock.now()) if session else None

    # the loop ----------------------------------------------------------------------

    def _enqueue(self, topic: str, payload: bytes) -> None:
        with self._idle:
            self._in_flight += 1
        self._inbox.put(_Inbound(topic, payload, self._clock.now()))

    def call(self, work: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``work`` on the worker thread, between messages, and return its result.

        The desks (passes, merchants, payments) write through the worker's connection; an
        office action (issue a pass, refund, override a fee) queues here so it is never
        interleaved with an exit being billed. Exceptions raised by ``work`` reach the caller.
        """
        if self._worker is None or not self._worker.is_alive():
            return work()  # not running: the caller's thread is the only one
        job: _Job[T] = _Job(work, Future())
        self._inbox.put(job)
        return job.result.result(timeout)

    def _run(self) -> None:
        while True:
            item = self._inbox.get()
            if isinstance(item, _Job):
                item.run()
                continue
            if not isinstance(item, _Inbound):  # the stop marker
                return
            try:
                self._handle(item)
            except ContractError as error:
                self._dead_letter(item, str(error))
            except Exception as error:  # never let one message stop the gateway
                log.exception("gateway: failed to handle %s", item.topic)
                self._dead_letter(item, f"handler error: {type(error).__name__}: {error}")
            finally:
                with self._idle:
                    self._in_flight -= 1
                    self._idle.notify_all()

    def _dead_letter(self, item: _Inbound, reason: str) -> None:
        self.dead_letters += 1
        log.warning("gateway: dead-lettered message on %s: %s", item.topic, reason)
        self.store.dead_letter(
            received_at=utc_iso(item.received_at), topic=item.topic, payload=item.payload,
            reason=reason,
        )

    def _handle(self, item: _Inbound) -> None:
        message = decode(item.topic, item.payload)
        if isinstance(message, DecideRequest):
            # Answer first, write after: the lane is waiting on its deadline, and this worker
            # records the decision before it looks at the next message (the pass that
            # needs it).
            now = self._clock.now()
            reply, evidence, terms = self._verdict(message, now)
            self._bus.publish(topics.lane_decide_reply(self.site, message.lane), reply)
            self._record_decision(message, reply, now, evidence, terms)
        elif isinstance(message, LANE_EVENT_TYPES):
            self.ingest(message, item.received_at)

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

        read = request.plate
        if read is None:
            return reply("refuse", "plate_unread", "未识别车牌 请按帮助键",
                         "Plate not read: press Help"), None, None
        if request.direction == "entry":
            reply_, terms = self._entry_verdict(read, reply)
            return reply_, None, terms
        result, session_id = self.inside.match(ocr_read(read, request.char_confidences))
        evidence = json.dumps(result.evidence(), ensure_ascii=False)
        session = self.store.session(session_id) if session_id else None
        if result.outcome == "ambiguous":
            return reply("refuse", "plate_ambiguous", "车牌不清 请稍候 保安核实",
                         "Plate unclear: a guard will check"), evidence, None
        if session is None:
            return reply("refuse", "no_entry_record", "无入场记录 请按帮助键",
                         "No entry record: press Help"), evidence, None
        bill = self.billing.bill(session, now)
        zh, en = bill.display()
        return (reply("open", bill.reason, zh, en, fee_fen=bill.due_fen,
                      session_id=session["session_id"]),
                evidence, json.dumps(bill.as_json(), ensure_ascii=False))
    def _entry_verdict(self, read: str,
                       reply: Callable[..., DecideReply]) -> tuple[DecideReply, str | None]:
        """Blacklist, whitelist, pass or visitor, with the terms kept for the entry; old
        debts are shown on the display (they are collected at the exit)."""
        plate = self.inside.spelling(read)
        inside = self.inside.session_of(read)
        if inside is not None:
            return reply("open", "already_inside", f"{plate} 欢迎光临", f"Welcome {plate}",
                         session_id=inside), None
        access = self.billing.access.entry_access(plate)
        if access.refused:
            return reply("refuse", access.reason, access.display_zh, access.display_en), None
        terms: dict[str, Any] = {"access": access.kind, "pass_id": access.pass_id,
                                 "reason": access.reason}
        zh, en = access.display_zh, access.display_en
        owed = sum(debt.amount_fen for debt in self.billing.payments.debts_for(plate))
        if owed:
            terms["owed_fen"] = owed
            zh = f"{plate} 欠费{format_yuan(owed)} 出场补缴"
            en = f"Unpaid {format_yuan(owed)}: pay at exit"
        elif access.reason == "no_pass":
            zh, en = f"{plate} 欢迎光临", f"Welcome {plate}"
        reason = {"visitor": "visitor_entry", "pass": "pass_entry",
                  "whitelisted": "whitelisted_entry"}[access.kind]
        if access.reason == "pass_in_use":
            reason = "pass_in_use"
        return (reply("open", reason, zh, en, session_id=f"s-{uuid.uuid4().hex[:16]}"),
                json.dumps(terms))

    # events ----------------------------------------------------------------------------

    def ingest(self, event: LaneEvent, received_at: datetime) -> None:
        """Store each event once by ``event_id``; a pass opens or closes a session."""
        with self.store.atomic():
            is_new = self.store.insert_event_once({
                "event_id": event.event_id, "lane": event.lane, "seq": event.seq,
                "type": event.type, "ts": utc_iso(event.ts),
                "payload": event.model_dump_json(), "received_at": utc_iso(received_at),
            })
            if not is_new:
                self.duplicates += 1
                return
            self.events_stored += 1
            if isinstance(event, Passed):
                self._vehicle_passed(event)
            elif isinstance(event, PaymentCode) and event.fee_fen:
                self._payment_code(event)

    def _vehicle_passed(self, event: Passed) -> None:
        decision = self.store.decision(event.correlation_id)
        if event.direction == "entry":
            self._car_entered(event, decision)
        else:
            self._car_left(event, decision)

    def _car_entered(self, event: Passed, decision: dict[str, Any] | None) -> None:
        if decision and decision["reason"] == "already_inside":
            return
        session_id = (decision or {}).get("session_id") or f"s-{uuid.uuid4().hex[:16]}"
        plate = self.inside.spelling(event.plate) if event.plate else ""
        review = None if decision else "entered while the gateway was unreachable"
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
            "review": review, "entry_read": event.plate, "access": kind, "pass_id": pass_id,
        }, ignore=True)

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
        if session_id is None and event.plate:  # let out by the lane alone: find it now
            result, session_id = self.inside.match(ocr_read(event.plate))
            evidence = json.dumps(result.evidence(), ensure_ascii=False)
        session = self.store.session(session_id) if session_id else None
        if session is None:
            log.warning("gateway: exit at %s with no session to close", event.lane)
            return
        if decision and decision.get("bill"):
            bill = json.loads(decision["bill"])
            review = None
        else:  # let out by the lane alone: bill the stay as it ended
            bill = self.billing.bill(session, event.ts).as_json()
            review = "left while the gateway was unreachable"
        review = self._take_exit_money(session, bill, event) or review
        self.store.db.table("sessions").update(session["session_id"], {
            "state": "closed", "exit_lane": event.lane, "exit_at": utc_iso(event.ts),
            "exit_event_id": event.event_id, "fee_fen": bill["fee_fen"],
            "exit_read": event.plate, "exit_match": evidence, "review": review,
        })
        self.billing.access.release(session["session_id"])
        self.inside.leave(session["session_id"])

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
