"""The lane worker's one way to wait, and the signal that it has nothing left to do.

Pin, bus and kiosk callbacks only record what happened and :meth:`Waiter.wake` the worker;
the worker waits on the lane's clock in :meth:`Waiter.until`. Each time it looks, it first
runs the *chores* (report command rejections, replica gaps, help presses, payment codes),
so those are handled wherever the sequence happens to be waiting. A chore that must run by
a given time even when nothing wakes the worker (the state heartbeat) registers when it is
next due (:meth:`Waiter.wake_by`): the worker's waits end then, on the same clock.

:meth:`Waiter.wait_idle` is for tests and the simulator: it returns once the worker is
blocked with nothing to do (no wake-up pending, its deadline not reached on the clock), so
"the lane did not do X" is asserted after a real wait, never after a sleep.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from parkguard.clock import Clock

IDLE_WAKE_S = 3600.0
"""An idle worker still goes round its loop at least this often (the watchdog's heartbeat;
the state heartbeat, :meth:`Waiter.wake_by`, wakes it far more often)."""


class Waiter:
    """The worker's wake-up event, stop flag, chores, heartbeat and idle signal."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.changed = threading.Event()
        self.stopping = threading.Event()
        self._chores: list[Callable[[], None]] = []
        self._due: list[Callable[[], datetime | None]] = []
        self._idle = threading.Condition()
        self._blocked: tuple[threading.Event, datetime] | None = None  # while blocked
        self.heartbeat = time.monotonic()
        """monotonic time the worker last looked (the watchdog reads it)"""

    def wake(self) -> None:
        """Any thread: something changed, the worker should look again."""
        self.changed.set()

    def on_each_look(self, chore: Callable[[], None]) -> None:
        """Run ``chore`` on the worker each time it looks, before its condition."""
        self._chores.append(chore)

    def wake_by(self, due: Callable[[], datetime | None]) -> None:
        """Have the worker look (and so run its chores) by the time ``due()`` says, even if
        nothing wakes it; ``due()`` None: no time set. The chore must move its time on when it
        runs, or the worker never blocks."""
        self._due.append(due)

    def stop(self) -> None:
        self.stopping.set()
        self.changed.set()

    def until(self, condition: Callable[[], bool], *, timeout_s: float | None) -> bool:
        """Wait on the lane's clock until ``condition`` holds; False on timeout or shutdown."""
        deadline = None if timeout_s is None else self._clock.now() + timedelta(seconds=timeout_s)
        while not self.stopping.is_set():
            self.changed.clear()
            for chore in self._chores:
                chore()
            self.heartbeat = time.monotonic()
            if condition():
                return True
            if deadline is None:
                self._block(IDLE_WAKE_S)
                continue
            remaining = (deadline - self._clock.now()).total_seconds()
            if remaining <= 0:
                return False
            self._block(remaining)
        return False

    def _block(self, seconds: float) -> None:
        until = self._clock.now() + timedelta(seconds=seconds)
        for due in self._due:
            when = due()
            if when is not None and when < until:
                until = when
        self.block_until(self.changed, until)

    def block_until(self, event: threading.Event, until: datetime) -> bool:
        """Block on the lane's clock until ``event`` is set (True) or the clock reaches
        ``until`` (False, unless the event was set meanwhile). While blocked the worker
        counts as idle unless ``event`` is set or ``until`` has come."""
        with self._idle:
            self._blocked = (event, until)
            self._idle.notify_all()
        try:
            while True:
                remaining = (until - self._clock.now()).total_seconds()
                if remaining <= 0:
                    return event.is_set()
                if self._clock.wait(event, remaining):
                    return True
        finally:
            with self._idle:
                self._blocked = None
                self._idle.notify_all()

    def idle(self) -> bool:
        """Whether the worker is blocked with nothing to do: what it waits for has not
        happened and its deadline has not come on the clock. A wake-up that came while it
        was busy and before it blocked on something else (the gateway's reply: a device's
        health changed as a car arrived) does not count: it looks at it only once that wait
        is over, which a test brings about by stepping the clock."""
        with self._idle:
            blocked = self._blocked
        if blocked is None:
            return False
        event, until = blocked
        return not event.is_set() and self._clock.now() < until

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Block (real time, at most ``timeout``) until :meth:`idle`; TimeoutError if not."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while not self.idle():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the lane worker was still busy after {timeout} s")
                # Notified when the worker blocks or wakes; a clock step past its deadline
                # notifies nobody, so look again after a moment.
                self._idle.wait(min(left, 0.01))
