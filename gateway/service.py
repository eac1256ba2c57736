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
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from broker.bus import MqttBus
from broker.contract import topics
from broker.contract.messages import (
    LANE_EVENT_TYPES,
    DecideReply,
    DecideRequest,
    LaneEvent,
    Passed,
    decode,
)
from gateway.inside import CarsInside, ocr_read
from gateway.pricing import SitePricing
from gateway.store import GatewayStore
from parkguard.clock import Clock, utc_iso
from parkguard.core.plates import MatchPolicy
from parkguard.core.tariffs import format_yuan
from parkguard.errors import ContractError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Inbound:
    topic: str
    payload: bytes
    received_at: datetime


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
        pricing: SitePricing,
        matching: MatchPolicy | None = None,
    ) -> None:
        self.site = site
        self._clock = clock
        self.store = store
        self._bus = bus
        self.pricing = pricing
        self.inside = CarsInside(matching or MatchPolicy())
        for row in store.open_sessions():  # a restart forgets nobody inside
            self.inside.enter(row["plate"], row["session_id"])
        self._inbox: queue.Queue[_Inbound | object] = queue.Queue()
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

    # the loop ----------------------------------------------------------------------

    def _enqueue(self, topic: str, payload: bytes) -> None:
        with self._idle:
            self._in_flight += 1
        self._inbox.put(_Inbound(topic, payload, self._clock.now()))

    def _run(self) -> None:
        while True:
            item = self._inbox.get()
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
            reply, evidence = self._verdict(message, now)
            self._bus.publish(topics.lane_decide_reply(self.site, message.lane), reply)
            self._record_decision(message, reply, now, evidence)
        elif isinstance(message, LANE_EVENT_TYPES):
            self.ingest(message, item.received_at)

    # decisions ---------------------------------------------------------------------------

    def _record_decision(
        self, request: DecideRequest, reply: DecideReply, now: datetime, evidence: str | None
    ) -> None:
        self.store.db.table("decisions").insert({
            "correlation_id": request.correlation_id, "lane": request.lane,
            "direction": request.direction, "plate": request.plate, "action": reply.action,
            "reason": reply.reason, "fee_fen": reply.fee_fen, "session_id": reply.session_id,
            "requested_at": utc_iso(request.ts), "answered_at": utc_iso(now), "match": evidence,
        }, ignore=True)

    def _verdict(self, request: DecideRequest, now: datetime) -> tuple[DecideReply, str | None]:
        """The reply, and for an exit the matcher's evidence (kept with the decision)."""

        def reply(action: str, reason: str, zh: str, en: str, **extra: Any) -> DecideReply:
            return DecideReply(correlation_id=request.correlation_id, action=action,  # type: ignore[arg-type]
                               reason=reason, display_zh=zh, display_en=en, ts=now, **extra)

        read = request.plate
        if read is None:
            return reply("refuse", "plate_unread", "未识别车牌 请按帮助键",
                         "Plate not read: press Help"), None
        if request.direction == "entry":
            plate = self.inside.spelling(read)
            inside = self.inside.session_of(read)
            if inside is not None:
                return reply("open", "already_inside", f"{plate} 欢迎光临", f"Welcome {plate}",
                             session_id=inside), None
            return reply("open", "visitor_entry", f"{plate} 欢迎光临", f"Welcome {plate}",
                         session_id=f"s-{uuid.uuid4().hex[:16]}"), None
        result, session_id = self.inside.match(ocr_read(read, request.char_confidences))
        evidence = json.dumps(result.evidence(), ensure_ascii=False)
        session = self.store.session(session_id) if session_id else None
        if result.outcome == "ambiguous":
            return reply("refuse", "plate_ambiguous", "车牌不清 请稍候 保安核实",
                         "Plate unclear: a guard will check"), evidence
        if session is None:
            return reply("refuse", "no_entry_record", "无入场记录 请按帮助键",
                         "No entry record: press Help"), evidence
        plate = session["plate"]
        quote = self.pricing.quote(plate=plate, entry=datetime.fromisoformat(session["entry_at"]),
                                   exit=now)
        money = format_yuan(quote.total_fen)
        return reply("open", "paid_at_exit", f"{plate} 应付{money} 一路顺风",
                     f"{plate} pay {money}", fee_fen=quote.total_fen,
                     session_id=session["session_id"]), evidence

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
        self.store.db.table("sessions").insert({
            "session_id": session_id, "plate": plate, "state": "open",
            "entry_lane": event.lane, "entry_at": utc_iso(event.ts),
            "entry_event_id": event.event_id, "fee_fen": 0, "tariff": self.pricing.source,
            "review": review, "entry_read": event.plate,
        }, ignore=True)

    def _car_left(self, event: Passed, decision: dict[str, Any] | None) -> None:
        session_id = decision["session_id"] if decision else None
        evidence = decision["match"] if decision else None
        if session_id is None and event.plate:  # let out by the lane alone: find it now
            result, session_id = self.inside.match(ocr_read(event.plate))
            evidence = json.dumps(result.evidence(), ensure_ascii=False)
        if session_id is None:
            log.warning("gateway: exit at %s with no session to close", event.lane)
            return
        self.store.db.table("sessions").update(session_id, {
            "state": "closed", "exit_lane": event.lane, "exit_at": utc_iso(event.ts),
            "exit_event_id": event.event_id, "fee_fen": decision["fee_fen"] if decision else 0,
            "exit_read": event.plate, "exit_match": evidence,
            "review": None if decision else "left while the gateway was unreachable: unbilled",
        })
        self.inside.leave(session_id)
