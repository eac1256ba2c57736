"""A day of mall traffic: who arrives when, how long they stay, which lanes they use.

Pure and seeded: the same seed gives the same day, so a demo or a benchmark is repeatable.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# Where the demo's cars come from: mostly local (粤B, Shenzhen), some from elsewhere.
_PROVINCES = ("粤",) * 8 + ("湘", "赣", "桂", "闽")
_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I or O on Chinese plates
_SERIAL = "0123456789" * 3 + _LETTERS


@dataclass(frozen=True, slots=True)
class Visit:
    """One car's stay: in through one lane, out through another."""

    plate: str
    arrive: datetime
    leave: datetime
    entry_lane: str
    exit_lane: str


def random_plate(rng: random.Random) -> str:
    """An ordinary 7-character plate such as 粤B3K9Z1 (last character a digit, as most are)."""
    province = rng.choice(_PROVINCES)
    authority = "B" if province == "粤" and rng.random() < 0.8 else rng.choice(_LETTERS)
    serial = "".join(rng.choice(_SERIAL) for _ in range(4)) + rng.choice("0123456789")
    return f"{province}{authority}{serial}"


def _arrival_minute(rng: random.Random) -> float:
    """Minutes after local midnight: a lunch peak, an evening peak, a flat daytime base."""
    shape = rng.random()
    if shape < 0.35:
        minute = rng.gauss(12 * 60, 50)
    elif shape < 0.75:
        minute = rng.gauss(18.5 * 60, 70)
    else:
        minute = rng.uniform(9 * 60, 21 * 60)
    return min(max(minute, 8 * 60), 21.5 * 60)


def day_of_visits(
    day: date,
    *,
    cars: int,
    timezone: str,
    entry_lanes: tuple[str, ...],
    exit_lanes: tuple[str, ...],
    seed: int = 7,
) -> list[Visit]:
    """``cars`` visits on ``day`` (site-local), each leaving before local midnight."""
    if cars < 0:
        raise ValueError("cars must not be negative")
    if not entry_lanes or not exit_lanes:
        raise ValueError("a site needs at least one entry and one exit lane")
    rng = random.Random(seed)
    zone = ZoneInfo(timezone)
    midnight = datetime.combine(day, time(0, 0), tzinfo=zone)
    closing = midnight + timedelta(hours=23, minutes=45)
    plates: set[str] = set()
    visits: list[Visit] = []
    while len(visits) < cars:
        plate = random_plate(rng)
        if plate in plates:
            continue
        plates.add(plate)
        arrive = midnight + timedelta(minutes=_arrival_minute(rng), seconds=rng.randint(0, 59))
        stay = timedelta(minutes=max(3.0, rng.lognormvariate(4.5, 0.6)))  # median ≈ 90 min
        leave = min(arrive + stay, closing - timedelta(seconds=rng.randint(0, 600)))
        visits.append(Visit(plate, arrive, leave, rng.choice(entry_lanes), rng.choice(exit_lanes)))
    return sorted(visits, key=lambda v: v.arrive)
