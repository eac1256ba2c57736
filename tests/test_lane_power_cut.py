"""Acceptance (issue 23): the online decision waits for no fsync, and a power cut in the
window that opens loses nothing the books need.

A car decided by the gateway has its ``vehicle_detected``, ``plate_read`` and ``decision``
written to the lane's journal without waiting for the card (``synchronous=NORMAL``); the
barrier rises; the ``barrier_moved`` right after is a FULL commit that puts them all on the
card, and only then may the outbox publish them (docs/lane.md, "Journal and outbox").

The lane runs as a real subprocess on a real SQLite file, the gateway in this process, both
on the project's Mosquitto. Each run dies at a seeded car in that window, after the relay
and before the sync (:mod:`tests.lane_crash_process`):

- ``power_cut_after_relay``: the journal's files are put back as they were after their last
  FULL commit (every WAL frame not yet synced is gone: the worst a power cut can do), then
  SIGKILL. The car's decision is gone from the lane, so the test proves the window is real;
  the gateway's own ``decisions`` row for it stays (the verdict the barrier rose on), and
  nothing the lane had published is missing or reused (its ``seq`` numbers were never sent);
- ``kill_after_relay``: SIGKILL only (a crash of the process): the kernel still has the
  rows, so the decision is in the journal and reaches the gateway exactly once.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.runner import MosquittoBroker
from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from parkguard.clock import SystemClock
from simulator.site import settings_of
from tests.conftest import TEST_SITE
from tests.helpers import eventually, journal_events
from tests.test_lane_crash import LANE, LaneProcess, fields, lane_toml

pytestmark = pytest.mark.integration

SEED = 20261207
RUNS = ("power_cut_after_relay", "kill_after_relay", "power_cut_after_relay",
        "power_cut_after_relay")
CARS_PER_RUN = 60  # more than a run lives: it dies at one of its first 8 cars
FINAL_CARS = 5


@pytest.fixture
def gateway(broker: MosquittoBroker, tmp_path: Path) -> Iterator[GatewayApp]:
    config = GatewayConfig(site=TEST_SITE, database=tmp_path / "gateway.db",
                           broker=settings_of(broker.address("gateway")))
    with GatewayApp(config, clock=SystemClock()) as app:
        yield app


def journal_decisions(path: Path) -> list[str]:
    """The correlation ids of the ``decision`` events in a lane's journal."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [str(c) for (c,) in db.execute(
            "SELECT json_extract(payload, '$.correlation_id') FROM events "
            "WHERE type = 'decision' ORDER BY seq")]
    finally:
        db.close()


@pytest.mark.timeout(180)
def test_a_power_cut_between_the_barrier_rising_and_the_sync_loses_nothing_on_the_books(
    broker: MosquittoBroker, gateway: GatewayApp, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    journal = tmp_path / "lane-in1.db"
    config = tmp_path / "lane-in1.toml"
    config.write_text(lane_toml(broker, journal), encoding="utf-8")
    lane = LaneProcess(config, tmp_path / "lane-in1.log")
    cuts: list[tuple[str, str, int, int]] = []  # (phase, correlation id, seq at the cut, after)
    try:
        for run, phase in enumerate(RUNS):
            ready = lane.start(cars=CARS_PER_RUN, seed=SEED + run,
                               kill_at=(rng.randint(1, 8), phase))
            assert (ready["relay"], ready["barrier"], ready["mode"]) == (
                "0", "closed", "normal"), ready
            lane.died(timeout=60)
            said = lane.matching("cut")
            assert len(said) == 1, (lane.lines[-3:], f"see {lane.log}")
            cut = fields(said[0])
            assert cut["phase"] == phase
            cuts.append((phase, cut["correlation"], int(ready["seq"]),
                         journal_events(journal)[-1][0]))
        lane.terminate()
        ready = lane.start(cars=FINAL_CARS, seed=SEED + len(RUNS))
        assert lane.wait(60) == 0
        assert lane.matching("stopped") == ["stopped unsent=0"], lane.lines[-3:]
    finally:
        lane.terminate()

    rows = journal_events(journal)
    store = gateway.store
    eventually(lambda: store.count("events", "lane = ?", (LANE,)) >= len(rows), timeout=30,
               what="the gateway to store every journaled event")
    gateway.service.wait_idle()
    decided = journal_decisions(journal)
    with store.reader() as db:
        stored = [(int(s), str(e)) for s, e in db.execute(
            "SELECT seq, event_id FROM events WHERE lane = ? ORDER BY seq", [LANE])]
        told = [json.loads(p).get("correlation_id") for (p,) in db.execute(
            "SELECT payload FROM events WHERE lane = ? AND type = 'decision'", [LANE])]
        verdicts = {str(c): str(a) for c, a in db.execute(
            "SELECT correlation_id, action FROM decisions")}

    # Nothing the lane told the gateway was lost or reused: the journal after every cut
    # and restart holds exactly what the gateway stored, seq 1..n, each event once.
    assert [seq for seq, _ in rows] == list(range(1, len(rows) + 1))
    assert stored == rows
    assert store.open_gaps() == []
    for phase, correlation, _seq, _after in cuts:
        # The barrier rose on the gateway's verdict, which the gateway's books keep.
        assert verdicts.get(correlation) == "open", (phase, correlation)
        if phase == "power_cut_after_relay":
            # The cut took the lane's copy (the window is real) and it was never published.
            assert correlation not in decided, (phase, correlation)
            assert correlation not in told, (phase, correlation)
        else:
            # A crash of the process only: the kernel had it; recorded once, on both sides.
            assert decided.count(correlation) == 1 and told.count(correlation) == 1
    print(f"\nlane power cut: {cuts}; {len(rows)} events journaled and stored once")
