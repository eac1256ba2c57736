"""The site's holiday calendar: statutory holidays, make-up workdays (调休) and named periods.

A Saturday can be a workday in China, so weekday arithmetic alone prices holidays wrongly:
the calendar is data that travels with the tariff.

>>> from datetime import date
>>> calendar = HolidayCalendar(
...     holidays=[DateSpan(name="national_day", start=date(2026, 10, 1), end=date(2026, 10, 7))],
...     workdays=[date(2026, 10, 10)])
>>> calendar.day_kind(date(2026, 10, 2)), calendar.day_kind(date(2026, 10, 10))
('holiday', 'workday')
>>> sorted(calendar.periods_on(date(2026, 10, 2)))
['national_day']
"""

from __future__ import annotations

from datetime import date
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

DayKind = Literal["holiday", "workday", "weekend"]


class DateSpan(BaseModel):
    """A named run of site-local dates, both ends included (a holiday or a promotion period)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=64, description="period name, e.g. spring_festival")
    start: date = Field(description="first site-local date of the period")
    end: date = Field(description="last site-local date of the period (included)")

    @model_validator(mode="after")
    def _end_not_before_start(self) -> Self:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start} in period {self.name!r}")
        return self

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.start <= day <= self.end


class HolidayCalendar(BaseModel):
    """What kind of day a site-local date is, and which named periods it belongs to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    holidays: list[DateSpan] = Field(default_factory=list,
                                     description="statutory holidays (PH), each a named span")
    workdays: list[date] = Field(default_factory=list,
                                 description="make-up workdays (调休): weekend dates worked")
    periods: list[DateSpan] = Field(default_factory=list,
                                    description="other named periods (promotions, pre-festival)")

    @model_validator(mode="after")
    def _workday_not_a_holiday(self) -> Self:
        for day in self.workdays:
            for span in self.holidays:
                if day in span:
                    raise ValueError(f"workdays: {day} is also inside holiday {span.name!r}")
        return self

    def day_kind(self, day: date) -> DayKind:
        """``holiday`` beats a make-up ``workday``, which beats the ``weekend`` of the week."""
        if any(day in span for span in self.holidays):
            return "holiday"
        if day in self.workdays:
            return "workday"
        return "weekend" if day.weekday() >= 5 else "workday"

    def periods_on(self, day: date) -> frozenset[str]:
        """Names of every holiday and named period that contains ``day``."""
        return frozenset(span.name for span in (*self.holidays, *self.periods) if day in span)


EMPTY_CALENDAR = HolidayCalendar()
