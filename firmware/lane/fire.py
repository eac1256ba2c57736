"""The lane's fire mode, run by the worker while a fire lasts.

The barrier went up the moment the fire was heard (:mod:`firmware.lane.alarms`); here the
worker steps ``fire_started``, asks nobody, and reports every car that leaves as a free
passage (a ``decision`` with reason ``fire_open``, then ``passed``). Commands are still
carried out, in their fire form: a ``close`` is refused and reported, a ``hold_open`` is
kept for after the fire. When the fire is over the boom comes down unless a guard holds it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from firmware.lane.commands import CommandDesk
from firmware.lane.devices.display import TEXTS
from firmware.lane.devices.hardware import LaneHardware
from firmware.lane.events import EventLog, Verdict, new_correlation_id
from firmware.lane.gate import Gate
from firmware.lane.states import Event, GateMachine
from firmware.lane.status import LaneStatus
from firmware.lane.waiting import Waiter
from wire.contract.messages import Passed, VehicleDetected

log = logging.getLogger(__name__)

FIRE_VERDICT = Verdict("open", "fire_open", 0, None, "lane", 0.0, TEXTS["fire"],
                       settled="fire")


def run_fire_mode(*, gate: Gate, machine: GateMachine, hardware: LaneHardware, waiter: Waiter,
                  events: EventLog, status: LaneStatus, commands: CommandDesk,
                  fire_active: Callable[[], bool]) -> None:
    """Hold the barrier up while the fire lasts; report every car that leaves, free."""
    safety, arming, inbox = hardware.safety_loop, hardware.arming_loop, commands.inbox
    gate.step(Event.FIRE_STARTED, "fire_alarm")
    status.show(*TEXTS["fire"])
    passages: deque[tuple[str, str | None]] = deque()  # (correlation id, plate) read

    def fire_decision(plate: str | None) -> tuple[str, str | None]:
        correlation_id = new_correlation_id()
        events.decision(correlation_id, plate, FIRE_VERDICT)
        return correlation_id, plate

    departures = safety.departures
    while fire_active() and not waiter.stopping.is_set():
        waiter.until(
            lambda: not fire_active() or inbox.waiting()
            or arming.arrivals > gate.served_arrivals
            or safety.departures > departures,  # noqa: B023 - read now, on purpose
            timeout_s=None)
        command = inbox.next()
        if command is not None:
            commands.run(command, fire=True)
        if arming.arrivals > gate.served_arrivals:  # even one already gone: read it
            gate.served_arrivals = arming.arrivals
            events.emit(VehicleDetected, loop="arming")
            passages.append(fire_decision(gate.read_plate().plate))
        while safety.departures > departures:
            departures += 1
            correlation_id, plate = passages.popleft() if passages else fire_decision(None)
            events.emit(Passed, direction=gate.config.direction, plate=plate,
                        correlation_id=correlation_id, session_id=None, fee_fen=0,
                        settled="fire" if gate.config.direction == "exit" else "decision")
    if waiter.stopping.is_set():
        return
    log.warning("lane %s: fire over, back to normal", gate.config.lane)
    status.show(*TEXTS["idle"])
    gate.step(Event.FIRE_OVER, "fire_over")  # a guard's hold_open keeps it up
    if machine.held_open:
        status.publish()  # free_open from now on
    else:
        gate.served_arrivals = arming.arrivals  # cars met during the fire have been let out
