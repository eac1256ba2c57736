"""The lane's events: numbered, journaled, then published by the outbox.

Every event goes into the SQLite journal before it is published (the :class:`Outbox`
publishes it and marks it sent on the broker's acknowledgement), so nothing is lost when the
broker, the network or the power goes. ``seq`` continues across restarts and only the lane's
worker emits, so it stays in publication order.

:meth:`EventLog.decision` is the one place a ``decision`` event is made, whoever decided
(the gateway, the replica, a guard's open, a fire).

An event may be *held* (``emit(..., hold=True)``): numbered and stamped now, journaled with
the next event or :meth:`EventLog.flush`, in one transaction. The gate holds a car's
``vehicle_detected`` and ``plate_read`` until the decide request is out, then writes them
while the gateway decides (:meth:`EventLog.journal_held`).

An event may also be written *without waiting for the card* (``durable=False``, and
:meth:`EventLog.journal_held`): in the WAL at once, so a crash of the process loses nothing,
and on the card with the next FULL commit or :meth:`EventLog.sync`; the outbox publishes
nothing before that. The gate writes a car's held events and the gateway's verdict that
way, moves the barrier, and syncs right after (the ``barrier_moved`` it emits does): the
online decision waits for no fsync. What a power cut in that window can take, and what
keeps it on the books, is in docs/lane.md ("Journal and outbox").
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import uuid
from dataclasses import dataclass, replace
from typing import Any, Final

from firmware.lane.config import LaneConfig
from firmware.lane.devices.display import goodbye
from firmware.lane.journal import Journal, JournalRow, Outbox
from parkguard.clock import Clock
from parkguard.core.plates import NoPlateId
from wire.bus import Bus
from wire.contract import topics
from wire.contract.messages import Decision, Fault, Passed, Settlement

log = logging.getLogger(__name__)

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

    def free_open(self, plate: str | None) -> Verdict:
        """A fee due at a lane held open (peak rule): the car goes out free, and says so."""
        offline = "offline_" if self.decided_by == "lane" else ""
        return replace(self, action="open", reason=f"{offline}free_open", pay_url=None,
                       display=goodbye(plate, "免费放行", "Free exit"), settled="free_open")


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
        self._bus = bus
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
        self.journal_failures = 0
        """Writes the journal refused (a full card, an I/O error): their events stayed held."""
        self._failing_since: str | None = None  # the first refused write's error, until one works
        self._recovered: str | None = None  # that error, once a write worked: to report
        self._sent_unjournaled = 0  # highest seq published straight away while refused

    def emit(self, kind: Any, *, hold: bool = False, durable: bool = True,
             **fields: Any) -> Any:
        """Journal the event (and any held before it; durable when this returns), then let
        the outbox publish it. ``hold``: only number and stamp it now; ``durable=False``:
        write it without waiting for the card, publish it after the next sync (see the
        module). Returns the event (its ``event_id`` names the read's evidence images)."""
        with self._lock:
            self.last_seq += 1
            event = kind(event_id=uuid.uuid4().hex, seq=self.last_seq, ts=self._clock.now(),
                         lane=self._config.lane, **fields)
            self._held.append(JournalRow(event.seq, event.event_id, event.type, self._topic,
                                         event.to_json()))
            if isinstance(event, Passed):
                self.last_passed = event
            if hold:
                return event
            self._journal_held(durable=durable)
        if durable:
            self.outbox.wake()
        self._report_recovery()
        return event

    def flush(self, *, publish: bool = True) -> None:
        """Journal the held events now (any thread). ``publish=False``: leave them for the
        outbox's next wake-up (the next event's), so they do not cross the bus while the lane
        waits for the gateway's reply. Also puts on the card anything written with
        ``durable=False``."""
        with self._lock:
            if self._held:
                self._journal_held()
        self._report_recovery()
        try:
            self._journal.sync()
        except sqlite3.Error:
            log.exception("lane: the journal could not sync; it tries again on the next event")
        if publish:
            self.outbox.wake()

    def journal_held(self) -> None:
        """While the lane waits for the gateway: write the held events without waiting for
        the card (the sync after the barrier moves puts them there), publish later."""
        with self._lock:
            if self._held:
                self._journal_held(durable=False)
        self._report_recovery()

    def sync(self) -> None:
        """Put what was written with ``durable=False`` on the card, then let the outbox
        publish it."""
        try:
            synced = self._journal.sync()
        except sqlite3.Error:
            log.exception("lane: the journal could not sync; it tries again on the next event")
            return
        if synced:
            self.outbox.wake()

    def _journal_held(self, *, durable: bool = True) -> None:
        """Write the held events (under the lock). If the journal refuses (the card is
        full, an I/O error) they stay held, in order, and the next event's write tries them
        all again: the lane goes on deciding and opening, nothing numbered is lost and no
        ``seq`` is skipped. A write that works after refusals is reported once the lock is
        released (:meth:`_report_recovery`)."""
        try:
            self._journal.append_many(self._held, durable=durable)
        except sqlite3.Error as error:
            self.journal_failures += 1
            if self._failing_since is None:
                self._failing_since = str(error)
                log.critical("lane: the journal refused a write (%s); %d event(s) held in "
                             "memory until it takes them", error, len(self._held))
            self._send_unjournaled()
            return
        self.emitted += len(self._held)
        self._held = []
        if self._failing_since is not None:
            self._recovered, self._failing_since = self._failing_since, None

    def _send_unjournaled(self) -> None:
        """While the journal refuses, the gateway (the book of record) must still hear of
        the cars, so held events go out at once, each once, at QoS 1. Journaled when there
        is room, the outbox sends them again; the gateway keeps each event once by its id."""
        for row in self._held:
            if row.seq > self._sent_unjournaled:
                self._bus.publish(row.topic, row.payload, qos=1)
                self._sent_unjournaled = row.seq

    def _report_recovery(self) -> None:
        """After refused writes, once the journal takes them: a ``journal_full`` fault, so
        the control room learns the card filled (the events themselves were kept)."""
        recovered, self._recovered = self._recovered, None
        if recovered is not None:
            self.fault("journal_full", f"the journal refused writes ({recovered}); the events "
                                       "held meanwhile are journaled now, none lost")

    def fault(self, code: str, detail: str) -> None:
        self.emit(Fault, code=code, detail=detail[:512])

    def decision(self, correlation_id: str, plate: str | None, verdict: Verdict,
                 identity: NoPlateId | None = None, *, durable: bool = True) -> None:
        """Remember ``verdict`` as the lane's latest and report it as a ``decision`` event
        (``durable=False``: the caller syncs once the barrier has moved)."""
        self.last_verdict = verdict
        self.verdicts += 1
        self.emit(Decision, durable=durable, correlation_id=correlation_id,
                  direction=self._config.direction,
                  plate=plate, identity=identity.text if identity is not None else None,
                  action=verdict.action, reason=verdict.reason, fee_fen=verdict.fee_fen,
                  session_id=verdict.session_id, decided_by=verdict.decided_by,
                  wait_ms=verdict.wait_ms)
