"""A manual clock whose waits sleep until they are due, for long scenarios.

:class:`~parkguard.clock.ManualClock` has each waiting thread look at the clock every
2 ms of real time, since nothing else can wake it when the clock passes its deadline. A
scenario's site has some twenty such threads (each lane's worker, outbox and evidence
keeper, the gateway's alert tickers, ...), nearly all idle between cars: 10 000 wake-ups a
second that compete for the GIL and the machine's two cores with the threads doing the
work. Profiled on a day at the soak's settings they were the largest share of the samples.

:class:`SteppedClock` keeps the same meaning (a wait ends when its event is set or when
the clock is moved to or past its deadline) but a waiter sleeps on the event's own
condition; when :meth:`set` or :meth:`advance` moves the clock past a waiter's deadline,
the clock wakes that waiter itself. The event is never set by the clock: a woken waiter
finds it unset and returns False, exactly as a poll would have. The deadline is checked
with the event's condition held, and the clock notifies with that condition held after
the time has moved, so no move is missed between the check and the sleep.
"""

from __future__ import annotations

import itertools
import threading
from datetime import datetime, timedelta

from parkguard.clock import ManualClock

#: A waiter still looks at the clock this often (real seconds), a safety net only: every
#: move of the clock that reaches a deadline wakes its waiter at once.
LOOK_S = 0.5


def _condition(event: threading.Event) -> threading.Condition:
    """The condition ``Event.wait`` sleeps on and ``Event.set`` notifies (CPython's
    ``threading.Event`` keeps it as ``_cond``)."""
    cond = getattr(event, "_cond", None)
    if not isinstance(cond, threading.Condition):  # pragma: no cover - another Python
        raise TypeError("SteppedClock needs threading.Event's condition (_cond)")
    return cond


class SteppedClock(ManualClock):
    """A :class:`ManualClock` whose moves wake the waits they make due."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self._waiters: dict[int, tuple[datetime, threading.Condition]] = {}
        self._ids = itertools.count()

    def set(self, moment: datetime) -> None:
        super().set(moment)
        self._wake_due()

    def advance(self, delta: timedelta) -> None:
        super().advance(delta)
        self._wake_due()

    def _wake_due(self) -> None:
        now = self.now()
        with self._lock:
            due = [cond for deadline, cond in self._waiters.values() if deadline <= now]
        for cond in due:  # the clock's lock is not held here: a waiter takes both in turn
            with cond:
                cond.notify_all()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        cond = _condition(event)
        with self._lock:
            deadline = self._now + timedelta(seconds=max(0.0, seconds))
            token = next(self._ids)
            self._waiters[token] = (deadline, cond)
        try:
            with cond:
                while True:
                    if event.is_set():
                        return True
                    if self.now() >= deadline:
                        return False
                    cond.wait(LOOK_S)
        finally:
            with self._lock:
                del self._waiters[token]
