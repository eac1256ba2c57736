"""Sessions from passages: a car that went in opens one, a car that went out closes it.

A passage follows the gateway's decision when there is one; a passage the lane decided
alone (gateway unreachable, a guard's manual open, the fire alarm) is priced the way the lane
would have, and marked for review. An exit with no open session is a conflict for a person,
never merged silently. Lanes and the lot-full sign hear of each change after the commit.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime
from typing import Any

from gateway.lanes.capacity import Capacity
from gateway.lanes.reconcile import Reconciler
from gateway.lanes.replicas import ReplicaPublisher
from gateway.money.billing import Billing
from gateway.runtime.decide import fire_free
from gateway.runtime.effects import AfterCommit
from gateway.runtime.inside import CarsInside
from gateway.runtime.tally import Tally
from gateway.runtime.till import Till
from gateway.storage.store import GatewayStore
from parkguard.clock import utc_iso
from parkguard.core.access import AccessError
from parkguard.core.plates import matchable_read
from wire.contract.messages import Passed

log = logging.getLogger(__name__)


#: The ``payment_due`` decision a paid exit's passage was held to (index ``decisions_session``,
#: migration m007: one lookup per paid exit, not a scan of every decision ever).
HELD_FOR_MONEY = ("SELECT * FROM decisions WHERE session_id = ? AND direction = 'exit' "
                  "AND reason = 'payment_due' AND lane = ? ORDER BY answered_at DESC LIMIT 1")


class Sessions:
    """Opens and closes sessions as cars pass, in the batch's transaction."""

    def __init__(self, *, store: GatewayStore, billing: Billing, inside: CarsInside,
                 till: Till, effects: AfterCommit, tally: Tally,
                 capacity: Capacity | None = None, replicas: ReplicaPublisher | None = None,
                 reconciler: Reconciler | None = None) -> None:
        self._store = store
        self._billing = billing
        self._inside = inside
        self._till = till
        self._effects = effects
        self._tally = tally
        self._capacity = capacity
        self._replicas = replicas
        self._reconciler = reconciler

    def passed(self, event: Passed) -> None:
        decision = self._store.decision(event.correlation_id)
        lane_decision = self._store.lane_decision(event.lane, event.correlation_id)
        if decision is not None and (lane_decision or {}).get("decided_by") == "lane":
            # The gateway answered after the lane's deadline (a request queued while the
            # broker or the gateway was down): the lane's own verdict is what happened.
            self._tally.late_decisions_ignored += 1
            decision = None
        if event.direction == "entry":
            self._entered(event, decision)
        else:
            self._left(event, decision or self._held_for_money(event))

    def _held_for_money(self, event: Passed) -> dict[str, Any] | None:
        """A car let go by an order (the gateway's open after its money, or a guard's): the
        passage carries the order's nonce, not the request's id, and the session it was for.
        Its bill is the one the lane held it to pay: the gateway's ``payment_due`` decision
        for that session."""
        if event.session_id is None or event.settled == "decision":
            return None
        rows = list(self._store.db.query(HELD_FOR_MONEY, [event.session_id, event.lane]))
        return rows[0] if rows else None

    def _lane_alone(self, event: Passed) -> str:
        """Why a passage has no gateway decision: a guard's manual open (the lane reports the
        command's nonce as the correlation id), or the lane deciding alone."""
        lane_decision = self._store.lane_decision(event.lane, event.correlation_id)
        reason = (lane_decision or {}).get("reason")
        if reason == "manual_open":
            return "opened by hand from the control room (lane.open in the audit log)"
        if reason == "fire_open":
            return "through a barrier held open by the fire alarm (not billed)"
        return "while the gateway was unreachable"

    def _entered(self, event: Passed, decision: dict[str, Any] | None) -> None:
        if decision and decision["reason"] == "already_inside":
            return
        session_id = (decision or {}).get("session_id") or f"s-{uuid.uuid4().hex[:16]}"
        read = event.plate or event.identity
        plate = self._inside.spelling(read) if read else ""
        review = None if decision else f"entered {self._lane_alone(event)}"
        if self._reconciler is not None and plate:
            inside_id = self._inside.session_of(plate)
            conflict = self._reconciler.check_entry(
                event, self._store.session(inside_id) if inside_id else None,
                "gateway" if decision else "lane")
            if conflict is not None:  # the car is inside all the same: open its session
                review = f"conflict {conflict.id}: {conflict.detail}"
        if not self._inside.enter(plate, session_id):
            review = f"entered without a plate the exit can match (read {event.plate!r})"
        terms = json.loads(decision["bill"]) if decision and decision.get("bill") else None
        if terms is None and plate:  # let in by the lane alone: the terms it would have had
            access = self._billing.access.entry_access(plate)
            if access.refused:
                review = f"{access.reason} car entered while the gateway was unreachable"
            terms = {"access": "visitor" if access.refused else access.kind,
                     "pass_id": access.pass_id}
        kind, pass_id = (terms or {}).get("access", "visitor"), (terms or {}).get("pass_id")
        if pass_id and not self._occupy(pass_id, session_id, plate):
            kind, pass_id = "visitor", None
        self._store.db.table("sessions").insert({
            "session_id": session_id, "plate": plate, "state": "open",
            "entry_lane": event.lane, "entry_at": utc_iso(event.ts),
            "entry_event_id": event.event_id, "fee_fen": 0,
            "tariff": self._billing.pricing.source, "review": review, "entry_read": read,
            "access": kind, "pass_id": pass_id,
        }, ignore=True)
        if self._replicas is not None:
            replicas = self._replicas
            self._effects.later(lambda: replicas.session_opened(
                session_id, plate, event.ts, kind, pass_id))
        if self._capacity is not None:
            capacity = self._capacity
            self._effects.later(lambda: capacity.entered(session_id, event.lane, kind,
                                                         plate))

    def _occupy(self, pass_id: str, session_id: str, plate: str) -> bool:
        """Count the car on its pass; False (a visitor) when the pass already had its car
        inside or no longer holds the plate."""
        try:
            return self._billing.access.occupy(pass_id, session_id, plate)
        except AccessError as error:
            log.warning("gateway: session %s priced as a visitor: %s", session_id, error)
            return False

    def _left(self, event: Passed, decision: dict[str, Any] | None) -> None:
        session_id = decision["session_id"] if decision else None
        evidence = decision["match"] if decision else None
        read = event.plate or event.identity
        if session_id is None and read:  # let out by the lane alone: find it now
            result, session_id = self._inside.match(matchable_read(read))
            evidence = json.dumps(result.evidence(), ensure_ascii=False)
        session = self._store.session(session_id) if session_id else None
        if session is None or session["state"] == "closed":
            self._exit_conflict(event, session, decision)
            return
        if decision and decision.get("bill"):
            bill = json.loads(decision["bill"])
            review = None if event.settled != "guard_open" \
                else f"left {self._lane_alone(event)}"
        else:  # let out by the lane alone: bill the stay as the lane priced it
            lane_decision = self._store.lane_decision(event.lane, event.correlation_id) or {}
            decided_at = lane_decision.get("ts")
            at = datetime.fromisoformat(decided_at) if decided_at else event.ts
            bill = self._billing.bill(session, at).as_json()
            if lane_decision.get("reason") == "fire_open":  # everyone out, nobody billed
                bill = fire_free(bill)
            review = f"left {self._lane_alone(event)}"
        if event.settled in ("free_open", "fire") and "suspended_fee_fen" not in bill:
            # let out free by the lane's mode: booked free with that reason, never as paid
            bill = fire_free(bill, "free_open" if event.settled == "free_open"
                             else "fire_free_exit")
        review = self._till.take_exit_money(session, bill, event) or review
        self._store.db.table("sessions").update(session["session_id"], {
            "state": "closed", "exit_lane": event.lane, "exit_at": utc_iso(event.ts),
            "exit_event_id": event.event_id, "fee_fen": bill["fee_fen"],
            "exit_read": read, "exit_match": evidence, "review": review,
        })
        self._billing.access.release(session["session_id"])
        self._inside.leave(session["session_id"])
        closed_id = session["session_id"]
        if self._replicas is not None:
            replicas = self._replicas
            self._effects.later(lambda: replicas.session_closed(closed_id, event.ts))
        if self._capacity is not None:
            capacity = self._capacity
            self._effects.later(lambda: capacity.left(closed_id))

    def _exit_conflict(self, event: Passed, session: dict[str, Any] | None,
                       decision: dict[str, Any] | None) -> None:
        """An exit with no open session (never seen coming in, or already out): recorded
        for a person to review, never merged into a session silently."""
        if self._reconciler is None:
            log.warning("gateway: exit at %s with no session to close", event.lane)
            return
        self._reconciler.check_exit(event, session, "gateway" if decision else "lane")
