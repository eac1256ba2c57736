"""One manual clock shared by two processes: the scenario runner moves it, a gateway
subprocess follows it.

The runner's :class:`PublishedClock` is a
:class:`~simulator.scenario.stepped_clock.SteppedClock` (a manual clock) that also
writes its time (UTC microseconds) into an 8-byte memory-mapped file each time it moves; the
gateway process reads it with :class:`FollowingClock`. So a gateway that is SIGKILLed and
started again comes back on the same simulated time, which jumps from car to car as in the
in-process runs (a :func:`~parkguard.clock.shared_scaled_clock` would make a day take as
long as its scale says).
"""

from __future__ import annotations

import mmap
import struct
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from simulator.scenario.stepped_clock import SteppedClock

_FORMAT = "<q"
_SIZE = struct.calcsize(_FORMAT)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_POLL_SECONDS = 0.002


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


class PublishedClock(SteppedClock):
    """A manual clock whose every move is written to ``path`` for other processes."""

    def __init__(self, start: datetime, path: Path) -> None:
        super().__init__(start)
        self.path = path
        path.write_bytes(struct.pack(_FORMAT, _micros(self.now())))
        self._file = path.open("r+b")
        self._map = mmap.mmap(self._file.fileno(), _SIZE)

    def _publish(self) -> None:
        self._map[:_SIZE] = struct.pack(_FORMAT, _micros(self.now()))

    def set(self, moment: datetime) -> None:
        super().set(moment)
        self._publish()

    def advance(self, delta: timedelta) -> None:
        super().advance(delta)
        self._publish()

    def close(self) -> None:
        self._map.close()
        self._file.close()


class FollowingClock:
    """The time another process's :class:`PublishedClock` says (a :class:`Clock`)."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")
        self._map = mmap.mmap(self._file.fileno(), _SIZE, access=mmap.ACCESS_READ)

    def now(self) -> datetime:
        while True:  # an 8-byte store is not promised atomic: read until two reads agree
            first = self._map[:_SIZE]
            if self._map[:_SIZE] == first:
                (micros,) = struct.unpack(_FORMAT, first)
                return _EPOCH + timedelta(microseconds=micros)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        deadline = self.now() + timedelta(seconds=max(0.0, seconds))
        while True:
            if event.wait(_POLL_SECONDS):
                return True
            if self.now() >= deadline:
                return event.is_set()
