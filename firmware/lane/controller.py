"""One lane at work: the worker loop, and the wiring of the parts it dispatches to.

One worker thread owns the sequence; pin, bus and kiosk callbacks only record what happened
and wake it (:mod:`firmware.lane.waiting`). Every wait runs on the injected clock, so the
simulator can drive a lane through a whole day in seconds, and the controller takes the
:class:`~wire.bus.Bus` protocol, so tests run it on the in-memory bus.

Each time round, the worker does the most urgent thing there is:

1. a fire: the fire mode (:mod:`firmware.lane.fire`; the barrier is already up,
   :mod:`firmware.lane.alarms`);
2. a guard's command (:mod:`firmware.lane.commands`), which is usually about the car at
   the gate, so it comes before the next car;
3. a refused car still waiting, or a barrier fault (:mod:`firmware.lane.gate`);
4. a new car on the arming loop: read, decide (:mod:`firmware.lane.deciding`), open, pass,
   close (:mod:`firmware.lane.gate`, the only caller of the state machine).

Events are numbered and journaled before they are published
(:mod:`firmware.lane.events`); the retained lane state (with its heartbeat, a chore of the
worker's) and the display are :mod:`firmware.lane.status`; the kiosk and payment codes are
:mod:`firmware.lane.kiosk`.

Devices with threads of their own (the IP camera, the LED display, the kiosk's USB devices)
report their health as it changes (:mod:`firmware.lane.devices.health`); their threads only
queue the change and wake the worker, which publishes it as a ``fault`` event, or a
``fault_cleared`` with the same code, wherever it is waiting: a dead camera is on the
control room's screen before the next car, not because of it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from firmware.lane.alarms import ALARM_KEYS, Alarms
from firmware.lane.commands import CommandDesk, CommandInbox, CommandVerifier, DisplayText
from firmware.lane.config import LaneConfig
from firmware.lane.deciding import Decider, GatewayState
from firmware.lane.devices.camera import Camera, PlateReader
from firmware.lane.devices.display import Display, RecordingDisplay
from firmware.lane.devices.hardware import LaneHardware
from firmware.lane.devices.health import DeviceHealth, HealthReporter
from firmware.lane.events import EventLog, Verdict
from firmware.lane.evidence import EvidenceKeeper, EvidenceServer
from firmware.lane.fire import run_fire_mode
from firmware.lane.gate import WAITING, Gate
from firmware.lane.journal import Journal, Outbox
from firmware.lane.kiosk import (
    AtTheGate,
    Confirmation,
    DeviceInput,
    InputSource,
    KioskDesk,
    LastFourDigits,
)
from firmware.lane.kiosk_otp import GatewayCodes, OneTimeCode
from firmware.lane.replica import LaneReplica
from firmware.lane.states import GateMachine, State
from firmware.lane.status import LaneStatus
from firmware.lane.waiting import Waiter
from parkguard.clock import Clock
from parkguard.configfile import reveal
from parkguard.core.plates import NoPlateId
from wire.bus import Bus
from wire.contract import topics
from wire.contract.messages import (
    BarrierPosition,
    DecideRequest,
    FaultCleared,
    LaneMode,
    LaneState,
    PaymentCode,
)

log = logging.getLogger(__name__)

__all__ = ["DisplayText", "LaneController", "Verdict"]


class LaneController:
    """Runs one lane: reads the loops, asks the gateway, drives the barrier, reports events.

    >>> # built by firmware.lane.node.LaneNode; see tests/test_walking_skeleton.py
    """

    def __init__(
        self,
        config: LaneConfig,
        *,
        clock: Clock,
        hardware: LaneHardware,
        camera: Camera,
        reader: PlateReader,
        bus: Bus,
        journal: Journal,
        replica: LaneReplica | None = None,
        display: Display | None = None,
        verifier: CommandVerifier | None = None,
        kiosk: InputSource | None = None,
        scanner: InputSource | None = None,
        confirmation: Confirmation | None = None,
        evidence: tuple[EvidenceKeeper, EvidenceServer] | None = None,
    ) -> None:
        self.config = config
        self._hw = hardware
        self.evidence = evidence  # the read images' store, and its answers to the gateway
        self._bus = bus
        self.replica = replica or LaneReplica(site=config.site, lane=config.lane,
                                              journal=journal, policy=config.matching)
        self.machine = GateMachine()
        self.waiter = Waiter(clock)
        self.events = EventLog(config, clock=clock, journal=journal, bus=bus)
        self.status = LaneStatus(config, clock=clock, bus=bus, machine=self.machine,
                                 screen=display or RecordingDisplay(), wake=self.waiter.wake)
        self.alarms = Alarms(config.lane, journal=journal, hardware=hardware,
                             machine=self.machine, status=self.status, wake=self.waiter.wake)
        self.status.alarm_text = self.alarms.flood_display  # level 3 held on the display
        self.decider = Decider(config, clock=clock, bus=bus, journal=journal,
                               replica=self.replica, fire_active=self.alarms.fire_active,
                               flood_active=lambda: self.alarms.flood_alarm,
                               block_until=self.waiter.block_until,
                               after_asking=self.events.journal_held)
        self.codes: GatewayCodes | None = None  # [kiosk] confirm = "otp": the gateway's codes
        if confirmation is None and config.kiosk.confirm == "otp":
            self.codes = GatewayCodes(site=config.site, lane=config.lane, bus=bus, clock=clock,
                                      wait_ms=config.kiosk.otp_wait_ms,
                                      block_until=self.waiter.block_until)
            confirmation = OneTimeCode(self.codes, direction=config.direction,
                                       contact_consent=config.kiosk.contact_consent)
        self.kiosk = KioskDesk(
            direction=config.direction, site_key=reveal(config.kiosk.site_key),
            confirmation=confirmation or LastFourDigits(), show=self.status.show,
            vehicle_present=lambda: hardware.arming_loop.vehicle_present,
            waiting=lambda: self.machine.state in WAITING, wake=self.waiter.wake,
            payment_code=self._payment_code, fault=self.events.fault, clock=clock,
            confirm_within_s=config.timing.kiosk_timeout_s)
        inbox = CommandInbox(config.lane, verifier, events=self.events, wake=self.waiter.wake)
        self.gate = Gate(config, hardware=hardware, machine=self.machine, waiter=self.waiter,
                         events=self.events, status=self.status, decider=self.decider,
                         kiosk=self.kiosk, camera=camera, reader=reader,
                         fire_active=self.alarms.fire_active, command_waiting=inbox.waiting,
                         close_waiting=inbox.close_waiting,
                         keep_evidence=evidence[0].submit if evidence else None)
        self.commands = CommandDesk(inbox, gate=self.gate, events=self.events,
                                    status=self.status)
        self._gaps_reported = 0
        self._health: deque[DeviceHealth] = deque()  # device threads → the worker
        self._faulted: dict[tuple[str, str], bool] = {}  # (device, code) → faulted, as told
        self._worker: threading.Thread | None = None
        for chore in (inbox.report_rejections, self._report_replica_gap,
                      self.gate.report_help, self.kiosk.capture_payment_codes,
                      self.kiosk.report_faults, self._report_device_health,
                      self.status.beat, self._between_cars):
            self.waiter.on_each_look(chore)
        self.waiter.wake_by(self.status.next_beat)  # the state heartbeat (firmware.lane.status)
        for source in (kiosk, scanner):
            if source is not None:
                source.when_input(self.kiosk.on_input)
            if isinstance(source, HealthReporter):  # a real keypad or scanner: lost, back
                source.when_health(self._on_device_health)
            elif isinstance(source, DeviceInput):
                source.when_fault(self.kiosk.on_fault)
        for device in (camera, display):
            if isinstance(device, HealthReporter):  # the IP camera, the LED display
                device.when_health(self._on_device_health)
        hardware.help_button.when_activated(self.gate.on_help)
        for pin in (hardware.arming_loop, hardware.up_limit, hardware.down_limit,
                    hardware.safety_loop):
            pin.when_changed(self.waiter.wake)
        if hardware.fire_input is not None:
            hardware.fire_input.when_changed(self.alarms.fire_changed)

    # what tests, the simulator and the watchdog read -----------------------------------------

    @property
    def lane(self) -> str:
        return self.config.lane

    @property
    def events_emitted(self) -> int:
        """Events this controller emitted since it started (not counting earlier runs)."""
        return self.events.emitted

    @property
    def last_seq(self) -> int:
        return self.events.last_seq

    @property
    def outbox(self) -> Outbox:
        return self.events.outbox

    @property
    def verdicts(self) -> int:
        return self.events.verdicts

    @property
    def last_verdict(self) -> Verdict | None:
        return self.events.last_verdict

    @property
    def last_decide_request(self) -> DecideRequest | None:
        return self.decider.last_request

    @property
    def late_replies(self) -> int:
        return self.decider.late_replies

    @property
    def gateway_availability(self) -> GatewayState | None:
        """What the gateway's retained availability last said (None: never heard)."""
        return self.decider.gateway

    @property
    def mode(self) -> LaneMode:
        return self.machine.mode

    @property
    def barrier_position(self) -> BarrierPosition:
        return self.status.barrier_position

    @property
    def screen(self) -> Display:
        return self.status.screen

    @property
    def fire_alarm(self) -> bool:
        return self.alarms.fire_alarm

    @property
    def flood_alarm(self) -> bool:
        return self.alarms.flood_alarm

    @property
    def display(self) -> DisplayText | None:
        return self.commands.display

    @property
    def commands_done(self) -> int:
        return self.commands.done

    @property
    def commands_rejected(self) -> int:
        return self.commands.inbox.rejected

    @property
    def help_requests(self) -> int:
        return self.gate.help_requests

    @property
    def last_identity(self) -> NoPlateId | None:
        return self.kiosk.last_identity

    @property
    def heartbeat(self) -> float:
        """monotonic time the worker last went round its loop (the watchdog reads it)"""
        return self.waiter.heartbeat

    def fire_active(self) -> bool:
        return self.alarms.fire_active()

    def state(self, *, online: bool = True) -> LaneState:
        return self.status.state(online=online)

    def publish_state(self) -> None:
        self.status.publish()

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Return once the worker is blocked with nothing to do (tests: "it did not happen"
        is asserted after this, and after the bus settled)."""
        self.waiter.wait_idle(timeout)

    def healthy(self, *, stall_s: float = 7500.0) -> bool:
        """For the watchdog: the worker and outbox threads are alive and the worker went
        round its loop within ``stall_s`` (an idle worker wakes at least hourly, and for each
        state heartbeat)."""
        worker = self._worker
        return (worker is not None and worker.is_alive() and self.outbox.alive()
                and time.monotonic() - self.waiter.heartbeat < stall_s)

    # lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        site, lane = self.config.site, self.config.lane
        self.alarms.fire_changed()  # a fire latched before a reboot holds the barrier at once
        self.status.refresh()  # and a flood at level 3 is on the display at once
        for kind in ALARM_KEYS:
            self._bus.subscribe(topics.alarm(site, kind), self.alarms.on_alarm)
        for topic in self.replica.topics():
            self._bus.subscribe(topic, self._on_replica)
        self._bus.subscribe(topics.lane_decide_reply(site, lane), self.decider.on_reply)
        if self.codes is not None:
            for topic in self.codes.topics():
                self._bus.subscribe(topic, self.codes.on_reply)
        self._bus.subscribe(topics.gateway_availability(site), self.decider.on_availability)
        self._bus.subscribe(topics.lane_cmd(site, lane), self.commands.inbox.on_command)
        if self.evidence is not None:
            keeper, server = self.evidence
            keeper.start()
            self._bus.subscribe(server.topic(), server.on_request)
        self.outbox.start()
        if self.commands.inbox.verifier is None:
            log.warning("lane %s: no command key configured, every command will be refused",
                        lane)
        self._bus.when_connected(self.status.publish)
        self._bus.when_disconnected(self.decider.on_disconnected)
        if self._bus.connected.is_set():
            self.status.publish()
        self._worker = threading.Thread(target=self._run, name=f"lane-{lane}", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        """Finish: stop the worker and leave a retained offline state (a clean goodbye has no
        Last Will)."""
        self.waiter.stop()
        if self._worker is not None:
            self._worker.join(timeout=5)
        self.events.flush()  # a car's held events, if the worker stopped while asking
        if self.evidence is not None:
            self.evidence[0].stop()
        self.outbox.stop(flush_timeout=self.config.journal.flush_timeout_s)
        self.status.publish_offline()

    # the worker ------------------------------------------------------------------------------

    def _run(self) -> None:
        arming, gate, inbox = self._hw.arming_loop, self.gate, self.commands.inbox
        while not self.waiter.stopping.is_set():
            if not self.waiter.until(
                lambda: inbox.waiting() or self.alarms.fire_active()
                or self.machine.state in WAITING or self.machine.state is State.FAULT
                or (arming.vehicle_present and arming.arrivals > gate.served_arrivals),
                timeout_s=None,
            ):
                continue
            try:
                self._dispatch()
            except Exception:  # the lane must keep serving the next car
                log.exception("lane %s: sequence failed", self.lane)
                self.events.fault("sequence_error", "see lane log")
                gate.reset_after_error()

    def _dispatch(self) -> None:
        """The most urgent thing there is (see the module docstring for the order)."""
        if self.alarms.fire_active():
            run_fire_mode(gate=self.gate, machine=self.machine, hardware=self._hw,
                          waiter=self.waiter, events=self.events, status=self.status,
                          commands=self.commands, fire_active=self.alarms.fire_active)
            return
        command = self.commands.inbox.next()
        if command is not None:
            self.commands.run(command)
        elif self.machine.state in WAITING:
            self.gate.wait_refused()
        elif self.machine.state is State.FAULT:
            self.gate.wait_fault()
        else:
            self.gate.serve_vehicle()

    def _between_cars(self) -> None:
        self.status.between_cars(self.machine.state is State.IDLE)

    def _report_replica_gap(self) -> None:
        gaps = self.replica.gaps
        if gaps > self._gaps_reported:
            self._gaps_reported = gaps
            self.events.fault("replica_gap",
                              f"replica at {self.replica.epoch} v{self.replica.version} "
                              "missed deltas: deciding from it until the next snapshot "
                              "(please send one)")

    def _on_device_health(self, change: DeviceHealth) -> None:
        """A device's thread: its health changed; the worker reports it."""
        self._health.append(change)
        self.waiter.wake()

    def _report_device_health(self) -> None:
        """Worker, each time it looks: each change of a device's health becomes one event
        (a ``fault``, or a ``fault_cleared`` with the same code); a repeat is dropped."""
        while self._health:
            change = self._health.popleft()
            key = (change.device, change.code)
            if self._faulted.get(key, False) == change.faulted:
                continue
            self._faulted[key] = change.faulted
            if change.faulted:
                self.events.fault(change.code, change.detail)
            else:
                self.events.emit(FaultCleared, code=change.code, detail=change.detail[:512])

    def _on_replica(self, topic: str, payload: bytes) -> None:
        if self.replica.on_message(topic, payload) == "gap":
            self.waiter.wake()  # the worker reports it

    def _payment_code(self, code: str, gate: AtTheGate) -> None:
        self.events.emit(PaymentCode, code=code[:128], plate=gate.plate, fee_fen=gate.fee_fen,
                         identity=gate.identity.text if gate.identity is not None else None,
                         session_id=gate.verdict.session_id if gate.verdict else None)
