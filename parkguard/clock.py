"""The one clock seam: every component asks its clock for the time and for its waits.

Real deployments use :class:`SystemClock`; the simulator and the tests use
:class:`ManualClock` (time moves only when told) or :class:`ScaledClock` (a day
in minutes), so a simulated day runs in seconds and timers are deterministic.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

_POLL_SECONDS = 0.002


@runtime_checkable
class Clock(Protocol):
    """What a component needs from time.

    Must override: ``now``, ``wait``.
    ``now`` is timezone-aware UTC. ``wait`` blocks until ``event`` is set or
    ``seconds`` of *this clock's* time have passed, and says which.
    """

    def now(self) -> datetime: ...

    def wait(self, event: threading.Event, seconds: float) -> bool: ...


def utc_iso(moment: datetime) -> str:
    """Render a UTC instant the way the wire contract wants it (ISO-8601, milliseconds, Z)."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: ParkGuard keeps UTC-aware times only")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SystemClock:
    """Wall-clock UTC and real waits: what a lane or the gateway uses in production."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(0.0, seconds))


class ScaledClock:
    """Time that runs ``speed`` times faster than real time from ``start``.

    >>> clock = ScaledClock(datetime(2026, 1, 1, tzinfo=UTC), speed=3600)
    >>> clock.now() >= datetime(2026, 1, 1, tzinfo=UTC)
    True
    """

    def __init__(self, start: datetime, *, speed: float) -> None:
        if start.tzinfo is None:
            raise ValueError("ScaledClock needs a timezone-aware start")
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self._start = start.astimezone(UTC)
        self._speed = speed
        self._real_start = time.monotonic()

    def now(self) -> datetime:
        elapsed = (time.monotonic() - self._real_start) * self._speed
        return self._start + timedelta(seconds=elapsed)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(0.0, seconds) / self._speed)


class ManualClock:
    """Time that stands still until a test or the simulator moves it.

    Waits end when their event is set or when :meth:`advance` moves the clock
    past their deadline, so a timeout is tested by advancing, never by sleeping.

    >>> clock = ManualClock(datetime(2026, 5, 1, 10, 0, tzinfo=UTC))
    >>> clock.advance(timedelta(minutes=90))
    >>> clock.now().strftime("%H:%M")
    '11:30'
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, moment: datetime) -> None:
        """Jump to ``moment``; the clock never goes backwards."""
        if moment.tzinfo is None:
            raise ValueError("ManualClock.set needs a timezone-aware datetime")
        with self._lock:
            if moment < self._now:
                raise ValueError(f"clock cannot go back from {self._now} to {moment}")
            self._now = moment.astimezone(UTC)

    def advance(self, delta: timedelta) -> None:
        if delta < timedelta(0):
            raise ValueError(f"clock cannot go back by {delta}")
        with self._lock:
            self._now += delta

    def wait(self, event: threading.Event, seconds: float) -> bool:
        with self._lock:
            deadline = self._now + timedelta(seconds=max(0.0, seconds))
        while True:
            # Wait on the event itself so a set is seen at once; look at the
            # clock between short waits, since nothing else can wake us.
            if event.wait(_POLL_SECONDS):
                return True
            if self.now() >= deadline:
                return event.is_set()


def shared_scaled_clock(origin: datetime, scale: float, *, anchor: float | None = None
                        ) -> ScaledClock:
    """A :class:`ScaledClock` that read ``origin`` at Unix time ``anchor`` (default: now).

    ``ScaledClock`` counts from its own creation, so two processes that each make one from
    the same origin disagree by their start-up gap times the scale (a second at ×600 is ten
    minutes). Anchoring both to the same wall-clock instant makes them agree, and a gateway
    restarted mid-run picks up the same simulated time.
    """
    if origin.tzinfo is None:
        raise ValueError("shared_scaled_clock needs a timezone-aware origin")
    elapsed = 0.0 if anchor is None else time.time() - anchor
    return ScaledClock(origin + timedelta(seconds=elapsed * scale), speed=scale)
