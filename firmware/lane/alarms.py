"""Site alarms as the lane knows them: the retained ``alarm/fire`` and ``alarm/flood``, and
the hard-wired fire input.

A fire raises the barrier at once, on the thread that heard it (the bus's or the fire
input's pin thread), not on the worker, which may be waiting for the gateway: a fire must
not queue behind a car. It also sets the machine's ``fire`` guard and the barrier's
``fire_hold`` (``Barrier.lower()`` refuses while it lasts). Only a retained ``alarm/fire``
that says inactive (and the fire input released) ends it; losing the broker changes
nothing, and the last known alarms survive reboots in the journal.

A flood is held the same way: ``alarm/flood`` active closes the entries (level 2), and its
``level`` 3 puts 水浸 请立即驶离 / FLOOD – LEAVE NOW on the display (:meth:`Alarms.flood_display`,
shown by :class:`~firmware.lane.status.LaneStatus` between cars and over each car's words)
until a message says the level dropped; the level is journaled too, and the retained message
gives it to a lane that was off when it came.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

from firmware.lane.devices.display import TEXTS
from firmware.lane.devices.hardware import LaneHardware
from firmware.lane.journal import Journal
from firmware.lane.states import GateMachine
from firmware.lane.status import LaneStatus
from parkguard.errors import ContractError
from wire.contract.messages import AlarmState

log = logging.getLogger(__name__)

ALARM_KEYS = {"fire": "alarm.fire", "flood": "alarm.flood"}
"""Journal keys of the last known alarm states."""
FLOOD_LEVEL_KEY = "alarm.flood_level"
"""Journal key of the last known flood level (0-3)."""


class Alarms:
    """The lane's view of the site alarms, and the fire reflex."""

    def __init__(self, lane: str, *, journal: Journal, hardware: LaneHardware,
                 machine: GateMachine, status: LaneStatus, wake: Callable[[], None]) -> None:
        self._lane = lane
        self._journal = journal
        self._hw = hardware
        self._machine = machine
        self._status = status
        self._wake = wake
        self.fire_alarm = journal.get(ALARM_KEYS["fire"]) == "1"
        self.flood_alarm = journal.get(ALARM_KEYS["flood"]) == "1"
        known = journal.get(FLOOD_LEVEL_KEY)
        self.flood_level = int(known) if known in ("0", "1", "2", "3") else (
            2 if self.flood_alarm else 0)

    def flood_display(self) -> tuple[str, str] | None:
        """水浸 请立即驶离 while the flood is at level 3, unless a fire says more."""
        if self.flood_level >= 3 and not self.fire_active():
            return TEXTS["flood_leave"]
        return None

    def fire_active(self) -> bool:
        """A fire holds the barrier: the last known ``alarm/fire`` or the fire input."""
        fire_input = self._hw.fire_input
        return self.fire_alarm or (fire_input is not None and fire_input.active)

    def on_alarm(self, topic: str, payload: bytes) -> None:
        """The bus's thread: a retained site alarm. An empty or bad payload changes nothing:
        the lane keeps the last alarm state it knew until one says otherwise."""
        try:
            alarm = AlarmState.from_json(payload)
        except ContractError as error:
            log.warning("lane %s: alarm on %s ignored: %s", self._lane, topic, error)
            return
        if not topic.endswith(f"/alarm/{alarm.kind}"):
            log.warning("lane %s: %s alarm on %s ignored", self._lane, alarm.kind, topic)
            return
        if alarm.kind == "fire":
            changed = alarm.active != self.fire_alarm
            self.fire_alarm = alarm.active
            self.fire_changed()
        else:
            level = alarm.flood_level()
            changed = alarm.active != self.flood_alarm
            evacuate = (level >= 3) != (self.flood_level >= 3)
            self.flood_alarm, self.flood_level = alarm.active, level
            if evacuate:
                self._status.refresh()
                log.warning("lane %s: flood level %d: %s", self._lane, level,
                            "LEAVE NOW on the display" if level >= 3 else "display back")
            self._remember(FLOOD_LEVEL_KEY, str(level))
            self._wake()
        if changed:
            log.warning("lane %s: %s alarm %s (from %s)", self._lane, alarm.kind,
                        "ACTIVE" if alarm.active else "over", alarm.source)
            # remembered for a restart; the barriers have already followed the alarm
            self._remember(ALARM_KEYS[alarm.kind], "1" if alarm.active else "0")

    def _remember(self, key: str, value: str) -> None:
        try:
            if self._journal.get(key) != value:
                self._journal.put(key, value)
        except sqlite3.Error as error:
            log.error("lane %s: %s not journaled (%s)", self._lane, key, error)

    def fire_changed(self) -> None:
        """Any thread (the bus, the fire input's pin thread, start): raise at once on a fire."""
        barrier = self._hw.barrier
        barrier.fire_hold = self.fire_alarm
        active = self.fire_active()
        self._machine.fire = active
        if active:
            barrier.raise_()
            self._status.fire_raised()
        self._wake()
