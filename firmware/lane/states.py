"""The lane's gate sequence as an explicit, table-driven state machine.

:data:`TRANSITIONS` maps ``(state, event)`` to ``(next state, barrier action)``; nothing
else decides where the lane goes next or when the barrier moves. :mod:`firmware.lane.gate`
is the only caller: it turns what the pins, the gateway and the commands say into
:class:`Event` s, feeds them to :class:`GateMachine` and carries out the action it gets
back (``raise`` / ``lower`` the barrier, or nothing). Every wait of the sequence takes its
timeout from :func:`timeout_for`.

The machine is strict: an event with no row in the current state raises
:class:`UnexpectedEvent` (the gate reports it as a fault and the state stays put).

Two guards live in the machine beside the state: ``held_open`` (a guard's ``hold_open``,
ended by a ``close``) and ``fire`` (set by :mod:`firmware.lane.alarms` the moment a fire
starts or ends). While either holds, a ``lower`` becomes ``kept_up``; together with the state
they give the lane's reported :attr:`GateMachine.mode`.

A ``lower`` is a *request*: the barrier's interlock (:meth:`Barrier.lower
<firmware.lane.devices.hardware.Barrier.lower>`) still refuses while the safety loop is
occupied or a fire holds the boom. So no path through this table can put the boom on a car.

Two reflexes sit outside the table on purpose: a fire raises the relay on the thread that
heard it (not behind a car the worker is deciding on) and the worker then steps
``fire_started``; and the interlock above.

The table is documented in docs/lane.md (Mermaid diagram plus a plain table that
``tests/test_lane_states.py`` compares with :data:`TRANSITIONS`, so the two cannot drift).

>>> machine = GateMachine()
>>> machine.step(Event.VEHICLE_ARRIVED).next, machine.step(Event.READ_STARTED).next
(<State.VEHICLE_PRESENT: 'vehicle_present'>, <State.READING: 'reading'>)
>>> machine.step(Event.READ_FAILED).action, machine.step(Event.DECIDED_OPEN).action
(<Action.NONE: 'none'>, <Action.RAISE: 'raise'>)
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from firmware.lane.config import LaneTiming
from wire.contract.messages import LaneMode


class State(StrEnum):
    IDLE = "idle"
    VEHICLE_PRESENT = "vehicle_present"
    READING = "reading"
    DECIDING = "deciding"
    OPEN = "open"
    PASSING = "passing"
    CLOSING = "closing"
    REFUSED = "refused"
    WAITING_HELP = "waiting_help"
    FAULT = "fault"
    FIRE_OPEN = "fire_open"


class Event(StrEnum):
    VEHICLE_ARRIVED = "vehicle_arrived"      # arming loop on (a new arrival)
    READ_STARTED = "read_started"            # camera triggered
    PLATE_READ = "plate_read"                # the reader gave a plate
    READ_FAILED = "read_failed"              # nothing readable (or the reader broke)
    DECIDED_OPEN = "decided_open"            # gateway or replica: open
    DECIDED_REFUSE = "decided_refuse"        # gateway or replica: refuse
    KIOSK_IDENTITY = "kiosk_identity"        # a no-plate identity from the kiosk: ask again
    HELP_PRESSED = "help_pressed"            # the driver pressed the help button
    MANUAL_OPEN = "manual_open"              # a guard's signed open
    PAID_OFFLINE = "paid_offline"            # a 付款码 taken at a lane deciding alone
    HOLD_OPEN = "hold_open"                  # a guard's signed hold_open
    CLOSE_COMMAND = "close_command"          # a guard's signed close
    UP_REACHED = "up_reached"                # up limit switch closed
    DOWN_REACHED = "down_reached"            # down limit switch closed (or no switches)
    LIMIT_TIMEOUT = "limit_timeout"          # the boom did not reach its limit in time
    VEHICLE_ENTERED = "vehicle_entered"      # safety loop on while open
    VEHICLE_PASSED = "vehicle_passed"        # safety loop clear again: one car through
    TAILGATE = "tailgate"                    # safety loop clear: two or more cars through
    VEHICLE_LEFT = "vehicle_left"            # the car backed out (arming loop clear, none passed)
    PASS_TIMEOUT = "pass_timeout"  # noqa: S105 - opened, nobody came
    SAFETY_OCCUPIED = "safety_occupied"      # a car under the boom while it closes
    FIRE_STARTED = "fire_started"            # alarm/fire active or the fire input
    FIRE_OVER = "fire_over"                  # alarm/fire inactive and the fire input released
    FAULT_CLEARED = "fault_cleared"          # both loops clear after a fault was reported
    KEPT_UP = "kept_up"                      # closing, but a hold_open or a fire keeps it up


class Action(StrEnum):
    NONE = "none"
    RAISE = "raise"
    LOWER = "lower"


@dataclass(frozen=True, slots=True)
class Transition:
    state: State
    event: Event
    next: State
    action: Action


S, E, A = State, Event, Action

_CORE: Final[list[tuple[State, Event, State, Action]]] = [
    (S.IDLE, E.VEHICLE_ARRIVED, S.VEHICLE_PRESENT, A.NONE),
    (S.IDLE, E.MANUAL_OPEN, S.OPEN, A.RAISE),
    (S.IDLE, E.HOLD_OPEN, S.IDLE, A.RAISE),
    (S.IDLE, E.CLOSE_COMMAND, S.CLOSING, A.LOWER),
    (S.VEHICLE_PRESENT, E.READ_STARTED, S.READING, A.NONE),
    (S.VEHICLE_PRESENT, E.MANUAL_OPEN, S.OPEN, A.RAISE),
    (S.READING, E.PLATE_READ, S.DECIDING, A.NONE),
    (S.READING, E.READ_FAILED, S.DECIDING, A.NONE),
    (S.DECIDING, E.DECIDED_OPEN, S.OPEN, A.RAISE),
    (S.DECIDING, E.DECIDED_REFUSE, S.REFUSED, A.NONE),
    (S.REFUSED, E.VEHICLE_LEFT, S.IDLE, A.NONE),
    (S.REFUSED, E.HELP_PRESSED, S.WAITING_HELP, A.NONE),
    (S.REFUSED, E.KIOSK_IDENTITY, S.DECIDING, A.NONE),
    (S.REFUSED, E.MANUAL_OPEN, S.OPEN, A.RAISE),
    (S.REFUSED, E.PAID_OFFLINE, S.OPEN, A.RAISE),
    (S.REFUSED, E.HOLD_OPEN, S.IDLE, A.RAISE),
    (S.REFUSED, E.CLOSE_COMMAND, S.CLOSING, A.LOWER),
    (S.WAITING_HELP, E.VEHICLE_LEFT, S.IDLE, A.NONE),
    (S.WAITING_HELP, E.KIOSK_IDENTITY, S.DECIDING, A.NONE),
    (S.WAITING_HELP, E.MANUAL_OPEN, S.OPEN, A.RAISE),
    (S.WAITING_HELP, E.PAID_OFFLINE, S.OPEN, A.RAISE),
    (S.WAITING_HELP, E.HOLD_OPEN, S.IDLE, A.RAISE),
    (S.WAITING_HELP, E.CLOSE_COMMAND, S.CLOSING, A.LOWER),
    (S.OPEN, E.UP_REACHED, S.OPEN, A.NONE),
    (S.OPEN, E.LIMIT_TIMEOUT, S.FAULT, A.NONE),
    (S.OPEN, E.VEHICLE_ENTERED, S.PASSING, A.NONE),
    (S.OPEN, E.VEHICLE_LEFT, S.CLOSING, A.LOWER),
    (S.OPEN, E.PASS_TIMEOUT, S.CLOSING, A.LOWER),
    (S.OPEN, E.CLOSE_COMMAND, S.CLOSING, A.LOWER),
    (S.PASSING, E.VEHICLE_PASSED, S.CLOSING, A.LOWER),
    (S.PASSING, E.TAILGATE, S.CLOSING, A.LOWER),
    (S.CLOSING, E.DOWN_REACHED, S.IDLE, A.NONE),
    (S.CLOSING, E.KEPT_UP, S.IDLE, A.NONE),
    (S.CLOSING, E.SAFETY_OCCUPIED, S.PASSING, A.RAISE),
    (S.CLOSING, E.LIMIT_TIMEOUT, S.FAULT, A.RAISE),
    (S.CLOSING, E.MANUAL_OPEN, S.OPEN, A.RAISE),
    (S.FAULT, E.FAULT_CLEARED, S.CLOSING, A.LOWER),
    (S.FAULT, E.MANUAL_OPEN, S.OPEN, A.RAISE),
    (S.FAULT, E.CLOSE_COMMAND, S.CLOSING, A.LOWER),
    (S.FAULT, E.HOLD_OPEN, S.IDLE, A.RAISE),
    (S.FIRE_OPEN, E.FIRE_OVER, S.CLOSING, A.LOWER),
    (S.FIRE_OPEN, E.HOLD_OPEN, S.FIRE_OPEN, A.NONE),    # kept for after the fire
    (S.FIRE_OPEN, E.CLOSE_COMMAND, S.FIRE_OPEN, A.NONE),  # refused: the fire holds it up
]

#: States in which a help press only gets reported (the state does not change).
_HELP_REPORTED_IN: Final = (S.IDLE, S.VEHICLE_PRESENT, S.READING, S.DECIDING, S.OPEN,
                            S.PASSING, S.CLOSING, S.WAITING_HELP, S.FAULT, S.FIRE_OPEN)


def _build() -> dict[tuple[State, Event], tuple[State, Action]]:
    table: dict[tuple[State, Event], tuple[State, Action]] = {}
    for state, event, nxt, action in _CORE:
        if (state, event) in table:
            raise AssertionError(f"duplicate transition {state}/{event}")
        table[state, event] = (nxt, action)
    for state in _HELP_REPORTED_IN:
        table.setdefault((state, E.HELP_PRESSED), (state, A.NONE))
    for state in State:  # a fire overrides everything: raise, from wherever the lane was
        if state is not S.FIRE_OPEN:
            table[state, E.FIRE_STARTED] = (S.FIRE_OPEN, A.RAISE)
    return table


TRANSITIONS: Final[dict[tuple[State, Event], tuple[State, Action]]] = _build()
"""``(state, event) -> (next state, action)``: the whole gate sequence."""


def timeout_for(state: State, timing: LaneTiming, *, limit_switches: bool,
                moving: bool = False) -> float | None:
    """How long the lane waits in ``state`` before the timeout event, in seconds (None: no
    timeout). ``deciding``: the decide deadline (then the lane decides alone); ``open``:
    the up limit switch while the boom is ``moving`` (if wired), then ``pass_timeout_s``;
    ``closing``: the down limit switch; ``refused`` / ``waiting_help``: ``refused_timeout_s``
    (reported, the car may stay)."""
    if state is State.DECIDING:
        return timing.decide_deadline_ms / 1000
    if state is State.OPEN:
        if moving:
            return timing.limit_timeout_s if limit_switches else None
        return timing.pass_timeout_s
    if state is State.CLOSING:
        return timing.limit_timeout_s if limit_switches else None
    if state in (State.REFUSED, State.WAITING_HELP):
        return timing.refused_timeout_s
    return None


class UnexpectedEvent(RuntimeError):
    """An event the table has no row for in the current state: a fault in the sequence."""


class GateMachine:
    """The current state, its guards and the last transitions; :meth:`step` is the only way
    to move.

    Owned by the lane's worker thread; ``state``, ``mode`` and the guards may be read from
    any thread (``fire`` is also written by the thread that heard of a fire).
    """

    def __init__(self, *, history: int = 256) -> None:
        self._state = State.IDLE
        self._lock = threading.Lock()
        self.history: deque[Transition] = deque(maxlen=history)
        self.held_open = False
        """A guard's ``hold_open`` lasts (until a ``close``): a ``lower`` keeps it up."""
        self.fire = False
        """A fire holds the barrier (the last known alarm or the fire input)."""

    @property
    def state(self) -> State:
        return self._state

    @property
    def mode(self) -> LaneMode:
        """What the lane reports: ``fire_open`` while a fire lasts (or the lane still runs
        its fire mode), ``free_open`` while held open, else ``normal``."""
        with self._lock:
            if self.fire or self._state is State.FIRE_OPEN:
                return "fire_open"
            return "free_open" if self.held_open else "normal"

    def keeps_up(self) -> bool:
        """Whether a ``lower`` must become ``kept_up`` (held open, or a fire)."""
        return self.held_open or self.fire

    def can(self, event: Event) -> bool:
        return (self._state, event) in TRANSITIONS

    def step(self, event: Event) -> Transition:
        """Move on ``event``; :class:`UnexpectedEvent` if the table has no row for it."""
        with self._lock:
            row = TRANSITIONS.get((self._state, event))
            if row is None:
                raise UnexpectedEvent(f"{event} in state {self._state}")
            transition = Transition(self._state, event, *row)
            self._state = transition.next
            if event is Event.HOLD_OPEN:
                self.held_open = True
            elif event is Event.CLOSE_COMMAND:
                self.held_open = False
            self.history.append(transition)
            return transition

    def reset(self, state: State = State.IDLE) -> None:
        """Put the machine in ``state`` (start-up, and after a sequence error)."""
        with self._lock:
            self._state = state


def table_rows() -> list[tuple[str, str, str, str]]:
    """The table as text rows (state, event, next, action), sorted as docs/lane.md lists it."""
    order = {state: index for index, state in enumerate(State)}
    events = {event: index for index, event in enumerate(Event)}
    return [(s.value, e.value, n.value, a.value)
            for (s, e), (n, a) in sorted(TRANSITIONS.items(),
                                         key=lambda item: (order[item[0][0]],
                                                           events[item[0][1]]))]
