"""The clock that drives escalation: a tick every second of the clock's time, handed to
the gateway's worker."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from parkguard.clock import Clock

log = logging.getLogger(__name__)


class Ticker:
    """Calls ``work(now)`` every ``period_s`` of the clock's time on a thread of its own (in
    production ``work`` hands the tick to the gateway's worker through ``Gateway.call``)."""

    def __init__(self, clock: Clock, work: Callable[[datetime], object], *,
                 period_s: float = 1.0) -> None:
        self._clock = clock
        self._work = work
        self._period = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-ticker", daemon=True)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._clock.wait(self._stop, self._period):
            try:
                self._work(self._clock.now())
            except Exception:
                log.exception("alerts: tick failed")
