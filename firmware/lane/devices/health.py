"""Device health: a lane device says when it becomes faulted and when it recovers.

The IP camera, the LED display and the kiosk's USB devices each run a thread of their own
and know at once when their peer is gone (a dropped stream, a vanished serial port, an
unplugged keypad); without this seam the control room would learn of a dead camera only
when a car's read failed. A device that implements :class:`HealthReporter` holds a
:class:`HealthSignal` and tells it each time it fails or works; the signal calls its
listeners only on a *change* (working → faulted, faulted → working), so a device that stays
down while it retries every few seconds is reported once. The lane controller listens and
its worker turns each change into a ``fault`` event, or a ``fault_cleared`` one with the same
``code`` (:mod:`firmware.lane.controller`).

A device that starts faulted before anyone listens is not missed: a new listener is told at
once if the device is faulted now.

>>> signal, heard = HealthSignal("camera", "camera_offline"), []
>>> signal.listen(heard.append)
>>> signal.faulted("connection refused"); signal.faulted("connection refused again")
>>> signal.working("back"); signal.working("still fine")
>>> [(h.faulted, h.detail) for h in heard]
[(True, 'connection refused'), (False, 'back')]
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

log = logging.getLogger(__name__)

CODE_LENGTH: Final = 64
DETAIL_LENGTH: Final = 512  # the contract's Fault.detail bound


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    """One change of a device's health: ``faulted`` (why, in ``detail``) or recovered.

    ``code`` is the fault's code (``camera_offline``, ``display_failed``,
    ``kiosk_device_lost``) and stays the same when it clears, so the two events pair up."""

    device: str
    code: str
    faulted: bool
    detail: str


HealthListener = Callable[[DeviceHealth], None]
"""Called on the device's thread with each change: must not block (queue it, wake a worker)."""


@runtime_checkable
class HealthReporter(Protocol):
    """A device that reports its faults as they happen."""

    def when_health(self, listener: HealthListener) -> None: ...


class HealthSignal:
    """A device's health as the lane hears it: remembers whether the device is faulted and
    tells listeners only when that changes. Any thread; listeners run under the signal's lock,
    so changes reach them in order."""

    def __init__(self, device: str, code: str) -> None:
        self.device = device
        self.code = code[:CODE_LENGTH]
        self._lock = threading.RLock()
        self._listeners: list[HealthListener] = []
        self._fault: str | None = None  # the detail of the fault now, None while working

    @property
    def fault(self) -> str | None:
        """What is wrong now, as last reported (None: working, or nothing reported yet)."""
        with self._lock:
            return self._fault

    def listen(self, listener: HealthListener) -> None:
        """Add a listener; told at once if the device is faulted now."""
        with self._lock:
            self._listeners.append(listener)
            if self._fault is not None:
                self._tell(listener, DeviceHealth(self.device, self.code, True, self._fault))

    def faulted(self, detail: str) -> None:
        """The device failed (again): listeners hear it if it was working."""
        with self._lock:
            was, self._fault = self._fault, detail[:DETAIL_LENGTH]
            if was is None:
                self._tell_all(DeviceHealth(self.device, self.code, True, self._fault))

    def working(self, detail: str = "working again") -> None:
        """The device works: listeners hear it if it was faulted."""
        with self._lock:
            was, self._fault = self._fault, None
            if was is not None:
                self._tell_all(DeviceHealth(self.device, self.code, False,
                                            detail[:DETAIL_LENGTH]))

    def _tell_all(self, change: DeviceHealth) -> None:
        for listener in list(self._listeners):
            self._tell(listener, change)

    def _tell(self, listener: HealthListener, change: DeviceHealth) -> None:
        try:
            listener(change)
        except Exception:  # a listener must never stop the device's thread
            log.exception("%s: health listener failed", self.device)
