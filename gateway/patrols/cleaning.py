"""Cleaning duties: the tasks of the schedule (obligations of ``kind = "cleaning"``), done
by patrol taps at the cleaning points or ticked on the cleaner's page, and their compliance.

A round of a cleaning route is walked like any inspection: a tap at each point with the
checklist answered (``floor_clean = ok``). A cleaner without a reader ticks the task on
``/cleaning`` instead; a tick is one round of the task's current window, kept in
``cleaning_ticks`` with its answers and audited (``cleaning.tick``). The compliance of a
task counts both; the page, the daily report and the overdue check all read it from here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlite_utils

from gateway.patrols.desk import engine_taps, read_taps
from gateway.patrols.reports import status_words
from gateway.records.audit import AuditLog
from parkguard.clock import Clock, utc_iso
from parkguard.core.patrol import (
    ObligationResult,
    ObligationStatus,
    PatrolConfig,
    PatrolPerson,
    Tap,
    evaluate,
)
from parkguard.core.patrol.engine import local_midnight

__all__ = [
    "CleaningDesk",
    "CleaningError",
    "CleaningTask",
    "Tick",
    "cleaning_compliance",
    "cleaning_tasks",
    "read_cleaning",
    "read_ticks",
]

_MAX_NOTE = 200
_MARGIN = timedelta(days=32)  # weeks and months reach beyond the days asked for


class CleaningError(ValueError):
    """A tick the page refuses: says why, in Chinese and English."""


@dataclass(frozen=True, slots=True)
class Tick:
    """A cleaning round ticked on the page."""

    obligation: str
    window_start: datetime
    person: str
    ticked_at: datetime
    answers: Mapping[str, str]
    note: str


@dataclass(frozen=True, slots=True)
class CleaningTask:
    """One cleaning obligation in one window, for one subject, with taps and ticks counted."""

    obligation: str
    title: str
    route: str
    place: str
    checklist: tuple[str, ...]
    subject: str
    window_label: str
    window_start: datetime
    window_end: datetime
    deadline: datetime
    status: ObligationStatus
    required: int
    tapped: int
    ticked: int
    by: tuple[str, ...]
    faults: tuple[str, ...]

    @property
    def status_label(self) -> str:
        """``达标 met``: the status in Chinese with English beside."""
        return status_words(self.status)

    @property
    def done(self) -> bool:
        return self.status in ("met", "late")

    @property
    def due(self) -> bool:
        """Judged already: done, or its deadline passed."""
        return self.status in ("met", "late", "overdue", "missed")


def _is_cleaning(config: PatrolConfig, obligation: str) -> bool:
    return any(o.id == obligation and o.kind == "cleaning" for o in config.obligations)


def _for_person(config: PatrolConfig, result: ObligationResult,
                person: PatrolPerson | None) -> bool:
    if person is None:
        return True
    rule = next(o for o in config.obligations if o.id == result.obligation)
    return person.role in rule.roles and (not rule.each or result.subject == person.id)


def _merge(config: PatrolConfig, result: ObligationResult, ticks: Sequence[Tick],
           tappers_of: Mapping[str, str]) -> CleaningTask:
    rule = next(o for o in config.obligations if o.id == result.obligation)
    route = config.route_of(rule, config.person.get(result.subject))
    mine = [t for t in ticks if t.obligation == result.obligation
            and t.window_start == result.window.start
            and (not rule.each or t.person == result.subject)]
    counted = result.counted + len(mine)
    status = result.status
    if result.counted < result.required <= counted:
        late = result.status == "late" or any(t.ticked_at > result.deadline for t in mine)
        status = "late" if late else "met"
    tappers = {tappers_of[key] for r in result.rounds if r.counts for key in r.taps
               if key in tappers_of}
    faults = [f"{c}: {item} = {value}" for r in result.rounds for c, item, value in r.faults]
    faults += [f"{item} = {value}" for t in mine for item, value in sorted(t.answers.items())
               if value.strip().lower() != "ok"]
    return CleaningTask(
        obligation=rule.id, title=rule.title, route=route.id, place=route.name,
        checklist=route.checklist, subject=result.subject, window_label=result.window.label,
        window_start=result.window.start, window_end=result.window.end,
        deadline=result.deadline, status=status, required=result.required,
        tapped=result.counted, ticked=len(mine),
        by=tuple(sorted(tappers | {t.person for t in mine})), faults=tuple(faults))


def cleaning_tasks(config: PatrolConfig, taps: Iterable[Tap], ticks: Sequence[Tick],
                   first: date, last: date, *, now: datetime,
                   person: PatrolPerson | None = None) -> list[CleaningTask]:
    """The cleaning tasks whose windows overlap the site-local days ``first``..``last``
    (a weekly task shows on every day of its week), for ``person`` (his role's tasks: his
    own and his team's) or everybody, judged as of ``now`` from taps and ticks. Pure."""
    wanted = [o.id for o in config.obligations if o.kind == "cleaning"]
    if not wanted:
        return []
    taps = list(taps)
    tappers_of = {t.key: t.person for t in taps}
    start, end = local_midnight(config, first), local_midnight(config, last + timedelta(1))
    results = evaluate(config, taps, start, end, now=now, only=wanted)
    tasks = [_merge(config, r, ticks, tappers_of) for r in results
             if _for_person(config, r, person)]
    return sorted(tasks, key=lambda t: (t.window_end - t.window_start, t.deadline,
                                        t.obligation, t.subject))


def cleaning_compliance(tasks: Sequence[CleaningTask]) -> tuple[int, int]:
    """(done, due): tasks done (met or late) of those judged (done, or deadline passed)."""
    due = [t for t in tasks if t.due]
    return sum(1 for t in due if t.done), len(due)


def read_ticks(db: sqlite_utils.Database, start: datetime, end: datetime) -> list[Tick]:
    """Ticks of windows starting in ``[start, end)``; works on a read-only connection."""
    return [Tick(obligation=row["obligation"],
                 window_start=datetime.fromisoformat(row["window_start"]),
                 person=row["person"], ticked_at=datetime.fromisoformat(row["ticked_at"]),
                 answers=json.loads(row["answers"]), note=row["note"])
            for row in db.query(
                "SELECT * FROM cleaning_ticks WHERE window_start >= ? AND window_start < ? "
                "ORDER BY id", [utc_iso(start), utc_iso(end)])]


def read_cleaning(db: sqlite_utils.Database, config: PatrolConfig, first: date, last: date,
                  *, now: datetime, person: PatrolPerson | None = None) -> list[CleaningTask]:
    """:func:`cleaning_tasks` of the stored taps and ticks (read-only connection will do)."""
    start, end = local_midnight(config, first), local_midnight(config, last + timedelta(1))
    taps = engine_taps(read_taps(db, start - _MARGIN, end + _MARGIN))
    return cleaning_tasks(config, taps, read_ticks(db, start - _MARGIN, end + _MARGIN),
                          first, last, now=now, person=person)


class CleaningDesk:
    """Ticks from the cleaner's page, stored and audited on the writer's connection."""

    def __init__(self, db: sqlite_utils.Database, *, config: PatrolConfig, clock: Clock,
                 audit: AuditLog) -> None:
        self.db, self.config, self._clock, self._audit = db, config, clock, audit

    def tick(self, person_id: str, obligation: str, answers: Mapping[str, str],
             note: str = "") -> CleaningTask:
        """Tick ``obligation``'s current window done by ``person_id``; every checklist item
        must be answered (``ok`` or what is wrong). Returns the task as it now stands."""
        now = self._clock.now()
        person = self.config.person.get(person_id)
        if person is None:
            raise CleaningError(f"{person_id} 不在排班表 / is not on the patrol roster")
        if not _is_cleaning(self.config, obligation):
            raise CleaningError(f"{obligation}: 不是清洁任务 / not a cleaning task")
        today = now.astimezone(self.config.zone).date()
        current = [t for t in read_cleaning(self.db, self.config, today, today, now=now,
                                            person=person)
                   if t.obligation == obligation and t.window_start <= now < t.window_end]
        if not current:
            raise CleaningError(f"{obligation}: 今天不是 {person_id} 的任务 / not {person_id}'s "
                                "task today")
        task = current[0]
        given = {item: str(answers.get(item, "")).strip()[:_MAX_NOTE] for item in task.checklist}
        missing = [item for item, value in given.items() if not value]
        if missing:
            raise CleaningError(f"未填写 / not answered: {', '.join(missing)}")
        note = note.strip()[:_MAX_NOTE]
        with self.db.atomic():
            self.db.table("cleaning_ticks").insert({
                "obligation": obligation, "window_start": utc_iso(task.window_start),
                "window_label": task.window_label, "person": person_id,
                "ticked_at": utc_iso(now), "answers": json.dumps(given, ensure_ascii=False),
                "note": note})
            self._audit.record(actor=f"cleaner:{person_id}", action="cleaning.tick",
                               subject=f"cleaning:{obligation}:{task.window_label}",
                               reason=note or "ticked on the cleaning page",
                               after={"answers": given})
        return next(t for t in read_cleaning(self.db, self.config, today, today, now=now,
                                             person=person)
                    if t.obligation == obligation and t.window_start == task.window_start)
