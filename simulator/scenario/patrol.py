"""Patrol rounds in a scenario: a guard walks his route with the handheld reader, on time,
late, impossibly fast, or past a checkpoint whose tag was cloned.

:func:`round_taps` is pure: the taps a round makes (checkpoint, time, the tag's SUN message
made with :func:`~parkguard.core.patrol.simulate_tap`, or with a wrong key for a clone);
:class:`PatrolReader` publishes them as the reader does (``patrol/{reader}/tap``, with the
reader's own login). The regime is the mall's example, ``docs/examples/patrols.toml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

from parkguard.core.patrol import PatrolConfig, load_patrol_config, simulate_tap
from simulator.scenario.model import PatrolKind
from wire.contract import topics
from wire.contract.messages import PatrolTap
from wire.mqtt import BrokerAddress, MqttBus

REGIME = Path(__file__).resolve().parents[2] / "docs" / "examples" / "patrols.toml"
READER = "patrol1"
#: A key no real tag has: what a cloned tag's maker would have to guess.
_WRONG_KEY = bytes(range(16))


def load_regime() -> PatrolConfig:
    return load_patrol_config(REGIME)


@dataclass(frozen=True, slots=True)
class PlannedTap:
    checkpoint: str
    tag: str
    at: datetime
    sun: str | None
    badge: str


@dataclass(frozen=True, slots=True)
class PlannedRound:
    """A round as walked, and what the gateway should make of it."""

    person: str
    kind: PatrolKind
    route: str
    start: datetime
    end: datetime
    taps: tuple[PlannedTap, ...]


def round_taps(config: PatrolConfig, person_id: str, kind: PatrolKind, start: datetime,
               counters: dict[str, int]) -> PlannedRound:
    """The taps of one round of ``person_id``'s own route starting at ``start`` (UTC).
    ``counters`` holds each tag's read counter and is moved on (tags count every read)."""
    person = config.person[person_id]
    if person.route is None:
        raise ValueError(f"{person_id} has no route of his own in the patrol regime")
    route = config.route[person.route]
    points = list(route.checkpoints)
    legs = [config.distance_m(a, b) for a, b in pairwise(points)]
    walk = [d / config.walking_speed_m_s for d in legs]  # the fastest possible, in seconds
    if kind == "too_fast":
        gaps = [max(1.0, w / 4) for w in walk]
    else:
        gaps = [w * 3 + 30 for w in walk]  # an unhurried walk
        if kind == "late":  # dawdling: the last tap well past the time limit
            stretch = (route.time_limit_min * 60 * 1.5) / max(sum(gaps), 1.0)
            gaps = [g * max(stretch, 1.0) for g in gaps]
    taps: list[PlannedTap] = []
    at = start
    cloned_at = 1 if len(points) > 1 else 0
    for index, point_id in enumerate(points):
        if index:
            at = at + timedelta(seconds=gaps[index - 1])
        point = config.checkpoint[point_id]
        sun = None
        if point.key is not None:
            counters[point.tag] = counters.get(point.tag, 0) + 1
            key = bytes.fromhex(point.key.get_secret_value())
            if kind == "cloned_tag" and index == cloned_at:
                key = _WRONG_KEY
            sun = simulate_tap(key, point.tag, counters[point.tag])
        taps.append(PlannedTap(point_id, point.tag, at, sun, person.badge))
    return PlannedRound(person_id, kind, route.id, start, at, tuple(taps))


class PatrolReader:
    """The guards' handheld reader on the site's broker, under its own login."""

    def __init__(self, site: str, address: BrokerAddress, config: PatrolConfig) -> None:
        self._site = site
        self._zone = config.zone
        self._bus = MqttBus(address, client_id=f"patrol-{site}-{READER}")
        self.seq = 0

    def start(self) -> PatrolReader:
        self._bus.start()
        return self

    def stop(self) -> None:
        self._bus.stop()

    def tap(self, planned: PlannedTap) -> None:
        """Upload one tap (QoS 1, acknowledged by the broker before this returns)."""
        self.seq += 1
        message = PatrolTap(reader=READER, seq=self.seq, tag_id=planned.tag, sun=planned.sun,
                            badge=planned.badge,
                            reader_time=planned.at.astimezone(self._zone).replace(tzinfo=None))
        self._bus.publish_and_wait(topics.patrol_tap(self._site, READER), message)
