"""The benchmark runs end to end on a real Mosquitto and yields sane rows (no timing targets)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from simulator.bench import (
    BASELINE_RR,
    BASELINE_TP,
    DECIDE,
    DECIDE_ENTRY,
    DECIDE_EXIT,
    INGEST_TP,
    NAGLE_RR,
    PAID_OPEN,
    results_table,
    run_bench,
)

pytestmark = pytest.mark.integration

REQUESTS = 30
EVENTS = 300


@pytest.mark.timeout(60)
def test_a_tiny_bench_measures_every_row_against_its_baseline(tmp_path: Path) -> None:
    rows = run_bench(REQUESTS, EVENTS, tmp_path, warmup=4)

    by_name = {row.name: row for row in rows}
    assert list(by_name) == [
        BASELINE_RR, NAGLE_RR, DECIDE, DECIDE_ENTRY, DECIDE_EXIT, PAID_OPEN, BASELINE_TP,
        INGEST_TP,
    ]
    expected_counts = {
        BASELINE_RR: REQUESTS, NAGLE_RR: REQUESTS, DECIDE: 2 * REQUESTS,
        DECIDE_ENTRY: REQUESTS, DECIDE_EXIT: REQUESTS, PAID_OPEN: REQUESTS,
        BASELINE_TP: EVENTS, INGEST_TP: EVENTS,
    }
    for name, row in by_name.items():
        assert row.count == expected_counts[name], name
        figures = (row.p50, row.p90, row.p99, row.maximum, row.mean)
        assert all(math.isfinite(v) and v > 0 for v in figures), row
        assert row.p50 <= row.p90 <= row.p99 <= row.maximum, row
        assert row.samples, name
    assert by_name[BASELINE_RR].ratio is None and by_name[BASELINE_TP].ratio is None
    assert by_name[NAGLE_RR].baseline == BASELINE_RR
    assert by_name[DECIDE].baseline == BASELINE_RR
    assert by_name[INGEST_TP].baseline == BASELINE_TP
    for row in rows:
        if row.baseline is not None:
            assert row.ratio is not None and math.isfinite(row.ratio) and row.ratio > 0, row
    assert {r.unit for r in rows if r.kind == "latency"} == {"ms"}
    assert {r.unit for r in rows if r.kind == "throughput"} == {"msg/s"}
    assert results_table(rows).row_count == len(rows)
    # every exit owed money and was paid by the lane's QR: the paid-open row says what it is
    assert by_name[PAID_OPEN].baseline == BASELINE_RR
    assert "own simulator" in by_name[PAID_OPEN].note and "target p99" in by_name[PAID_OPEN].note
    # ingestion is counted at the database, and says how many commits it took
    assert "events per commit" in by_name[INGEST_TP].note
