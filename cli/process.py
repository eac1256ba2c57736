"""What every long-running ``parkguard`` command does at the end: wait to be told to stop."""

from __future__ import annotations

import signal
import threading


def wait_for_signal() -> None:
    """Block until Ctrl-C or SIGTERM (systemd's stop), then return so the caller tears down."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
