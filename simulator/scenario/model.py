"""What a scenario file says: the site, its traffic, its drivers and the faults to inject.

A scenario is TOML (``docs/scenarios.md``), read with :func:`load_scenario`: every field is
bounded, unknown keys are refused, and an error names the file, the field's path (``faults.2
.minutes``) and why, through the project's :func:`~parkguard.configfile.load_config`.
"""

from __future__ import annotations

from datetime import date, time, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from parkguard.configfile import load_config

HourlyRates = Annotated[list[Annotated[float, Field(ge=0, le=2000)]],
                        Field(min_length=24, max_length=24)]
"""Cars arriving in each hour 00-23 (site time), on average."""

DayKind = Literal["workday", "weekend", "holiday"]

FaultKind = Literal["gateway_kill", "broker_restart", "lane_power_cut", "lane_partition",
                    "clock_jump", "disk_full"]
#: Faults that take a lane.
LANE_FAULTS = ("lane_power_cut", "lane_partition", "disk_full")
#: Faults that last a while (``minutes``); the clock jump is a moment.
LASTING_FAULTS = ("gateway_kill", "broker_restart", "lane_power_cut", "lane_partition",
                  "disk_full")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteShape(_Strict):
    """The lanes of the simulated site (named in1.., out1..)."""

    entry_lanes: int = Field(2, ge=1, le=8)
    exit_lanes: int = Field(2, ge=1, le=8)
    timezone: str = Field("Asia/Shanghai", min_length=3, max_length=64)
    gateway: Literal["in_process", "process"] = "in_process"
    """``process``: the gateway runs as a process of its own and ``gateway_kill`` SIGKILLs
    it; drivers then pay by 付款码 at the lane (no pay page, cash desk or declined codes:
    those are calls into an in-process gateway). ``in_process``: every way of paying, and
    ``gateway_kill`` drops its connection without a goodbye and abandons it."""
    reader: Literal["ground_truth", "tflite"] = "ground_truth"
    """``ground_truth``: each lane is handed the plate; ``tflite``: each frame is rendered
    and read by the lane's TFLite reader, so misreads and fuzzy matching are part of the
    day (a car whose exit read matches nobody inside is refused and stays, as at a real
    site until a guard comes; the invariants then count cars, not plates)."""

    @property
    def entries(self) -> tuple[str, ...]:
        return tuple(f"in{i + 1}" for i in range(self.entry_lanes))

    @property
    def exits(self) -> tuple[str, ...]:
        return tuple(f"out{i + 1}" for i in range(self.exit_lanes))


class Traffic(_Strict):
    """Arrivals per hour by kind of day, and how long cars stay."""

    workday: HourlyRates
    weekend: HourlyRates | None = None
    """Saturdays and Sundays; the workday profile when left out."""
    holiday: HourlyRates | None = None
    """The dates in ``holidays``; the weekend profile when left out."""
    holidays: list[date] = Field(default_factory=list, max_length=366)
    stay_median_minutes: float = Field(90, ge=5, le=24 * 60)
    max_cars: int = Field(100_000, ge=1, le=200_000)
    """A cap on the cars planned, whatever the rates say."""

    def rates(self, kind: DayKind) -> list[float]:
        if kind == "holiday":
            return self.holiday or self.weekend or self.workday
        if kind == "weekend":
            return self.weekend or self.workday
        return self.workday


class Drivers(_Strict):
    """The mix of what drivers do, as weights (they need not add up to 1)."""

    pay_at_exit: float = Field(1.0, ge=0, le=1000)
    """Pay what is due at the exit lane: QR, 付款码, cash, or a declined code (a debt)."""
    prepay: float = Field(0.0, ge=0, le=1000)
    """Pay on the pay page before walking back to the car; out without stopping."""
    press_help: float = Field(0.0, ge=0, le=1000)
    """Press the help button at the exit, then pay there."""
    back_out: float = Field(0.0, ge=0, le=1000)
    """Drive up to an entry lane, see the barrier rise and reverse away: never enters."""
    tailgate: float = Field(0.0, ge=0, le=1000)
    """Drive in and out bumper to bumper with a second vehicle on one opening."""
    no_plate: float = Field(0.0, ge=0, le=1000)
    """A car without a readable plate: in by a phone number typed at the entry's kiosk, out
    by the same number confirmed with its last four digits, paying by 付款码 at the lane."""

    @model_validator(mode="after")
    def _some(self) -> Drivers:
        if sum(self.weights().values()) <= 0:
            raise ValueError("at least one driver behaviour needs a weight above 0")
        return self

    def weights(self) -> dict[str, float]:
        return {"pay_at_exit": self.pay_at_exit, "prepay": self.prepay,
                "press_help": self.press_help, "back_out": self.back_out,
                "tailgate": self.tailgate, "no_plate": self.no_plate}


class Fault(_Strict):
    """One fault injected at a moment of the scenario."""

    kind: FaultKind
    day: int = Field(1, ge=1, le=62)
    """Which day of the scenario (1 = the first)."""
    at: time
    """Site-local time of day it starts."""
    minutes: float = Field(10, gt=0, le=24 * 60)
    """How long it lasts (gateway down, broker down, lane dark or cut off), or for
    ``clock_jump`` how far the clock jumps forward."""
    lane: str | None = Field(None, pattern=r"^(in|out)[1-8]$")
    """The lane of a ``lane_power_cut``, ``lane_partition`` or ``disk_full``."""

    @model_validator(mode="after")
    def _lane_when_needed(self) -> Fault:
        if self.kind in LANE_FAULTS and self.lane is None:
            raise ValueError(f"a {self.kind} needs `lane` (e.g. \"out1\")")
        if self.kind not in LANE_FAULTS and self.lane is not None:
            raise ValueError(f"a {self.kind} takes no `lane`")
        return self

    @property
    def duration(self) -> timedelta:
        return timedelta(minutes=self.minutes)


PatrolKind = Literal["on_time", "late", "too_fast", "cloned_tag"]


class PatrolRound(_Strict):
    """A guard walks his own route (the regime of ``docs/examples/patrols.toml``)."""

    kind: PatrolKind = "on_time"
    """``on_time``: unhurried and within the route's limit; ``late``: past the limit;
    ``too_fast``: faster than anyone walks; ``cloned_tag``: one checkpoint's tag answers
    with a SUN message not made with its key."""
    day: int = Field(1, ge=1, le=62)
    at: time
    person: str = Field("wang", pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    """Who walks (a person of the regime with a route of his own)."""


SensorKind = Literal["fire", "flood", "dead_node"]


class SensorEvent(_Strict):
    """Something a sensor node reports, from ``at`` for ``minutes``."""

    kind: SensorKind
    """``fire``: the fire panel's alarm contact (every barrier up, cars wait, a captain
    resets it once the panel is normal); ``flood``: the water at ``water_mm`` then back to
    0; ``dead_node``: ``node`` goes silent (its Last Will) and comes back."""
    day: int = Field(1, ge=1, le=62)
    at: time
    minutes: float = Field(10, gt=0, le=24 * 60)
    water_mm: int = Field(150, ge=1, le=2000)
    node: Literal["fire1", "flood1"] = "flood1"
    ack_after_minutes: float = Field(2, ge=0, le=24 * 60)
    """How long the guard on duty takes to acknowledge the alerts it raises."""

    @property
    def duration(self) -> timedelta:
        return timedelta(minutes=self.minutes)


StaffKind = Literal["drill", "accident", "handover"]


class StaffEvent(_Strict):
    """Something the staff do at the gateway's desks, from ``at`` for ``minutes``
    (simulator/scenario/staff.py)."""

    kind: StaffKind
    """``drill``: a supervisor starts an unscheduled fire drill and ends it after
    ``minutes`` (the guard acknowledges its alerts, so the drill report has acks);
    ``accident``: a guard opens an accident incident on a car inside and holds its plate at
    the exit, the car's driver tries to leave at once and is refused, the hold is lifted
    with a reason after ``minutes`` and the incident closed; ``handover``: the outgoing
    guard hands over (keys, cash, the open items) and the incoming guard accepts after
    ``minutes``."""
    day: int = Field(1, ge=1, le=62)
    at: time
    minutes: float = Field(10, gt=0, le=12 * 60)

    @property
    def duration(self) -> timedelta:
        return timedelta(minutes=self.minutes)


class Targets(_Strict):
    """What the report holds the run to beyond exactness."""

    max_dead_letters: int = Field(0, ge=0, le=1_000_000)
    alert_ack_minutes: float = Field(5, gt=0, le=24 * 60)
    """Every alert acknowledged within this many minutes of being raised."""


class Scenario(_Strict):
    """A whole scenario file."""

    name: str = Field(min_length=1, max_length=80)
    description: str = Field("", max_length=2000)
    seed: int = Field(7, ge=0, le=2**32)
    start: date
    """The site-local date of day 1."""
    days: int = Field(1, ge=1, le=62)
    site: SiteShape = Field(default_factory=lambda: SiteShape.model_validate({}))
    traffic: Traffic
    drivers: Drivers = Field(default_factory=lambda: Drivers.model_validate({}))
    faults: list[Fault] = Field(default_factory=list, max_length=200)
    patrol: list[PatrolRound] = Field(default_factory=list, max_length=2000)
    sensors: list[SensorEvent] = Field(default_factory=list, max_length=500)
    staff: list[StaffEvent] = Field(default_factory=list, max_length=500)
    targets: Targets = Field(default_factory=lambda: Targets.model_validate({}))

    @field_validator("start")
    @classmethod
    def _sane_year(cls, value: date) -> date:
        if not 2000 <= value.year <= 2100:
            raise ValueError("start must be a date between 2000 and 2100")
        return value

    @model_validator(mode="after")
    def _faults_fit(self) -> Scenario:
        lanes = set(self.site.entries) | set(self.site.exits)
        for index, fault in enumerate(self.faults):
            if fault.day > self.days:
                raise ValueError(f"faults.{index}: day {fault.day} is after the last day "
                                 f"({self.days})")
            if fault.lane is not None and fault.lane not in lanes:
                raise ValueError(f"faults.{index}: lane {fault.lane!r} is not one of "
                                 f"{', '.join(sorted(lanes))}")
            if fault.kind == "lane_power_cut" and fault.lane is not None:
                siblings = self.site.entries if fault.lane.startswith("in") else self.site.exits
                if len(siblings) < 2:
                    raise ValueError(f"faults.{index}: with {fault.lane} dark the cars need "
                                     "another lane of its kind; the site has only one")
        for index, event in enumerate(self.sensors):
            if event.day > self.days:
                raise ValueError(f"sensors.{index}: day {event.day} is after the last day "
                                 f"({self.days})")
        for index, act in enumerate(self.staff):
            if act.day > self.days:
                raise ValueError(f"staff.{index}: day {act.day} is after the last day "
                                 f"({self.days})")
        if self.staff and self.site.gateway != "in_process":
            raise ValueError("staff events need the gateway in process (they are calls "
                             "into its desks)")
        if self.sensors and self.site.gateway != "in_process":
            raise ValueError("sensors need the gateway in process (the guard acknowledges "
                             "alerts and the captain resets a fire at its desk)")
        for index, walk in enumerate(self.patrol):
            if walk.day > self.days:
                raise ValueError(f"patrol.{index}: day {walk.day} is after the last day "
                                 f"({self.days})")
        self._no_overlap()
        return self

    def _no_overlap(self) -> None:
        """Two faults of one kind on one thing may not overlap (a broker cannot stop twice)."""
        windows: dict[tuple[str, str | None], list[tuple[timedelta, timedelta, int]]] = {}
        for index, fault in enumerate(self.faults):
            if fault.kind not in LASTING_FAULTS:
                continue
            start = timedelta(days=fault.day - 1, hours=fault.at.hour,
                              minutes=fault.at.minute, seconds=fault.at.second)
            windows.setdefault((fault.kind, fault.lane), []).append(
                (start, start + fault.duration, index))
        for spans in windows.values():
            spans.sort()
            for (_, end, _), (start, _, index) in pairwise(spans):
                if start < end:
                    raise ValueError(f"faults.{index} starts before the previous "
                                     f"{self.faults[index].kind} of the same kind has ended")


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file (:class:`~parkguard.errors.ConfigError` if bad)."""
    return load_config(Scenario, path)
