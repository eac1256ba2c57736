"""Multi-frame fusion, CTC decoding and the reader's plumbing (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from firmware.lane.devices.reader.alphabet import ALPHABET, BLANK, NUM_CLASSES, encode
from firmware.lane.devices.reader.decode import CharRead, greedy
from firmware.lane.devices.reader.fusion import fuse
from firmware.lane.devices.reader.geometry import box_iou, expand


def char(c: str, p: float, second: str | None = None) -> CharRead:
    probs = np.full(len(ALPHABET), 1e-4, dtype=np.float32)
    probs[ALPHABET.index(c)] = p
    if second is not None:
        probs[ALPHABET.index(second)] = 1 - p
    return CharRead(c, p, probs / probs.sum())


def read(text: str, p: float = 0.95, **seconds: str) -> list[CharRead]:
    return [char(c, p, seconds.get(f"at{i}")) for i, c in enumerate(text)]


def test_one_clean_read_passes_through() -> None:
    fused = fuse([read("京A12345")])
    assert fused.plate == "京A12345" and fused.grammar_ok
    assert fused.series == "ordinary"
    assert fused.confidence > 0.9
    assert len(fused.char_confidences) == 7


def test_votes_are_weighted_by_confidence() -> None:
    reads = [read("京A12345", 0.9), read("京A12845", 0.5), read("京A12345", 0.8)]
    assert fuse(reads).plate == "京A12345"
    assert fuse(reads).frames_used == 3


def test_grammar_replaces_position_impossible_characters() -> None:
    # O read in a serial: the second choice 0 is the only one the grammar allows
    fused = fuse([read("京A1234O", 0.7, at6="0")])
    assert fused.plate == "京A12340"
    # a letter where a new-energy plate must have a digit
    assert fuse([read("沪AD1234B", 0.6, at7="8")]).plate == "沪AD12348"


def test_the_length_most_frames_agree_on_wins() -> None:
    reads = [read("京A12345"), read("京A1234"), read("京A12345", 0.7)]
    fused = fuse(reads)
    assert fused.plate == "京A12345"
    assert (fused.frames_used, fused.frames_total) == (2, 3)


def test_nothing_read_is_no_plate() -> None:
    fused = fuse([[], []])
    assert fused.plate is None and fused.confidence == 0.0 and not fused.grammar_ok


def test_a_length_no_series_has_is_flagged() -> None:
    fused = fuse([read("京A123")])
    assert fused.plate == "京A123" and not fused.grammar_ok
    assert fused.confidence < 0.5


def test_greedy_collapses_repeats_and_blanks() -> None:
    steps = []
    for label in [*encode("京"), *encode("京"), BLANK, *encode("A"), BLANK, *encode("1"),
                  BLANK, *encode("1")]:
        row = np.full(NUM_CLASSES, 0.001, dtype=np.float32)
        row[label] = 0.9
        steps.append(row)
    chars = greedy(np.stack(steps))
    assert "".join(c.char for c in chars) == "京A11"
    assert all(c.confidence == pytest.approx(0.9) for c in chars)


def test_geometry_helpers() -> None:
    quad = ((10.0, 10.0), (110.0, 10.0), (110.0, 40.0), (10.0, 40.0))
    grown = expand(quad, 0.1, 0.0)
    assert grown[0][0] == pytest.approx(0.0) and grown[1][0] == pytest.approx(120.0)
    assert box_iou(quad, grown) == pytest.approx(100 / 120)
