"""The fire bench runs end to end (real fire-node firmware, lanes, gateway, webhook) and
yields sane rows; no timing targets here."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from simulator.bench import BASELINE_RR, results_table
from simulator.bench_fire import FIRE_ALERT, FIRE_BARRIERS, main, run_bench_fire

pytestmark = pytest.mark.integration


@pytest.mark.timeout(120)
def test_a_tiny_fire_bench_measures_both_paths_against_the_ping_pong(tmp_path: Path) -> None:
    rows = run_bench_fire(3, tmp_path, warmup=1, debounce_ms=20)
    by_name = {row.name: row for row in rows}
    assert list(by_name) == [BASELINE_RR, FIRE_BARRIERS, FIRE_ALERT]
    assert by_name[FIRE_BARRIERS].count == by_name[FIRE_ALERT].count == 3
    for row in rows:
        assert all(math.isfinite(v) and v > 0 for v in (row.p50, row.p99, row.maximum))
        assert row.p50 <= row.p99 <= row.maximum
    for name in (FIRE_BARRIERS, FIRE_ALERT):
        assert by_name[name].baseline == BASELINE_RR and by_name[name].ratio is not None
        assert by_name[name].p50 >= 20  # the debounce is in the path
    assert results_table(rows).row_count == 3


@pytest.mark.timeout(120)
def test_the_command_line_prints_the_table(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--runs", "1", "--warmup", "0", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert FIRE_BARRIERS in out and FIRE_ALERT in out
