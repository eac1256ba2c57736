"""Who decides for a car at the lane, in order: the lane's own rules (a fire opens, a flood
closes entries), then the gateway within its deadline, then the replica
(:mod:`firmware.lane.replica`) with the same pure cores as the gateway, and the no-plate
rules for an identity typed at the kiosk.

The request states its deadline (``ts + deadline_ms``) and the lane waits until exactly
then on its clock, so the gateway and the lane agree on when it passes. A reply that comes
later is counted (``late_replies``) and dropped: the lane has already decided alone, and
journaled the evidence.

The gateway's retained ``gateway/availability`` (its Last Will says ``offline``) spares
the wait: while it says ``offline`` the lane does not ask and decides from the replica at
once; a request already waiting when ``offline`` arrives is decided from the replica then,
and a reply for it that still comes is late. ``online`` again: the lane asks again. A lane
that never heard the topic (or heard it cleared) asks and waits, as before the topic existed.

A lane cut off from the broker itself cannot get an answer either (a request published then
would only wait in paho's queue, and reach the gateway long after the car was decided): while
its own connection is down it decides from the replica at once, and a request waiting when
the connection drops is released and decided then (:meth:`Decider.on_disconnected`). The
gateway's state is forgotten with the connection: the retained one comes again on reconnect,
and until it does the lane asks and waits.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from firmware.lane.config import LaneConfig
from firmware.lane.devices.camera import PlateReading
from firmware.lane.devices.display import TEXTS
from firmware.lane.events import Verdict
from firmware.lane.journal import Journal
from firmware.lane.replica import LaneReplica, OfflineVerdict
from firmware.lane.states import State, timeout_for
from parkguard.clock import Clock
from parkguard.core.plates import NoPlateId
from parkguard.errors import ContractError
from wire.bus import Bus
from wire.contract import topics
from wire.contract.messages import DecideReply, DecideRequest, GatewayAvailability, decode

log = logging.getLogger(__name__)

GatewayState = Literal["online", "offline"]


@dataclass
class _Pending:
    answered: threading.Event = field(default_factory=threading.Event)
    reply: DecideReply | None = None
    released: bool = False
    """The gateway went offline (or the lane's connection dropped) while this request
    waited: decided alone, any reply is late."""


class Decider:
    """Turns a reading (or a no-plate identity) into a :class:`Verdict`."""

    def __init__(self, config: LaneConfig, *, clock: Clock, bus: Bus, journal: Journal,
                 replica: LaneReplica, fire_active: Callable[[], bool],
                 flood_active: Callable[[], bool],
                 block_until: Callable[[threading.Event, datetime], bool],
                 after_asking: Callable[[], None] = lambda: None) -> None:
        """``after_asking``: work for the wait, once the request is out (the worker journals
        the car's held events, :mod:`firmware.lane.events`)."""
        self._config = config
        self._clock = clock
        self._bus = bus
        self._journal = journal
        self.replica = replica
        self._fire_active = fire_active
        self._flood_active = flood_active
        self._block_until = block_until  # the worker's wait (it counts as idle meanwhile)
        self._after_asking = after_asking
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self.late_replies = 0
        self.last_request: DecideRequest | None = None
        self.gateway: GatewayState | None = None
        """What the retained ``gateway/availability`` last said; None: never heard."""

    def decide(self, correlation_id: str, reading: PlateReading,
               identity: NoPlateId | None = None) -> Verdict:
        """The verdict for the car at the gate (blocks up to the decide deadline)."""
        if self._config.direction == "entry" and self._flood_active() and not self._fire_active():
            # Flood level 2+: entries closed, whatever the gateway would say.
            return Verdict("refuse", "flood_entries_closed", 0, None, "lane", 0.0,
                           TEXTS["flood_entry"])
        verdict = self._ask_gateway(correlation_id, reading, identity)
        if self._fire_active():  # a fire broke out while we asked: out, free
            return Verdict("open", "fire_open", 0, None, "lane", verdict.wait_ms, TEXTS["fire"],
                           settled="fire")
        return verdict

    def _ask_gateway(self, correlation_id: str, reading: PlateReading,
                     identity: NoPlateId | None) -> Verdict:
        config = self._config
        deadline_s = timeout_for(State.DECIDING, config.timing, limit_switches=False) or 0.0
        pending = _Pending()
        with self._lock:  # the bus clears ``connected`` before on_disconnected takes it
            gone = self.gateway == "offline" or not self._bus.connected.is_set()
            if not gone:
                self._pending[correlation_id] = pending
        if gone:  # the gateway said it is gone, or we cannot reach it: no question, no wait
            return self._decide_alone(correlation_id, reading, 0.0, identity)
        started = time.perf_counter()
        request = DecideRequest(
            correlation_id=correlation_id, lane=config.lane, direction=config.direction,
            plate=reading.plate, identity=identity.text if identity is not None else None,
            confidence=reading.confidence, char_confidences=reading.char_confidences,
            ts=self._clock.now(), deadline_ms=config.timing.decide_deadline_ms,
        )
        self.last_request = request
        self._bus.publish(topics.lane_decide(config.site, config.lane), request)
        self._after_asking()  # while the gateway decides
        # The deadline the request states (ts + deadline_ms), not one counted from whenever
        # this thread gets to wait: the gateway and the lane then agree on when it passes.
        deadline = request.ts + timedelta(seconds=deadline_s)
        answered = self._block_until(pending.answered, deadline)
        wait_ms = (time.perf_counter() - started) * 1000
        with self._lock:
            self._pending.pop(correlation_id, None)
            reply = None if pending.released else pending.reply
        if pending.released:
            log.info("lane %s: gateway or broker gone after %.0f ms, deciding alone",
                     config.lane, wait_ms)
            return self._decide_alone(correlation_id, reading, wait_ms, identity)
        if not answered or reply is None:
            log.warning("lane %s: gateway silent for %d ms, deciding alone", config.lane,
                        config.timing.decide_deadline_ms)
            return self._decide_alone(correlation_id, reading, wait_ms, identity)
        shown = ((reply.display_zh, reply.display_en)
                 if reply.display_zh or reply.display_en else None)
        return Verdict(reply.action, reply.reason, reply.fee_fen, reply.session_id, "gateway",
                       wait_ms, shown, pay_url=reply.pay_url)

    def _decide_alone(self, correlation_id: str, reading: PlateReading,
                      wait_ms: float, identity: NoPlateId | None) -> Verdict:
        """The replica's answer; its evidence is journaled without waiting for the card: the
        decision event that follows is a FULL commit, which puts both there before the
        barrier moves (the lane's copy is the only one: docs/lane.md)."""
        now = self._clock.now()
        if identity is not None:
            offline = self._no_plate_alone(identity, now)
        elif self._config.direction == "entry":
            offline = self.replica.entry(reading.plate, now)
        else:
            offline = self.replica.exit(reading.plate, reading.char_confidences, now)
        try:
            self._journal.put(f"decision.{correlation_id}", json.dumps(
                {"reason": offline.reason, "fee_fen": offline.fee_fen, **offline.evidence},
                ensure_ascii=False, default=str), durable=False)
        except sqlite3.Error as error:  # a full card: the car is still decided and let on
            log.error("lane: the offline decision's evidence was not journaled (%s)", error)
        return Verdict(offline.action, offline.reason, offline.fee_fen, offline.session_id,
                       "lane", wait_ms, offline.display)

    def _no_plate_alone(self, identity: NoPlateId, now: datetime) -> OfflineVerdict:
        """Offline answer for a no-plate identity: an entry opens (unless the car park is
        full); an exit looks the identity up in the replica (exact match only)."""
        if self._config.direction == "entry":
            capacity = self.replica.capacity
            if capacity is not None and capacity.full:
                return OfflineVerdict("refuse", "offline_lot_full", display=TEXTS["lot_full"],
                                      evidence={"identity": identity.masked})
            return OfflineVerdict("open", "offline_no_plate_entry",
                                  display=(f"{identity.masked} 欢迎光临",
                                           f"Welcome ({identity.text[-4:]})"),
                                  evidence={"identity": identity.masked})
        return self.replica.exit(identity.text, (), now)

    def on_reply(self, _topic: str, payload: bytes) -> None:
        """The bus's thread: a decide reply; wakes the waiting request, or counts a late one."""
        try:
            reply = DecideReply.from_json(payload)
        except ContractError as error:
            log.warning("lane %s: bad decide reply: %s", self._config.lane, error)
            return
        with self._lock:
            pending = self._pending.get(reply.correlation_id)
            late = pending is None or pending.released
            if pending is not None and not late:
                pending.reply = reply
        if pending is None or late:
            self.late_replies += 1
            log.info("lane %s: reply %s came after the lane decided alone", self._config.lane,
                     reply.correlation_id)
            return
        pending.answered.set()

    def on_availability(self, topic: str, payload: bytes) -> None:
        """The bus's thread: the gateway's retained availability. ``offline`` releases every
        request still waiting (each is then decided from the replica, once); an empty
        payload (the retained state cleared) means "not known": ask and wait again."""
        state: GatewayState | None
        if not payload:
            state = None
        else:
            try:
                value = decode(topic, payload)
            except ContractError as error:
                log.warning("lane %s: gateway availability ignored: %s", self._config.lane,
                            error)
                return
            if not isinstance(value, GatewayAvailability):
                return
            state = value.state
        with self._lock:
            changed, self.gateway = state != self.gateway, state
            released = self._release_waiting() if state == "offline" else []
        for pending in released:
            pending.answered.set()
        if changed:
            log.log(logging.WARNING if state == "offline" else logging.INFO,
                    "lane %s: gateway %s%s", self._config.lane, state or "state unknown",
                    ": deciding from the replica at once" if state == "offline" else "")

    def on_disconnected(self) -> None:
        """The bus: the lane's own connection is gone. Every request still waiting is released
        (decided from the replica, once; a reply that still comes is late), and what the
        gateway said is forgotten: the retained state comes again with the next connection."""
        with self._lock:
            released = self._release_waiting()
            self.gateway = None
        for pending in released:
            pending.answered.set()
        log.log(logging.WARNING if released else logging.INFO,
                "lane %s: no broker connection: deciding from the replica at once%s",
                self._config.lane, f" (released {len(released)} waiting)" if released else "")

    def _release_waiting(self) -> list[_Pending]:
        """Mark every unanswered request released (with the lock held); the caller wakes them."""
        released = [p for p in self._pending.values() if p.reply is None and not p.released]
        for pending in released:
            pending.released = True
        return released
