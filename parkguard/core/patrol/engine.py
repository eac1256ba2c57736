"""Compliance: which rounds were walked, how, and which obligations they meet. Pure.

A *round* is a set of accepted taps on one route by one subject (a person, a team, or a
joint pair). :func:`evaluate_round` says what it was — ``done``, ``late``, ``missed``
(checkpoints not tapped, or checklists unanswered), ``out_of_order`` or ``impossible``
(two checkpoints tapped faster than anyone can walk between them) — from the taps alone,
sorted by a total key, so the order they arrived in never matters. Coverage only grows
with taps, so an added tap never turns a done round into a missed one.

:func:`split_rounds` cuts a subject's taps in a window into rounds greedily (a round ends
the moment its route is covered, the next begins after it); :func:`evaluate` applies every
obligation to every window and subject.
"""

from __future__ import annotations

import calendar
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Final, Literal, TypeAlias

from parkguard.core.patrol.model import (
    Obligation,
    PatrolConfig,
    PatrolPerson,
    Period,
    Route,
)

__all__ = [
    "STATUS_ORDER",
    "FastLeg",
    "ObligationResult",
    "ObligationStatus",
    "RoundResult",
    "RoundStatus",
    "Tap",
    "Window",
    "applies_on",
    "evaluate",
    "evaluate_round",
    "local_midnight",
    "split_rounds",
    "windows",
]

RoundStatus: TypeAlias = Literal["done", "late", "missed", "out_of_order", "impossible"]
#: Worst first: a round shows the worst status that applies, and lists them all in flags.
STATUS_ORDER: Final[tuple[RoundStatus, ...]] = (
    "impossible", "missed", "out_of_order", "late", "done")
ObligationStatus: TypeAlias = Literal["met", "late", "pending", "overdue", "missed"]
#: Walking times are measured from reader clocks that show whole seconds.
_CLOCK_SLACK_S: Final = 2.0


@dataclass(frozen=True, slots=True)
class Tap:
    """One accepted tap as the engine sees it (times aware UTC)."""

    key: str
    at: datetime
    checkpoint: str
    person: str
    answers: tuple[tuple[str, str], ...] = ()

    def sort_key(self) -> tuple[datetime, str, str]:
        return (self.at, self.checkpoint, self.key)


@dataclass(frozen=True, slots=True)
class FastLeg:
    """Two taps closer in time than walking allows."""

    from_checkpoint: str
    to_checkpoint: str
    seconds: float
    needed_seconds: float


@dataclass(frozen=True, slots=True)
class RoundResult:
    route: str
    subject: str
    status: RoundStatus
    flags: tuple[RoundStatus, ...]
    start: datetime | None
    end: datetime | None
    visited: tuple[str, ...]
    missed: tuple[str, ...]
    unanswered: tuple[tuple[str, str], ...]
    faults: tuple[tuple[str, str, str], ...]
    fast_legs: tuple[FastLeg, ...]
    taps: tuple[str, ...]

    @property
    def counts(self) -> bool:
        """Does it count toward an obligation: walked completely, possibly late."""
        return self.status in ("done", "late")

    @property
    def minutes(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return (self.end - self.start).total_seconds() / 60


def _merged_answers(taps: Sequence[Tap]) -> dict[str, dict[str, str]]:
    answers: dict[str, dict[str, str]] = {}
    for tap in taps:  # sorted: the last answer given for an item stands
        answers.setdefault(tap.checkpoint, {}).update(dict(tap.answers))
    return answers


def _covered(route: Route, tap: Tap, answers: Mapping[str, Mapping[str, str]]) -> bool:
    given = answers.get(tap.checkpoint, {})
    return all(item in given and given[item].strip() for item in route.checklist)


def _on_route(route: Route, taps: Iterable[Tap]) -> list[Tap]:
    """The taps that belong to a round of ``route``, in a total order. On an inspection
    route only taps that answer its checklist count: a patrol passing by is no inspection."""
    return sorted((t for t in taps if t.checkpoint in route.checkpoints
                   and (not route.checklist or t.answers)), key=Tap.sort_key)


def evaluate_round(config: PatrolConfig, route: Route, taps: Iterable[Tap], *,
                   subject: str = "", deadline: datetime | None = None) -> RoundResult:
    """What these taps make of one round of ``route`` (taps elsewhere are ignored)."""
    mine = _on_route(route, taps)
    answers = _merged_answers(mine)
    first: dict[str, datetime] = {}
    end: datetime | None = None
    for tap in mine:
        if tap.checkpoint not in first and _covered(route, tap, answers):
            first[tap.checkpoint] = tap.at
            if len(first) == route.needed:
                end = tap.at
    flags: set[RoundStatus] = set()
    missed: tuple[str, ...] = ()
    if len(first) < route.needed:
        flags.add("missed")
        missed = tuple(c for c in route.checkpoints if c not in first)
    start = mine[0].at if mine else None
    if end is None and mine:
        end = mine[-1].at
    if start is not None and end is not None and not flags:
        if end - start > timedelta(minutes=route.time_limit_min):
            flags.add("late")
        if deadline is not None and end > deadline:
            flags.add("late")
    visited = tuple(sorted(first, key=lambda c: (first[c], c)))
    if route.ordered and list(visited) != [c for c in route.checkpoints if c in first]:
        flags.add("out_of_order")
    fast: list[FastLeg] = []
    for one, two in itertools.pairwise(mine):
        if one.checkpoint == two.checkpoint:
            continue
        needed = config.distance_m(one.checkpoint, two.checkpoint) / config.walking_speed_m_s
        took = (two.at - one.at).total_seconds()
        if took + _CLOCK_SLACK_S < needed:
            fast.append(FastLeg(one.checkpoint, two.checkpoint, took, round(needed, 1)))
    if fast:
        flags.add("impossible")
    unanswered = tuple(
        (c, item) for c in route.checkpoints if any(t.checkpoint == c for t in mine)
        for item in route.checklist if not answers.get(c, {}).get(item, "").strip())
    faults = tuple((c, item, value) for c, given in sorted(answers.items())
                   for item, value in sorted(given.items())
                   if value.strip() and value.strip().lower() != "ok")
    status: RoundStatus = next((s for s in STATUS_ORDER if s in flags), "done")
    return RoundResult(
        route=route.id, subject=subject, status=status,
        flags=tuple(s for s in STATUS_ORDER if s in flags), start=start, end=end,
        visited=visited, missed=missed, unanswered=unanswered, faults=faults,
        fast_legs=tuple(fast), taps=tuple(t.key for t in mine))


def split_rounds(route: Route, taps: Iterable[Tap]) -> list[list[Tap]]:
    """Cut taps into rounds: each ends when the route is covered; the last may be partial.

    A covered round starts at the latest tap of its earliest checkpoint (stray taps before
    are left out), so an early mis-tap does not stretch a round walked later.
    """
    mine = _on_route(route, taps)
    rounds: list[list[Tap]] = []
    current: list[Tap] = []
    for tap in mine:
        current.append(tap)
        answers = _merged_answers(current)
        covered = {t.checkpoint for t in current if _covered(route, t, answers)}
        if len(covered) >= route.needed:
            if not route.checklist:
                latest: dict[str, datetime] = {}
                for t in current:
                    latest[t.checkpoint] = t.at
                starts = sorted(latest.values(), reverse=True)
                begin = starts[route.needed - 1]
                current = [t for t in current if t.at >= begin]
            rounds.append(current)
            current = []
    if current:
        rounds.append(current)
    return rounds


# --- windows -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """One occurrence of a period, site-local bounds given in UTC."""

    period: Period
    label: str
    start: datetime
    end: datetime
    shift: str | None = None


def local_midnight(config: PatrolConfig, day: date) -> datetime:
    """The start of a site-local day, in UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=config.zone).astimezone(UTC)


def windows(config: PatrolConfig, period: Period, start: datetime, end: datetime, *,
            shift: str | None = None) -> Iterator[Window]:
    """Every window of ``period`` that ends after ``start`` and begins before ``end``."""
    zone = config.zone
    first_day = start.astimezone(zone).date() - timedelta(days=1)
    last_day = end.astimezone(zone).date()
    if period == "shift":
        ordered = sorted(config.shifts, key=lambda s: s.start)
        day = first_day
        while day <= last_day:
            for index, one in enumerate(ordered):
                following = ordered[(index + 1) % len(ordered)]
                begin = datetime.combine(day, one.start, zone)
                finish_day = day if following.start > one.start else day + timedelta(days=1)
                finish = datetime.combine(finish_day, following.start, zone)
                if (shift is None or one.name == shift) and finish > start and begin < end:
                    yield Window("shift", f"{day.isoformat()} {one.name}",
                                 begin.astimezone(UTC), finish.astimezone(UTC), one.name)
            day += timedelta(days=1)
        return
    day = first_day
    if period == "week":
        day -= timedelta(days=day.weekday())
    elif period == "month":
        day = day.replace(day=1)
    while day <= last_day:
        if period == "day":
            nxt, label = day + timedelta(days=1), day.isoformat()
        elif period == "week":
            nxt = day + timedelta(days=7)
            iso = day.isocalendar()
            label = f"{iso.year}-W{iso.week:02d}"
        else:
            nxt = day + timedelta(days=calendar.monthrange(day.year, day.month)[1])
            label = day.strftime("%Y-%m")
        begin, finish = local_midnight(config, day), local_midnight(config, nxt)
        if finish > start and begin < end:
            yield Window(period, label, begin, finish)
        day = nxt


# --- obligations ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObligationResult:
    obligation: str
    title: str
    kind: str
    subject: str
    window: Window
    deadline: datetime
    status: ObligationStatus
    required: int
    counted: int
    rounds: tuple[RoundResult, ...] = field(default=())
    escalate_to: str | None = None


def _subjects(config: PatrolConfig, rule: Obligation
              ) -> list[tuple[str, list[PatrolPerson], PatrolPerson | None]]:
    people = [p for p in config.people if p.role in rule.roles]
    if rule.each:
        return [(p.id, [p], p) for p in people]
    label = "+".join(rule.roles)
    return [(label, people, None)]


def _joint_taps(rule: Obligation, taps: Sequence[Tap],
                roles: Mapping[str, str]) -> list[Tap]:
    """A joint tap where every role tapped the checkpoint within the window of the first."""
    window = timedelta(minutes=rule.joint_window_min)
    lead, others = rule.roles[0], rule.roles[1:]
    joint: list[Tap] = []
    used: set[str] = set()
    for tap in sorted(taps, key=Tap.sort_key):
        if roles.get(tap.person) != lead:
            continue
        partners: list[Tap] = []
        for role in others:
            match = next((t for t in sorted(taps, key=Tap.sort_key)
                          if roles.get(t.person) == role and t.checkpoint == tap.checkpoint
                          and t.key not in used and abs(t.at - tap.at) <= window), None)
            if match is None:
                break
            partners.append(match)
        else:
            used.update(t.key for t in partners)
            group = [tap, *partners]
            joint.append(Tap(
                key="+".join(t.key for t in group), at=max(t.at for t in group),
                checkpoint=tap.checkpoint, person="+".join(t.person for t in group),
                answers=tuple(a for t in group for a in t.answers)))
    return joint


def evaluate(config: PatrolConfig, taps: Iterable[Tap], start: datetime, end: datetime, *,
             now: datetime, only: Iterable[str] | None = None) -> list[ObligationResult]:
    """Every obligation (or ``only`` these ids), for every window overlapping
    ``[start, end)`` and every subject, judged as of ``now``."""
    everything = sorted(taps, key=Tap.sort_key)
    roles = {p.id: p.role for p in config.people}
    wanted = None if only is None else set(only)
    results: list[ObligationResult] = []
    for rule in config.obligations:
        if wanted is not None and rule.id not in wanted:
            continue
        for subject, people, person in _subjects(config, rule):
            route = config.route_of(rule, person)
            ids = {p.id for p in people}
            shift = person.shift if rule.per == "shift" and person is not None else None
            for window in windows(config, rule.per, start, end, shift=shift):
                if not applies_on(config, rule, person, window):
                    continue
                inside = [t for t in everything
                          if window.start <= t.at < window.end and t.person in ids]
                if rule.joint:
                    inside = _joint_taps(rule, inside, roles)
                results.append(_judge(config, rule, route, subject, window, inside, now,
                                      person))
    return results


def applies_on(config: PatrolConfig, rule: Obligation, person: PatrolPerson | None,
               window: Window) -> bool:
    """Does ``rule`` bind in ``window``: its ``days`` hold the kind of the window's day (a
    shift's is the day it starts), and ``person`` is rostered that day. Weeks and months
    hold days of every kind, so only shifts and days are told apart."""
    if window.period not in ("shift", "day"):
        return True
    day = window.start.astimezone(config.zone).date()
    if rule.days is not None and config.day_kind(day) not in rule.days:
        return False
    return person is None or config.works_on(person, day)


def _judge(config: PatrolConfig, rule: Obligation, route: Route, subject: str,
           window: Window, taps: list[Tap], now: datetime,
           person: PatrolPerson | None) -> ObligationResult:
    deadline = window.end if rule.due_within_min is None else min(
        window.end, window.start + timedelta(minutes=rule.due_within_min))
    rounds = tuple(evaluate_round(config, route, part, subject=subject, deadline=deadline)
                   for part in split_rounds(route, taps))
    good = [r for r in rounds if r.counts]
    status: ObligationStatus
    if len(good) >= rule.times:
        status = "late" if any(r.status == "late" for r in good[:rule.times]) else "met"
    elif now < deadline:
        status = "pending"
    elif now < window.end:
        status = "overdue"
    else:
        status = "missed"
    role = person.role if person is not None else rule.roles[-1]
    above = config.next_up(role, person.shift if person is not None else None)
    return ObligationResult(
        obligation=rule.id, title=rule.title, kind=rule.kind, subject=subject, window=window,
        deadline=deadline, status=status, required=rule.times, counted=len(good),
        rounds=rounds, escalate_to=None if above is None else above.id)
