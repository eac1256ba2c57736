"""What the lane shows the world: its retained ``state`` message and its display.

The barrier position is written here only, under the lock, and the mode is not stored at
all: it is the state machine's (:attr:`GateMachine.mode <firmware.lane.states.GateMachine.mode>`),
so the published state cannot disagree with what the lane is doing. Publishing happens
from the worker, from the thread that heard of a fire, and on every (re)connect.

The heartbeat: a lane publishes on change, so a quiet lane at 3 a.m. would say nothing for
hours and the control room could not tell it from a hung one. The worker therefore repeats
the state at least every ``[timing] state_heartbeat_s`` (10 s) of the lane's clock
(:meth:`LaneStatus.beat`, run each time the worker looks; :meth:`LaneStatus.next_beat` tells
the worker's wait when to look). The repeat is the last published message byte for byte
(same ``ts``: the time the lane last said something new), so receivers that key on content
(the fleet's store, Home Assistant) see nothing new and the gateway only notes when it heard
the lane. It comes from the worker, not the MQTT thread, so a worker that hangs stops it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from firmware.lane.config import LaneConfig
from firmware.lane.devices.display import TEXTS, Display, under_alarm
from firmware.lane.states import GateMachine
from parkguard import __version__
from parkguard.clock import Clock
from wire.bus import Bus
from wire.contract import topics
from wire.contract.messages import BarrierPosition, LaneMode, LaneState

log = logging.getLogger(__name__)


class LaneStatus:
    """The lane's published state and its display."""

    def __init__(self, config: LaneConfig, *, clock: Clock, bus: Bus, machine: GateMachine,
                 screen: Display, wake: Callable[[], None] | None = None) -> None:
        """``wake``: the worker's (its wait must learn of the first heartbeat's time)."""
        self._config = config
        self._clock = clock
        self._bus = bus
        self._machine = machine
        self._wake = wake
        self.screen = screen
        self._lock = threading.Lock()
        self.barrier_position: BarrierPosition = "closed"
        self._published: tuple[LaneMode, BarrierPosition] | None = None
        self._said: bytes | None = None  # the state message as last published
        self._heartbeat = timedelta(seconds=config.timing.state_heartbeat_s)
        self._next_beat: datetime | None = None  # none until the state was first published
        self.beats = 0
        """Heartbeats published (repeats of an unchanged state)."""
        self.qr: str | None = None
        """The QR link on the display now (an exit waiting for money), else None."""
        self.alarm_text: Callable[[], tuple[str, str] | None] = lambda: None
        """What a site alarm puts on the display while it holds (flood level 3), if any: the
        controller sets it (:meth:`Alarms.flood_display <firmware.lane.alarms.Alarms>`)."""
        self._screen_lock = threading.Lock()  # the worker, the kiosk's and the bus's threads
        self._text: tuple[str, str] | None = None  # the words last asked for; None: no car's
        self._asked_qr: str | None = None
        self._on_screen: tuple[str, str, str | None] | None = None

    @property
    def mode(self) -> LaneMode:
        return self._machine.mode

    def state(self, *, online: bool = True) -> LaneState:
        return LaneState(
            lane=self._config.lane, online=online, direction=self._config.direction,
            mode=self._machine.mode, barrier=self.barrier_position, firmware=__version__,
            ts=self._clock.now(),
        )

    def publish(self) -> None:
        """Publish the retained state as it is now (the next heartbeat is due a heartbeat
        period after it)."""
        with self._lock:
            state = self.state()
            body = state.to_json()
            self._published = (state.mode, state.barrier)
            self._said = body
            first = self._next_beat is None
            self._next_beat = state.ts + self._heartbeat
        self._bus.publish(self._topic(), body, retain=True)
        if first and self._wake is not None:  # the worker may be waiting an hour for nothing
            self._wake()

    def next_beat(self) -> datetime | None:
        """When the worker must look next to keep the heartbeat (None: nothing published
        yet, the (re)connect publishes first)."""
        with self._lock:
            return self._next_beat

    def beat(self) -> None:
        """Worker, each time it looks: once a heartbeat period passed on the lane's clock
        since the state was last published, publish it again, the same bytes. Skipped while
        the broker is away (the reconnect publishes a fresh state); the next one is then due
        a period later, so a lane cut off never spins."""
        now = self._clock.now()
        with self._lock:
            if self._next_beat is None or now < self._next_beat:
                return
            self._next_beat = now + self._heartbeat
            changed = self._published != (self._machine.mode, self.barrier_position)
            body = self._said
        if not self._bus.connected.is_set():
            return
        if changed or body is None:  # a change nobody published: say it, freshly stamped
            self.publish()
            return
        self._bus.publish(self._topic(), body, retain=True)
        self.beats += 1

    def _topic(self) -> str:
        return topics.lane_state(self._config.site, self._config.lane)

    def barrier(self, position: BarrierPosition) -> None:
        """Record where the boom is (the caller publishes)."""
        with self._lock:
            self.barrier_position = position

    def fire_raised(self) -> None:
        """Any thread: a fire put the boom up; publish at once if that changes what the world
        was last told (and the broker is there to hear it)."""
        with self._lock:
            self.barrier_position = "open"
            changed = self._published != (self._machine.mode, "open")
        if changed and self._bus.connected.is_set():
            self.publish()

    def publish_offline(self) -> None:
        """A clean goodbye: the retained offline state (a clean stop has no Last Will)."""
        if self._bus.connected.is_set():
            self._bus.publish_and_wait(
                topics.lane_state(self._config.site, self._config.lane),
                self.state(online=False), retain=True, timeout=5)

    def show(self, zh: str, en: str, qr: str | None = None) -> None:
        """Put two lines (and the pay-page QR, if any) on the display; every call replaces
        the QR, so a link never outlives its car. While a site alarm holds (:attr:`alarm_text`)
        the lines are shown under it (``devices.display.under_alarm``). The retained
        ``LaneState`` has no field for the display, so what is shown is not published."""
        with self._screen_lock:
            self._text, self._asked_qr = (zh, en), qr
            self._put(always=True)

    def refresh(self) -> None:
        """Any thread: the alarm's text changed (flood level 3 began or ended): show the last
        words under it now, not at the next car; when it ended, its own words left by a
        gateway's ``display`` order go with it."""
        with self._screen_lock:
            alarm = self.alarm_text()
            if alarm is None and self._on_screen is None:
                return  # nothing shown yet, nothing to take back
            if alarm is None and self._text == TEXTS["flood_leave"]:
                self._text, self._asked_qr = None, None
            self._put()

    def between_cars(self, idle: bool) -> None:
        """Worker, each time it looks: with no car at the gate (``idle``) while an alarm
        holds, the alarm alone, not the last car's words."""
        if not idle or self.alarm_text() is None:
            return
        with self._screen_lock:
            if self._text is not None:
                self._text, self._asked_qr = None, None
                self._put()

    def _put(self, *, always: bool = False) -> None:
        """Under the screen lock: what is asked for, under the alarm if one holds."""
        exit_lane = self._config.direction == "exit"
        zh, en = under_alarm(self._text, self.alarm_text(), exit_lane=exit_lane)
        qr = self._asked_qr if self._text is not None else None
        if not always and self._on_screen == (zh, en, qr):
            return
        self._on_screen = (zh, en, qr)
        self.qr = qr
        try:
            self.screen.show(zh, en, qr)
        except Exception:  # a broken display must not stop the gate
            log.exception("lane %s: display failed", self._config.lane)
