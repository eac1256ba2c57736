"""The plate benchmark runs and gives sane numbers (no timing targets: those live in make bench)."""

from __future__ import annotations

import math
import random

import pytest

from parkguard.core.plates import PlateIndex, is_plate, match
from simulator.bench_plates import (
    BASELINE,
    MATCHER,
    MATCHER_SAME_READS,
    exit_reads,
    levenshtein,
    main,
    naive_scan,
    plates_inside,
    results_table,
    run_plate_bench,
)


def test_a_tiny_bench_measures_both_rows_on_the_same_reads() -> None:
    rows = run_plate_bench(candidates=150, reads=40, seed=3, baseline_reads=10)
    baseline, mine, same_reads = rows
    assert (baseline.name, mine.name, same_reads.name) == (BASELINE, MATCHER, MATCHER_SAME_READS)
    assert (baseline.count, mine.count, same_reads.count) == (10, 40, 10)
    for row in rows:
        figures = (row.p50, row.p90, row.p99, row.maximum, row.mean)
        assert all(math.isfinite(v) and v > 0 for v in figures), row
        assert row.p50 <= row.p90 <= row.p99 <= row.maximum, row
        assert row.found + row.wrong + row.referred == row.count
        assert 0 <= row.hit_rate <= 1
    assert baseline.ratio_p50 is None
    assert mine.ratio_p50 is not None and mine.ratio_p99 is not None
    assert mine.ratio_p50 == pytest.approx(mine.p50 / baseline.p50)
    assert results_table(rows).row_count == 3


def test_the_data_is_valid_plates_and_reads_of_cars_inside() -> None:
    rng = random.Random(5)
    inside = plates_inside(300, rng)
    assert len(set(inside)) == 300 and all(is_plate(p) for p in inside)
    reads = exit_reads(inside, 200, rng)
    assert all(read.truth in inside for read in reads)
    assert {read.corruption for read in reads} >= {"one look-alike", "unreadable char",
                                                   "lost first char", "lost last char"}
    for read in reads:
        if read.corruption == "clean":
            assert read.read.text == read.truth
        elif read.corruption.startswith("lost"):
            assert len(read.read.text) == len(read.truth) - 1
        assert read.read.confidences is not None
        assert len(read.read.confidences) == len(read.read.text)


def test_the_matcher_finds_more_and_guesses_less_than_the_naive_scan() -> None:
    rng = random.Random(7)
    inside = plates_inside(400, rng)
    reads = exit_reads(inside, 150, rng)
    index = PlateIndex(inside)
    mine = [match(r.read, index).plate for r in reads]
    naive = [naive_scan(r.read.text, inside) for r in reads]
    def tally(answers: list[str | None]) -> tuple[int, int]:
        found = sum(p == r.truth for p, r in zip(answers, reads, strict=True))
        wrong = sum(p is not None and p != r.truth for p, r in zip(answers, reads, strict=True))
        return found, wrong

    (found, wrong), (naive_found, naive_wrong) = tally(mine), tally(naive)
    assert found > naive_found
    assert wrong <= naive_wrong


def test_levenshtein() -> None:
    assert levenshtein("粤B12345", "粤B12345") == 0
    assert levenshtein("粤B1234S", "粤B12345") == 1
    assert levenshtein("B12345", "粤B12345") == 1
    assert levenshtein("", "abc") == 3
    assert naive_scan("粤B1234?", ["粤B12345", "粤B12346"]) is None


def test_main_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--candidates", "60", "--reads", "10", "--baseline-reads", "3"]) == 0
    out = capsys.readouterr().out
    assert "naive Levenshtein scan" in out and "ParkGuard match" in out
    assert "target p99 < 2 ms" in out
    assert main(["--candidates", "1"]) == 2
