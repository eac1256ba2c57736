"""What the lane shows the world: its retained ``state`` message and its display.

The barrier position is written here only, under the lock, and the mode is not stored at
all: it is the state machine's (:attr:`GateMachine.mode <firmware.lane.states.GateMachine.mode>`),
so the published state cannot disagree with what the lane is doing. Publishing happens
from the worker, from the thread that heard of a fire, and on every (re)connect.
"""

from __future__ import annotations

import logging
import threading

from firmware.lane.config import LaneConfig
from firmware.lane.devices.display import Display
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
                 screen: Display) -> None:
        self._config = config
        self._clock = clock
        self._bus = bus
        self._machine = machine
        self.screen = screen
        self._lock = threading.Lock()
        self.barrier_position: BarrierPosition = "closed"
        self._published: tuple[LaneMode, BarrierPosition] | None = None
        self.qr: str | None = None
        """The QR link on the display now (an exit waiting for money), else None."""

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
        """Publish the retained state as it is now."""
        with self._lock:
            state = self.state()
            self._published = (state.mode, state.barrier)
        self._bus.publish(topics.lane_state(self._config.site, self._config.lane), state,
                          retain=True)

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
        the QR, so a link never outlives its car. The retained ``LaneState`` has no field
        for the display, so what is shown is not published."""
        self.qr = qr
        try:
            self.screen.show(zh, en, qr)
        except Exception:  # a broken display must not stop the gate
            log.exception("lane %s: display failed", self._config.lane)
