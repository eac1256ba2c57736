"""The fire bench's lanes, each in a process of its own as on a site (one Raspberry Pi each).

Four lanes in the bench's own process share one interpreter lock with each other, the
gateway and the bench's loops: when a fire reaches all four at once, the last lane's bus
thread waits for the other three (and whatever else holds the lock), which no site does.
Here each lane is ``python -m simulator.lane_process --hold --report-relay`` on its own mock
pins and journal, run with the priority its installed unit gives it
(``hardware/parkguard-lane.service``, applied by :mod:`simulator.priority`). Each says on
stdout when its relay pin changed, stamped on the monotonic clock the whole machine shares,
so the bench times the barriers without reaching into the processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from simulator.priority import UnitPriority, apply_unit, running
from simulator.site import broker_toml, settings_of
from wire.mqtt import BrokerAddress

REPO = Path(__file__).resolve().parent.parent


def lane_toml(*, site: str, lane: str, direction: str, address: BrokerAddress,
              journal: Path) -> str:
    """A lane's config file: its broker login, a simulated camera, its own journal."""
    settings = settings_of(address)
    lines = [f"site = {json.dumps(site)}", f"lane = {json.dumps(lane)}",
             f"direction = {json.dumps(direction)}", *broker_toml(settings)]
    lines += ["[camera]", 'type = "simulated"', "[journal]", f"path = {json.dumps(str(journal))}"]
    return "\n".join(lines) + "\n"


class LaneProcess:
    """One ``simulator.lane_process``: its relay as it reports it, and its answers."""

    def __init__(self, lane: str, argv: list[str], log: Path) -> None:
        self.lane = lane
        self.relay = False
        self.relay_on_ns = 0
        """``time.monotonic_ns()`` when the relay last went on, in the lane's process."""
        self._answers: list[str] = []
        self._changed = threading.Condition()
        with log.open("ab") as err:
            self.process = subprocess.Popen(  # noqa: S603 - our own module, fixed argv
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                cwd=REPO, bufsize=1)
        self._reader = threading.Thread(target=self._read, name=f"lane-{lane}-out",
                                        daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in self.process.stdout or ():
            line = raw.split()
            with self._changed:
                if line[:1] == ["relay"]:
                    self.relay = line[1] == "1"
                    if self.relay:
                        self.relay_on_ns = int(line[2])
                elif line:
                    self._answers.append(line[0])
                self._changed.notify_all()

    def ask(self, question: str, timeout: float) -> None:
        """Send ``question`` and wait for its answer (the same word back)."""
        if self.process.stdin is None:
            raise RuntimeError("started without a stdin pipe")
        with self._changed:
            before = self._answers.count(question)
            self.process.stdin.write(question + "\n")
            self.process.stdin.flush()
            if not self._changed.wait_for(lambda: self._answers.count(question) > before,
                                          timeout):
                raise TimeoutError(f"lane {self.lane} did not answer {question!r} in "
                                   f"{timeout} s (exit code {self.process.poll()})")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._reader.join(5)


class LaneProcesses:
    """The site's lanes as processes, each with ``priority`` (its unit's), for the fire bench."""

    def __init__(self, *, site: str, broker: Callable[[str], BrokerAddress],
                 roles: list[tuple[str, str]], workdir: Path, priority: UnitPriority) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.lanes: dict[str, LaneProcess] = {}
        self.priorities: dict[str, str] = {}
        """Lane → what it runs with (or why the unit's priority could not be set)."""
        try:
            for lane, direction in roles:
                config = workdir / f"lane-{lane}.toml"
                config.write_text(lane_toml(site=site, lane=lane, direction=direction,
                                            address=broker(f"lane-{lane}"),
                                            journal=workdir / f"lane-{lane}.db"),
                                  encoding="utf-8")
                argv = [sys.executable, "-m", "simulator.lane_process", "--config",
                        str(config), "--cars", "0", "--hold", "--report-relay"]
                self.lanes[lane] = LaneProcess(lane, argv, workdir / f"lane-{lane}.log")
                # At once, before the interpreter has started a thread: every thread it
                # starts inherits this, as under systemd.
                self.priorities[lane] = apply_unit(self.lanes[lane].process.pid, priority)
            for lane, process in self.lanes.items():
                process.ask("connected", timeout=60)
                # What its threads (bus, worker, journal …) run with now that they exist.
                self.priorities[lane] += f"; once connected: {running(process.process.pid)}"
        except BaseException:
            self.stop()
            raise

    def up(self) -> bool:
        return all(lane.relay for lane in self.lanes.values())

    def down(self) -> bool:
        return not any(lane.relay for lane in self.lanes.values())

    def last_up_s(self) -> float:
        """When the last relay went on, in :func:`time.monotonic` seconds."""
        return max(lane.relay_on_ns for lane in self.lanes.values()) / 1e9

    def wait_idle(self, timeout: float) -> None:
        for lane in self.lanes.values():
            lane.ask("idle", timeout)

    def stop(self) -> None:
        for lane in self.lanes.values():
            lane.stop()


