"""The gate bench runs end to end (lanes on mock pins, gateway, then the gateway silent, then
stopped) and yields sane rows; no timing targets here (the bench prints whether it met them)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from simulator.bench import BASELINE_RR, results_table
from simulator.bench_gate import (
    GATE_DEADLINE,
    GATE_OFFLINE,
    GATE_OFFLINE_OWN,
    GATE_ONLINE,
    GATE_ONLINE_ENTRY,
    GATE_ONLINE_EXIT,
    GATE_ONLINE_INLINE,
    GATE_SILENT,
    SEGMENTS_INLINE,
    SEGMENTS_PROCESS,
    main,
    run_bench_gate,
)
from simulator.gate_trace import BESIDE, SEGMENTS

pytestmark = pytest.mark.integration

#: Short enough for a quick silent phase; long enough that a gateway just started (cold, in
#: a process of its own) answers in time on a busy machine.
DEADLINE_MS = 300


@pytest.mark.timeout(240)
def test_a_tiny_gate_bench_measures_online_and_offline_against_the_ping_pong(
    tmp_path: Path,
) -> None:
    rows = run_bench_gate(4, 3, tmp_path, warmup=1, deadline_ms=DEADLINE_MS, silent_cars=2)
    by_name = {row.name: row for row in rows}
    segments = [name for name, _, _ in SEGMENTS + BESIDE]
    assert [row.name for row in rows] == [
        BASELINE_RR, GATE_ONLINE, GATE_ONLINE_ENTRY, GATE_ONLINE_EXIT, GATE_ONLINE_INLINE,
        GATE_OFFLINE, GATE_SILENT, GATE_DEADLINE, GATE_OFFLINE_OWN,
        SEGMENTS_PROCESS, *segments, SEGMENTS_INLINE, *segments]
    # The gateway in its own process, then the same cars with it in the bench's process (in
    # alternating blocks): each car traced hop by hop, the traced total being the row's.
    counts = {GATE_ONLINE: 8, GATE_ONLINE_ENTRY: 4, GATE_ONLINE_EXIT: 4, GATE_ONLINE_INLINE: 8,
              GATE_OFFLINE: 6, GATE_SILENT: 4, GATE_DEADLINE: 4, GATE_OFFLINE_OWN: 4,
              SEGMENTS_PROCESS: 8, SEGMENTS_INLINE: 8}
    for name, count in counts.items():
        assert by_name[name].count == count, name
    assert sorted(by_name[SEGMENTS_PROCESS].samples) == sorted(by_name[GATE_ONLINE].samples)
    assert sorted(by_name[SEGMENTS_INLINE].samples) == \
        sorted(by_name[GATE_ONLINE_INLINE].samples)
    for first in (rows.index(by_name[SEGMENTS_PROCESS]), rows.index(by_name[SEGMENTS_INLINE])):
        traced, parts = rows[first], rows[first + 1:first + 1 + len(SEGMENTS)]
        for index, whole in enumerate(traced.samples):  # the segments tile the total
            assert math.isclose(sum(part.samples[index] for part in parts), whole,
                                rel_tol=1e-9, abs_tol=1e-9)
    for row in rows:
        figures = (row.p50, row.p90, row.p99, row.maximum, row.mean)
        # a hop may count 0 ms: a publish that returned after its peer had the message
        # (simulator/gate_trace.py, _in_order); every whole takes time
        least = 0.0 if row.name in segments else math.ulp(0.0)
        assert all(math.isfinite(v) and v >= least for v in figures), row
        assert row.p50 <= row.p90 <= row.p99 <= row.maximum, row
        assert row.unit == "ms"
        if row.name != BASELINE_RR:
            assert row.baseline == BASELINE_RR and row.ratio is not None
    # silent = the deadline the lane waited out + its own work
    deadline, silent = by_name[GATE_DEADLINE], by_name[GATE_SILENT]
    # The request's ts goes on the wire to the millisecond (wire.contract), so the lane gives
    # up at most 1 ms before a stopwatch started as it built the request would say.
    assert deadline.p50 >= DEADLINE_MS - 1
    assert silent.p50 > deadline.p50
    for total, waited, own in zip(silent.samples, deadline.samples,
                                  by_name[GATE_OFFLINE_OWN].samples, strict=True):
        assert math.isclose(total, waited + own)
    assert f"{DEADLINE_MS} ms" in silent.note
    # (the bench itself refuses an offline car that waited for the gateway at all)
    for row in (by_name[GATE_OFFLINE], by_name[GATE_ONLINE]):
        assert "target p99" in row.note and ("met" in row.note or "NOT MET" in row.note)
    assert results_table(rows).row_count == len(rows)


@pytest.mark.timeout(240)
def test_the_command_line_prints_the_table(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--cars", "2", "--offline-cars", "1", "--silent-cars", "1", "--warmup", "0",
                 "--deadline-ms", str(DEADLINE_MS), "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert GATE_ONLINE in out and GATE_OFFLINE in out and GATE_DEADLINE.strip(" …") in out
    assert GATE_SILENT in out
