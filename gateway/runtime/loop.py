"""The gateway's one worker thread: it owns the database connection and takes its work from
the inbox (decide requests first, then safety work, then office jobs and batches of lane
events in order).

MQTT callbacks only enqueue; everything that reads or writes the file runs here, so no two
writes interleave and an office action never lands in the middle of an exit being billed.

Each time round its loop the worker notes the time (:attr:`Worker.heartbeat`); an empty
inbox hands it ``idle`` every few seconds, so only a worker stuck in one job (a deadlock, a
call with no timeout) stops going round, and :meth:`Worker.healthy` then says so to
systemd's watchdog (gateway/runtime/liveness.py).
"""

from __future__ import annotations

import threading
import time

from gateway.runtime.batches import Batches
from gateway.runtime.inbox import Inbox, Job


class Worker:
    """Runs the inbox's work on a thread of its own until the inbox is stopped."""

    def __init__(self, inbox: Inbox, batches: Batches) -> None:
        self._inbox = inbox
        self._batches = batches
        self._thread: threading.Thread | None = None
        self.heartbeat = time.monotonic()
        """monotonic time the worker last went round its loop (the watchdog reads it)"""

    def start(self) -> None:
        self._inbox.serve(True)  # office calls queue from now on, not run in the caller
        self.heartbeat = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="gateway", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Handle what is queued, then end. False: the worker was still busy after
        ``timeout`` (its store must stay open under it; what it finishes is kept)."""
        self._inbox.stop()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            return not self._thread.is_alive()
        return True

    def healthy(self, stall_s: float) -> bool:
        """The worker thread runs and went round its loop within ``stall_s``: what systemd's
        watchdog pings for. Monotonic time, so a clock step at boot (NTP) never trips it."""
        thread = self._thread
        return (thread is not None and thread.is_alive()
                and time.monotonic() - self.heartbeat < stall_s)

    def _run(self) -> None:
        try:
            while True:
                self.heartbeat = time.monotonic()
                kind, work = self._inbox.next(self._batches.batch_size)
                if kind == "stop":
                    return
                if kind == "idle" or work is None:
                    continue
                if isinstance(work, Job):
                    work.run()
                elif kind == "decides":
                    self._batches.guard(self._batches.answer, work)
                else:
                    self._batches.guard(self._batches.ingest, work)
        finally:
            self._inbox.serve(False)
