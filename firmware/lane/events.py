"""The lane's events: numbered, journaled, then published by the outbox.

Every event goes into the SQLite journal before it is published (the :class:`Outbox`
publishes it and marks it sent on the broker's acknowledgement), so nothing is lost when the
broker, the network or the power goes. ``seq`` continues across restarts and only the lane's
worker emits, so it stays in publication order.

:meth:`EventLog.decision` is the one place a ``decision`` event is made, whoever decided
(the gateway, the replica, a guard's open, a fire).

An event may be *held* (``emit(..., hold=True)``): numbered and stamped now, journaled with
the next event or :meth:`EventLog.flush`, in one transaction. The gate holds a car's
``vehicle_detected`` and ``plate_read`` so that their wait for the card runs while the
gateway decides (the decide request goes out first), not before the lane asks: the online
decision pays one fsync, the decision's own. A held event is never published before it is
journaled; a power cut in that millisecond loses the car's arrival and read events, never
a decision or a passage (and their ``seq`` numbers were never sent, so nothing collides).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any, Final

from firmware.lane.config import LaneConfig
from firmware.lane.journal import Journal, JournalRow, Outbox
from parkguard.clock import Clock
from parkguard.core.plates import NoPlateId
from wire.bus import Bus
from wire.contract import topics
from wire.contract.messages import Decision, Fault, Passed, Settlement

PAYMENT_DUE: Final = frozenset({"payment_due", "offline_payment_due"})
"""Refusal reasons that mean "an exit with a fee due": the car waits for its money."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the lane will do for this vehicle, and who said so.

    ``pay_url``: with a fee due at an exit, the pay-page link the display shows as a QR.
    ``settled``: how a car this verdict opens for is let go (``Passed.settled``): the
    decision itself, a guard, a 付款码 taken offline, free-open, a fire."""

    action: str
    reason: str
    fee_fen: int
    session_id: str | None
    decided_by: str
    wait_ms: float
    display: tuple[str, str] | None = None
    pay_url: str | None = None
    settled: Settlement = "decision"

    @property
    def payment_due(self) -> bool:
        """A refusal because money is due: the car waits at the barrier until it is paid."""
        return self.action == "refuse" and self.reason in PAYMENT_DUE


def new_correlation_id() -> str:
    """Ties a decision to its request, its reply and the passage that follows."""
    return uuid.uuid4().hex[:20]


class EventLog:
    """Numbers, journals and hands the lane's events to the outbox."""

    def __init__(self, config: LaneConfig, *, clock: Clock, journal: Journal, bus: Bus) -> None:
        self._config = config
        self._clock = clock
        self._journal = journal
        self.outbox = Outbox(journal, bus, name=f"outbox-{config.lane}")
        self._topic = topics.lane_event(config.site, config.lane)
        self._lock = threading.Lock()
        self.last_seq = journal.last_seq()  # seq continues across restarts
        self._held: list[JournalRow] = []  # numbered, not journaled yet (``hold``)
        self.emitted = 0
        """Events emitted since this run started (not counting earlier runs)."""
        self.verdicts = 0
        self.last_verdict: Verdict | None = None
        self.last_passed: Passed | None = None
        """The latest ``passed`` this run emitted (the simulated driver reads ``settled``)."""

    def emit(self, kind: Any, *, hold: bool = False, **fields: Any) -> None:
        """Journal the event (and any held before it; durable when this returns), then let
        the outbox publish it. ``hold``: only number and stamp it now (see the module)."""
        with self._lock:
            self.last_seq += 1
            event = kind(event_id=uuid.uuid4().hex, seq=self.last_seq, ts=self._clock.now(),
                         lane=self._config.lane, **fields)
            self._held.append(JournalRow(event.seq, event.event_id, event.type, self._topic,
                                         event.to_json()))
            if isinstance(event, Passed):
                self.last_passed = event
            if hold:
                return
            self._journal_held()
        self.outbox.wake()

    def flush(self, *, publish: bool = True) -> None:
        """Journal the held events now (any thread). ``publish=False``: leave them for the
        outbox's next wake-up (the next event's), so they do not cross the bus while the lane
        waits for the gateway's reply."""
        with self._lock:
            if not self._held:
                return
            self._journal_held()
        if publish:
            self.outbox.wake()

    def journal_held(self) -> None:
        """While the lane waits for the gateway: journal the held events, publish later."""
        self.flush(publish=False)

    def _journal_held(self) -> None:
        rows, self._held = self._held, []
        self._journal.append_many(rows)
        self.emitted += len(rows)

    def fault(self, code: str, detail: str) -> None:
        self.emit(Fault, code=code, detail=detail[:512])

    def decision(self, correlation_id: str, plate: str | None, verdict: Verdict,
                 identity: NoPlateId | None = None) -> None:
        """Remember ``verdict`` as the lane's latest and report it as a ``decision`` event."""
        self.last_verdict = verdict
        self.verdicts += 1
        self.emit(Decision, correlation_id=correlation_id, direction=self._config.direction,
                  plate=plate, identity=identity.text if identity is not None else None,
                  action=verdict.action, reason=verdict.reason, fee_fen=verdict.fee_fen,
                  session_id=verdict.session_id, decided_by=verdict.decided_by,
                  wait_ms=verdict.wait_ms)
