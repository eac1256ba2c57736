"""The fire bench runs end to end (real fire-node firmware, lanes, gateway, webhook) and
yields sane rows; no timing targets here."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from simulator.bench import BASELINE_RR, results_table
from simulator.bench_fire import (
    BENCH_PROCESS,
    FIRE_ALERT,
    FIRE_ALERT_BEFORE,
    FIRE_BARRIERS,
    FIRE_BARRIERS_BEFORE,
    FIRE_NODE,
    FIRE_NODE_BEFORE,
    main,
    run_bench_fire,
)
from simulator.priority import running

pytestmark = pytest.mark.integration


@pytest.mark.timeout(120)
def test_a_tiny_fire_bench_measures_both_paths_against_the_ping_pong(tmp_path: Path) -> None:
    processes: dict[str, str] = {}
    rows = run_bench_fire(3, tmp_path, warmup=1, debounce_ms=15, processes=processes)
    # The site setup (the default): how each process ran is said, from the kernel.
    lanes = {who: how for who, how in processes.items() if who.startswith("lane ")}
    assert sorted(lanes) == ["lane in1", "lane in2", "lane out1", "lane out2"]
    if os.geteuid() == 0:
        assert not any("NOT SET" in how for how in processes.values()), processes
        for how in lanes.values():  # every thread of each lane process, the bus thread too
            assert how.startswith("a process of its own, SCHED_RR 40 (1 thread) (from "
                                  "hardware/parkguard-lane.service); once connected: "
                                  "SCHED_RR 40 ("), how
            assert ";" not in how.partition("once connected: ")[2], how
        assert processes["mosquitto"].startswith("SCHED_FIFO 50 (1 thread) (from hardware/")
        assert processes["node fire2"].startswith("SCHED_FIFO 60 (1 thread) (from the bench")
        # The gateway runs in the bench's process: every thread gets its unit's priority,
        # those started during the fires (webhook requests, Apprise) too ...
        bench, _, after = processes["bench"].partition("; after the fires: ")
        assert bench.startswith(BENCH_PROCESS + "SCHED_RR 30 ("), bench
        assert bench.endswith(" threads) (from hardware/parkguard-gateway.service)"), bench
        assert after.startswith("SCHED_RR 30 (") and ";" not in after, after
    else:
        assert all("NOT SET" in how for who, how in processes.items()
                   if who.startswith(("lane", "node", "mosquitto", "bench")))
    # ... and goes back to the default after the fires: this test process runs on as before.
    assert running(os.getpid()).startswith("SCHED_OTHER, nice 0 ("), running(os.getpid())
    by_name = {row.name: row for row in rows}
    fires = [FIRE_BARRIERS, FIRE_BARRIERS_BEFORE, FIRE_NODE, FIRE_NODE_BEFORE, FIRE_ALERT,
             FIRE_ALERT_BEFORE]
    assert list(by_name) == [BASELINE_RR, *fires]
    assert {by_name[name].count for name in fires} == {3}
    for row in rows:
        assert all(math.isfinite(v) and v > 0 for v in (row.p50, row.p99, row.maximum))
        assert row.p50 <= row.p99 <= row.maximum
    for name in fires:
        assert by_name[name].baseline == BASELINE_RR and by_name[name].ratio is not None
    # Each confirmation window is in its path: 15 ms now, 50 ms as configured before.
    assert by_name[FIRE_BARRIERS].p50 >= 15 and by_name[FIRE_ALERT].p50 >= 15
    assert by_name[FIRE_BARRIERS_BEFORE].p50 >= 50 and by_name[FIRE_NODE_BEFORE].p50 >= 50
    assert 15 <= by_name[FIRE_NODE].p50 <= by_name[FIRE_BARRIERS].p50  # the node's share
    assert results_table(rows).row_count == 7
    assert by_name[FIRE_BARRIERS].note.startswith("setup site: ")
    if os.geteuid() == 0:
        assert by_name[FIRE_ALERT].note.endswith(
            "threads) (from hardware/parkguard-gateway.service)"), by_name[FIRE_ALERT].note
        assert "the gateway (in the bench's process) at SCHED_RR 30 (" in by_name[FIRE_ALERT].note


@pytest.mark.timeout(120)
def test_the_shared_setup_runs_the_lanes_in_the_bench_at_the_default_priority(
        tmp_path: Path) -> None:
    processes: dict[str, str] = {}
    rows = run_bench_fire(2, tmp_path, warmup=0, setup="shared", processes=processes)
    barriers = next(row for row in rows if row.name == FIRE_BARRIERS)
    assert barriers.count == 2 and barriers.p50 > 0
    assert barriers.note.startswith("setup shared: ")
    assert processes["lanes"].startswith("4 lanes in the bench's process, SCHED_OTHER, nice 0")
    assert processes["mosquitto"].startswith("default (nice 0, SCHED_OTHER)")
    assert processes["bench"].startswith(BENCH_PROCESS + "SCHED_OTHER, nice 0 (")
    alert = next(row for row in rows if row.name == FIRE_ALERT)
    assert "the gateway (in the bench's process) at SCHED_OTHER, nice 0 (" in alert.note
    assert not any(who.startswith("lane ") for who in processes)


@pytest.mark.timeout(120)
def test_the_command_line_prints_the_table(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--runs", "1", "--warmup", "0", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert FIRE_BARRIERS in out and FIRE_ALERT in out and FIRE_BARRIERS_BEFORE.strip() in out
    assert "setup site: how each process ran" in out and "  lane out2: " in out
    assert "  bench: " + BENCH_PROCESS in out
