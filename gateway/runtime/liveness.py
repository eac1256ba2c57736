"""How the gateway tells systemd it is up and still working: ``READY=1`` once it is
connected to the broker and its worker serves, ``STATUS=`` lines on the way there, and
``WATCHDOG=1`` only while its worker is alive and went round its loop recently, so a hung
gateway stops pinging and ``WatchdogSec=`` has systemd restart it
(hardware/parkguard-gateway.service). The datagrams themselves: :mod:`parkguard.systemd`,
shared with the lane. Off systemd (no ``NOTIFY_SOCKET``) nothing is sent and no thread runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.runtime.inbox import IDLE_WAKE_S
from parkguard.systemd import Notifier, Watchdog, watchdog_period_s

STALL_S = 60.0
"""How long the worker may go without going round its loop before the pings stop. An idle
worker goes round every ``IDLE_WAKE_S``; the longest honest job (a batch of lane events and
its fsync on an SD card, a full replica snapshot, an office export) takes seconds. Past a
minute it is wedged (a deadlock, a call with no timeout), and with ``WatchdogSec=30`` systemd
restarts it within about a minute and a half of the job starting."""


@dataclass(frozen=True, slots=True)
class Liveness:
    """Where to send sd_notify lines, how often to ping (None: systemd asked for no
    watchdog), how stale the worker may get, and how often an idle worker wakes."""

    notifier: Notifier
    period_s: float | None = None
    stall_s: float = STALL_S
    idle_wake_s: float = IDLE_WAKE_S

    def __post_init__(self) -> None:
        # an idle worker must look fresh: it wakes well within the staleness allowed
        if not 0 < self.idle_wake_s < self.stall_s:
            raise ValueError("idle_wake_s must be positive and shorter than stall_s")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Liveness:
        """What systemd set for this process (``NOTIFY_SOCKET``, ``WATCHDOG_USEC``)."""
        return cls(Notifier.from_environment(environ), watchdog_period_s(environ))

    def status(self, line: str) -> None:
        """One ``STATUS=`` line (``systemctl status`` shows it)."""
        self.notifier.notify(f"STATUS={line}")

    def watchdog(self, healthy: Callable[[float], bool]) -> Watchdog:
        """The pinger for a worker whose ``healthy(stall_s)`` says it still goes round."""
        return Watchdog(self.notifier, self.period_s, lambda: healthy(self.stall_s),
                        what="gateway")
