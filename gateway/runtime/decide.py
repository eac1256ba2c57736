"""The gateway's verdict on a lane's decide request: open or refuse, and why.

Pure over what the worker holds (the cars inside, the store, billing, capacity, alarms):
nothing is written here; an exit refused for money notes, in memory, the lane its car waits
at (:mod:`gateway.runtime.exits`), so the money's arrival can open that lane. The loop
answers the lane with the reply and writes the decision with the evidence and terms kept
beside it (docs/ingestion.md). Those two are turned into JSON only when the decision is
written, after the reply has gone: the lane waits for the reply, not for them (issue 23).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

from gateway.lanes.capacity import FULL_DISPLAY_EN, FULL_DISPLAY_ZH, LOT_FULL, Capacity
from gateway.money.billing import Billing, shown_on_display
from gateway.runtime.exits import ExitLanes, WaitingCar
from gateway.runtime.inside import CarsInside
from gateway.safety.alarms import AlarmMonitor
from gateway.safety.holds import HELD_DISPLAY, HELD_REASON, Hold
from gateway.storage.store import GatewayStore
from parkguard.core.plates import MatchResult, matchable_read
from parkguard.core.tariffs import format_yuan
from wire.contract.messages import DecideReply, DecideRequest

#: Verdicts that may only be wrong because events the lane sent earlier are still queued
#: (the car's entry ``passed`` not yet ingested, or its exit): the worker ingests what is
#: waiting and decides again before answering with one of these, or with an exit settled on
#: another car one confusion from the read (:attr:`Verdict.inexact`: the read's own car may be
#: the queued entry; settled on the other, it closed the wrong session).
BACKLOG_SENSITIVE = frozenset({"no_entry_record", "plate_ambiguous", "already_inside"})

Reply = Callable[..., DecideReply]
Kept = Callable[[], Any] | None
"""What is kept with the decision (the matcher's evidence, the terms or the bill), built
when it is written (:func:`kept_json`), after the reply; None: nothing."""
HeldAt = Callable[[str, str, Hold], None]
"""Told (lane, plate, hold) when an exit is refused for a hold: the guard is called."""


class Verdict(NamedTuple):
    """The reply, the matcher's evidence for an exit, and the terms (entry) or bill (exit),
    all kept with the decision (JSON-ready values, made when it is written: every one is
    built from frozen values, so it says the same then as at the verdict)."""

    reply: DecideReply
    evidence: Kept
    terms: Kept
    inexact: bool = False
    """An exit settled on a car inside whose plate is not the read (one OCR confusion away):
    the read's own car may be among the events still queued (see :data:`BACKLOG_SENSITIVE`)."""


def kept_json(kept: Kept) -> str | None:
    """A kept value as the JSON stored with the decision."""
    return None if kept is None else json.dumps(kept(), ensure_ascii=False)


def fire_free(bill: dict[str, Any], reason: str = "fire_free_exit") -> dict[str, Any]:
    """A bill with billing suspended (the fire alarm, or a lane held free-open at a peak):
    nothing more due, nothing booked, never a payment. What the driver had already paid
    (on the pay page before the peak hour began, say) stays this stay's fee, so the fees
    booked still equal the money taken plus the debts; the rest of what it would have been
    is kept for the record as ``suspended_fee_fen``."""
    kept = min(int(bill.get("paid_fen") or 0), int(bill["fee_fen"]))
    return {**bill, "fee_fen": kept, "stay_due_fen": 0, "debts_fen": 0, "due_fen": 0,
            "coupons": [], "reason": reason, "suspended_fee_fen": bill["fee_fen"] - kept}


class Decider:
    """Entry: alarms, blacklist, lot full, then whitelist, pass or visitor. Exit: the car
    inside this read matches, and its bill."""

    def __init__(self, *, store: GatewayStore, billing: Billing, inside: CarsInside,
                 capacity: Capacity | None = None, alarms: AlarmMonitor | None = None,
                 exits: ExitLanes | None = None,
                 holds: Callable[[str], Hold | None] | None = None,
                 held_at: HeldAt | None = None) -> None:
        """``exits``: where a refused car with a fee due is noted as waiting (the one thing
        a verdict leaves behind, in memory), the lanes' modes and the pay-page link.
        ``holds``: the hold in force on a plate (``HoldDesk.held``); ``held_at`` is told of
        each exit refused for one (it queues the guard's alert for after the commit)."""
        self._store = store
        self._billing = billing
        self._inside = inside
        self._capacity = capacity
        self._alarms = alarms
        self._exits = exits or ExitLanes()
        self._holds = holds
        self._held_at = held_at

    def verdict(self, request: DecideRequest, now: datetime) -> Verdict:
        def reply(action: str, reason: str, zh: str, en: str, **extra: Any) -> DecideReply:
            return DecideReply(correlation_id=request.correlation_id, action=action,  # type: ignore[arg-type]
                               reason=reason, display_zh=zh[:64], display_en=en[:64], ts=now,
                               **extra)

        read = request.plate or request.identity  # a no-plate car: the kiosk's identity
        if read is None:
            return Verdict(reply("refuse", "plate_unread", "未识别车牌 请按帮助键",
                                 "Plate not read: press Help"), None, None)
        if request.direction == "entry":
            entry_reply, terms = self._entry(read, request.lane, reply)
            return Verdict(entry_reply, None, terms)
        self._exits.asked(request.lane)  # whoever waited there backed out, or is asked again
        return self._exit(read, request, now, reply)

    def _exit(self, read: str, request: DecideRequest, now: datetime, reply: Reply) -> Verdict:
        result, session_id = self._inside.match(matchable_read(read, request.char_confidences))
        verdict = self._exit_of(result, session_id, read, request, now, reply)
        if result.outcome == "match" and result.score:
            return verdict._replace(inexact=True)
        return verdict

    def _exit_of(self, result: MatchResult, session_id: str | None, read: str,
                 request: DecideRequest, now: datetime, reply: Reply) -> Verdict:
        evidence = result.evidence  # a frozen MatchResult's record, made when written
        session = self._store.session(session_id) if session_id else None
        fire = self._alarms is not None and self._alarms.billing_suspended()
        hold = None if fire else self._hold_on(read, session)
        if hold is not None:  # before the money: paying does not let a held car go
            if self._held_at is not None:
                self._held_at(request.lane, hold.plate, hold)
            zh, en = HELD_DISPLAY
            return Verdict(reply("refuse", HELD_REASON, zh, en,
                                 session_id=session["session_id"] if session else None),
                           evidence, None)
        if result.outcome == "ambiguous":
            return Verdict(reply("refuse", "plate_ambiguous", "车牌不清 请稍候 保安核实",
                                 "Plate unclear: a guard will check"), evidence, None)
        if session is None:
            return Verdict(reply("refuse", "no_entry_record", "无入场记录 请按帮助键",
                                 "No entry record: press Help"), evidence, None)
        bill = self._billing.bill(session, now)
        if fire and self._alarms is not None:
            zh, en = self._alarms.lane_display("exit") or ("火警 请立即离场", "FIRE - LEAVE NOW")
            return Verdict(reply("open", "fire_free_exit", zh, en,
                                 session_id=session["session_id"]),
                           evidence, lambda: fire_free(bill.as_json()))
        session_id, kept = session["session_id"], bill.as_json  # a frozen Bill's record
        if self._exits.lane_mode(request.lane) == "free_open":  # held open at a peak
            shown = shown_on_display(bill.plate)
            return Verdict(reply("open", "free_open", f"{shown} 免费放行 一路平安",
                                 f"{shown} Free exit: goodbye", session_id=session_id),
                           evidence, lambda: fire_free(bill.as_json(), "free_open"))
        if bill.stay_due_fen:  # the barrier stays down until the money is taken
            url = self._exits.pay_url(bill.plate, request.lane, session_id)
            zh, en = bill.display(qr=url is not None)
            self._exits.waits(WaitingCar(request.lane, session_id, bill.plate,
                                         bill.stay_due_fen, now))
            return Verdict(reply("refuse", "payment_due", zh, en, fee_fen=bill.stay_due_fen,
                                 session_id=session_id, pay_url=url),
                           evidence, kept)
        zh, en = bill.display()
        return Verdict(reply("open", bill.reason, zh, en, session_id=session_id),
                       evidence, kept)

    def _hold_on(self, read: str, session: dict[str, Any] | None) -> Hold | None:
        """The hold on the matched car's plate, or on the plate as read (a held car that
        matched nothing is still held); never during a fire (the exits are open)."""
        if self._holds is None:
            return None
        if session is not None and session.get("plate"):
            hold = self._holds(session["plate"])
            if hold is not None:
                return hold
        return self._holds(read)

    def _entry(self, read: str, lane: str, reply: Reply) -> tuple[DecideReply, Kept]:
        """Alarms, blacklist, lot full, then whitelist, pass or visitor, with the terms kept
        for the entry; old debts are shown on the display (they are collected at the exit)."""
        closed = self._alarms.entries_closed() if self._alarms is not None else None
        if closed is not None and self._alarms is not None:
            zh, en = self._alarms.lane_display("entry") or ("暂停入场", "Entry closed")
            return reply("refuse", f"entries_closed_{closed}", zh, en), None
        plate = self._inside.spelling(read)
        shown = shown_on_display(plate)
        inside = self._inside.session_of(read)
        if inside is not None:
            return reply("open", "already_inside", f"{shown} 欢迎光临", f"Welcome {shown}",
                         session_id=inside), None
        access = self._billing.access.entry_access(plate)
        if access.refused:
            return reply("refuse", access.reason, access.display_zh, access.display_en), None
        if self._capacity is not None and not self._capacity.admits(access.kind, lane):
            return reply("refuse", LOT_FULL, f"{FULL_DISPLAY_ZH} 请勿进入",
                         f"Car park {FULL_DISPLAY_EN}"), None
        terms: dict[str, Any] = {"access": access.kind, "pass_id": access.pass_id,
                                 "reason": access.reason}
        zh, en = access.display_zh, access.display_en
        owed = sum(debt.amount_fen for debt in self._billing.payments.debts_for(plate))
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
                lambda: terms)
