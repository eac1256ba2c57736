"""systemd's readiness and watchdog protocol (``sd_notify``) over ``NOTIFY_SOCKET``, no
dependency; shared by the lane and the site gateway, each with its own health check.

systemd (``Type=notify``, ``WatchdogSec=``) sets ``NOTIFY_SOCKET`` (a path, or ``@name`` for
an abstract socket) and ``WATCHDOG_USEC``. A process says ``READY=1`` once it serves, then
``WATCHDOG=1`` every half period **only while its own health check holds** (the lane: its
worker and outbox threads are alive and the worker went round its loop recently; the
gateway: its worker is alive and went round recently). A wedged process stops pinging and
systemd restarts it (``Restart=always``). Off systemd (no ``NOTIFY_SOCKET``) every call does
nothing, so the same code runs on a bench or in tests unchanged.

>>> Notifier(None).notify("READY=1")
False
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify datagrams to systemd's socket (or nowhere when there is none)."""

    def __init__(self, address: str | None,
                 socket_factory: Callable[[], socket.socket] | None = None) -> None:
        self.address = address
        self._factory = socket_factory or (lambda: socket.socket(socket.AF_UNIX,
                                                                 socket.SOCK_DGRAM))

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None)

    def notify(self, message: str) -> bool:
        """Send one state line (``READY=1``, ``WATCHDOG=1``, ``STATUS=...``); True if sent."""
        if not self.address:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with self._factory() as sock:
                sock.sendto(message.encode("utf-8"), target)
        except OSError as error:
            log.warning("sd_notify %s failed: %s", message.split("=")[0], error)
            return False
        return True


def watchdog_period_s(environ: Mapping[str, str] | None = None) -> float | None:
    """Half of systemd's ``WATCHDOG_USEC`` (how often to ping), or None without a watchdog."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    return usec / 2_000_000


class Watchdog:
    """Pings systemd every ``period_s`` while ``healthy()`` says so; ``what`` names the
    process in the log line written when it does not."""

    def __init__(self, notifier: Notifier, period_s: float | None,
                 healthy: Callable[[], bool], *, what: str = "process") -> None:
        self._notifier = notifier
        self._period = period_s
        self._healthy = healthy
        self._what = what
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._round = threading.Condition()
        self.pings = 0
        self.skipped = 0
        """rounds on which the health check failed, so no ping was sent"""
        self.rounds = 0
        """rounds the background thread has finished (whatever each sent)"""

    def start(self, status: str = "") -> None:
        self._notifier.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))
        if self._period is None:
            return
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self._thread.start()

    def ping_once(self) -> bool:
        if not self._healthy():
            log.error("%s unhealthy: not pinging systemd's watchdog", self._what)
            self.skipped += 1
            return False
        if self._notifier.notify("WATCHDOG=1"):
            self.pings += 1
            return True
        return False

    def _run(self) -> None:
        period = self._period if self._period is not None else 1.0
        while not self._stop.wait(period):
            self.ping_once()
            with self._round:
                self.rounds += 1
                self._round.notify_all()

    def wait_rounds(self, count: int, timeout: float = 5.0) -> None:
        """Block until the thread has finished ``count`` more rounds (TimeoutError if not):
        tests settle what it did, or did not, send by waiting on its rounds, not on a sleep."""
        with self._round:
            target = self.rounds + count
            if not self._round.wait_for(lambda: self.rounds >= target, timeout):
                raise TimeoutError(f"the watchdog went round {self.rounds} times, "
                                   f"not {target}, in {timeout} s")

    def stop(self) -> None:
        self._stop.set()
        self._notifier.notify("STOPPING=1")
        if self._thread is not None:
            self._thread.join(timeout=2)
