"""Grammar-constrained CTC decoding: the most likely alignment of the recogniser's output
that spells *some* plate.

Best-path decoding (:func:`~firmware.lane.devices.reader.decode.greedy`) reads each time step on its
own, so on a small or blurred plate it can lose a character to the blank (a smudged province
character, a faint 领 suffix) or split one in two; fusion can only repair characters of a read
whose length fits a series. Here, for every series shape
(:data:`parkguard.core.plates.grammar.SHAPES`), a Viterbi pass finds the best CTC path whose
characters fill the shape, position by position from each slot's allowed characters; the
best-scoring shape wins. States are (position, character) plus the blanks between
positions; a path may go straight from one position to the next only with a different
character (CTC needs a blank between repeats).
"""

from __future__ import annotations

import functools
from typing import Final

import numpy as np
from numpy.typing import NDArray

from firmware.lane.devices.reader.alphabet import ALPHABET, BLANK
from firmware.lane.devices.reader.decode import CharRead, greedy
from parkguard.core.plates.grammar import SHAPES

_NEG: Final = -1e30
#: Source of a character state: the same character a step before, the blank before this
#: position, or the previous position's character.
_STAY, _FROM_BLANK, _FROM_PREVIOUS = 0, 1, 2


@functools.lru_cache(maxsize=1)
def _shape_masks() -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
    """(shapes, positions, alphabet) True where a character may stand (shorter shapes padded
    with positions nothing may fill), and each shape's length."""
    longest = max(len(shape.slots) for shape in SHAPES)
    masks = np.zeros((len(SHAPES), longest, len(ALPHABET)), dtype=bool)
    for k, shape in enumerate(SHAPES):
        for i, slot in enumerate(shape.slots):
            masks[k, i] = [c in slot.allowed for c in ALPHABET]
    return masks, np.array([len(shape.slots) for shape in SHAPES])


def _others_best(chars: NDArray[np.float64], best: NDArray[np.int64], top: NDArray[np.float64]
                 ) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """For every (shape, position, character): the best score and character of that position
    among the *other* characters (a move on to the next position needs a new character);
    ``best`` and ``top`` are each position's best character and its score."""
    top = top[..., None]
    without = chars.copy()
    np.put_along_axis(without, best[..., None], _NEG, axis=2)
    runner = without.argmax(axis=2)
    second = np.take_along_axis(without, runner[..., None], axis=2)
    is_best = np.arange(chars.shape[2]) == best[..., None]
    return (np.where(is_best, second, top),
            np.where(is_best, runner[..., None], best[..., None]))


def _viterbi(logp: NDArray[np.float64]) -> tuple[int, list[int], list[list[int]]]:
    """Best CTC path through every shape at once; the winning shape's index, the character
    class (alphabet index) of each of its positions and the time steps each was read in."""
    masks, lengths = _shape_masks()
    shapes, positions, _ = masks.shape
    steps = logp.shape[0]
    emit = np.where(masks[None], logp[:, None, None, 1:], _NEG)  # (T, S, L, C)
    blank = logp[:, BLANK]
    chars = np.full(masks.shape, _NEG)
    chars[:, 0] = emit[0, :, 0]  # a path starts on the first position or the blank before it
    blanks = np.full((shapes, positions + 1), _NEG)
    blanks[:, 0] = blank[0]
    char_from = np.zeros((steps, *masks.shape), dtype=np.int8)
    char_prev = np.zeros((steps, *masks.shape), dtype=np.int16)
    blank_from_char = np.zeros((steps, shapes, positions + 1), dtype=bool)
    blank_char = np.zeros((steps, shapes, positions + 1), dtype=np.int16)
    for t in range(1, steps):
        best = chars.argmax(axis=2)
        top = np.take_along_axis(chars, best[..., None], axis=2)[..., 0]
        came = top > blanks[:, 1:]
        new_blanks = blanks.copy()
        new_blanks[:, 1:] = np.where(came, top, blanks[:, 1:])
        blank_from_char[t, :, 1:] = came
        blank_char[t, :, 1:] = best
        other, other_char = _others_best(chars, best, top)
        previous = np.full(masks.shape, _NEG)
        previous[:, 1:] = other[:, :-1]
        char_prev[t, :, 1:] = other_char[:, :-1]
        # the best of the three sources, the earliest on a tie (pairwise: an argmax over a
        # stacked first axis was half the pass's time)
        from_blank = blanks[:, :-1, None]
        came_from = np.where(from_blank > chars, _FROM_BLANK, _STAY)
        score = np.maximum(chars, from_blank)
        char_from[t] = np.where(previous > score, _FROM_PREVIOUS, came_from)
        chars = np.maximum(score, previous) + emit[t]
        blanks = new_blanks + blank[t]
    rows = np.arange(shapes)
    last = lengths - 1
    end_char = chars[rows, last].argmax(axis=1)
    end_scores = np.maximum(blanks[rows, lengths], chars[rows, last, end_char])
    k = int(end_scores.argmax())
    i, c = int(last[k]), int(end_char[k])
    on_blank = bool(blanks[k, lengths[k]] >= chars[k, i, c])
    if on_blank:
        i = int(lengths[k])
    picked = [0] * int(lengths[k])
    times: list[list[int]] = [[] for _ in picked]
    for t in range(steps - 1, -1, -1):
        if not on_blank:
            picked[i] = c
            times[i].append(t)
        if t == 0:
            break
        if on_blank:
            if blank_from_char[t, k, i]:
                on_blank, i, c = False, i - 1, int(blank_char[t, k, i])
        else:
            source = int(char_from[t, k, i, c])
            if source == _FROM_BLANK:
                on_blank = True
            elif source == _FROM_PREVIOUS:
                i, c = i - 1, int(char_prev[t, k, i, c])
    return k, picked, [sorted(ts) for ts in times]


def constrained(probs: NDArray[np.float32]) -> list[CharRead]:
    """The characters of the best CTC path (of a (T, classes) softmax) that spells a plate of
    some series; each with the same confidence and distribution as a best-path read's."""
    logp = np.log(np.clip(probs.astype(np.float64), 1e-12, 1.0))
    _, picked, times = _viterbi(logp)
    reads = []
    for k, run in zip(picked, times, strict=True):
        dist = probs[run, 1:].mean(axis=0)
        total = float(dist.sum())
        dist = dist / total if total > 0 else dist
        reads.append(CharRead(ALPHABET[k], float(probs[run, k + 1].max()),
                              dist.astype(np.float32)))
    return reads


#: Best-path read lengths :func:`decode` repairs: one character lost from, or one too many
#: in, a 7- or 8-character plate. Anything further off (an empty frame reads a character or
#: two) stays as read, so it cannot turn into a plausible plate; the lane reports such a read
#: as no read at all (``reader.reported``).
REPAIRABLE_LENGTHS: Final = range(6, 10)


def decode(probs: NDArray[np.float32]) -> list[CharRead]:
    """The reader's decoding: the best path when it spells a plate (nearly every read; fast);
    when it is one character off a plate, the best path that spells one (:func:`constrained`,
    a few ms); otherwise the best path as it is."""
    return decode_with_best_path(probs)[0]


def decode_with_best_path(probs: NDArray[np.float32]) -> tuple[list[CharRead], str]:
    """:func:`decode` and the best path's text it started from (the same text unless the
    grammar repaired it): what the bench counts decoder changes against."""
    chars = greedy(probs)
    text = "".join(c.char for c in chars)
    if len(text) not in REPAIRABLE_LENGTHS or any(shape.fits(text) for shape in SHAPES):
        return chars, text
    return constrained(probs), text
