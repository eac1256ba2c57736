"""The lane's gate sequence: vehicle → read → decide → open → pass → close, and signed commands.

One worker thread owns the sequence; pin and MQTT callbacks only record what
happened and wake it. Every wait runs on the injected clock, so the simulator
can drive a lane through a whole day in seconds.

A command from the gateway is checked the moment it arrives (on paho's thread:
an HMAC and a dictionary look-up) and queued; the worker acts on it between
vehicles, or at once when it is idle or a refused car is waiting for a guard.
Rejections are queued too, so every event is emitted by the worker alone and
``seq`` stays in publication order.

Every event goes into the SQLite journal before it is published (the :class:`Outbox`
publishes it and marks it sent on the broker's acknowledgement), so nothing is lost when the
broker, the network or the power goes. When the gateway does not answer a decide in time,
the lane decides from its replica (:mod:`firmware.lane.replica`).

A fire (the retained ``alarm/fire`` or the hard-wired fire input) raises the barrier at
once, on the thread that heard it, and holds it: ``Barrier.lower()`` refuses while it
lasts. The worker then runs the lane in ``fire_open`` mode: no decide requests, every
passage reported free. Only a retained ``alarm/fire`` that says inactive (and the fire
input released) ends it; losing the broker changes nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from firmware.lane.commands import CommandVerdict, CommandVerifier
from firmware.lane.config import LaneConfig
from firmware.lane.devices.camera import Camera, PlateReader, PlateReading
from firmware.lane.devices.display import TEXTS, Display, RecordingDisplay
from firmware.lane.devices.hardware import LaneHardware
from firmware.lane.journal import Journal, JournalRow, Outbox
from firmware.lane.kiosk import Confirmation, InputSource, KioskInput, LastFourDigits
from firmware.lane.replica import LaneReplica, OfflineVerdict
from firmware.lane.states import Action, Event, GateMachine, State, Transition
from parkguard import __version__
from parkguard.clock import Clock
from parkguard.core.plates import NoPlateId, PlateError
from parkguard.errors import ContractError
from wire import mqtt as busmod
from wire.contract import topics
from wire.contract.messages import (
    AlarmState,
    BarrierMoved,
    BarrierPosition,
    DecideReply,
    DecideRequest,
    Decision,
    Fault,
    HelpPressed,
    LaneCommand,
    LaneMode,
    LaneState,
    Passed,
    PaymentCode,
    PlateRead,
    Tailgate,
    VehicleDetected,
)

log = logging.getLogger(__name__)


@dataclass
class _PendingDecision:
    answered: threading.Event = field(default_factory=threading.Event)
    reply: DecideReply | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the lane will do for this vehicle, and who said so."""

    action: str
    reason: str
    fee_fen: int
    session_id: str | None
    decided_by: str
    wait_ms: float
    display: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class DisplayText:
    """What the gateway last asked the lane display to show (the display driver reads it)."""

    zh: str
    en: str
    issuer: str


_ALARM_KEYS = {"fire": "alarm.fire", "flood": "alarm.flood"}
_WAITING = (State.REFUSED, State.WAITING_HELP)
_UNREAD = PlateReading(None, 0.0, (), 0.0)

@dataclass(slots=True)
class _AtTheGate:
    """The car the lane last decided on: what a kiosk input or a payment code refers to."""

    arrival: int
    plate: str | None
    fee_fen: int
    identity: NoPlateId | None = None
    confirming: tuple[NoPlateId, str] | None = None  # (identity, phone) awaiting its digits


class LaneController:
    """Runs one lane: reads the loops, asks the gateway, drives the barrier, reports events.

    >>> # built by firmware.lane.node.build_lane(); see tests/test_walking_skeleton.py
    """

    def __init__(
        self,
        config: LaneConfig,
        *,
        clock: Clock,
        hardware: LaneHardware,
        camera: Camera,
        reader: PlateReader,
        bus: busmod.MqttBus,
        journal: Journal,
        replica: LaneReplica | None = None,
        display: Display | None = None,
        verifier: CommandVerifier | None = None,
        kiosk: InputSource | None = None,
        scanner: InputSource | None = None,
        confirmation: Confirmation | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._hw = hardware
        self._camera = camera
        self._reader = reader
        self._bus = bus
        self._journal = journal
        self.replica = replica or LaneReplica(site=config.site, lane=config.lane,
                                              journal=journal, policy=config.matching)
        self.screen: Display = display or RecordingDisplay()
        self._outbox = Outbox(journal, bus, name=f"outbox-{config.lane}")
        self._seq = journal.last_seq()  # seq continues across restarts
        self._emitted = 0
        self._seq_lock = threading.Lock()
        # Last known site alarms: kept through broker outages and reboots (journal).
        self.fire_alarm = journal.get(_ALARM_KEYS["fire"]) == "1"
        self.flood_alarm = journal.get(_ALARM_KEYS["flood"]) == "1"
        self._in_fire = False
        self._state_lock = threading.Lock()
        self._gaps_reported = 0
        self.fire_raised_at: float | None = None  # perf_counter when a fire raised the barrier
        self._pending: dict[str, _PendingDecision] = {}
        self._pending_lock = threading.Lock()
        self._changed = threading.Event()
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self._served_arrivals = 0
        self.late_replies = 0
        self.verdicts = 0
        self.last_verdict: Verdict | None = None
        self.barrier_position: BarrierPosition = "closed"
        self.mode: LaneMode = "normal"
        self._verifier = verifier
        self._commands: deque[LaneCommand] = deque()
        self._rejections: deque[CommandVerdict] = deque()
        self._held_open = False
        self._last_read: tuple[int, str | None] | None = None  # (arming arrival, plate)
        self.display: DisplayText | None = None
        self.commands_done = 0
        self.commands_rejected = 0
        self.machine = GateMachine()
        self._fault_retry = True
        self._helps = 0
        self._helps_reported = 0
        self.help_requests = 0
        self._inputs: deque[KioskInput] = deque()
        self._gate: _AtTheGate | None = None
        self._confirmation: Confirmation = confirmation or LastFourDigits()
        self.last_identity: NoPlateId | None = None
        self.last_decide_request: DecideRequest | None = None
        self.heartbeat = time.monotonic()
        """monotonic time the worker last went round its loop (the watchdog reads it)"""
        for source in (kiosk, scanner):
            if source is not None:
                source.when_input(self._on_input)
        hardware.help_button.when_activated(self._on_help)
        hardware.arming_loop.when_changed(self._changed.set)
        hardware.up_limit.when_changed(self._changed.set)
        hardware.down_limit.when_changed(self._changed.set)
        hardware.safety_loop.when_changed(self._changed.set)
        if hardware.fire_input is not None:
            hardware.fire_input.when_changed(self._fire_changed)

    # lifecycle -------------------------------------------------------------------

    @property
    def lane(self) -> str:
        return self.config.lane

    @property
    def events_emitted(self) -> int:
        """Events this controller emitted since it started (not counting earlier runs)."""
        return self._emitted

    @property
    def last_seq(self) -> int:
        return self._seq

    @property
    def outbox(self) -> Outbox:
        return self._outbox

    def healthy(self, *, stall_s: float = 7500.0) -> bool:
        """For the watchdog: the worker and outbox threads are alive and the worker went
        round its loop within ``stall_s`` (an idle worker wakes at least hourly)."""
        worker = self._worker
        return (worker is not None and worker.is_alive() and self._outbox.alive()
                and time.monotonic() - self.heartbeat < stall_s)

    def fire_active(self) -> bool:
        """A fire holds the barrier: the last known ``alarm/fire`` or the fire input."""
        fire_input = self._hw.fire_input
        return self.fire_alarm or (fire_input is not None and fire_input.active)

    def start(self) -> None:
        site, lane = self.config.site, self.config.lane
        self._fire_changed()  # a fire latched before a reboot holds the barrier from the start
        for kind in _ALARM_KEYS:
            self._bus.subscribe(topics.alarm(site, kind), self._on_alarm)
        for topic in self.replica.topics():
            self._bus.subscribe(topic, self._on_replica)
        self._bus.subscribe(topics.lane_decide_reply(site, lane), self._on_decide_reply)
        self._bus.subscribe(topics.lane_cmd(site, lane), self._on_command)
        self._outbox.start()
        if self._verifier is None:
            log.warning("lane %s: no command key configured, every command will be refused",
                        lane)
        self._bus.when_connected(self.publish_state)
        if self._bus.connected.is_set():
            self.publish_state()
        self._worker = threading.Thread(target=self._run, name=f"lane-{lane}", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        """Finish: stop the worker and leave a retained offline state (a clean goodbye has no
        Last Will)."""
        self._stopping.set()
        self._changed.set()
        if self._worker is not None:
            self._worker.join(timeout=5)
        self._outbox.stop(flush_timeout=self.config.journal.flush_timeout_s)
        if self._bus.connected.is_set():
            self._bus.publish_and_wait(
                topics.lane_state(self.config.site, self.lane), self.state(online=False),
                retain=True, timeout=5,
            )

    def state(self, *, online: bool = True) -> LaneState:
        return LaneState(
            lane=self.lane, online=online, direction=self.config.direction, mode=self.mode,
            barrier=self.barrier_position, firmware=__version__, ts=self._clock.now(),
        )

    def publish_state(self) -> None:
        with self._state_lock:
            state = self.state()
        self._bus.publish(topics.lane_state(self.config.site, self.lane), state, retain=True)

    def _show(self, zh: str, en: str) -> None:
        try:
            self.screen.show(zh, en)
        except Exception:  # a broken display must not stop the gate
            log.exception("lane %s: display failed", self.lane)

    # alarms ------------------------------------------------------------------------------

    def _on_alarm(self, topic: str, payload: bytes) -> None:
        """paho's thread: a retained site alarm. An empty or bad payload changes nothing: the
        lane keeps the last alarm state it knew until one says otherwise."""
        try:
            alarm = AlarmState.from_json(payload)
        except ContractError as error:
            log.warning("lane %s: alarm on %s ignored: %s", self.lane, topic, error)
            return
        if not topic.endswith(f"/alarm/{alarm.kind}"):
            log.warning("lane %s: %s alarm on %s ignored", self.lane, alarm.kind, topic)
            return
        if alarm.kind == "fire":
            changed = alarm.active != self.fire_alarm
            self.fire_alarm = alarm.active
            self._fire_changed()
        else:
            changed = alarm.active != self.flood_alarm
            self.flood_alarm = alarm.active
            self._changed.set()
        if changed:
            log.warning("lane %s: %s alarm %s (from %s)", self.lane, alarm.kind,
                        "ACTIVE" if alarm.active else "over", alarm.source)
            self._journal.put(_ALARM_KEYS[alarm.kind], "1" if alarm.active else "0")

    def _fire_changed(self) -> None:
        """Any thread (paho, the fire input's pin thread, start): raise at once on a fire.

        The relay goes on here, not on the worker, which may be waiting for the gateway:
        a fire must not queue behind a car.
        """
        barrier = self._hw.barrier
        barrier.fire_hold = self.fire_alarm
        if self.fire_active():
            barrier.raise_()
            if self.fire_raised_at is None:
                self.fire_raised_at = time.perf_counter()
            with self._state_lock:
                changed = (self.mode, self.barrier_position) != ("fire_open", "open")
                self.mode, self.barrier_position = "fire_open", "open"
            if changed and self._bus.connected.is_set():
                self.publish_state()
        else:
            self.fire_raised_at = None
        self._changed.set()

    def _on_replica(self, topic: str, payload: bytes) -> None:
        outcome = self.replica.on_message(topic, payload)
        if outcome == "gap":
            self._changed.set()  # the worker reports it

    # the sequence ----------------------------------------------------------------

    def _run(self) -> None:
        arming = self._hw.arming_loop
        while not self._stopping.is_set():
            waiting = self._wait_until(
                lambda: self._command_waiting() or self.fire_active()
                or self.machine.state in _WAITING or self.machine.state is State.FAULT
                or (arming.vehicle_present and arming.arrivals > self._served_arrivals),
                timeout_s=None,
            )
            if not waiting:
                continue
            try:
                if self.fire_active():
                    self._fire_open()
                    continue
                # A guard's order comes before the next car: it is usually about that car.
                command = self._next_command()
                if command is not None:
                    self._run_command(command)
                    continue
                if self.machine.state in _WAITING:
                    self._wait_refused()
                    continue
                if self.machine.state is State.FAULT:
                    self._wait_fault()
                    continue
                if self.machine.state is not State.IDLE:
                    log.warning("lane %s: new car in state %s, starting afresh", self.lane,
                                self.machine.state)
                    self.machine.reset()
                self._served_arrivals = arming.arrivals
                self._serve_vehicle()
            except Exception:  # the lane must keep serving the next car
                log.exception("lane %s: sequence failed", self.lane)
                self._emit(Fault, code="sequence_error", detail="see lane log")
                # Start afresh; a boom left up waits (fault) until the loops are clear.
                self._fault_retry = True
                self.machine.reset(State.FAULT if self._hw.barrier.is_up else State.IDLE)

    def _step(self, event: Event, cause: str = "") -> Transition:
        """Feed ``event`` to the state machine and carry out the barrier action it returns."""
        transition = self.machine.step(event)
        if transition.action is Action.RAISE:
            self._hw.barrier.raise_()
            self._moved("open", cause or event.value)
            if self._hw.limit_switches and transition.next is State.OPEN:
                up = self._hw.up_limit
                if self._wait_until(lambda: up.active or self.fire_active(),
                                    timeout_s=self.config.timing.limit_timeout_s):
                    if up.active:
                        self._step(Event.UP_REACHED)
                elif not self._stopping.is_set():
                    self._emit(Fault, code="barrier_limit_timeout",
                               detail="the boom did not reach its up limit switch in "
                                      f"{self.config.timing.limit_timeout_s:g} s")
                    self._fault_retry = True
                    self._step(Event.LIMIT_TIMEOUT)
        elif transition.action is Action.LOWER:
            self._lower(cause or event.value)
        return transition

    def _serve_vehicle(self) -> None:
        self._step(Event.VEHICLE_ARRIVED)
        self._emit(VehicleDetected, loop="arming")
        self._step(Event.READ_STARTED)
        reading = self._read_plate()
        self._step(Event.PLATE_READ if reading.plate is not None else Event.READ_FAILED)
        self._decide_and_act(reading)

    def _decide_and_act(self, reading: PlateReading, identity: NoPlateId | None = None) -> None:
        """In ``deciding``: ask (gateway, else replica), report the decision, then open or
        leave the car waiting (``refused``)."""
        direction = self.config.direction
        correlation_id = uuid.uuid4().hex[:20]
        if direction == "entry" and self.flood_alarm and not self.fire_active():
            # Flood level 2+: entries closed, whatever the gateway would say.
            verdict = Verdict("refuse", "flood_entries_closed", 0, None, "lane", 0.0,
                              TEXTS["flood_entry"])
        else:
            verdict = self._decide(correlation_id, reading, identity)
        if self.fire_active():  # a fire broke out while we asked: out, free
            verdict = Verdict("open", "fire_open", 0, None, "lane", verdict.wait_ms,
                              TEXTS["fire"])
        if verdict.display is not None:
            self._show(*verdict.display)
        self.last_verdict = verdict
        self.verdicts += 1
        self._gate = _AtTheGate(self._hw.arming_loop.arrivals, reading.plate, verdict.fee_fen,
                                identity)
        self._emit(
            Decision, correlation_id=correlation_id, direction=direction, plate=reading.plate,
            identity=identity.text if identity is not None else None,
            action=verdict.action, reason=verdict.reason, fee_fen=verdict.fee_fen,
            session_id=verdict.session_id, decided_by=verdict.decided_by, wait_ms=verdict.wait_ms,
        )
        if verdict.action != "open":
            # Refused: the driver has to back out, use the kiosk or call for help.
            self._step(Event.DECIDED_REFUSE)
            self._wait_refused()
            return
        self._open_and_pass(correlation_id, reading.plate, verdict)

    def _wait_refused(self) -> None:
        """A refused car waits at the barrier: until it leaves, the kiosk gives an identity,
        or a guard's command (usually an open for this car) or a fire arrives."""
        arming = self._hw.arming_loop
        reported = False
        while not self._stopping.is_set():
            answered = self._wait_until(
                lambda: not arming.vehicle_present or self._command_waiting()
                # it left and the next one came before we looked:
                or arming.arrivals > self._served_arrivals
                or self.fire_active() or bool(self._inputs),
                timeout_s=None if reported else self.config.timing.refused_timeout_s,
            )
            if self._stopping.is_set():
                return
            if not answered:
                reported = True
                self._emit(Fault, code="refused_waiting",
                           detail="a refused vehicle has waited at the barrier for "
                                  f"{self.config.timing.refused_timeout_s:g} s")
                continue
            if self.fire_active() or self._command_waiting():
                return  # the worker's loop carries it out, then comes back here
            if self._inputs:
                if self._kiosk_input(self._inputs.popleft()):
                    return  # decided again: opened, or refused and waited out
                continue
            self._step(Event.VEHICLE_LEFT)
            self._gate = None
            return

    def _wait_fault(self) -> None:
        """After a barrier fault the boom stays up. A boom that missed its *up* switch (or a
        sequence error) is tried down once both loops are clear; one that missed its *down*
        switch stays up until a guard's command (a broken switch must not make it bob up
        and down every few seconds)."""
        safety, arming = self._hw.safety_loop, self._hw.arming_loop
        retry = self._fault_retry
        self._wait_until(lambda: (retry and not (safety.vehicle_present
                                                 or arming.vehicle_present))
                         or self._command_waiting() or self.fire_active(), timeout_s=None)
        if self._stopping.is_set() or self._command_waiting() or self.fire_active():
            return
        self._fault_retry = False
        self._step(Event.FAULT_CLEARED, "fault_cleared")
        self._served_arrivals = arming.arrivals

    def _read_plate(self) -> PlateReading:
        arrival = self._hw.arming_loop.arrivals
        try:
            reading = self._read_arriving_car()
        except Exception as error:  # a broken camera or reader is a failed read, not a stop
            log.exception("lane %s: plate read failed", self.lane)
            self._emit(Fault, code="read_failed", detail=f"camera or reader: {error}"[:512])
            reading = _UNREAD
        self._last_read = (arrival, reading.plate)
        self._emit(
            PlateRead, plate=reading.plate, confidence=reading.confidence,
            char_confidences=reading.char_confidences, reader=self._reader.name,
            read_ms=reading.read_ms,
        )
        return reading

    def _read_arriving_car(self) -> PlateReading:
        """One frame when its read is trusted; otherwise up to ``fuse_frames`` frames of the
        car as it arrives, fused (docs/configuration.md has how often a read at or above
        ``trust_confidence`` was right with the committed models). A ``trust_confidence``
        of 1 fuses every car: an int8 recogniser's read can be exactly 1.0 confident."""
        settings = self.config.camera
        frames = [self._camera.capture()]
        reading = self._reader.read(frames[0])
        trusted = (settings.trust_confidence < 1.0
                   and reading.confidence >= settings.trust_confidence)
        if settings.fuse_frames == 1 or trusted:
            return reading
        frames += [self._camera.capture() for _ in range(settings.fuse_frames - 1)]
        return self._reader.read_many(frames)

    def _open_and_pass(self, correlation_id: str, plate: str | None, verdict: Verdict,
                       *, cause: str = "decision") -> None:
        safety, arming = self._hw.safety_loop, self._hw.arming_loop
        entries_before, arrivals_before = safety.arrivals, arming.arrivals
        # A guard may open before the car has reached the loops: then "gone" only counts
        # once a car has come.
        car_seen = arming.vehicle_present or safety.vehicle_present
        self._step(Event.MANUAL_OPEN if cause == "manual_open" else Event.DECIDED_OPEN, cause)
        if self.machine.state is not State.OPEN:
            return  # the boom did not reach its up limit: fault reported, a person looks

        def gone() -> bool:
            if arming.vehicle_present or safety.vehicle_present:
                return False
            return car_seen or arming.arrivals > arrivals_before

        entered = self._wait_until(
            lambda: safety.arrivals > entries_before or gone() or self._close_waiting(),
            timeout_s=self.config.timing.pass_timeout_s,
        )
        if safety.arrivals == entries_before:
            if self._close_waiting():
                return  # a guard closes it: the queued close lowers the barrier next
            if self._stopping.is_set():
                return
            fault = "vehicle_backed_out" if entered else "pass_timeout"
            self._emit(Fault, code=fault, detail="barrier opened but no vehicle passed")
            self._step(Event.VEHICLE_LEFT if entered else Event.PASS_TIMEOUT, fault)
            return
        self._step(Event.VEHICLE_ENTERED)
        self._wait_until(lambda: not safety.vehicle_present, timeout_s=None)
        if self._stopping.is_set():
            return
        vehicles = safety.arrivals - entries_before
        identity = self._gate.identity if self._gate is not None else None
        self._emit(
            Passed, direction=self.config.direction, plate=plate, correlation_id=correlation_id,
            identity=identity.text if identity is not None else None,
            session_id=verdict.session_id, fee_fen=verdict.fee_fen,
        )
        self._gate = None
        if vehicles > 1:
            self._emit(Tailgate, vehicles=vehicles)
            self._step(Event.TAILGATE, "vehicle_passed")
        else:
            self._step(Event.VEHICLE_PASSED, "vehicle_passed")

    def _close_barrier(self, cause: str) -> None:
        """A guard's close (or the end of a fire): through the state machine."""
        self._step(Event.CLOSE_COMMAND, cause)

    def _lower(self, cause: str) -> None:
        """The ``lower`` action (state ``closing``): let the boom down through the interlock,
        then (limit switches wired) see it reach the down limit."""
        barrier, safety = self._hw.barrier, self._hw.safety_loop
        while True:
            if self._held_open or self.fire_active():
                # A guard holds it open (only a close ends that), or a fire does.
                self._step(Event.KEPT_UP)
                return
            # The interlock in Barrier.lower() refuses while the safety loop is occupied;
            # keep trying each time the loops change until it is clear.
            if barrier.lower():
                break
            self._wait_until(lambda: not safety.vehicle_present or self.fire_active(),
                             timeout_s=None)
            if self._stopping.is_set():
                return
        if not self._hw.limit_switches:
            self._moved("closed", cause)
            self._step(Event.DOWN_REACHED)
            return
        self._moved("closing", cause)
        down = self._hw.down_limit
        reached = self._wait_until(lambda: down.active or safety.vehicle_present
                                   or self.fire_active(),
                                   timeout_s=self.config.timing.limit_timeout_s)
        if self._stopping.is_set():
            return
        if safety.vehicle_present and not down.active:
            # A car came under the boom on its way down: back up, let it pass, close again.
            self._step(Event.SAFETY_OCCUPIED, "safety_loop")
            self._wait_until(lambda: not safety.vehicle_present, timeout_s=None)
            if not self._stopping.is_set():
                self._step(Event.VEHICLE_PASSED, cause)
            return
        if self.fire_active():
            return  # the worker's loop steps fire_started
        if reached:
            self._moved("closed", cause)
            self._step(Event.DOWN_REACHED)
            return
        self._emit(Fault, code="barrier_limit_timeout",
                   detail="the boom did not reach its down limit switch in "
                          f"{self.config.timing.limit_timeout_s:g} s: raised again")
        self._fault_retry = False
        self._step(Event.LIMIT_TIMEOUT, "barrier_limit_timeout")

    def _moved(self, position: BarrierPosition, cause: str) -> None:
        with self._state_lock:
            if position == "closed":
                self.mode = "normal"
            self.barrier_position = position
        if position == "open":
            self._hw.light.go()
        elif position in ("closing", "closed"):
            self._hw.light.stop()
        self._emit(BarrierMoved, position=position, cause=cause)
        self.publish_state()

    # help, kiosk, scanner -------------------------------------------------------------

    def _on_help(self) -> None:
        """The help button's pin thread: count it, wake the worker (which reports it)."""
        self._helps += 1
        self._changed.set()

    def _on_input(self, item: KioskInput) -> None:
        """A keypad or scanner thread: queue it for the worker."""
        self._inputs.append(item)
        self._changed.set()

    def _report_help(self) -> None:
        while self._helps_reported < self._helps:
            self._helps_reported += 1
            self.help_requests += 1
            self._emit(HelpPressed)
            self._show(*TEXTS["help"])
            self._step(Event.HELP_PRESSED)

    def _capture_payment_codes(self) -> None:
        """Offline payment codes are captured wherever the worker waits: journaled as a
        ``payment_code`` event (with the plate and fee of the car at the gate) for the
        gateway to charge; other inputs wait for the refused-car loop."""
        if not self._inputs:
            return
        kept: deque[KioskInput] = deque()
        while self._inputs:
            item = self._inputs.popleft()
            if item.kind != "payment_code":
                if self.machine.state in _WAITING:
                    kept.append(item)  # for the refused car: _wait_refused acts on it
                else:  # only a car waiting at the barrier may use the kiosk
                    self._show(*TEXTS["kiosk_no_vehicle"])
                continue
            gate = self._gate
            if self.config.direction != "exit" or gate is None \
                    or not self._hw.arming_loop.vehicle_present:
                self._show(*TEXTS["kiosk_no_vehicle"])
                continue
            self._emit(PaymentCode, code=item.text[:128], plate=gate.plate,
                       fee_fen=gate.fee_fen)
            self._show(*TEXTS["payment_code"])
        self._inputs.extendleft(reversed(kept))

    def _kiosk_input(self, item: KioskInput) -> bool:
        """A refused car's driver typed or scanned something; True if the lane decided
        again (the car was opened for, or refused and has gone)."""
        gate = self._gate
        if not self._hw.arming_loop.vehicle_present or gate is None:
            self._show(*TEXTS["kiosk_no_vehicle"])  # only while the arming loop holds a car
            return False
        identity: NoPlateId | None = None
        try:
            if item.kind == "ticket":
                identity = NoPlateId.for_ticket(item.text)
            elif item.kind == "phone":
                key = self.config.kiosk.site_key
                if key is None:
                    self._show(*TEXTS["kiosk_unavailable"])
                    return False
                phone_id = NoPlateId.for_phone(item.text, site_key=bytes.fromhex(key))
                if self.config.direction == "entry":
                    identity = phone_id
                else:
                    gate.confirming = (phone_id, item.text)
                    self._show(*self._confirmation.challenge(item.text, phone_id))
                    return False
            elif item.kind == "digits":
                if gate.confirming is None:
                    return False
                phone_id, _phone = gate.confirming
                gate.confirming = None
                if not self._confirmation.check(phone_id, item.text):
                    self._show(*TEXTS["kiosk_not_confirmed"])
                    return False
                identity = phone_id
        except PlateError:
            self._show(*TEXTS["kiosk_bad_input"])
            return False
        if identity is None:
            return False
        self.last_identity = identity
        self._step(Event.KIOSK_IDENTITY)
        self._decide_and_act(_UNREAD, identity)
        return True

    # fire ----------------------------------------------------------------------------------

    def _fire_open(self) -> None:
        """Hold the barrier up while the fire lasts; report every car that leaves, free."""
        safety, arming = self._hw.safety_loop, self._hw.arming_loop
        self._in_fire = True
        with self._state_lock:
            self.mode = "fire_open"
        self._step(Event.FIRE_STARTED, "fire_alarm")
        self._show(*TEXTS["fire"])
        passages: deque[tuple[str, str | None]] = deque()  # (correlation id, plate) read
        departures = safety.departures
        while self.fire_active() and not self._stopping.is_set():
            self._wait_until(
                lambda: not self.fire_active() or self._command_waiting()
                or arming.arrivals > self._served_arrivals
                or safety.departures > departures,  # noqa: B023 - read now, on purpose
                timeout_s=None)
            command = self._next_command()
            if command is not None:
                self._fire_command(command)
            if arming.arrivals > self._served_arrivals:  # even one already gone: read it
                self._served_arrivals = arming.arrivals
                self._emit(VehicleDetected, loop="arming")
                passages.append(self._fire_decision(self._read_plate().plate))
            while safety.departures > departures:
                departures += 1
                correlation_id, plate = (passages.popleft() if passages
                                         else self._fire_decision(None))
                self._emit(Passed, direction=self.config.direction, plate=plate,
                           correlation_id=correlation_id, session_id=None, fee_fen=0)
        self._in_fire = False
        if self._stopping.is_set():
            return
        log.warning("lane %s: fire over, back to normal", self.lane)
        with self._state_lock:
            self.mode = "free_open" if self._held_open else "normal"
        self._show(*TEXTS["idle"])
        if self._held_open:
            self.publish_state()
        self._step(Event.FIRE_OVER, "fire_over")  # a guard's hold_open keeps it up
        if self._held_open:
            return
        self._served_arrivals = arming.arrivals  # cars met during the fire have been let out

    def _fire_decision(self, plate: str | None) -> tuple[str, str | None]:
        correlation_id = uuid.uuid4().hex[:20]
        verdict = Verdict("open", "fire_open", 0, None, "lane", 0.0, TEXTS["fire"])
        self.last_verdict = verdict
        self.verdicts += 1
        self._emit(Decision, correlation_id=correlation_id, direction=self.config.direction,
                   plate=plate, action="open", reason="fire_open", fee_fen=0, session_id=None,
                   decided_by="lane", wait_ms=0.0)
        return correlation_id, plate

    def _fire_command(self, command: LaneCommand) -> None:
        """During a fire the barrier stays up whatever a command says."""
        if self._verifier is not None and not self._verifier.still_valid(command):
            return
        self.commands_done += 1
        if command.command == "close":
            self._held_open = False
            self._emit(Fault, code="fire_hold",
                       detail=f"close from {command.issuer} refused: the fire alarm holds "
                              "the barrier open")
        elif command.command == "hold_open":
            self._held_open = True
        elif command.command == "display":
            self.display = DisplayText(zh=str(command.args.get("zh", "")),
                                       en=str(command.args.get("en", "")),
                                       issuer=command.issuer)
        # open: the barrier is up already

    # deciding ------------------------------------------------------------------------

    def _decide(self, correlation_id: str, reading: PlateReading,
                identity: NoPlateId | None = None) -> Verdict:
        site, lane = self.config.site, self.lane
        deadline_ms = self.config.timing.decide_deadline_ms
        pending = _PendingDecision()
        with self._pending_lock:
            self._pending[correlation_id] = pending
        started = time.perf_counter()
        request = DecideRequest(
            correlation_id=correlation_id, lane=lane, direction=self.config.direction,
            plate=reading.plate, identity=identity.text if identity is not None else None,
            confidence=reading.confidence, char_confidences=reading.char_confidences,
            ts=self._clock.now(), deadline_ms=deadline_ms,
        )
        self.last_decide_request = request
        self._bus.publish(topics.lane_decide(site, lane), request)
        # The deadline the request states (ts + deadline_ms), not one counted from whenever
        # this thread gets to wait: the gateway and the lane then agree on when it passes.
        deadline = request.ts + timedelta(milliseconds=deadline_ms)
        answered = self._clock.wait(
            pending.answered, (deadline - self._clock.now()).total_seconds())
        wait_ms = (time.perf_counter() - started) * 1000
        with self._pending_lock:
            self._pending.pop(correlation_id, None)
        reply = pending.reply
        if not answered or reply is None:
            log.warning("lane %s: gateway silent for %d ms, deciding alone", lane, deadline_ms)
            return self._decide_alone(correlation_id, reading, wait_ms, identity)
        shown = (reply.display_zh, reply.display_en) if reply.display_zh or reply.display_en \
            else None
        return Verdict(reply.action, reply.reason, reply.fee_fen, reply.session_id, "gateway",
                       wait_ms, shown)

    def _decide_alone(self, correlation_id: str, reading: PlateReading,
                      wait_ms: float, identity: NoPlateId | None = None) -> Verdict:
        """The replica's answer, with the same pure cores as the gateway; its evidence is
        journaled (the decision event itself goes into the journal too, synchronous FULL)."""
        now = self._clock.now()
        if identity is not None:
            offline = self._no_plate_alone(identity, now)
        elif self.config.direction == "entry":
            offline = self.replica.entry(reading.plate, now)
        else:
            offline = self.replica.exit(reading.plate, reading.char_confidences, now)
        self._journal.put(f"decision.{correlation_id}", json.dumps(
            {"reason": offline.reason, "fee_fen": offline.fee_fen, **offline.evidence},
            ensure_ascii=False, default=str))
        return Verdict(offline.action, offline.reason, offline.fee_fen, offline.session_id,
                       "lane", wait_ms, offline.display)

    def _no_plate_alone(self, identity: NoPlateId, now: datetime) -> OfflineVerdict:
        """Offline answer for a no-plate identity: an entry opens (unless the car park is
        full); an exit looks the identity up in the replica (exact match only)."""
        if self.config.direction == "entry":
            capacity = self.replica.capacity
            if capacity is not None and capacity.full:
                return OfflineVerdict("refuse", "offline_lot_full", display=TEXTS["lot_full"],
                                      evidence={"identity": identity.masked})
            return OfflineVerdict("open", "offline_no_plate_entry",
                                  display=(f"{identity.masked} 欢迎光临",
                                           f"Welcome ({identity.text[-4:]})"),
                                  evidence={"identity": identity.masked})
        return self.replica.exit(identity.text, (), now)

    def _on_decide_reply(self, _topic: str, payload: bytes) -> None:
        try:
            reply = DecideReply.from_json(payload)
        except ContractError as error:
            log.warning("lane %s: bad decide reply: %s", self.lane, error)
            return
        with self._pending_lock:
            pending = self._pending.get(reply.correlation_id)
        if pending is None:
            self.late_replies += 1
            log.info("lane %s: reply %s came after the deadline", self.lane, reply.correlation_id)
            return
        pending.reply = reply
        pending.answered.set()

    # commands ----------------------------------------------------------------------------

    def _on_command(self, _topic: str, payload: bytes) -> None:
        """paho's thread: check at once (a command's age counts from its arrival), queue the
        outcome for the worker, wake it."""
        if self._verifier is None:
            verdict = CommandVerdict.reject("bad_signature", "this lane has no command key")
        else:
            verdict = self._verifier.check_payload(payload)
        if verdict.accepted and verdict.command is not None:
            log.info("lane %s: accepted %s", self.lane, verdict.detail)
            self._commands.append(verdict.command)
        else:
            log.warning("lane %s: command rejected (%s): %s", self.lane, verdict.reason,
                        verdict.detail)
            self._rejections.append(verdict)
        self._changed.set()

    def _command_waiting(self) -> bool:
        return bool(self._commands)

    def _close_waiting(self) -> bool:
        return any(command.command == "close" for command in list(self._commands))

    def _next_command(self) -> LaneCommand | None:
        try:
            return self._commands.popleft()
        except IndexError:
            return None

    def _report_rejections(self) -> None:
        while True:
            try:
                verdict = self._rejections.popleft()
            except IndexError:
                return
            self.commands_rejected += 1
            self._emit(Fault, code="command_rejected",
                       detail=f"{verdict.reason}: {verdict.detail}"[:512])

    def _run_command(self, command: LaneCommand) -> None:
        """Carry out one accepted command on the worker."""
        if self._verifier is not None and not self._verifier.still_valid(command):
            # It waited behind a car for longer than it was valid: the guard has moved on.
            self._rejections.append(CommandVerdict.reject(
                "expired", f"{command.command}: expired while the lane was busy", command))
            self._report_rejections()
            return
        self.commands_done += 1
        if command.command == "open":
            self._manual_open(command)
        elif command.command == "hold_open":
            self._held_open = True
            self.mode = "free_open"
            self._step(Event.HOLD_OPEN, "command_hold_open")
        elif command.command == "close":
            self._held_open = False
            if self._hw.barrier.is_up:
                self._close_barrier("command_close")
        elif command.command == "display":
            self.display = DisplayText(zh=str(command.args.get("zh", "")),
                                       en=str(command.args.get("en", "")),
                                       issuer=command.issuer)
            self._show(self.display.zh, self.display.en)
        else:
            self._emit(Fault, code="command_unsupported",
                       detail=f"{command.command} from {command.issuer} is not supported yet")

    def _manual_open(self, command: LaneCommand) -> None:
        """Let one vehicle through on a guard's word: the normal open → passed → close path."""
        arming = self._hw.arming_loop
        plate: str | None = None
        if arming.vehicle_present:
            last = self._last_read
            if last is not None and last[0] == arming.arrivals:
                plate = last[1]  # the car that was read (and maybe refused) is still there
            else:
                plate = self._read_plate().plate
        # The car at the gate now is this opening's; only a new arrival starts a sequence.
        self._served_arrivals = arming.arrivals
        correlation_id = command.nonce  # ties decision and passed to the audited order
        verdict = Verdict("open", "manual_open", 0, None, "gateway", 0.0)
        self.last_verdict = verdict
        self.verdicts += 1
        self._emit(
            Decision, correlation_id=correlation_id, direction=self.config.direction,
            plate=plate, action="open", reason="manual_open", fee_fen=0, session_id=None,
            decided_by="gateway", wait_ms=0.0,
        )
        self._open_and_pass(correlation_id, plate, verdict, cause="manual_open")
        self._served_arrivals = arming.arrivals

    # helpers ----------------------------------------------------------------------------

    def _wait_until(self, condition: Callable[[], bool], *, timeout_s: float | None) -> bool:
        """Wait on the lane's clock until ``condition`` holds; False on timeout or shutdown."""
        deadline = None if timeout_s is None else self._clock.now() + timedelta(seconds=timeout_s)
        while not self._stopping.is_set():
            self._changed.clear()
            self._report_rejections()
            self._report_replica_gap()
            self._report_help()
            self._capture_payment_codes()
            self.heartbeat = time.monotonic()
            if condition():
                return True
            if deadline is None:
                self._clock.wait(self._changed, 3600.0)
                continue
            remaining = (deadline - self._clock.now()).total_seconds()
            if remaining <= 0:
                return False
            self._clock.wait(self._changed, remaining)
        return False

    def _report_replica_gap(self) -> None:
        gaps = self.replica.gaps
        if gaps > self._gaps_reported:
            self._gaps_reported = gaps
            self._emit(Fault, code="replica_gap",
                       detail=f"replica at {self.replica.epoch} v{self.replica.version} "
                              "missed deltas: deciding from it until the next snapshot "
                              "(please send one)")

    def _emit(self, kind: Any, **fields: Any) -> None:
        """Journal the event (durable when this returns), then let the outbox publish it."""
        topic = topics.lane_event(self.config.site, self.lane)
        with self._seq_lock:
            self._seq += 1
            event = kind(
                event_id=uuid.uuid4().hex, seq=self._seq, ts=self._clock.now(), lane=self.lane,
                **fields,
            )
            self._journal.append(JournalRow(event.seq, event.event_id, event.type, topic,
                                            event.to_json()))
            self._emitted += 1
        self._outbox.wake()
