"""The patrol page and ``parkguard patrol report``: one summary of a day's (or a range of
days') rounds by person and route, with compliance, missed and late checkpoints, rounds
walked too fast and cloned tags (docs/patrols.md).

:func:`patrol_summary` is pure: stored taps in, figures out (judged by the compliance engine,
:mod:`parkguard.core.patrol`); the dashboard's page, its JSON API and the CLI all show what it
returns, so they cannot disagree. :func:`read_summary` reads the taps it needs from any
connection (a read-only one will do). Times are site-local.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import sqlite_utils

from gateway.patrols.desk import StoredTap, engine_taps, read_taps
from parkguard.core.patrol import ObligationResult, PatrolConfig, RoundResult, Route, evaluate
from parkguard.core.patrol.engine import local_midnight

__all__ = [
    "ROLE_WORDS",
    "TAG_FLAG_REASONS",
    "GuardLine",
    "PatrolSummary",
    "RoundLine",
    "TagFlag",
    "patrol_summary",
    "read_summary",
    "summary_span",
]


#: Refusals that mean a tag was copied or a tap harvested: flagged on the round they belong to.
TAG_FLAG_REASONS: Final = ("cloned", "uid_mismatch", "replayed", "no_sun")
#: Taps read around the days shown, so the week and month windows that reach beyond them
#: are judged on all their taps (as :meth:`PatrolDesk.evaluate` does).
TAP_MARGIN: Final = timedelta(days=32)
ROLE_WORDS: Final = {"guard": "保安 guard", "squad_leader": "班长 squad leader",
                     "captain": "队长 captain", "manager": "经理 manager",
                     "cleaner": "保洁员 cleaner"}
_NOT_WALKED: Final = "not_walked"


@dataclass(frozen=True, slots=True)
class TagFlag:
    """A refused tap that says a tag was copied or a tap replayed."""

    at: datetime
    checkpoint: str
    place: str
    reason: str
    person: str
    reader: str
    seq: int


@dataclass(frozen=True, slots=True)
class RoundLine:
    """One round walked (or an obligation's round not walked at all), as the page and the
    CLI show it: who, which route, when (site-local), its status and what went wrong."""

    subject: str
    name: str
    role: str
    route: str
    route_name: str
    obligation: str
    obligation_title: str
    window: str
    obligation_status: str
    status: str
    start: datetime | None
    end: datetime | None
    minutes: float | None
    visited: int
    needed: int
    missed: tuple[str, ...]
    late: bool
    too_fast: tuple[str, ...]
    tag_flags: tuple[TagFlag, ...]

    @property
    def compliance_pct(self) -> int:
        """Checkpoints of the round tapped, of those the route needs."""
        return round(100 * min(self.visited, self.needed) / self.needed) if self.needed else 0

    @property
    def flagged(self) -> bool:
        return bool(self.missed or self.late or self.too_fast or self.tag_flags
                    or self.status != "done")


@dataclass(frozen=True, slots=True)
class GuardLine:
    """A person's (or a team's) obligations whose windows lie in the days shown."""

    subject: str
    name: str
    role: str
    due: int
    met: int
    late: int
    missed: int
    pending: int
    rounds: int
    flagged_rounds: int

    @property
    def compliance_pct(self) -> int | None:
        """Obligations fulfilled (on time or late) of those already due; None: none due."""
        return None if self.due == 0 else round(100 * (self.met + self.late) / self.due)


@dataclass(frozen=True, slots=True)
class PatrolSummary:
    first: date
    last: date
    zone: str
    generated_at: datetime
    guards: tuple[GuardLine, ...]
    rounds: tuple[RoundLine, ...]
    tag_flags: tuple[TagFlag, ...]

    def as_json(self) -> dict[str, Any]:
        """Plain JSON (times site-local ISO 8601 with their offset): the CLI's ``--json``
        and the page's API say exactly this."""
        def when(moment: datetime | None) -> str | None:
            return None if moment is None else moment.isoformat()

        def flag(one: TagFlag) -> dict[str, Any]:
            return {"at": when(one.at), "checkpoint": one.checkpoint, "place": one.place,
                    "reason": one.reason, "person": one.person, "reader": one.reader,
                    "seq": one.seq}

        return {
            "first": self.first.isoformat(), "last": self.last.isoformat(), "zone": self.zone,
            "generated_at": when(self.generated_at),
            "guards": [{"subject": g.subject, "name": g.name, "role": g.role, "due": g.due,
                        "met": g.met, "late": g.late, "missed": g.missed,
                        "pending": g.pending, "rounds": g.rounds,
                        "flagged_rounds": g.flagged_rounds,
                        "compliance_pct": g.compliance_pct} for g in self.guards],
            "rounds": [{"subject": r.subject, "name": r.name, "role": r.role,
                        "route": r.route, "route_name": r.route_name,
                        "obligation": r.obligation, "window": r.window,
                        "obligation_status": r.obligation_status, "status": r.status,
                        "start": when(r.start), "end": when(r.end),
                        "minutes": None if r.minutes is None else round(r.minutes, 1),
                        "visited": r.visited, "needed": r.needed,
                        "compliance_pct": r.compliance_pct, "missed": list(r.missed),
                        "late": r.late, "too_fast": list(r.too_fast),
                        "tag_flags": [flag(f) for f in r.tag_flags]} for r in self.rounds],
            "tag_flags": [flag(f) for f in self.tag_flags],
        }


def summary_span(config: PatrolConfig, first: date, last: date) -> tuple[datetime, datetime]:
    """The UTC span whose stored taps :func:`patrol_summary` needs for these days."""
    start = local_midnight(config, first)
    end = local_midnight(config, last + timedelta(days=1))
    return start - TAP_MARGIN, end + TAP_MARGIN


def patrol_summary(config: PatrolConfig, stored: Sequence[StoredTap], first: date,
                   last: date, *, now: datetime) -> PatrolSummary:
    """The rounds of the site-local days ``first``..``last`` by person and route, judged as
    of ``now`` from ``stored`` (every tap of :func:`summary_span`, refused ones too). Pure.

    Obligations whose window lies within the days are shown whole, an obligation walked not
    at all as one ``not_walked`` line with every checkpoint missed; of longer windows (a
    week, a month) only the rounds begun in the days are shown, and they are not counted in
    a person's figures.
    """
    if last < first:
        raise ValueError(f"the last day {last} is before the first {first}")
    zone = config.zone
    start = local_midnight(config, first)
    end = local_midnight(config, last + timedelta(days=1))
    by_key = {f"{t.reader}#{t.seq}": t for t in stored}
    results = evaluate(config, engine_taps(stored), start, end, now=now)
    flags = [TagFlag(at=t.tapped_at.astimezone(zone), checkpoint=t.checkpoint or t.tag_id,
                     place=config.checkpoint[t.checkpoint].place if t.checkpoint else t.tag_id,
                     reason=t.reason or "", person=t.person or t.badge, reader=t.reader,
                     seq=t.seq)
             for t in stored if t.status == "refused" and t.reason in TAG_FLAG_REASONS
             and start <= t.tapped_at < end]
    lines: list[RoundLine] = []
    counted: dict[str, list[ObligationResult]] = {}
    for result in results:
        whole = result.window.start >= start and result.window.end <= end
        if whole:
            counted.setdefault(result.subject, []).append(result)
        rounds = [r for r in result.rounds
                  if whole or (r.start is not None and start <= r.start < end)]
        route = config.route[result.rounds[0].route] if result.rounds else _route_of(
            config, result)
        if whole and not rounds:
            lines.append(_line(config, result, route, None, (), zone))
        for one in rounds:
            people = {p for key in one.taps for k in key.split("+")
                      if (t := by_key.get(k)) is not None and (p := t.person)}
            mine = tuple(f for f in flags if f.checkpoint in route.checkpoints
                         and (f.person in people or f.person == result.subject)
                         and result.window.start <= f.at < result.window.end
                         and _nearest(f, result.rounds) is one)
            lines.append(_line(config, result, route, one, mine, zone))
    lines.sort(key=lambda r: (r.name, r.route, r.start or datetime.max.replace(tzinfo=UTC)))
    guards = tuple(_guard(config, subject, results_of, lines)
                   for subject, results_of in sorted(counted.items()))
    return PatrolSummary(first=first, last=last, zone=config.timezone,
                         generated_at=now.astimezone(zone), guards=guards, rounds=tuple(lines),
                         tag_flags=tuple(flags))


def read_summary(db: sqlite_utils.Database, config: PatrolConfig, first: date, last: date, *,
                 now: datetime) -> PatrolSummary:
    """:func:`patrol_summary` of the taps stored in ``db`` (a read-only connection will do)."""
    return patrol_summary(config, list(read_taps(db, *summary_span(config, first, last))),
                          first, last, now=now)


def _route_of(config: PatrolConfig, result: ObligationResult) -> Route:
    rule = next(o for o in config.obligations if o.id == result.obligation)
    return config.route_of(rule, config.person.get(result.subject))


def _nearest(flag: TagFlag, rounds: Sequence[RoundResult]) -> RoundResult | None:
    """The round closest in time to a refused tap (the one it was tapped during, or next to)."""
    def distance(one: RoundResult) -> float:
        if one.start is None or one.end is None:
            return float("inf")
        if one.start <= flag.at <= one.end:
            return 0.0
        return min(abs((flag.at - one.start).total_seconds()),
                   abs((flag.at - one.end).total_seconds()))

    return min(rounds, key=distance, default=None)


def _who(config: PatrolConfig, subject: str) -> tuple[str, str]:
    person = config.person.get(subject)
    if person is not None:
        return person.name, person.role
    words = [ROLE_WORDS.get(r, f"{r} {r}").split(" ", 1) for r in subject.split("+")]
    return ("+".join(w[0] for w in words) + " " + "+".join(w[-1] for w in words)), subject


def _line(config: PatrolConfig, result: ObligationResult, route: Route,
          one: RoundResult | None, tag_flags: tuple[TagFlag, ...], zone: ZoneInfo) -> RoundLine:
    name, role = _who(config, result.subject)
    fast = () if one is None else tuple(
        f"{f.from_checkpoint}→{f.to_checkpoint} {f.seconds:.0f} s < {f.needed_seconds:.0f} s"
        for f in one.fast_legs)
    return RoundLine(
        subject=result.subject, name=name, role=role, route=route.id, route_name=route.name,
        obligation=result.obligation, obligation_title=result.title,
        window=result.window.label, obligation_status=result.status,
        status=_NOT_WALKED if one is None else one.status,
        start=None if one is None or one.start is None else one.start.astimezone(zone),
        end=None if one is None or one.end is None else one.end.astimezone(zone),
        minutes=None if one is None else one.minutes,
        visited=0 if one is None else len(one.visited), needed=route.needed,
        missed=route.checkpoints if one is None else one.missed,
        late=one is not None and "late" in one.flags, too_fast=fast, tag_flags=tag_flags)


def _guard(config: PatrolConfig, subject: str, results: list[ObligationResult],
           lines: list[RoundLine]) -> GuardLine:
    name, role = _who(config, subject)
    statuses = [r.status for r in results]
    walked = [r for r in lines if r.subject == subject and r.status != _NOT_WALKED]
    return GuardLine(
        subject=subject, name=name, role=role,
        due=sum(s != "pending" for s in statuses), met=statuses.count("met"),
        late=statuses.count("late"), missed=sum(s in ("missed", "overdue") for s in statuses),
        pending=statuses.count("pending"), rounds=len(walked),
        flagged_rounds=sum(r.flagged for r in walked))
