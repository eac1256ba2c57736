"""Random plate texts, one generator per series of ``docs/plates.md``; each is checked by the
grammar (``parse_plate``) in the tests, so the renderer never draws an impossible plate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np

from parkguard.core.plates.charset import PROVINCE_ORDER
from parkguard.core.plates.grammar import PlateSeries

_AUTH: Final = "ABCDEFGHJKLMNOPQRSTUVWXYZ"  # capitals without I (O is kept: police)
_SERIAL_LETTERS: Final = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_DIGITS: Final = "0123456789"
_ENERGY: Final = "DABCEFGHJK"

Rng = np.random.Generator


def _pick(rng: Rng, chars: str, n: int = 1) -> str:
    return "".join(chars[int(i)] for i in rng.integers(0, len(chars), n))


def _serial(rng: Rng, n: int) -> str:
    """``n`` serial characters with at most 2 letters (the self-chosen-number soft rule)."""
    letters = int(rng.choice([0, 0, 1, 1, 2]))
    chars = [_pick(rng, _DIGITS) for _ in range(n)]
    for pos in rng.choice(n, size=min(letters, n), replace=False):
        chars[int(pos)] = _pick(rng, _SERIAL_LETTERS)
    return "".join(chars)


def _province(rng: Rng) -> str:
    return _pick(rng, PROVINCE_ORDER)


def _ordinary(rng: Rng) -> str:
    return _province(rng) + _pick(rng, _AUTH) + _serial(rng, 5)


def _nev_small(rng: Rng) -> str:
    return (_province(rng) + _pick(rng, _AUTH) + _pick(rng, _ENERGY)
            + _pick(rng, _SERIAL_LETTERS + _DIGITS) + _pick(rng, _DIGITS, 4))


def _nev_large(rng: Rng) -> str:
    return _province(rng) + _pick(rng, _AUTH) + _pick(rng, _DIGITS, 5) + _pick(rng, _ENERGY)


def _suffixed(suffix: str) -> Callable[[Rng], str]:
    def make(rng: Rng) -> str:
        return _province(rng) + _pick(rng, _AUTH) + _serial(rng, 4) + _pick(rng, suffix)
    return make


def _hong_kong_macau(rng: Rng) -> str:
    return "粤Z" + _serial(rng, 4) + _pick(rng, "港澳")


def _embassy(rng: Rng) -> str:
    digits = _pick(rng, _DIGITS, 6)
    return "使" + digits if rng.random() < 0.8 else digits + "使"


def _emergency(rng: Rng) -> str:
    if rng.random() < 0.7:
        return _province(rng) + _pick(rng, "XS") + _pick(rng, _DIGITS, 4) + "应急"
    return _province(rng) + _pick(rng, _DIGITS, 5) + "应急"


def _armed_police(rng: Rng) -> str:
    last = _pick(rng, _DIGITS + "JBTXDHS")
    if rng.random() < 0.6:
        return "WJ" + _province(rng) + _pick(rng, _DIGITS, 4) + last
    return "WJ" + _pick(rng, _DIGITS, 4) + last


def _military(rng: Rng) -> str:
    return _pick(rng, "ABCDEFGHJKLMNPQRSTVZ", 2) + _pick(rng, _DIGITS, 5)


GENERATORS: Final[dict[PlateSeries, Callable[[Rng], str]]] = {
    PlateSeries.ORDINARY: _ordinary,
    PlateSeries.NEW_ENERGY_SMALL: _nev_small,
    PlateSeries.NEW_ENERGY_LARGE: _nev_large,
    PlateSeries.TRAILER: _suffixed("挂"),
    PlateSeries.COACH: _suffixed("学"),
    PlateSeries.POLICE: _suffixed("警"),
    PlateSeries.HONG_KONG_MACAU: _hong_kong_macau,
    PlateSeries.CONSULATE: _suffixed("领"),
    PlateSeries.EMBASSY: _embassy,
    PlateSeries.EMERGENCY: _emergency,
    PlateSeries.ARMED_POLICE: _armed_police,
    PlateSeries.MILITARY: _military,
}

#: How often each series appears: a car park sees mostly ordinary and new-energy plates,
#: but every series must be common enough to be learnt.
SERIES_WEIGHTS: Final[dict[PlateSeries, float]] = {
    PlateSeries.ORDINARY: 0.40, PlateSeries.NEW_ENERGY_SMALL: 0.16,
    PlateSeries.NEW_ENERGY_LARGE: 0.05, PlateSeries.TRAILER: 0.04, PlateSeries.COACH: 0.04,
    PlateSeries.POLICE: 0.05, PlateSeries.HONG_KONG_MACAU: 0.04, PlateSeries.CONSULATE: 0.04,
    PlateSeries.EMBASSY: 0.04, PlateSeries.EMERGENCY: 0.05, PlateSeries.ARMED_POLICE: 0.05,
    PlateSeries.MILITARY: 0.04,
}


def random_series(rng: Rng) -> PlateSeries:
    series = list(SERIES_WEIGHTS)
    weights = np.array([SERIES_WEIGHTS[s] for s in series])
    return series[int(rng.choice(len(series), p=weights / weights.sum()))]


def random_plate(rng: Rng, series: PlateSeries | None = None) -> tuple[PlateSeries, str]:
    """A random plate text of ``series`` (a weighted random series when None)."""
    chosen = random_series(rng) if series is None else series
    return chosen, GENERATORS[chosen](rng)
