"""The tariff benchmark runs and its numbers are sane (timing targets live in make bench)."""

from __future__ import annotations

import math
import random

import pytest

from simulator.bench_tariffs import NAIVE, QUOTE, main, results_table, run_tariff_bench, stays


def test_a_tiny_bench_measures_both_rows_and_they_agree() -> None:
    rows = run_tariff_bench(count=40, seed=3, baseline_count=10)
    naive, mine = rows
    assert (naive.name, mine.name) == (NAIVE, QUOTE)
    assert (naive.count, mine.count) == (10, 40)
    assert mine.mismatches == 0
    for row in rows:
        assert math.isfinite(row.per_second) and row.per_second > 0
        assert row.total_fen >= 0
    assert results_table(rows).row_count == 2


def test_stays_are_aware_forward_and_reproducible() -> None:
    first = stays(200, random.Random(5))
    assert first == stays(200, random.Random(5))
    assert all(entry.tzinfo is not None and exit_ >= entry for entry, exit_ in first)
    assert max((exit_ - entry).total_seconds() for entry, exit_ in first) > 14 * 3600


def test_main_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--stays", "20", "--baseline-stays", "5"]) == 0
    out = capsys.readouterr().out
    assert "naive per-minute loop" in out and "ParkGuard quote" in out and "speed-up" in out
    assert main(["--stays", "3", "--baseline-stays", "5"]) == 2
