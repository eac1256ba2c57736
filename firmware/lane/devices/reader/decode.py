"""CTC decoding: the recogniser's per-time-step probabilities into characters, each with its
probability distribution (kept, so fusion and the grammar can pick a second choice)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from firmware.lane.devices.reader.alphabet import ALPHABET, BLANK


@dataclass(frozen=True, slots=True)
class CharRead:
    """One read character: the best class, its confidence, and the distribution over the
    alphabet (length ``len(ALPHABET)``, blank removed and renormalised)."""

    char: str
    confidence: float
    probs: NDArray[np.float32]


def greedy(probs: NDArray[np.float32]) -> list[CharRead]:
    """Best path decoding of a (T, classes) softmax: collapse repeats, drop blanks. A
    character's distribution is the mean of its time steps' (the run it was read in)."""
    best = probs.argmax(axis=1)
    chars: list[CharRead] = []
    run: list[int] = []
    previous = BLANK

    def close() -> None:
        if run:
            dist = probs[run, 1:].mean(axis=0)
            total = float(dist.sum())
            dist = dist / total if total > 0 else dist
            k = int(dist.argmax())
            chars.append(CharRead(ALPHABET[k], float(probs[run, k + 1].max()),
                                  dist.astype(np.float32)))
            run.clear()

    for t, cls in enumerate(best):
        c = int(cls)
        if c == BLANK:
            close()
        elif c != previous:
            close()
            run.append(t)
        else:
            run.append(t)
        previous = c
    close()
    return chars
