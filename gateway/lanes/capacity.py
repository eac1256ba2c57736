"""How full the car park is, per level and in total, and whether an entry lane takes a visitor.

Occupancy is counted from sessions, not from loops: a car is inside from its entry ``passed``
until its exit ``passed``. So :class:`Capacity` is rebuilt from the store's open sessions at
start (:meth:`Capacity.from_store`) and then told each :meth:`~Capacity.entered` and
:meth:`~Capacity.left` by the gateway's worker, which owns it (no locks).

**One car per plate.** A plate takes one space however many sessions it has open: a lane
that reports the same car coming in again (a replayed journal with fresh event ids, a missed
exit, a cloned plate) opens a session for each passage, flagged ``entry_while_inside`` for a
guard (:mod:`gateway.lanes.reconcile`), but those sessions do not fill the car park. A
session without a plate (unread, or unmatchable) is a car of its own. The car parks on the
level of its plate's earliest open session.

**The rule at the entry gate** (``docs/capacity.md``):

- The site is *full* when ``free <= reserve``: the last ``reserve`` spaces are kept for
  pass holders (they paid for a space) and whitelisted cars (landlord, staff, emergency).
- A level is *full* when its cars reach its spaces; an entry lane that feeds a full level
  is full for visitors even if another level has room (the ramp does not reach it).
- When full, a **visitor** is refused (``lot_full``, 车位已满 / FULL). A **pass** holder and a
  **whitelisted** car are always admitted, even beyond the last space: their right to park
  does not depend on how many visitors came first, and a guard sorts out the overflow.
  Blacklisted cars are refused by the access rules before capacity is asked.

The state is published (retained) only when it changes, through the callback the caller
gives (:meth:`gateway.lanes.replicas.ReplicaPublisher.publish_capacity` puts it on every lane's
``replica/capacity`` topic), so an entry lane that lost the gateway still knows the lot is
full.

>>> from datetime import UTC, datetime
>>> from parkguard.clock import ManualClock
>>> settings = CapacitySettings(total=3, reserve=1)
>>> lot = Capacity(settings, site="mall-b2", clock=ManualClock(datetime(2026, 5, 1, tzinfo=UTC)))
>>> lot.entered("s-1", "in1", "visitor"); lot.admits("visitor")
True
>>> lot.entered("s-2", "in1", "visitor"); lot.admits("visitor"), lot.admits("pass")
(False, True)
>>> lot.left("s-1"); lot.state().free
2
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Final, Self

from pydantic import Field, model_validator

from gateway.storage.store import GatewayStore
from parkguard.clock import Clock
from parkguard.configfile import StrictModel
from wire.contract.messages import CapacityState, LevelState

__all__ = [
    "DEFAULT_LEVEL",
    "FULL_DISPLAY_EN",
    "FULL_DISPLAY_ZH",
    "LOT_FULL",
    "Capacity",
    "CapacitySettings",
]

_log = logging.getLogger(__name__)

DEFAULT_LEVEL: Final = "all"
"""The one level of a car park whose settings name no levels."""

LOT_FULL: Final = "lot_full"
"""The decide reply's reason code when a visitor is refused for want of space."""
FULL_DISPLAY_ZH: Final = "车位已满"
FULL_DISPLAY_EN: Final = "FULL"

_Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")]
_Lane = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]

Publish = Callable[[CapacityState], object]


class CapacitySettings(StrictModel):
    """The car park's spaces (the ``[capacity]`` section of the gateway config).

    ``levels`` splits ``total`` by level (they must add up); without it the car park is one
    level, :data:`DEFAULT_LEVEL`. ``lanes`` says which level each entry lane feeds; a lane
    not named feeds ``default_level`` (the first level when not given). ``reserve`` spaces
    are kept for pass holders and whitelisted cars: visitors are refused once only that
    many are free.
    """

    total: int = Field(gt=0, le=100_000, description="spaces in the car park")
    levels: dict[_Name, Annotated[int, Field(gt=0)]] = Field(
        default_factory=dict, description="spaces per level, by level name; must add up to total")
    lanes: dict[_Lane, _Name] = Field(
        default_factory=dict, description="entry lane id -> the level it feeds")
    default_level: _Name | None = Field(
        default=None, description="the level of entry lanes not named in `lanes`")
    reserve: int = Field(default=0, ge=0, description="spaces kept for pass holders")

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.levels and sum(self.levels.values()) != self.total:
            spelled = " + ".join(f"{n} {s}" for n, s in self.levels.items())
            raise ValueError(f"levels add up to {sum(self.levels.values())} spaces ({spelled}) "
                             f"but total is {self.total}")
        known = set(self.level_spaces())
        for lane, level in sorted(self.lanes.items()):
            if level not in known:
                raise ValueError(f"lanes.{lane}: level {level!r} is not one of "
                                 f"{', '.join(sorted(known))}")
        if self.default_level is not None and self.default_level not in known:
            raise ValueError(f"default_level {self.default_level!r} is not one of "
                             f"{', '.join(sorted(known))}")
        if self.reserve >= self.total:
            raise ValueError(f"reserve {self.reserve} leaves no space for visitors out of "
                             f"{self.total}")
        return self

    def level_spaces(self) -> dict[str, int]:
        """Spaces per level, in the order given (one :data:`DEFAULT_LEVEL` if none)."""
        return dict(self.levels) if self.levels else {DEFAULT_LEVEL: self.total}

    def level_of(self, lane: str) -> str:
        """The level a car entering by ``lane`` parks on."""
        if lane in self.lanes:
            return self.lanes[lane]
        return self.default_level or next(iter(self.level_spaces()))


class Capacity:
    """Occupancy from entries and exits, the lot-full rule, and its publication on change.

    Owned by the gateway's worker thread. ``publish`` receives every new state (retained
    delivery is the callback's job); it is called on the first :meth:`publish_now` or change
    and then only when a count or a full flag changes, never for the clock alone.
    """

    def __init__(self, settings: CapacitySettings, *, site: str, clock: Clock,
                 publish: Publish | None = None) -> None:
        self.settings = settings
        self.site = site
        self._clock = clock
        self._publish = publish
        self._spaces = settings.level_spaces()
        # session -> the car it is (its plate, or the session itself); car -> its open
        # sessions and their levels, in the order they opened; cars per level (each car on
        # the level of its earliest open session), kept as sessions come and go
        self._car_of_session: dict[str, str] = {}
        self._sessions_of_car: dict[str, dict[str, str]] = {}
        self._cars_by_level: Counter[str] = Counter()
        self._last: tuple[Any, ...] | None = None

    @classmethod
    def from_store(cls, settings: CapacitySettings, store: GatewayStore, *, site: str,
                   clock: Clock, publish: Publish | None = None) -> Capacity:
        """Rebuilt from the sessions open in the store: a restart forgets nobody inside."""
        capacity = cls(settings, site=site, clock=clock, publish=publish)
        capacity.load(store.db.query(
            "SELECT session_id, entry_lane, access, plate FROM sessions WHERE state = 'open' "
            "ORDER BY entry_at, rowid"))
        return capacity

    def load(self, open_sessions: Iterable[Mapping[str, Any]]) -> None:
        """Replace the count with these open sessions (``session_id``, ``entry_lane``,
        ``plate``; oldest first) and publish if that changed the state; also how a drifted
        count is corrected."""
        self._car_of_session, self._sessions_of_car = {}, {}
        self._cars_by_level = Counter()
        for row in open_sessions:
            self._open(str(row["session_id"]), str(row["entry_lane"]), row.get("plate"))
        self._changed()

    # --- told by the gateway -------------------------------------------------------------

    def entered(self, session_id: str, lane: str, access: str = "visitor",
                plate: str | None = None) -> None:
        """A car has passed an entry lane (its session is open). A repeat is ignored, and so
        is, for the count, another open session of a ``plate`` already inside.

        ``access`` is how it came in; it does not change the count (every car takes a
        space) and is accepted so the call reads like the session it describes.
        """
        if session_id in self._car_of_session:
            return
        self._open(session_id, lane, plate)
        _log.debug("capacity: %s entered by %s (%s)", session_id, lane, access)
        self._changed()

    def left(self, session_id: str) -> None:
        """A car has passed an exit lane (its session is closed). Unknown ids are ignored:
        a car let out that was never counted in frees no space that was counted. A plate
        with another session still open stays counted until that one closes too."""
        if session_id in self._car_of_session:
            self._close(session_id)
            self._changed()

    # --- asked by the gateway ------------------------------------------------------------

    @property
    def occupied(self) -> int:
        """Cars inside: plates with an open session, and open sessions without a plate."""
        return len(self._sessions_of_car)

    def full(self, lane: str | None = None) -> bool:
        """Full for visitors: the site keeps only its reserve free, or ``lane``'s level is full."""
        if self.settings.total - self.occupied <= self.settings.reserve:
            return True
        if lane is None:
            return False
        level = self.settings.level_of(lane)
        return self._occupied_by_level()[level] >= self._spaces[level]

    def admits(self, access_kind: str, lane: str | None = None) -> bool:
        """Whether capacity lets this car in: visitors only while not :meth:`full`; pass
        holders and whitelisted cars always; blacklisted never (the access rules already
        refused them)."""
        if access_kind in ("pass", "whitelisted"):
            return True
        if access_kind == "blacklisted":
            return False
        return not self.full(lane)

    def state(self) -> CapacityState:
        by_level = self._occupied_by_level()
        total, occupied = self.settings.total, self.occupied
        free = max(0, total - occupied)
        return CapacityState(
            site=self.site, total=total, occupied=occupied, free=free,
            reserve=self.settings.reserve, full=free <= self.settings.reserve,
            levels={name: LevelState(capacity=spaces, occupied=by_level[name],
                                     full=by_level[name] >= spaces)
                    for name, spaces in self._spaces.items()},
            ts=self._clock.now())

    def publish_now(self) -> CapacityState:
        """Publish the current state whether or not it changed (at start: the retained copy
        may be from before a restart)."""
        state = self.state()
        self._last = _key(state)
        if self._publish is not None:
            self._publish(state)
        return state

    # --- helpers ---------------------------------------------------------------------------

    def _open(self, session_id: str, lane: str, plate: object) -> None:
        car = f"plate:{plate}" if isinstance(plate, str) and plate else f"session:{session_id}"
        self._car_of_session[session_id] = car
        sessions = self._sessions_of_car.setdefault(car, {})
        if not sessions:  # a new car: it parks on this session's level
            self._cars_by_level[self.settings.level_of(lane)] += 1
        sessions[session_id] = self.settings.level_of(lane)

    def _close(self, session_id: str) -> None:
        car = self._car_of_session.pop(session_id)
        sessions = self._sessions_of_car[car]
        level_before = next(iter(sessions.values()))
        del sessions[session_id]
        self._cars_by_level[level_before] -= 1
        if sessions:  # still inside, now on the level of its earliest open session
            self._cars_by_level[next(iter(sessions.values()))] += 1
        else:
            del self._sessions_of_car[car]

    def _occupied_by_level(self) -> Counter[str]:
        counts: Counter[str] = Counter(dict.fromkeys(self._spaces, 0))
        counts.update({level: n for level, n in self._cars_by_level.items() if n})
        return counts

    def _changed(self) -> None:
        state = self.state()
        if _key(state) != self._last:
            self._last = _key(state)
            if self._publish is not None:
                self._publish(state)


def _key(state: CapacityState) -> tuple[Any, ...]:
    """What makes a state news: everything but its time stamp."""
    return (state.occupied, state.full,
            tuple(sorted((n, s.occupied, s.full) for n, s in state.levels.items())))
