"""Is the roster big enough: people on duty per kind of day and hour, against the staffing
rules of the regime. Pure.

The mall's plan asks for more people on public holidays and peak days (1–2 roving patrols
every holiday, 5–10 more staff at peaks: docs/patrols.md). A rule says how many people of
some roles must be rostered in some hours of the days it applies on; the roster is the
regime's people, each on his shift (it lasts until the next one starts), on the kinds of
day he works (``days``). People without a shift (day staff: captain, manager, cleaners)
keep no fixed hours and are not counted.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, time, timedelta

from parkguard.core.patrol.model import DayKind, PatrolConfig, PatrolPerson, StaffingRule

__all__ = ["StaffingGap", "on_duty", "staffing_gaps"]


@dataclass(frozen=True, slots=True)
class StaffingGap:
    """Hours of one day when fewer people are rostered than a rule asks for."""

    rule: str
    title: str
    day: date
    day_kind: DayKind
    from_hour: int
    to_hour: int
    required: int
    rostered: int
    people: tuple[str, ...]

    @property
    def short(self) -> int:
        return self.required - self.rostered

    @property
    def hours(self) -> str:
        """``08:00–16:00``, site-local."""
        return f"{self.from_hour:02d}:00–{self.to_hour:02d}:00"

    def line(self) -> str:
        """One line for an alert or the daily report, Chinese with English beside."""
        return (f"{self.day.isoformat()} ({self.day_kind}) {self.hours}: 排班 {self.rostered}"
                f" 人, 要求 {self.required} 人, 缺 {self.short} 人 / rostered {self.rostered}, "
                f"needed {self.required}, short {self.short} ({self.rule})")


def _shift_at(config: PatrolConfig, day: date, at: time) -> tuple[str, date]:
    """The shift on duty at ``at`` on ``day`` and the day it started (before the first
    start of a day it is the previous day's last shift)."""
    ordered = sorted(config.shifts, key=lambda s: s.start)
    started = [s for s in ordered if s.start <= at]
    if started:
        return started[-1].name, day
    return ordered[-1].name, day - timedelta(days=1)


def on_duty(config: PatrolConfig, day: date, at: time,
            roles: Sequence[str]) -> list[PatrolPerson]:
    """People of ``roles`` rostered at ``at`` (site-local) on ``day``."""
    shift, started = _shift_at(config, day, at)
    return [p for p in config.people if p.role in roles and p.shift == shift
            and config.works_on(p, started)]


def _moments(config: PatrolConfig, hour: int) -> list[time]:
    """The start of the hour and every shift start inside it: the roster can change there."""
    return sorted({time(hour), *(s.start for s in config.shifts if s.start.hour == hour)})


def _rule_gaps(config: PatrolConfig, rule: StaffingRule, day: date) -> Iterator[StaffingGap]:
    kind = config.day_kind(day)
    if not rule.applies(kind, config.calendar.periods_on(day)):
        return
    hours: list[tuple[int, int, tuple[str, ...]]] = []
    for hour in range(rule.from_hour, rule.to_hour):
        counts = [on_duty(config, day, moment, rule.roles) for moment in _moments(config, hour)]
        fewest = min(counts, key=len)
        if len(fewest) < rule.min_on_duty:
            hours.append((hour, len(fewest), tuple(p.id for p in fewest)))
    # Consecutive hours with the same people make one gap.
    for _key, run in itertools.groupby(
            enumerate(hours), key=lambda item: (item[1][0] - item[0], item[1][2])):
        block = [entry for _index, entry in run]
        yield StaffingGap(
            rule=rule.id, title=rule.title, day=day, day_kind=kind, from_hour=block[0][0],
            to_hour=block[-1][0] + 1, required=rule.min_on_duty, rostered=block[0][1],
            people=block[0][2])


def staffing_gaps(config: PatrolConfig, first: date, last: date) -> list[StaffingGap]:
    """Every hour of the days ``first``..``last`` when a staffing rule that applies that day
    finds too few people rostered, as runs of hours, by day and rule."""
    gaps: list[StaffingGap] = []
    day = first
    while day <= last:
        for rule in config.staffing:
            gaps.extend(_rule_gaps(config, rule, day))
        day += timedelta(days=1)
    return gaps

