"""The gate sequence: vehicle → read → decide → open → pass → close, on the lane's worker.

The only caller of the state machine (:mod:`firmware.lane.states`) and of the barrier's
``raise_`` / ``lower``: :meth:`Gate.step` feeds an event to the machine and carries out
the action it returns; an event the table has no row for is reported as a fault
(``unexpected_event``) and changes nothing. Every wait here takes its timeout from
:func:`~firmware.lane.states.timeout_for`, on the lane's clock.

A refused car waits at the barrier until it leaves, the driver uses the kiosk, a guard's
command comes (the worker's loop carries it out) or a fire starts. An exit with a fee due
(``payment_due``) is such a refusal: the display shows plate, stay, amount and the pay-page
QR, and the car leaves on the gateway's ``open`` once its money is taken, or at once on a
付款码 when the lane decided alone. Each ``passed`` says how the car was let go
(``settled``, docs/payments.md); only what was due, never a payment, is in its ``fee_fen``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Final

from firmware.lane.config import LaneConfig
from firmware.lane.deciding import Decider
from firmware.lane.devices.camera import Camera, Frame, PlateReader, PlateReading
from firmware.lane.devices.display import TEXTS, fee_due, goodbye
from firmware.lane.devices.hardware import LaneHardware
from firmware.lane.events import EventLog, Verdict, new_correlation_id
from firmware.lane.kiosk import AtTheGate, KioskDesk
from firmware.lane.states import Action, Event, GateMachine, State, Transition, UnexpectedEvent
from firmware.lane.states import timeout_for as _timeout_for
from firmware.lane.status import LaneStatus
from firmware.lane.waiting import Waiter
from parkguard.core.plates import NoPlateId
from wire.contract.messages import (
    BarrierMoved,
    BarrierPosition,
    HelpPressed,
    Passed,
    PlateRead,
    Settlement,
    Tailgate,
    VehicleDetected,
)

log = logging.getLogger(__name__)

UNREAD = PlateReading(None, 0.0, (), 0.0)
WAITING = (State.REFUSED, State.WAITING_HELP)
MONEY_TAKEN: Final[frozenset[Settlement]] = frozenset(
    {"paid_online", "payment_code", "payment_code_offline", "cash", "waived"})
"""Settlements where money was taken (or a guard waived it): nothing overrides them."""
OPENED_BY: Final = {"manual_open": Event.MANUAL_OPEN, "paid_offline": Event.PAID_OFFLINE}
"""What an opening's cause steps the machine with (anything else: ``decided_open``)."""


class Gate:
    """Drives one car (or a guard's opening) through the state machine and the barrier."""

    def __init__(self, config: LaneConfig, *, hardware: LaneHardware, machine: GateMachine,
                 waiter: Waiter, events: EventLog, status: LaneStatus, decider: Decider,
                 kiosk: KioskDesk, camera: Camera, reader: PlateReader,
                 fire_active: Callable[[], bool], command_waiting: Callable[[], bool],
                 close_waiting: Callable[[], bool], keep_evidence: Callable[
                     [str, Frame | None, PlateReading], None] | None = None) -> None:
        self.config = config
        self._hw = hardware
        self.machine = machine
        self._wait = waiter
        self._events = events
        self._status = status
        self._decider = decider
        self._kiosk = kiosk
        self._camera = camera
        self._reader = reader
        self._fire_active = fire_active
        self._command_waiting = command_waiting
        self._close_waiting = close_waiting
        self._keep_evidence = keep_evidence  # the read's frame → the evidence store
        self._frame: Frame | None = None  # the frame of the last read's box
        self.served_arrivals = 0
        self.fault_retry = True
        self._last_read: tuple[int, str | None] | None = None  # (arming arrival, plate)
        self._helps = 0
        self._helps_reported = 0
        self.help_requests = 0

    def timeout_for(self, state: State, *, moving: bool = False) -> float | None:
        return _timeout_for(state, self.config.timing, limit_switches=self._hw.limit_switches,
                            moving=moving)

    @property
    def _stopping(self) -> bool:
        return self._wait.stopping.is_set()

    # the machine -------------------------------------------------------------------------

    def step(self, event: Event, cause: str = "") -> Transition:
        """Feed ``event`` to the state machine and carry out the barrier action it returns."""
        try:
            transition = self.machine.step(event)
        except UnexpectedEvent as error:
            log.error("lane %s: %s", self.config.lane, error)
            self._events.fault("unexpected_event", f"the gate sequence has no step for {error}")
            state = self.machine.state
            return Transition(state, event, state, Action.NONE)
        if transition.action is Action.RAISE:
            self._hw.barrier.raise_()
            self._moved("open", cause or event.value)
            if self._hw.limit_switches and transition.next is State.OPEN:
                self._see_it_up()
        elif transition.action is Action.LOWER:
            self._lower(cause or event.value)
        return transition

    def _see_it_up(self) -> None:
        up = self._hw.up_limit
        limit_s = self.timeout_for(State.OPEN, moving=True)
        if self._wait.until(lambda: up.active or self._fire_active(), timeout_s=limit_s):
            if up.active:
                self.step(Event.UP_REACHED)
        elif not self._stopping:
            self._events.fault("barrier_limit_timeout",
                               f"the boom did not reach its up limit switch in {limit_s:g} s")
            self.fault_retry = True
            self.step(Event.LIMIT_TIMEOUT)

    def reset_after_error(self) -> None:
        """Start afresh after a sequence error; a boom left up waits (fault) until the loops
        are clear."""
        self.fault_retry = True
        self.machine.reset(State.FAULT if self._hw.barrier.is_up else State.IDLE)

    # a car -------------------------------------------------------------------------------

    def serve_vehicle(self) -> None:
        if self.machine.state is not State.IDLE:
            log.warning("lane %s: new car in state %s, starting afresh", self.config.lane,
                        self.machine.state)
            self.machine.reset()
        self.served_arrivals = self._hw.arming_loop.arrivals
        self.step(Event.VEHICLE_ARRIVED)
        # held: journaled while the gateway decides (the decider flushes after asking)
        self._events.emit(VehicleDetected, hold=True, loop="arming")
        self.step(Event.READ_STARTED)
        reading = self.read_plate(hold=True)
        self.step(Event.PLATE_READ if reading.plate is not None else Event.READ_FAILED)
        self._decide_and_act(reading)

    def _decide_and_act(self, reading: PlateReading, identity: NoPlateId | None = None) -> None:
        """In ``deciding``: ask (gateway, else replica), report the decision, then open or
        leave the car waiting (``refused``)."""
        correlation_id = new_correlation_id()
        verdict = self._decider.decide(correlation_id, reading, identity)
        if verdict.payment_due and self.machine.held_open:
            verdict = verdict.free_open(reading.plate)  # held open: out, free
        display = verdict.display
        if display is None and verdict.payment_due:
            display = fee_due(reading.plate, verdict.fee_fen)
        if display is not None:
            self._status.show(*display, verdict.pay_url if verdict.payment_due else None)
        self._kiosk.gate = AtTheGate(self._hw.arming_loop.arrivals, reading.plate,
                                     verdict.fee_fen, identity, verdict=verdict,
                                     correlation_id=correlation_id)
        # The gateway's verdict is on its own books too: written before the barrier moves
        # (a crash of the process keeps it), on the card just after (docs/lane.md, journal).
        self._events.decision(correlation_id, reading.plate, verdict, identity,
                              durable=verdict.decided_by != "gateway")
        if verdict.action != "open":
            # Refused: the driver has to back out, use the kiosk or call for help.
            self._events.sync()
            self.step(Event.DECIDED_REFUSE)
            self.wait_refused()
            return
        self._open_and_pass(correlation_id, reading.plate, verdict)

    def read_plate(self, *, hold: bool = False) -> PlateReading:
        """Read the car at the loop and report it (``hold``: the ``plate_read`` event is
        journaled with the next one, see :mod:`firmware.lane.events`)."""
        arrival, self._frame = self._hw.arming_loop.arrivals, None
        try:
            reading = self._read_arriving_car()
        except Exception as error:  # a broken camera or reader is a failed read, not a stop
            log.exception("lane %s: plate read failed", self.config.lane)
            self._events.fault("read_failed", f"camera or reader: {error}")
            reading = UNREAD
        self._last_read = (arrival, reading.plate)
        event = self._events.emit(PlateRead, hold=hold, plate=reading.plate,
                                  confidence=reading.confidence, read_ms=reading.read_ms,
                                  char_confidences=reading.char_confidences,
                                  reader=self._reader.name)
        if self._keep_evidence:  # queued: the barrier never waits for a JPEG
            self._keep_evidence(event.event_id, self._frame, reading)
        return reading

    def _read_arriving_car(self) -> PlateReading:
        """One frame when its read is trusted; otherwise up to ``fuse_frames`` frames of the
        car as it arrives, fused (docs/configuration.md has how often a read at or above
        ``trust_confidence`` was right with the committed models). A ``trust_confidence``
        of 1 fuses every car: an int8 recogniser's read can be exactly 1.0 confident."""
        settings = self.config.camera
        frames = [self._camera.capture()]
        self._frame = frames[0]
        reading = self._reader.read(frames[0])
        trusted = (settings.trust_confidence < 1.0
                   and reading.confidence >= settings.trust_confidence)
        if settings.fuse_frames == 1 or trusted:
            return reading
        frames += [self._camera.capture() for _ in range(settings.fuse_frames - 1)]
        self._frame = next((f for f in frames if f.image), frames[0])  # the box's frame
        return self._reader.read_many(frames)

    def _paid_offline(self) -> bool:
        car = self._kiosk.gate
        return car is not None and car.paid_offline

    def car_waiting(self) -> AtTheGate | None:
        """The decided car still on the arming loop, if any (what a command is about)."""
        car, arming = self._kiosk.gate, self._hw.arming_loop
        if car is None or not arming.vehicle_present or car.arrival != arming.arrivals:
            return None
        return car

    def pay_qr(self) -> str | None:
        """The pay-page link of the car waiting for its money, if one waits (a ``display``
        command keeps it on the screen)."""
        car = self.car_waiting()
        if car is None or car.verdict is None or self.machine.state not in WAITING:
            return None
        return car.verdict.pay_url if car.verdict.payment_due else None

    def wait_refused(self) -> None:
        """A refused car waits at the barrier: until it leaves, the kiosk gives an identity,
        a 付款码 pays its fee while the lane decides alone, or a guard's command (usually
        an open for this car) or a fire arrives."""
        arming = self._hw.arming_loop
        limit_s = self.timeout_for(State.REFUSED)  # waiting_help: the same
        reported = False
        while not self._stopping:
            answered = self._wait.until(
                lambda: not arming.vehicle_present or self._command_waiting()
                # it left and the next one came before we looked:
                or arming.arrivals > self.served_arrivals
                or self._fire_active() or self._kiosk.has_input() or self._paid_offline(),
                timeout_s=None if reported else limit_s,
            )
            if self._stopping:
                return
            if not answered:
                reported = True
                self._events.fault("refused_waiting", "a refused vehicle has waited at the "
                                   f"barrier for {limit_s:g} s")
                continue
            if self._fire_active() or self._command_waiting():
                return  # the worker's loop carries it out, then comes back here
            if self._paid_offline():
                self._let_go_paid_offline()
                return
            item = self._kiosk.next_input()
            if item is not None:
                identity = self._kiosk.identity_from(item)
                if identity is not None:
                    self.step(Event.KIOSK_IDENTITY)
                    self._decide_and_act(UNREAD, identity)
                    return  # decided again: opened, or refused and waited out
                continue
            # Backed out: a refusal, nothing else (no money, no debt). A QR for this car
            # must not be left for the next one.
            self.step(Event.VEHICLE_LEFT)
            if self._kiosk.gate is not None and self._kiosk.gate.payment_due:
                self._status.show(*TEXTS["idle"])
            self._kiosk.gate = None
            return

    def _let_go_paid_offline(self) -> None:
        """A 付款码 taken for the waiting car while the lane decides alone: out at once;
        the ``payment_code`` event is already journaled, the gateway charges it later."""
        car = self._kiosk.gate
        if car is None or car.verdict is None:
            return
        verdict = replace(car.verdict, action="open", pay_url=None,
                          settled="payment_code_offline")
        self._status.show(*goodbye(car.plate, "已收到付款码", "Pay code received"))
        self._open_and_pass(car.correlation_id, car.plate, verdict, cause="paid_offline")

    def wait_fault(self) -> None:
        """After a barrier fault the boom stays up. A boom that missed its *up* switch (or a
        sequence error) is tried down once both loops are clear; one that missed its *down*
        switch stays up until a guard's command (a broken switch must not make it bob up
        and down every few seconds)."""
        safety, arming = self._hw.safety_loop, self._hw.arming_loop
        retry = self.fault_retry
        self._wait.until(lambda: (retry and not (safety.vehicle_present
                                                 or arming.vehicle_present))
                         or self._command_waiting() or self._fire_active(), timeout_s=None)
        if self._stopping or self._command_waiting() or self._fire_active():
            return
        self.fault_retry = False
        self.step(Event.FAULT_CLEARED, "fault_cleared")
        self.served_arrivals = arming.arrivals

    # a guard's orders ----------------------------------------------------------------------

    def open_problem(self, session_id: str | None) -> str | None:
        """Why an ``open`` naming ``session_id`` must not lift the barrier: its car is not
        the one waiting (money for one car never lets another go), or none waits (it backed
        out; asked again when it comes back, it has paid). A plain open has none."""
        if session_id is None:
            return None
        car = self.car_waiting()
        if car is None:
            return f"it is for session {session_id} and no decided car waits at the barrier"
        waiting = car.verdict.session_id if car.verdict is not None else None
        if waiting is None or waiting == session_id:
            return None  # the lane knew no session for this car: the gateway found it
        return f"it is for session {session_id}, the car at the barrier is {waiting}"

    def manual_open(self, correlation_id: str, *, settled: Settlement | None = None,
                    session_id: str | None = None) -> None:
        """Let one vehicle through on a guard's word: the normal open → passed → close path
        (``correlation_id`` ties the decision and the passage to the audited order).

        ``settled``: why the car may go (money taken: ``paid_online``, ``payment_code``,
        ``cash``, ``waived``; none: a plain ``guard_open``) with its session and fee."""
        arming = self._hw.arming_loop
        car = self.car_waiting()
        due = car.verdict if car is not None and car.verdict is not None else None
        plate: str | None = None
        if arming.vehicle_present:
            last = self._last_read
            if last is not None and last[0] == arming.arrivals:
                plate = last[1]  # the car that was read (and maybe refused) is still there
            else:
                plate = self.read_plate().plate
        # The car at the gate now is this opening's; only a new arrival starts a sequence.
        opened_at = self.served_arrivals = arming.arrivals
        ahead_of_car = not arming.vehicle_present  # opened before its car came: the first to come
        taken = car is not None and car.paid_offline  # a code journaled, the boom stuck
        verdict = Verdict("open", "manual_open", due.fee_fen if due else 0,
                          session_id or (due.session_id if due else None), "gateway", 0.0,
                          settled=settled or ("payment_code_offline" if taken else "guard_open"))
        if due is not None and due.payment_due:
            self._status.show(*goodbye(plate))  # the QR goes with its car
        self._events.decision(correlation_id, plate, verdict)
        self._open_and_pass(correlation_id, plate, verdict, cause="manual_open")
        if ahead_of_car:  # any later car is the next one (it may come as the boom falls)
            self.served_arrivals = min(arming.arrivals, opened_at + 1)

    def close(self) -> None:
        """A guard's close: down through the state machine if the boom is up."""
        if self._hw.barrier.is_up:
            self.step(Event.CLOSE_COMMAND, "command_close")

    # the barrier ---------------------------------------------------------------------------

    def _open_and_pass(self, correlation_id: str, plate: str | None, verdict: Verdict,
                       *, cause: str = "decision") -> None:
        safety, arming = self._hw.safety_loop, self._hw.arming_loop
        entries_before, arrivals_before = safety.arrivals, arming.arrivals
        # A guard may open before the car has reached the loops: then "gone" only counts
        # once a car has come.
        car_seen = arming.vehicle_present or safety.vehicle_present
        self.step(OPENED_BY.get(cause, Event.DECIDED_OPEN), cause)
        self._events.sync()  # a decision written before the boom moved (none if its event did)
        if self.machine.state is not State.OPEN:
            return  # the boom did not reach its up limit: fault reported, a person looks

        def gone() -> bool:
            if arming.vehicle_present or safety.vehicle_present:
                return False
            return car_seen or arming.arrivals > arrivals_before

        entered = self._wait.until(
            lambda: safety.arrivals > entries_before or gone() or self._close_waiting(),
            timeout_s=self.timeout_for(State.OPEN),
        )
        if safety.arrivals == entries_before:
            if self._close_waiting() or self._stopping:
                return  # a guard closes it: the queued close lowers the barrier next
            fault = "vehicle_backed_out" if entered else "pass_timeout"
            self._events.fault(fault, "barrier opened but no vehicle passed")
            self.step(Event.VEHICLE_LEFT if entered else Event.PASS_TIMEOUT, fault)
            return
        self.step(Event.VEHICLE_ENTERED)
        self._wait.until(lambda: not safety.vehicle_present, timeout_s=None)
        if self._stopping:
            return
        vehicles = safety.arrivals - entries_before
        gate = self._kiosk.gate
        identity = gate.identity if gate is not None else None
        self._events.emit(
            Passed, direction=self.config.direction, plate=plate, correlation_id=correlation_id,
            identity=identity.text if identity is not None else None,
            session_id=verdict.session_id, fee_fen=verdict.fee_fen,
            settled=self._settled(verdict),
        )
        self._kiosk.gate = None
        if vehicles > 1:
            self._events.emit(Tailgate, vehicles=vehicles)
            self.step(Event.TAILGATE, "vehicle_passed")
        else:
            self.step(Event.VEHICLE_PASSED, "vehicle_passed")

    def _settled(self, verdict: Verdict) -> Settlement:
        """How this car was let go. Entries are the decision's; at an exit money taken (or
        waived) stands, else a fire makes it ``fire`` and a lane held open ``free_open``."""
        if self.config.direction == "entry":
            return "decision"
        if verdict.settled in MONEY_TAKEN:
            return verdict.settled
        if verdict.settled == "fire" or self._fire_active():
            return "fire"
        return "free_open" if self.machine.held_open else verdict.settled

    def hold_open(self) -> None:
        """A guard's ``hold_open`` (a peak hour's free opening): the barrier stays up; a car
        already waiting there for its money goes out free, reported like any other."""
        car = self.car_waiting() if self.machine.state in WAITING else None
        self.step(Event.HOLD_OPEN, "command_hold_open")
        if car is None or car.verdict is None or not car.payment_due or self._stopping:
            return
        if self.machine.state is State.IDLE and self.machine.held_open:
            verdict = car.verdict.free_open(car.plate)
            if verdict.display is not None:
                self._status.show(*verdict.display)
            self._open_and_pass(car.correlation_id, car.plate, verdict, cause="manual_open")

    def _lower(self, cause: str) -> None:
        """The ``lower`` action (state ``closing``): let the boom down through the interlock,
        then (limit switches wired) see it reach the down limit."""
        barrier, safety = self._hw.barrier, self._hw.safety_loop
        while True:
            if self.machine.keeps_up() or self._fire_active():
                # A guard holds it open (only a close ends that), or a fire does.
                self.step(Event.KEPT_UP)
                return
            # The interlock in Barrier.lower() refuses while the safety loop is occupied;
            # keep trying each time the loops change until it is clear.
            if barrier.lower():
                break
            self._wait.until(lambda: not safety.vehicle_present or self._fire_active(),
                             timeout_s=None)
            if self._stopping:
                return
        limit_s = self.timeout_for(State.CLOSING)
        if limit_s is None:  # no limit switches: down is where it was sent
            self._moved("closed", cause)
            self.step(Event.DOWN_REACHED)
            return
        self._moved("closing", cause)
        down = self._hw.down_limit
        reached = self._wait.until(lambda: down.active or safety.vehicle_present
                                   or self._fire_active(), timeout_s=limit_s)
        if self._stopping:
            return
        if safety.vehicle_present and not down.active:
            # A car came under the boom on its way down: back up, let it pass, close again.
            self.step(Event.SAFETY_OCCUPIED, "safety_loop")
            self._wait.until(lambda: not safety.vehicle_present, timeout_s=None)
            if not self._stopping:
                self.step(Event.VEHICLE_PASSED, cause)
            return
        if self._fire_active():
            return  # the worker's loop steps fire_started
        if reached:
            self._moved("closed", cause)
            self.step(Event.DOWN_REACHED)
            return
        self._events.fault("barrier_limit_timeout",
                           f"the boom did not reach its down limit switch in {limit_s:g} s: "
                           "raised again")
        self.fault_retry = False
        self.step(Event.LIMIT_TIMEOUT, "barrier_limit_timeout")

    def _moved(self, position: BarrierPosition, cause: str) -> None:
        self._status.barrier(position)
        if position == "open":
            self._hw.light.go()
        elif position in ("closing", "closed"):
            self._hw.light.stop()
        self._events.emit(BarrierMoved, position=position, cause=cause)
        self._status.publish()

    # help ------------------------------------------------------------------------------------

    def on_help(self) -> None:
        """The help button's pin thread: count it, wake the worker (which reports it)."""
        self._helps += 1
        self._wait.wake()

    def report_help(self) -> None:
        """Worker, each time it looks: report each help press once."""
        while self._helps_reported < self._helps:
            self._helps_reported += 1
            self.help_requests += 1
            self._events.emit(HelpPressed)
            self._status.show(*TEXTS["help"])
            self.step(Event.HELP_PRESSED)
