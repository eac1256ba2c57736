"""The gateway as a process of its own, on the scenario runner's clock, for a real SIGKILL.

``python -m simulator.scenario.gateway_process CONFIG.json CLOCK`` runs the gateway (the
same :class:`~gateway.app.GatewayApp` ``parkguard gateway`` runs, with the simulated payment
provider the simulator may use) on the time the runner's
:class:`~simulator.scenario.shared_clock.PublishedClock` writes to ``CLOCK``. It prints
:data:`READY` once it is serving and stops cleanly on SIGTERM; SIGKILL is the fault.

The config comes as JSON (:func:`write_config`), secrets included, in the run's own
directory with owner-only permissions, as the site's provisioning files are.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from pydantic import SecretStr

READY = "scenario gateway ready"


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_config(config: Any, path: Path) -> None:
    """``config`` (a :class:`~gateway.config.GatewayConfig`) as JSON the process reads back."""
    text = json.dumps(_plain(config.model_dump(mode="python", exclude_none=True)), default=str)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def main(argv: list[str]) -> int:
    from cli.process import wait_for_signal
    from gateway.app import GatewayApp
    from gateway.config import GatewayConfig
    from simulator.scenario.shared_clock import FollowingClock

    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    config_file, clock_file = Path(argv[0]), Path(argv[1])
    config = GatewayConfig.model_validate(json.loads(config_file.read_text(encoding="utf-8")))
    app = GatewayApp(config, clock=FollowingClock(clock_file), allow_simulated=True).start()
    print(READY, flush=True)
    try:
        wait_for_signal()
    finally:
        app.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


class GatewayProcess:
    """The runner's handle on the gateway process: start, SIGKILL, stop."""

    def __init__(self, config_file: Path, clock_file: Path, log: Path) -> None:
        self.argv = [sys.executable, "-m", "simulator.scenario.gateway_process",
                     str(config_file), str(clock_file)]
        self.log = log
        self.process: subprocess.Popen[str] | None = None
        self.kills = 0

    def start(self, timeout: float = 60.0) -> GatewayProcess:
        """Start it and wait until it says it is serving."""
        with self.log.open("a", encoding="utf-8") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own module
                self.argv, stdout=subprocess.PIPE, stderr=log, text=True,
                cwd=Path(__file__).resolve().parents[2])
        ready = threading.Event()
        stdout = self.process.stdout
        if stdout is None:  # pragma: no cover - asked for a pipe above
            raise RuntimeError("the gateway process has no stdout pipe")

        def read() -> None:
            for line in stdout:
                if line.strip() == READY:
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"the gateway process did not start within {timeout} s "
                               f"(see {self.log})")
        return self

    def kill(self) -> None:
        """SIGKILL: nothing is flushed, nothing is said; the broker sends its Last Will."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)
            self.kills += 1
            self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None
