"""Storing one lane event once, by ``event_id``, and acting on it.

A pass opens or closes a session (and a car going out no longer waits for its money), a
help press alerts the guard on duty (and a car going through ends the call), a payment code
is charged (and opens the lane its car waits at), a replica gap earns the lane a fresh
snapshot. The event's ``seq`` is noted last, so a failure above it forgets both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from gateway.lanes.replicas import ReplicaPublisher
from gateway.runtime.effects import AfterCommit
from gateway.runtime.exits import ExitLanes
from gateway.runtime.sessions import Sessions
from gateway.runtime.till import Till
from gateway.safety.alerts import AlertDesk
from gateway.storage.store import GatewayStore
from parkguard.clock import utc_iso
from wire.contract.messages import Fault, HelpPressed, LaneEvent, Passed, PaymentCode

log = logging.getLogger(__name__)


class Ingester:
    """One lane event into the store, in the caller's transaction."""

    def __init__(self, *, store: GatewayStore, sessions: Sessions, till: Till,
                 effects: AfterCommit, alerts: AlertDesk | None = None,
                 replicas: ReplicaPublisher | None = None,
                 exits: ExitLanes | None = None,
                 watchers: Sequence[Callable[[LaneEvent], object]] = ()) -> None:
        """``watchers``: told of each new event once its transaction has committed (lane
        faults become alerts, a held car refused offline calls the guard)."""
        self._watchers = tuple(watchers)
        self._exits = exits or ExitLanes()
        self._store = store
        self._sessions = sessions
        self._till = till
        self._effects = effects
        self._alerts = alerts
        self._replicas = replicas

    def store_event(self, event: LaneEvent, received_at: datetime) -> bool:
        """Store the event unless its ``event_id`` is known, note its ``seq``, and act on it.
        True if it was new."""
        arrived = utc_iso(received_at)
        is_new = self._store.insert_event_once({
            "event_id": event.event_id, "lane": event.lane, "seq": event.seq,
            "type": event.type, "ts": utc_iso(event.ts),
            "payload": event.model_dump_json(), "received_at": arrived,
        })
        if not is_new:
            return False
        if isinstance(event, Passed):
            self._sessions.passed(event)
            self._help_answered(event.lane, "a car went through")
            if event.direction == "exit":
                self._car_went(event)
        elif isinstance(event, HelpPressed):
            self._help_requested(event)
        elif isinstance(event, PaymentCode) and event.fee_fen:
            self._code_scanned(event)
        elif isinstance(event, Fault) and event.code == "replica_gap" and self._replicas:
            replicas, lane = self._replicas, event.lane  # it missed deltas: a fresh snapshot
            self._effects.later(lambda: replicas.publish_snapshot(lanes=[lane]))
        for watcher in self._watchers:
            self._effects.later(lambda watcher=watcher: watcher(event))  # type: ignore[misc]
        self._store.track_seq(event.lane, event.seq, arrived)  # last: a failure above forgets it
        return True

    def _car_went(self, event: Passed) -> None:
        """A car went out: it no longer waits for money, nor does a car the gateway told to
        pay at that lane before this one went. A car told to pay *after* it went is the next
        car (its decide request jumped the queue ahead of this event): it still waits."""
        if event.session_id is not None:
            self._exits.left(event.session_id)
        waiting = self._exits.at(event.lane)
        if waiting is not None and waiting.since <= event.ts:
            self._exits.left(waiting.session_id)

    def _code_scanned(self, event: PaymentCode) -> None:
        """Charge the code; if its car waits at the lane for the gateway's word, open the
        lane once the charge is committed, or show the decline and let it keep waiting."""
        payment, car = self._till.payment_code(event)
        if payment is None or car is None:
            return  # the lane let the car go itself (offline), or nothing was charged
        exits, session_id = self._exits, car.session_id
        if payment.state == "paid":
            reason = f"payment code charged: payment {payment.payment_id}"
            self._effects.later(lambda: exits.open_for(
                session_id, "payment_code", actor="gateway:payments", reason=reason))
        else:
            why = payment.failure or "declined"
            self._effects.later(lambda: exits.declined(session_id, why))

    def _help_requested(self, event: HelpPressed) -> None:
        """The driver pressed the help button: the guard on duty is alerted (and the ladder
        escalates until someone acknowledges); a guard can open the lane remotely."""
        if self._alerts is None:
            log.warning("gateway: help pressed at %s and no alert roster to tell", event.lane)
            return
        alerts, lane = self._alerts, event.lane
        self._effects.later(lambda: alerts.raise_alert(
            f"help:{lane}", kind="help", severity="warning",
            title_zh=f"{lane} 车道求助", title_en=f"Help requested at lane {lane}",
            detail=f"help button pressed at {utc_iso(event.ts)}"))

    def _help_answered(self, lane: str, reason: str) -> None:
        """A car went through the lane (often on a guard's remote open): its help call is over."""
        if self._alerts is not None:
            alerts = self._alerts
            self._effects.later(lambda: alerts.resolve_key(f"help:{lane}", "gateway", reason))
