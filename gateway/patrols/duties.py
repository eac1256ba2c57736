"""The day's duties for the daily report: the cleaning schedule's compliance (taps and ticks,
gateway.patrols.cleaning) and the hours the roster is short of a staffing rule
(parkguard.core.patrol.staffing), for one site-local day."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import sqlite_utils

from gateway.patrols.cleaning import CleaningTask, cleaning_compliance, read_cleaning
from parkguard.core.patrol import DayKind, PatrolConfig, StaffingGap, staffing_gaps

__all__ = ["DutyDay", "duties_of_day"]

_KIND_WORDS = {"workday": "工作日 workday", "weekend": "周末 weekend",
               "holiday": "节假日 holiday"}


@dataclass(frozen=True, slots=True)
class DutyDay:
    """What the daily report says of the day's duties."""

    day_kind: DayKind
    cleaning: tuple[CleaningTask, ...]
    cleaning_done: int
    cleaning_due: int
    short_rosters: tuple[StaffingGap, ...]

    @property
    def kind_words(self) -> str:
        return _KIND_WORDS[self.day_kind]

    @property
    def cleaning_pct(self) -> int | None:
        """Cleaning compliance, done of due, in whole per cent (none: nothing due yet)."""
        if not self.cleaning_due:
            return None
        return round(100 * self.cleaning_done / self.cleaning_due)

    def csv_rows(self) -> Sequence[tuple[str, str, object]]:
        """(section, item, value) lines for the summary CSV."""
        rows: list[tuple[str, str, object]] = [
            ("值勤 duties", "日类型 kind of day", self.kind_words),
            ("保洁 cleaning", "完成 done", self.cleaning_done),
            ("保洁 cleaning", "应完成 due", self.cleaning_due)]
        rows += [("保洁 cleaning", f"{t.title} ({t.window_label})", t.status_label)
                 for t in self.cleaning]
        rows += [("排班不足 short roster", gap.hours, gap.line())
                 for gap in self.short_rosters]
        return rows


def duties_of_day(db: sqlite_utils.Database, regime: PatrolConfig, day: date, *,
                  now: datetime) -> DutyDay:
    """Cleaning tasks whose window holds ``day`` judged as of ``now`` (a weekly task shows
    on each of its days), and the day's short-roster hours. Read-only."""
    tasks = read_cleaning(db, regime, day, day, now=now)
    done, due = cleaning_compliance(tasks)
    return DutyDay(day_kind=regime.day_kind(day), cleaning=tuple(tasks), cleaning_done=done,
                   cleaning_due=due, short_rosters=tuple(staffing_gaps(regime, day, day)))
