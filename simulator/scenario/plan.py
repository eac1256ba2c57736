"""A scenario turned into a timeline: every car's visit and every fault, in time order.

Pure and seeded (no IO, no clock): the same scenario gives the same timeline, so a failed run
is replayed by running its file again, and the timeline is tested without a broker.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from simulator.scenario.model import (
    LASTING_FAULTS,
    DayKind,
    Fault,
    PatrolRound,
    Scenario,
    SensorEvent,
    StaffEvent,
)
from simulator.traffic import random_plate

Behaviour = Literal["pay_at_exit", "prepay", "press_help", "back_out", "tailgate",
                    "no_plate"]


@dataclass(frozen=True, slots=True)
class Visit:
    """One car: in at ``arrive`` by ``entry_lane``, out at ``leave`` by ``exit_lane``."""

    number: int
    plate: str
    arrive: datetime
    leave: datetime
    entry_lane: str
    exit_lane: str
    behaviour: Behaviour


@dataclass(frozen=True, slots=True)
class Step:
    """One thing the runner does at ``at`` (UTC): a car at a lane, or a fault starting or
    ending. ``order`` breaks ties: faults end, then start, before cars move."""

    at: datetime
    order: int
    what: Literal["enter", "leave", "fault_start", "fault_end", "patrol", "sensor_start",
                  "sensor_end", "staff_start", "staff_end"]
    visit: Visit | None = None
    fault: Fault | None = None
    fault_index: int = -1
    patrol: PatrolRound | None = None
    sensor: SensorEvent | None = None
    staff: StaffEvent | None = None


@dataclass(frozen=True, slots=True)
class Timeline:
    start: datetime
    end: datetime
    visits: tuple[Visit, ...]
    steps: tuple[Step, ...]


def day_kind(day: date, holidays: set[date]) -> DayKind:
    if day in holidays:
        return "holiday"
    return "weekend" if day.weekday() >= 5 else "workday"


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method for small means, a rounded normal for large ones."""
    if mean <= 0:
        return 0
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def _behaviour(rng: random.Random, weights: dict[str, float]) -> Behaviour:
    names = [name for name, weight in weights.items() if weight > 0]
    chosen = rng.choices(names, weights=[weights[n] for n in names])[0]
    return chosen  # type: ignore[return-value]  # one of the Behaviour names


def plan(scenario: Scenario) -> Timeline:
    """Every visit and fault of ``scenario``, in the order they happen."""
    rng = random.Random(scenario.seed)
    zone = ZoneInfo(scenario.site.timezone)
    first = datetime.combine(scenario.start, time(0, 0), tzinfo=zone)
    end = datetime.combine(scenario.start + timedelta(days=scenario.days), time(0, 0),
                           tzinfo=zone) - timedelta(minutes=5)
    holidays = set(scenario.traffic.holidays)
    weights = scenario.drivers.weights()
    entries, exits = scenario.site.entries, scenario.site.exits
    median = scenario.traffic.stay_median_minutes
    plates: set[str] = set()
    visits: list[Visit] = []
    for offset in range(scenario.days):
        day = scenario.start + timedelta(days=offset)
        rates = scenario.traffic.rates(day_kind(day, holidays))
        midnight = datetime.combine(day, time(0, 0), tzinfo=zone)
        for hour, rate in enumerate(rates):
            for _ in range(_poisson(rng, rate)):
                if len(visits) >= scenario.traffic.max_cars:
                    break
                plate = random_plate(rng)
                while plate in plates:
                    plate = random_plate(rng)
                plates.add(plate)
                arrive = midnight + timedelta(hours=hour, seconds=rng.uniform(0, 3599))
                stay = timedelta(minutes=max(3.0, rng.lognormvariate(math.log(median), 0.6)))
                leave = min(arrive + stay, end - timedelta(seconds=rng.uniform(0, 240)))
                if leave <= arrive:
                    continue
                visits.append(Visit(0, plate, arrive.astimezone(UTC), leave.astimezone(UTC),
                                    rng.choice(entries), rng.choice(exits),
                                    _behaviour(rng, weights)))
    visits.sort(key=lambda v: v.arrive)
    visits = [Visit(i, v.plate, v.arrive, v.leave, v.entry_lane, v.exit_lane, v.behaviour)
              for i, v in enumerate(visits)]
    steps: list[Step] = []
    for visit in visits:
        steps.append(Step(visit.arrive, 2, "enter", visit=visit))
        if visit.behaviour != "back_out":  # it never came in
            steps.append(Step(visit.leave, 2, "leave", visit=visit))
    for index, fault in enumerate(scenario.faults):
        day = scenario.start + timedelta(days=fault.day - 1)
        begins = datetime.combine(day, fault.at, tzinfo=zone).astimezone(UTC)
        steps.append(Step(begins, 1, "fault_start", fault=fault, fault_index=index))
        if fault.kind in LASTING_FAULTS:
            steps.append(Step(begins + fault.duration, 0, "fault_end", fault=fault,
                              fault_index=index))
    for index, walk in enumerate(scenario.patrol):
        day = scenario.start + timedelta(days=walk.day - 1)
        begins = datetime.combine(day, walk.at, tzinfo=zone).astimezone(UTC)
        steps.append(Step(begins, 1, "patrol", patrol=walk, fault_index=1000 + index))
    for index, event in enumerate(scenario.sensors):
        day = scenario.start + timedelta(days=event.day - 1)
        begins = datetime.combine(day, event.at, tzinfo=zone).astimezone(UTC)
        steps.append(Step(begins, 1, "sensor_start", sensor=event, fault_index=2000 + index))
        steps.append(Step(begins + event.duration, 0, "sensor_end", sensor=event,
                          fault_index=2000 + index))
    for index, act in enumerate(scenario.staff):
        day = scenario.start + timedelta(days=act.day - 1)
        begins = datetime.combine(day, act.at, tzinfo=zone).astimezone(UTC)
        steps.append(Step(begins, 1, "staff_start", staff=act, fault_index=3000 + index))
        steps.append(Step(begins + act.duration, 0, "staff_end", staff=act,
                          fault_index=3000 + index))
    steps.sort(key=lambda s: (s.at, s.order, s.visit.number if s.visit else s.fault_index))
    return Timeline(first.astimezone(UTC), end.astimezone(UTC), tuple(visits), tuple(steps))
