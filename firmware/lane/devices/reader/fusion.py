"""Multi-frame fusion and the plate grammar: from several reads of one car to one plate.

Each read is a list of :class:`~firmware.lane.devices.reader.decode.CharRead` (best character plus
the distribution over the alphabet). Fusion:

1. the length most reads agree on (weighted by each read's mean confidence) wins; reads of
   other lengths are dropped (a frame that clipped a character);
2. per position the distributions are averaged, weighted by the read's confidence: a vote
   per character weighted by confidence, with second choices kept;
3. the grammar picks the series shape (``parkguard.core.plates.grammar.SHAPES``) that the
   evidence fits best, and each position takes its most likely character *allowed there*:
   an ``O`` in a serial becomes ``0``, a ``B`` where only digits may stand becomes ``8``;
4. a character's confidence is its fused probability; the plate's is the weakest
   character's (one wrong character is a wrong plate).

A single read goes through the same path, so the grammar repairs it too.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from firmware.lane.devices.reader.alphabet import ALPHABET
from firmware.lane.devices.reader.decode import CharRead
from parkguard.core.plates.grammar import SHAPES, Shape


@dataclass(frozen=True, slots=True)
class FusedPlate:
    """The plate the reads add up to; ``plate`` None when nothing was read."""

    plate: str | None
    confidence: float
    char_confidences: tuple[float, ...]
    frames_used: int
    frames_total: int
    grammar_ok: bool
    series: str | None = None


@functools.lru_cache(maxsize=32)
def _masks(length: int) -> tuple[tuple[Shape, NDArray[np.bool_]], ...]:
    out = []
    for shape in SHAPES:
        if len(shape.slots) != length:
            continue
        mask = np.zeros((length, len(ALPHABET)), dtype=bool)
        for i, slot in enumerate(shape.slots):
            mask[i] = [c in slot.allowed for c in ALPHABET]
        out.append((shape, mask))
    return tuple(out)


def _weight(read: Sequence[CharRead]) -> float:
    return float(np.mean([c.confidence for c in read])) if read else 0.0


def fuse(reads: Sequence[Sequence[CharRead]]) -> FusedPlate:
    """One plate from the reads of 1–5 frames of the same car (see the module doc)."""
    useful = [r for r in reads if r]
    if not useful:
        return FusedPlate(None, 0.0, (), 0, len(reads), False)
    by_length: dict[int, float] = {}
    for read in useful:
        by_length[len(read)] = by_length.get(len(read), 0.0) + _weight(read)
    length = max(by_length, key=lambda n: (by_length[n], n in (7, 8)))
    chosen = [r for r in useful if len(r) == length]
    weights = np.array([max(_weight(r), 1e-3) for r in chosen], dtype=np.float64)
    stacked = np.stack([np.stack([c.probs for c in r]) for r in chosen]).astype(np.float64)
    fused = np.tensordot(weights / weights.sum(), stacked, axes=1)  # (length, alphabet)
    candidates = _masks(length)
    if not candidates:
        best = fused.argmax(axis=1)
        confs = tuple(float(fused[i, k]) for i, k in enumerate(best))
        text = "".join(ALPHABET[int(k)] for k in best)
        return FusedPlate(text, min(confs) * 0.5, confs, len(chosen), len(reads), False)
    scored = []
    for shape, mask in candidates:
        allowed = np.where(mask, fused, 0.0)
        best_p = allowed.max(axis=1)
        scored.append((float(np.log(best_p + 1e-9).sum()), shape, allowed))
    _, shape, allowed = max(scored, key=lambda s: s[0])
    picks = allowed.argmax(axis=1)
    confs = tuple(float(allowed[i, k]) for i, k in enumerate(picks))
    text = "".join(ALPHABET[int(k)] for k in picks)
    return FusedPlate(text, min(confs), confs, len(chosen), len(reads), True,
                      shape.series.value)
