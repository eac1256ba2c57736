"""The patrol regime as configuration: checkpoints, routes, people, shifts and obligations.

Loaded from TOML (docs/examples/patrols.toml, docs/patrols.md) and validated once: every
error names the field and the reason, and every reference (a route's checkpoint, a
person's route or shift, an obligation's route or roles) must exist.
"""

from __future__ import annotations

import math
import re
from datetime import date, time
from functools import cached_property
from pathlib import Path
from typing import Annotated, Final, Literal, Self, TypeAlias
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, Field, SecretStr, model_validator

from parkguard.configfile import StrictModel, load_config
from parkguard.core.tariffs.holidays import DayKind, HolidayCalendar
from parkguard.core.zones import TimeZoneName

__all__ = [
    "DAY_KINDS",
    "ROLES",
    "Checkpoint",
    "DayKind",
    "Obligation",
    "PatrolConfig",
    "PatrolPerson",
    "Period",
    "Role",
    "RosterShift",
    "Route",
    "StaffingRule",
    "load_patrol_config",
]

Role: TypeAlias = Literal["guard", "squad_leader", "captain", "manager", "cleaner"]
#: The roster from the bottom up: an overdue round is reported to the next rung. A cleaner
#: stands beside the guards: his overdue cleaning goes to the squad leader.
ROLES: Final[tuple[Role, ...]] = ("guard", "squad_leader", "captain", "manager")
#: The kinds of day the tariff calendar tells apart (holiday beats a make-up workday, which
#: beats the weekend): obligations, people and staffing can apply to some of them only.
DAY_KINDS: Final[tuple[DayKind, ...]] = ("workday", "weekend", "holiday")
Period: TypeAlias = Literal["shift", "day", "week", "month"]
_ID = r"^[a-z0-9][a-z0-9_-]{0,47}$"


def _aes_key(value: SecretStr) -> SecretStr:
    """A tag's SUN key: 32 hex digits (the reason never quotes the key)."""
    if not re.fullmatch(r"[0-9A-Fa-f]{32}", value.get_secret_value()):
        raise ValueError("must be 32 hexadecimal digits (an AES-128 key)")
    return value


def _kinds_once(value: tuple[DayKind, ...]) -> tuple[DayKind, ...]:
    if len(set(value)) != len(value):
        raise ValueError("a day kind is listed twice")
    return value


#: ``days``: the kinds of day a rule or a person applies on; none: every day.
DayKinds: TypeAlias = Annotated[tuple[DayKind, ...], Field(min_length=1),
                                AfterValidator(_kinds_once)] | None


class Checkpoint(StrictModel):
    """A tag on a wall, and where it is (metres on the level's plan, for walking times)."""

    id: str = Field(pattern=_ID)
    tag: str = Field(pattern=r"^[0-9A-F]{8,20}$", description="tag UID, upper-case hex")
    place: str = Field(min_length=1, max_length=100, description="what a person sees there")
    level: str = Field(min_length=1, max_length=16, description="level name, e.g. B1")
    zone: str = Field(default="", max_length=32)
    position: tuple[float, float] = Field(description="x, y in metres on the level's plan")
    key: Annotated[SecretStr, AfterValidator(_aes_key)] | None = Field(
        default=None,
        description="the tag's AES-128 SUN key (SDMMetaRead = SDMFileRead), hex; none: a "
                    "plain tag, accepted only if allow_plain_tags")


class Route(StrictModel):
    """Checkpoints walked as one round; inspection routes ask a checklist at each one."""

    id: str = Field(pattern=_ID)
    name: str = Field(min_length=1, max_length=100)
    checkpoints: tuple[str, ...] = Field(min_length=1)
    ordered: bool = Field(default=False, description="the checkpoints must be tapped in order")
    time_limit_min: float = Field(default=60, gt=0, description="first to last tap of a round")
    required: int | None = Field(
        default=None, ge=1, description="how many of the checkpoints make a round (spot "
                                        "checks); none: all of them")
    checklist: tuple[str, ...] = Field(
        default=(), description="items answered at every checkpoint (ok / fault / a note)")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if len(set(self.checkpoints)) != len(self.checkpoints):
            raise ValueError(f"route {self.id}: a checkpoint appears twice")
        if self.required is not None and self.required > len(self.checkpoints):
            raise ValueError(f"route {self.id}: required {self.required} > its "
                             f"{len(self.checkpoints)} checkpoints")
        if self.ordered and self.required is not None:
            raise ValueError(f"route {self.id}: a spot check (required) cannot be ordered")
        return self

    @property
    def needed(self) -> int:
        return len(self.checkpoints) if self.required is None else self.required


class RosterShift(StrictModel):
    """One shift of the three; it lasts until the next one starts (site-local)."""

    name: str = Field(pattern=_ID)
    start: time


class PatrolPerson(StrictModel):
    """Someone who taps: identified on the reader by a badge."""

    id: str = Field(pattern=_ID)
    name: str = Field(min_length=1, max_length=64)
    badge: str = Field(min_length=1, max_length=32)
    role: Role
    shift: str | None = Field(default=None, description="shift worked; none: day staff")
    route: str | None = Field(default=None, description="the guard's own route")
    days: DayKinds = Field(
        default=None, description="kinds of day worked (e.g. [\"holiday\"]: a roving patrol "
                                  "rostered on holidays only); none: every day")


class Obligation(StrictModel):
    """A rule of the regime: who must walk which route how often."""

    id: str = Field(pattern=_ID)
    title: str = Field(min_length=1, max_length=100)
    roles: tuple[Role, ...] = Field(min_length=1)
    route: str = Field(description="a route id, or `own`: each person's own route")
    per: Period
    times: int = Field(default=1, ge=1, le=100)
    each: bool = Field(default=True, description="each person of the roles must; false: "
                                                 "any one of them (a team duty)")
    joint: bool = Field(default=False, description="every role taps each checkpoint within "
                                                   "joint_window_min of the others")
    joint_window_min: float = Field(default=5, gt=0, le=120)
    due_within_min: float | None = Field(
        default=None, gt=0, description="deadline after the window starts; none: its end")
    kind: Literal["patrol", "inspection", "cleaning"] = "patrol"
    days: DayKinds = Field(
        default=None, description="kinds of day it applies on (workday, weekend, holiday from "
                                  "the tariff calendar); none: every day")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if len(set(self.roles)) != len(self.roles):
            raise ValueError(f"obligation {self.id}: a role appears twice")
        if self.days is not None and self.per not in ("shift", "day"):
            raise ValueError(f"obligation {self.id}: days needs per = shift or day (a "
                             f"{self.per} has days of several kinds)")
        if self.joint and (len(self.roles) < 2 or self.each):
            raise ValueError(f"obligation {self.id}: a joint inspection needs two or more "
                             "roles and each = false")
        if self.per == "shift" and not self.each:
            raise ValueError(f"obligation {self.id}: per = shift is for each person")
        return self


class StaffingRule(StrictModel):
    """At least ``min_on_duty`` people of ``roles`` rostered in the hours ``from_hour`` to
    ``to_hour`` (site-local, end excluded) of the days it applies on."""

    id: str = Field(pattern=_ID)
    title: str = Field(default="", max_length=100)
    days: DayKinds = Field(default=None, description="kinds of day; none: every day")
    periods: tuple[str, ...] = Field(
        default=(), max_length=32, description="named periods or holidays of the calendar "
                                               "(peaks: double_eleven, spring_festival) it "
                                               "applies on as well")
    from_hour: int = Field(default=0, ge=0, le=23)
    to_hour: int = Field(default=24, ge=1, le=24)
    roles: tuple[Role, ...] = Field(default=("guard",), min_length=1)
    min_on_duty: int = Field(ge=1, le=500)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.to_hour <= self.from_hour:
            raise ValueError(f"staffing {self.id}: to_hour {self.to_hour} must be after "
                             f"from_hour {self.from_hour}")
        if self.days is None and self.periods:
            raise ValueError(f"staffing {self.id}: periods without days would apply every "
                             "day: give days too (e.g. days = [\"holiday\"])")
        return self

    def applies(self, kind: DayKind, periods: frozenset[str]) -> bool:
        return self.days is None or kind in self.days or bool(periods.intersection(self.periods))


class PatrolConfig(StrictModel):
    """The whole regime (docs/patrols.md)."""

    timezone: TimeZoneName = "Asia/Shanghai"
    walking_speed_m_s: float = Field(
        default=2.5, gt=0, le=10, description="faster than this between two checkpoints is "
                                              "impossible on foot")
    level_change_m: float = Field(default=40, ge=0, description="walking metres per level "
                                                                "changed (stairs, ramps)")
    levels: tuple[str, ...] = Field(min_length=1, description="levels, top to bottom")
    allow_plain_tags: bool = Field(default=False, description="accept tags without SUN "
                                                              "(flagged in every report)")
    reader_clock_tolerance_min: float = Field(default=10, gt=0)
    shifts: tuple[RosterShift, ...] = Field(min_length=1)
    people: tuple[PatrolPerson, ...] = Field(min_length=1)
    checkpoints: tuple[Checkpoint, ...] = Field(min_length=1)
    routes: tuple[Route, ...] = Field(min_length=1)
    obligations: tuple[Obligation, ...] = Field(default=())
    staffing: tuple[StaffingRule, ...] = Field(
        default=(), description="people rostered per kind of day and hour (docs/patrols.md)")
    calendar: HolidayCalendar = Field(
        default_factory=HolidayCalendar,
        description="holidays and make-up workdays; the gateway gives the tariff file's "
                    "calendar (docs/tariffs.md), a file of its own is for a regime alone")

    @model_validator(mode="after")
    def _references(self) -> Self:
        def unique(what: str, values: list[str]) -> None:
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"{what} must be unique: {', '.join(dupes)} repeated")

        unique("shift names", [s.name for s in self.shifts])
        unique("shift starts", [s.start.isoformat() for s in self.shifts])
        unique("person ids", [p.id for p in self.people])
        unique("badges", [p.badge for p in self.people])
        unique("checkpoint ids", [c.id for c in self.checkpoints])
        unique("checkpoint tags", [c.tag for c in self.checkpoints])
        unique("route ids", [r.id for r in self.routes])
        unique("obligation ids", [o.id for o in self.obligations])
        unique("staffing ids", [r.id for r in self.staffing])
        unique("levels", list(self.levels))
        shifts, routes = {s.name for s in self.shifts}, {r.id for r in self.routes}
        points = {c.id for c in self.checkpoints}
        for point in self.checkpoints:
            if point.level not in self.levels:
                raise ValueError(f"checkpoint {point.id}: unknown level {point.level!r}")
            if point.key is None and not self.allow_plain_tags:
                raise ValueError(f"checkpoint {point.id}: no SUN key and allow_plain_tags "
                                 "is false")
        for route in self.routes:
            for point_id in route.checkpoints:
                if point_id not in points:
                    raise ValueError(f"route {route.id}: unknown checkpoint {point_id!r}")
        for person in self.people:
            if person.shift is not None and person.shift not in shifts:
                raise ValueError(f"person {person.id}: unknown shift {person.shift!r}")
            if person.route is not None and person.route not in routes:
                raise ValueError(f"person {person.id}: unknown route {person.route!r}")
        for rule in self.obligations:
            if rule.route == "own":
                if not rule.each:
                    raise ValueError(f"obligation {rule.id}: route = own needs each = true")
                for person in self.people:
                    if person.role in rule.roles and person.route is None:
                        raise ValueError(f"obligation {rule.id}: {person.id} has no own route")
            elif rule.route not in routes:
                raise ValueError(f"obligation {rule.id}: unknown route {rule.route!r}")
            if rule.per == "shift":
                for person in self.people:
                    if person.role in rule.roles and person.shift is None:
                        raise ValueError(f"obligation {rule.id}: {person.id} works no shift")
        return self

    # --- lookups ---------------------------------------------------------------------------

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def by_tag(self) -> dict[str, Checkpoint]:
        return {c.tag: c for c in self.checkpoints}

    @cached_property
    def by_badge(self) -> dict[str, PatrolPerson]:
        return {p.badge: p for p in self.people}

    @cached_property
    def checkpoint(self) -> dict[str, Checkpoint]:
        return {c.id: c for c in self.checkpoints}

    @cached_property
    def person(self) -> dict[str, PatrolPerson]:
        return {p.id: p for p in self.people}

    @cached_property
    def route(self) -> dict[str, Route]:
        return {r.id: r for r in self.routes}

    def day_kind(self, day: date) -> DayKind:
        """``workday``, ``weekend`` or ``holiday``: what the calendar makes of a site-local
        date (a make-up workday on a Saturday is a workday)."""
        return self.calendar.day_kind(day)

    def works_on(self, person: PatrolPerson, day: date) -> bool:
        """Is ``person`` rostered on ``day`` (people with ``days`` work those kinds only)."""
        return person.days is None or self.day_kind(day) in person.days

    def route_of(self, rule: Obligation, person: PatrolPerson | None) -> Route:
        if rule.route == "own":
            if person is None or person.route is None:
                raise ValueError(f"obligation {rule.id}: own route of nobody")
            return self.route[person.route]
        return self.route[rule.route]

    def distance_m(self, a: str, b: str) -> float:
        """Walking metres between two checkpoints: straight line plus the level change."""
        one, two = self.checkpoint[a], self.checkpoint[b]
        flat = math.dist(one.position, two.position)
        climb = abs(self.levels.index(one.level) - self.levels.index(two.level))
        return flat + climb * self.level_change_m

    def next_up(self, role: Role, shift: str | None = None) -> PatrolPerson | None:
        """Who is told when someone of ``role`` is overdue: the next rung of the roster,
        on the same shift if it has one there."""
        rung = ROLES.index("guard" if role == "cleaner" else role)
        for above in ROLES[rung + 1:]:
            people = [p for p in self.people if p.role == above]
            same = [p for p in people if shift is not None and p.shift == shift]
            if same or people:
                return (same or people)[0]
        return None


def load_patrol_config(path: Path) -> PatrolConfig:
    """Read and validate a patrol file; :class:`~parkguard.errors.ConfigError` names the
    field and the reason."""
    return load_config(PatrolConfig, path)
