"""The lane's gate sequence: vehicle → read → decide → open → pass → close.

One worker thread owns the sequence; pin and MQTT callbacks only record what
happened and wake it. Every wait runs on the injected clock, so the simulator
can drive a lane through a whole day in seconds.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from broker import bus as busmod
from broker.contract import topics
from broker.contract.messages import (
    BarrierMoved,
    BarrierPosition,
    DecideReply,
    DecideRequest,
    Decision,
    Fault,
    LaneState,
    Passed,
    PlateRead,
    Tailgate,
    VehicleDetected,
)
from firmware.lane.camera import Camera, PlateReader, PlateReading
from firmware.lane.config import LaneConfig
from firmware.lane.hardware import LaneHardware
from parkguard import __version__
from parkguard.clock import Clock
from parkguard.errors import ContractError

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


def offline_verdict(direction: str, wait_ms: float) -> Verdict:
    """The lane's own call when the gateway is silent (skeleton policy: let the car through
    and journal it; the replica-based decision replaces this)."""
    reason = "offline_entry" if direction == "entry" else "offline_exit_unbilled"
    return Verdict("open", reason, 0, None, "lane", wait_ms)


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
    ) -> None:
        self.config = config
        self._clock = clock
        self._hw = hardware
        self._camera = camera
        self._reader = reader
        self._bus = bus
        self._seq = 0
        self._seq_lock = threading.Lock()
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
        hardware.arming_loop.when_changed(self._changed.set)
        hardware.safety_loop.when_changed(self._changed.set)

    # lifecycle -------------------------------------------------------------------

    @property
    def lane(self) -> str:
        return self.config.lane

    @property
    def events_emitted(self) -> int:
        return self._seq

    def start(self) -> None:
        site, lane = self.config.site, self.config.lane
        self._bus.subscribe(topics.lane_decide_reply(site, lane), self._on_decide_reply)
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
        if self._bus.connected.is_set():
            self._bus.publish_and_wait(
                topics.lane_state(self.config.site, self.lane), self.state(online=False),
                retain=True, timeout=5,
            )

    def state(self, *, online: bool = True) -> LaneState:
        return LaneState(
            lane=self.lane, online=online, direction=self.config.direction,
            barrier=self.barrier_position, firmware=__version__, ts=self._clock.now(),
        )

    def publish_state(self) -> None:
        self._bus.publish(topics.lane_state(self.config.site, self.lane), self.state(), retain=True)

    # the sequence ----------------------------------------------------------------

    def _run(self) -> None:
        arming = self._hw.arming_loop
        while not self._stopping.is_set():
            waiting = self._wait_until(
                lambda: arming.vehicle_present and arming.arrivals > self._served_arrivals,
                timeout_s=None,
            )
            if not waiting:
                continue
            self._served_arrivals = arming.arrivals
            try:
                self._serve_vehicle()
            except Exception:  # the lane must keep serving the next car
                log.exception("lane %s: sequence failed", self.lane)
                self._emit(Fault, code="sequence_error", detail="see lane log")

    def _serve_vehicle(self) -> None:
        direction = self.config.direction
        self._emit(VehicleDetected, loop="arming")
        reading = self._reader.read(self._camera.capture())
        self._emit(
            PlateRead, plate=reading.plate, confidence=reading.confidence,
            char_confidences=reading.char_confidences, reader=self._reader.name,
            read_ms=reading.read_ms,
        )
        correlation_id = uuid.uuid4().hex[:20]
        verdict = self._decide(correlation_id, reading)
        self.last_verdict = verdict
        self.verdicts += 1
        self._emit(
            Decision, correlation_id=correlation_id, direction=direction, plate=reading.plate,
            action=verdict.action, reason=verdict.reason, fee_fen=verdict.fee_fen,
            session_id=verdict.session_id, decided_by=verdict.decided_by, wait_ms=verdict.wait_ms,
        )
        if verdict.action != "open":
            # Refused: the driver has to back out or call for help; wait until the lane is clear.
            self._wait_until(lambda: not self._hw.arming_loop.vehicle_present, timeout_s=None)
            return
        self._open_and_pass(correlation_id, reading.plate, verdict)

    def _open_and_pass(self, correlation_id: str, plate: str | None, verdict: Verdict) -> None:
        safety, arming = self._hw.safety_loop, self._hw.arming_loop
        entries_before = safety.arrivals
        self._hw.barrier.raise_()
        self._moved("open", "decision")
        entered = self._wait_until(
            lambda: safety.arrivals > entries_before
            or not (arming.vehicle_present or safety.vehicle_present),
            timeout_s=self.config.timing.pass_timeout_s,
        )
        if safety.arrivals == entries_before:
            cause = "vehicle_backed_out" if entered else "pass_timeout"
            self._emit(Fault, code=cause, detail="barrier opened but no vehicle passed")
            self._close_barrier(cause)
            return
        self._wait_until(lambda: not safety.vehicle_present, timeout_s=None)
        vehicles = safety.arrivals - entries_before
        self._emit(
            Passed, direction=self.config.direction, plate=plate, correlation_id=correlation_id,
            session_id=verdict.session_id, fee_fen=verdict.fee_fen,
        )
        if vehicles > 1:
            self._emit(Tailgate, vehicles=vehicles)
        self._close_barrier("vehicle_passed")

    def _close_barrier(self, cause: str) -> None:
        # The interlock in Barrier.lower() refuses while the safety loop is occupied;
        # keep trying each time the loops change until it is clear.
        while not self._hw.barrier.lower():
            self._wait_until(lambda: not self._hw.safety_loop.vehicle_present, timeout_s=None)
            if self._stopping.is_set():
                return
        self._moved("closed", cause)
        # The vehicle that just passed may still stand on the arming loop of an exit ramp;
        # only a new arrival starts the next sequence.

    def _moved(self, position: BarrierPosition, cause: str) -> None:
        self.barrier_position = position
        self._emit(BarrierMoved, position=position, cause=cause)
        self.publish_state()

    # deciding ------------------------------------------------------------------------

    def _decide(self, correlation_id: str, reading: PlateReading) -> Verdict:
        site, lane = self.config.site, self.lane
        deadline_ms = self.config.timing.decide_deadline_ms
        pending = _PendingDecision()
        with self._pending_lock:
            self._pending[correlation_id] = pending
        started = time.perf_counter()
        request = DecideRequest(
            correlation_id=correlation_id, lane=lane, direction=self.config.direction,
            plate=reading.plate, confidence=reading.confidence,
            char_confidences=reading.char_confidences, ts=self._clock.now(),
            deadline_ms=deadline_ms,
        )
        self._bus.publish(topics.lane_decide(site, lane), request)
        answered = self._clock.wait(pending.answered, deadline_ms / 1000)
        wait_ms = (time.perf_counter() - started) * 1000
        with self._pending_lock:
            self._pending.pop(correlation_id, None)
        reply = pending.reply
        if not answered or reply is None:
            log.warning("lane %s: gateway silent for %d ms, deciding alone", lane, deadline_ms)
            return offline_verdict(self.config.direction, wait_ms)
        return Verdict(reply.action, reply.reason, reply.fee_fen, reply.session_id, "gateway",
                       wait_ms)

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

    # helpers ----------------------------------------------------------------------------

    def _wait_until(self, condition: Callable[[], bool], *, timeout_s: float | None) -> bool:
        """Wait on the lane's clock until ``condition`` holds; False on timeout or shutdown."""
        deadline = None if timeout_s is None else self._clock.now() + timedelta(seconds=timeout_s)
        while not self._stopping.is_set():
            self._changed.clear()
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

    def _emit(self, kind: Any, **fields: Any) -> None:
        with self._seq_lock:
            self._seq += 1
            seq = self._seq
        event = kind(
            event_id=uuid.uuid4().hex, seq=seq, ts=self._clock.now(), lane=self.lane, **fields
        )
        self._bus.publish(topics.lane_event(self.config.site, self.lane), event)
