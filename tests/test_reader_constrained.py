"""Grammar-constrained CTC decoding (no model needed): a best-path read one character off a
plate is repaired to the best path that spells one; anything else is left as read."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from firmware.lane.devices.reader.alphabet import BLANK, INDEX, NUM_CLASSES
from firmware.lane.devices.reader.constrained import constrained, decode
from firmware.lane.devices.reader.decode import CharRead, greedy
from parkguard.core.plates.grammar import is_plate

STEPS = 32


def output(path: str, sharp: float = 0.9) -> NDArray[np.float32]:
    """A recogniser output whose best path is ``path`` ('-' a blank), the rest blanks."""
    probs = np.full((STEPS, NUM_CLASSES), (1 - sharp) / (NUM_CLASSES - 1), dtype=np.float32)
    for t in range(STEPS):
        c = path[t] if t < len(path) else "-"
        probs[t, BLANK if c == "-" else INDEX[c]] = sharp
    normalised: NDArray[np.float32] = probs / probs.sum(axis=1, keepdims=True)
    return normalised


def text(reads: list[CharRead]) -> str:
    return "".join(c.char for c in reads)


def test_a_province_lost_to_the_blank_comes_back_when_it_had_some_weight() -> None:
    probs = output("-----B--1-2-3-6--4----")
    probs[2, INDEX["粤"]], probs[2, BLANK] = 0.3, 0.6  # a smudged province: blank won
    assert text(greedy(probs)) == "B12364"
    repaired = decode(probs)
    assert text(repaired) == "粤B12364"
    assert repaired[0].confidence < 0.5 < repaired[1].confidence  # the lane will not trust it


def test_a_faint_suffix_completes_a_consulate_plate() -> None:
    probs = output("--京-X-8-9-3-6-----")
    probs[16, INDEX["领"]], probs[16, BLANK] = 0.35, 0.6
    assert text(greedy(probs)) == "京X8936"
    assert text(decode(probs)) == "京X8936领"


def test_a_read_that_spells_a_plate_is_returned_as_read() -> None:
    probs = output("--粤粤-B--1-2-3-6--4-----")
    assert [(c.char, c.confidence) for c in decode(probs)] == [
        (c.char, c.confidence) for c in greedy(probs)]


def test_a_read_far_off_a_plate_is_left_alone_so_an_empty_frame_stays_empty() -> None:
    probs = output("---A----7-------")  # two characters: a bumper sticker, not a plate
    assert text(decode(probs)) == "A7"
    assert text(constrained(probs)) != "A7"  # forced into a plate, which decode must not do


@st.composite
def recogniser_outputs(draw: st.DrawFn) -> NDArray[np.float32]:
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    sharpness = draw(st.floats(0.05, 3.0))
    logits = rng.standard_normal((STEPS, NUM_CLASSES)) * sharpness * 4
    logits[:, BLANK] += draw(st.floats(-2.0, 4.0))
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    normalised: NDArray[np.float32] = (probs / probs.sum(axis=1, keepdims=True)).astype(
        np.float32)
    return normalised


@settings(max_examples=60, deadline=None)
@given(recogniser_outputs())
def test_the_constrained_read_always_spells_a_plate(probs: NDArray[np.float32]) -> None:
    assert is_plate(text(constrained(probs)))


@settings(max_examples=60, deadline=None)
@given(recogniser_outputs())
def test_when_the_best_path_spells_a_plate_the_constrained_read_is_the_same(
        probs: NDArray[np.float32]) -> None:
    best = text(greedy(probs))
    if is_plate(best):
        assert text(constrained(probs)) == best
