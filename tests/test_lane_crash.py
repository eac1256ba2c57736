"""Acceptance (issue 7): SIGKILL the lane process at random points, restart it on the same
journal: no event lost or duplicated, and the barrier comes up in a safe state.

The lane runs as a real subprocess (``python -m simulator.lane_process``: one
:class:`~firmware.lane.node.LaneNode` on mock pins with its own simulated cars, journaling to a
real SQLite file); the gateway runs in this process on the same locked-down Mosquitto. Each
run SIGKILLs itself at a seeded point (:mod:`tests.lane_crash_process`): its ``N``-th event,
before or after the journal write, after the publish, or after the broker's acknowledgement
was journaled. Counted in events, not in real time, so a failure replays with the same seed.
The test starts it again at once on the same journal. Every start must come up with the
relay off (boom down, lane idle), continue ``seq`` from the journal and replay what was
unsent. Then a retained fire alarm: a lane
killed during it must come up with the relay on, from what its journal remembered.

At the end the gateway's ``events`` table holds exactly the events of the lane's journal:
each ``event_id`` once, ``seq`` 1..n with no gap.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker.runner import MosquittoBroker
from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from parkguard.clock import SystemClock
from simulator.site import broker_toml, settings_of
from tests.conftest import TEST_SITE
from tests.helpers import eventually, journal_events
from tests.lane_crash_process import PHASES
from wire.contract import topics
from wire.contract.messages import AlarmState

pytestmark = pytest.mark.integration

SEED = 20260508
KILLS = 6
EVENTS_PER_RUN = 150  # a run dies at a seeded event up to this (a car makes about seven)
CARS_PER_RUN = 400  # more than a run lives: every run before the last is cut short
FINAL_CARS = 15
LANE = "in1"


def lane_toml(broker: MosquittoBroker, journal: Path) -> str:
    """A lane config file as an installer writes it (TOML); JSON strings are TOML strings."""
    settings = settings_of(broker.address(f"lane-{LANE}"))
    lines = [f"site = {json.dumps(TEST_SITE)}", f"lane = {json.dumps(LANE)}",
             'direction = "entry"', *broker_toml(settings)]
    lines += ["[camera]", 'type = "simulated"', "[timing]", "decide_deadline_ms = 300",
              "[journal]", f"path = {json.dumps(str(journal))}", "flush_timeout_s = 10"]
    return "\n".join(lines) + "\n"


class LaneProcess:
    """``python -m simulator.lane_process``: started, followed line by line, killed."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.process: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None

    def start(self, *, cars: int, seed: int, hold: bool = False, timeout: float = 20.0,
              kill_at: tuple[int, str] | None = None) -> dict[str, str]:
        """Start it and return its ``ready`` line as fields; ``kill_at`` (event, phase): it
        SIGKILLs itself there."""
        runner = ["-m", "simulator.lane_process"] if kill_at is None else [
            "-m", "tests.lane_crash_process", "--kill-at", str(kill_at[0]),
            "--phase", kill_at[1], "--"]
        argv = [sys.executable, *runner, "--config", str(self.config),
                "--cars", str(cars), "--seed", str(seed)] + (["--hold"] if hold else [])
        with self.log.open("a") as log:
            log.write(f"--- {' '.join(argv[1:])}\n")
        self.lines = []
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log.open("a"),
                                        text=True, cwd=Path(__file__).resolve().parent.parent)
        stdout = self.process.stdout
        assert stdout is not None

        def read() -> None:
            for line in stdout:
                with self._lock:
                    self.lines.append(line.strip())

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        eventually(lambda: bool(self.matching("ready")), timeout=timeout,
                   what=f"the lane's ready line (see {self.log})")
        return fields(self.matching("ready")[0])

    def matching(self, prefix: str) -> list[str]:
        with self._lock:
            return [line for line in self.lines if line.startswith(prefix + " ")]

    def cars(self) -> int:
        return len(self.matching("car"))

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        assert self.process.returncode == -signal.SIGKILL

    def died(self, timeout: float) -> None:
        """Wait for the process to kill itself at its seeded point."""
        code = self.wait(timeout)
        assert code == -signal.SIGKILL, (code, self.lines[-3:], f"see {self.log}")

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        code = self.process.wait(timeout)
        if self._reader is not None:
            self._reader.join(5)
        return code

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def fields(line: str) -> dict[str, str]:
    """``ready lane=in1 seq=3 relay=0`` → {"lane": "in1", "seq": "3", "relay": "0"}."""
    return dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)


def journal_unsent(path: Path) -> int:
    """Events journaled and never acknowledged (0 before the journal exists)."""
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM events WHERE sent = 0").fetchone()[0])
    except sqlite3.OperationalError:  # the table is not there yet
        return 0
    finally:
        db.close()


def journal_kv(path: Path, key: str) -> str | None:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT value FROM kv WHERE key = ?", [key]).fetchone()
        return None if row is None else str(row[0])
    except sqlite3.OperationalError:  # the table is not there yet
        return None
    finally:
        db.close()


@pytest.fixture
def gateway(broker: MosquittoBroker, tmp_path: Path) -> Iterator[GatewayApp]:
    config = GatewayConfig(site=TEST_SITE, database=tmp_path / "gateway.db",
                           broker=settings_of(broker.address("gateway")))
    with GatewayApp(config, clock=SystemClock()) as app:
        yield app


def fire(app: GatewayApp, active: bool) -> None:
    alarm = AlarmState(kind="fire", active=active, source="test-fire-panel",
                       ts=datetime.now(UTC))
    app.bus.publish_and_wait(topics.alarm(TEST_SITE, "fire"), alarm, retain=True)


@pytest.mark.timeout(180)
def test_a_lane_killed_at_random_points_loses_no_event_doubles_none_and_restarts_safe(
    broker: MosquittoBroker, gateway: GatewayApp, tmp_path: Path
) -> None:
    started = time.monotonic()
    rng = random.Random(SEED)
    journal = tmp_path / "lane-in1.db"
    config = tmp_path / "lane-in1.toml"
    config.write_text(lane_toml(broker, journal), encoding="utf-8")
    lane = LaneProcess(config, tmp_path / "lane-in1.log")
    kills: list[tuple[int, str, int, int, int]] = []  # (event, phase, cars done, journal
    # seq at the kill, unsent in the journal when that run started)
    try:
        last_seq = 0
        for run in range(KILLS):
            # Counted from the first event this run makes (what it replays comes first, and
            # before its ready line): the point lies inside one of its cars.
            point = (journal_unsent(journal) + rng.randint(1, EVENTS_PER_RUN),
                     PHASES[run % len(PHASES)])
            ready = lane.start(cars=CARS_PER_RUN, seed=SEED + run, kill_at=point)
            # The barrier comes up safe: relay off, idle, no fire; seq continues.
            assert (ready["relay"], ready["fire"], ready["barrier"], ready["mode"]) == (
                "0", "0", "closed", "normal"), ready
            assert int(ready["seq"]) >= last_seq, (ready, last_seq)
            lane.died(timeout=60)
            rows = journal_events(journal)
            last_seq = rows[-1][0] if rows else 0
            kills.append((*point, lane.cars(), last_seq, int(ready["unsent"])))

        # A fire alarm retained on the broker: the lane learns it, is killed, and comes up
        # with the barrier raised from what its journal remembered.
        fire(gateway, True)
        lane.start(cars=0, seed=0, hold=True)
        eventually(lambda: journal_kv(journal, "alarm.fire") == "1", timeout=10,
                   what="the lane to journal the fire")
        lane.kill()
        during_fire = lane.start(cars=0, seed=0, hold=True)
        assert (during_fire["relay"], during_fire["fire"], during_fire["mode"]) == (
            "1", "1", "fire_open"), during_fire
        fire(gateway, False)
        eventually(lambda: journal_kv(journal, "alarm.fire") == "0", timeout=10,
                   what="the lane to journal the end of the fire")
        lane.terminate()

        # The last run drives its cars to the end and stops cleanly (outbox flushed).
        ready = lane.start(cars=FINAL_CARS, seed=SEED + KILLS)
        assert (ready["relay"], ready["fire"], ready["mode"]) == ("0", "0", "normal"), ready
        assert lane.wait(60) == 0
        assert lane.matching("stopped") == ["stopped unsent=0"], lane.lines[-3:]
    finally:
        lane.terminate()

    rows = journal_events(journal)
    store = gateway.store
    eventually(lambda: store.count("events", "lane = ?", (LANE,)) >= len(rows), timeout=30,
               what="the gateway to store every journaled event")
    gateway.service.wait_idle()
    with store.reader() as db:
        stored = [(int(s), str(e)) for s, e in db.execute(
            "SELECT seq, event_id FROM events WHERE lane = ? ORDER BY seq", [LANE])]
        duplicates = gateway.service.duplicates
        by = dict(db.execute(
            "SELECT json_extract(payload, '$.decided_by'), count(*) FROM events "
            "WHERE type = 'decision' GROUP BY 1").fetchall())
    gaps = store.open_gaps()

    seqs = [seq for seq, _ in rows]
    assert seqs == list(range(1, len(rows) + 1)), "journal seq has a hole or a repeat"
    assert stored == rows, "the gateway holds exactly the journaled events, each once"
    assert len({event_id for _, event_id in stored}) == len(stored)
    assert gaps == []
    assert len(kills) == KILLS
    print(f"\nlane crash: {len(kills)} SIGKILLs at (event, phase, cars, journal seq, unsent "
          f"when the run started) "
          f"{kills}; {len(rows)} events journaled and stored once; redelivered duplicates "
          f"dropped by the gateway {duplicates}; decisions {by}; "
          f"{time.monotonic() - started:.1f} s")
