"""The demo's site after its simulated day: cars keep arriving and leaving in real time.

When ``parkguard demo`` serves the dashboard, the day it played is over and every car has
left, so the pay page would find nobody and the live view would stand still. This keeps
the site moving while it is served: the site's clock follows the wall clock from where the
day ended, a car comes or goes every few seconds, and a handful stay inside owing money, so
each page has something true on it (a plate to pay for on the pay page, reads arriving on
the live view, sessions opening and closing).

The choice of what happens next is pure (:func:`next_move`, seeded); :class:`LiveTraffic`
does it on the site, on a thread of its own, and a test calls :meth:`LiveTraffic.step`
directly with the time that passed.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from simulator.driver import LaneStuck
from simulator.site import SimulatedSite
from simulator.traffic import random_plate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveSettings:
    """How busy the served site is: one car every ``every_s`` seconds of real time, between
    ``fewest`` and ``most`` cars inside (a first burst fills it to ``fewest``)."""

    every_s: float = 8.0
    fewest: int = 6
    most: int = 16
    seed: int = 11


@dataclass(frozen=True)
class Move:
    kind: Literal["arrive", "leave"]
    plate: str
    lane: str


@dataclass
class Inside:
    """The cars the live traffic brought in and has not yet taken out (oldest first)."""

    plates: list[str] = field(default_factory=list)


def next_move(inside: Inside, settings: LiveSettings, rng: random.Random, *,
              entry_lanes: tuple[str, ...], exit_lanes: tuple[str, ...],
              taken: Callable[[str], bool]) -> Move:
    """What happens next: fill up to ``fewest``; at ``most`` someone leaves; in between a
    coin, weighted towards the middle, says whether a car comes or one of the longest
    parked goes. ``taken`` says a plate is already in use at the site (never reused)."""
    count = len(inside.plates)
    middle = (settings.fewest + settings.most) / 2
    arrive = count < settings.fewest or (
        count < settings.most and rng.random() < 0.5 + (middle - count) / (2 * settings.most))
    if arrive:
        plate = random_plate(rng)
        while plate in inside.plates or taken(plate):
            plate = random_plate(rng)
        return Move("arrive", plate, rng.choice(entry_lanes))
    oldest = inside.plates[: max(1, count // 2)]
    return Move("leave", rng.choice(oldest), rng.choice(exit_lanes))


class LiveTraffic:
    """Drives :func:`next_move` on a running :class:`SimulatedSite` until stopped."""

    def __init__(self, site: SimulatedSite, settings: LiveSettings | None = None,
                 before_exit: Callable[[str], None] | None = None) -> None:
        """``before_exit(plate)`` runs before a car drives to the exit (a driver paying on
        the pay page on the way); the exit lane's payer takes the rest."""
        self._site = site
        self.settings = settings or LiveSettings()
        self._rng = random.Random(self.settings.seed)
        self._before_exit = before_exit
        self.inside = Inside()
        self.moves = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self, elapsed_s: float) -> Move:
        """Let ``elapsed_s`` seconds pass on the site's clock, then make one move."""
        site = self._site
        site.clock.advance(timedelta(seconds=max(0.0, elapsed_s)))
        move = next_move(self.inside, self.settings, self._rng,
                         entry_lanes=site.entry_lanes, exit_lanes=site.exit_lanes,
                         taken=self._is_inside_already)
        if move.kind == "leave" and self._before_exit is not None:
            self._before_exit(move.plate)
        passage = site.drive(move.lane, move.plate)
        site.settle()
        self.moves += 1
        if not passage.opened:  # refused (a misread the matcher could not place): the
            return move         # car stays where it was and tries again later
        if move.kind == "arrive":
            self.inside.plates.append(move.plate)
        else:
            self.inside.plates.remove(move.plate)
        return move

    def fill(self) -> None:
        """The first burst: cars arrive a minute apart until ``fewest`` are inside, so the
        pay page has someone to find as soon as the dashboard is up (at most twice as many
        tries, should the reader refuse some)."""
        for _ in range(2 * self.settings.fewest):
            if len(self.inside.plates) >= self.settings.fewest:
                return
            self.step(60.0)

    def start(self) -> LiveTraffic:
        self._thread = threading.Thread(target=self._run, name="live-traffic", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self.fill()
            while not self._stop.wait(self.settings.every_s):
                self.step(self.settings.every_s)
        except LaneStuck:
            log.exception("live traffic: a lane stopped answering; the site stays up, "
                          "no more cars come")

    def _is_inside_already(self, plate: str) -> bool:
        service = self._site.gateway.service
        return service.call(lambda: service.inside.session_of(plate) is not None)
