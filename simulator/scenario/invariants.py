"""The invariants a scenario run is held to, checked over what the site left on disk.

:func:`gather` reads the gateway's SQLite file and the lanes' journals (read-only) into
:class:`Facts`; :func:`check` is pure: facts and what the run did in, a list of
:class:`Check` out. So a checker can be fed a doctored database and must fail.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from parkguard.core.patrol import PatrolConfig, Tap, evaluate_round


@dataclass(frozen=True)
class Facts:
    """What the gateway's database and the lanes' journals hold after a run."""

    journaled: Mapping[str, list[tuple[int, str]]]
    """lane -> (seq, event_id) of every event in its journal."""
    stored: list[tuple[str, int, str]]
    """(lane, seq, event_id) of every row of the gateway's ``events``."""
    sessions: list[tuple[str, str, int]]
    """(plate, state, fee_fen) of every session."""
    paid_fen: int
    """Fees taken (payments in, less refunds)."""
    debts_fen: int
    dead_letters: int
    events_by_type: Mapping[str, int] = field(default_factory=dict)
    patrol_taps: list[tuple[str, str, datetime, str, str]] = field(default_factory=list)
    """(person, checkpoint, tapped_at, status, reason) of every stored checkpoint tap."""
    alerts: list[tuple[str, datetime, datetime | None, datetime | None]] = field(
        default_factory=list)
    """(key, raised_at, acked_at, resolved_at) of every alert."""


@dataclass(frozen=True)
class Expected:
    """What the run did, as the drivers saw it."""

    entered: frozenset[str]
    """Plates that drove in (and so must have exactly one session, closed)."""
    backed_out: frozenset[str] = frozenset()
    """Plates that reversed away at the entry: no session."""
    tailgates: int = 0
    help_presses: int = 0
    max_dead_letters: int = 0
    plates_read: bool = False
    """The lanes read rendered frames (TFLite): a misread plate gets its session under the
    plate read, so cars are counted rather than matched by plate."""
    left_inside: int = 0
    """Cars refused at the exit after a misread, still inside (only with ``plates_read``)."""
    rounds: tuple[WalkedRound, ...] = ()
    """Patrol rounds the guards walked, judged against ``regime``."""
    regime: PatrolConfig | None = None
    alarms: tuple[tuple[str, datetime], ...] = ()
    """(alert key or key prefix, when) the sensors were made to raise."""
    alert_ack_minutes: float = 5.0
    alarms_until: datetime | None = None
    """Alerts raised from here on (the site shutting down) are not held to the target."""
    inside: frozenset[str] = frozenset()
    """Of ``entered``, the cars still inside: a day's checkpoint of a run still going (a
    long scenario checks what it has so far each simulated day). Each must have exactly
    one session, open; every other car that came in exactly one, closed."""


@dataclass(frozen=True)
class WalkedRound:
    """A planted patrol round: who, which kind, when (UTC), how many taps."""

    person: str
    kind: str
    route: str
    start: datetime
    end: datetime
    taps: int


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def gather(database: Path, journals: Mapping[str, Path]) -> Facts:
    """Read the facts (the files are opened read-only and closed again)."""
    journaled: dict[str, list[tuple[int, str]]] = {}
    for lane, path in journals.items():
        db = _read_only(path)
        try:
            journaled[lane] = [(int(s), str(e)) for s, e in db.execute(
                "SELECT seq, event_id FROM events ORDER BY seq")]
        finally:
            db.close()
    db = _read_only(database)
    try:
        stored = [(str(lane), int(seq), str(event)) for lane, seq, event in db.execute(
            "SELECT lane, seq, event_id FROM events")]
        sessions = [(str(p), str(s), int(f)) for p, s, f in db.execute(
            "SELECT plate, state, fee_fen FROM sessions")]
        (paid,), (debts,), (dead,) = (db.execute(sql).fetchone() for sql in (
            "SELECT coalesce(sum(amount_fen - refunded_fen), 0) FROM payments "
            "WHERE state = 'paid' AND purpose = 'fee'",
            "SELECT coalesce(sum(amount_fen), 0) FROM debts",
            "SELECT count(*) FROM dead_letters"))
        by_type = {str(t): int(n) for t, n in db.execute(
            "SELECT type, count(*) FROM events GROUP BY type")}
        patrol = [(str(person or ""), str(point or ""), _utc(at), str(status), str(reason or ""))
                  for person, point, at, status, reason in db.execute(
                      "SELECT person, checkpoint, tapped_at, status, reason FROM patrol_taps")]
        alerts = [(str(key), _utc(raised), _maybe(acked), _maybe(resolved))
                  for key, raised, acked, resolved in db.execute(
                      "SELECT key, raised_at, acked_at, resolved_at FROM alerts")]
    finally:
        db.close()
    return Facts(journaled, stored, sessions, int(paid), int(debts), int(dead), by_type,
                 patrol, alerts)


def _maybe(text: str | None) -> datetime | None:
    return None if text is None else _utc(text)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _events_once(facts: Facts) -> Check:
    ids = [event for _, _, event in facts.stored]
    doubled = [event for event, n in Counter(ids).items() if n > 1]
    journaled = {event for events in facts.journaled.values() for _, event in events}
    missing = journaled - set(ids)
    extra = set(ids) - journaled
    ok = not doubled and not missing and not extra
    return Check("every event stored once", ok,
                 f"{len(journaled)} journaled, {len(ids)} stored, {len(missing)} missing, "
                 f"{len(doubled)} twice, {len(extra)} not in any journal")


def _no_gaps(facts: Facts) -> Check:
    bad = []
    for lane, events in facts.journaled.items():
        seqs = sorted(seq for stored_lane, seq, _ in facts.stored if stored_lane == lane)
        if seqs != list(range(1, len(events) + 1)):
            bad.append(lane)
    return Check("each lane's seq 1..n without a gap", not bad,
                 "all lanes complete" if not bad else f"gaps or extras on {', '.join(bad)}")


def _billed_once(facts: Facts, expected: Expected) -> Check:
    if expected.plates_read:
        return _billed_once_by_count(facts, expected)
    by_plate = Counter(plate for plate, _, _ in facts.sessions)
    closed = Counter(plate for plate, state, _ in facts.sessions if state == "closed")
    inside = expected.inside
    not_once = [p for p in expected.entered if by_plate[p] != 1
                or closed[p] != (0 if p in inside else 1)]
    stray = [p for p in by_plate if p not in expected.entered]
    still_open = sum(1 for plate, state, _ in facts.sessions
                     if state != "closed" and plate not in inside)
    ok = not not_once and not stray and still_open == 0
    return Check("every car billed once", ok,
                 f"{len(expected.entered)} cars in, {sum(closed.values())} closed sessions, "
                 + (f"{len(inside)} still inside (open), " if inside else "")
                 + f"{len(not_once)} not exactly once, {still_open} left open, "
                 f"{len(stray)} sessions for cars that never came in")


def _billed_once_by_count(facts: Facts, expected: Expected) -> Check:
    """With plates read from frames: one session per car that came in, all closed but the
    cars refused after a misread (a misread entry's session carries the plate read)."""
    closed = sum(1 for _, state, _ in facts.sessions if state == "closed")
    still_open = len(facts.sessions) - closed
    misplated = len({plate for plate, _, _ in facts.sessions} - expected.entered)
    ok = (len(facts.sessions) == len(expected.entered)
          and still_open == expected.left_inside + len(expected.inside))
    return Check("every car billed once", ok,
                 f"{len(expected.entered)} cars in, {len(facts.sessions)} sessions, "
                 f"{closed} closed, {still_open} left open ({expected.left_inside} refused "
                 f"after a misread"
                 + (f", {len(expected.inside)} still inside" if expected.inside else "")
                 + f"), {misplated} under a misread plate")


def _money(facts: Facts) -> Check:
    fees = sum(fee for _, state, fee in facts.sessions if state == "closed")
    ok = fees == facts.paid_fen + facts.debts_fen
    return Check("money = payments + debts", ok,
                 f"fees {fees} fen, paid {facts.paid_fen} + debts {facts.debts_fen} = "
                 f"{facts.paid_fen + facts.debts_fen}")


def _counted(facts: Facts, kind: str, made: int, what: str) -> Check:
    stored = facts.events_by_type.get(kind, 0)
    return Check(f"every {what} reported", stored >= made,
                 f"{made} made, {stored} {kind} events stored")


#: How the report says each kind of round was judged right.
_AS_WALKED = {"on_time": "on time done", "late": "late late", "too_fast": "too fast impossible",
              "cloned_tag": "cloned tags refused"}
#: What the gateway must make of each kind of planted round.
_JUDGED = {"on_time": "done", "late": "late", "too_fast": "impossible", "cloned_tag": "missed"}


def _patrol(facts: Facts, rounds: Sequence[WalkedRound], regime: PatrolConfig) -> Check:
    """Every tap stored, each round judged as it was walked, every cloned tag refused."""
    wrong: list[str] = []
    counted = 0
    for walked in rounds:
        mine = [t for t in facts.patrol_taps
                if t[0] == walked.person and walked.start <= t[2] <= walked.end]
        counted += len(mine)
        accepted = [Tap(key=f"{i}", at=at, checkpoint=point, person=person)
                    for i, (person, point, at, status, _) in enumerate(mine)
                    if status == "accepted"]
        status = evaluate_round(regime, regime.route[walked.route], accepted).status
        cloned = sum(1 for t in mine if t[4] == "cloned")
        if (len(mine) != walked.taps or status != _JUDGED.get(walked.kind)
                or cloned != (walked.kind == "cloned_tag")):
            wrong.append(f"{walked.kind} round of {walked.person} at {walked.start:%m-%d %H:%M} "
                         f"judged {status}, {cloned} cloned, {len(mine)} of {walked.taps} taps")
    return Check("patrol rounds judged as walked", not wrong,
                 "; ".join(wrong[:3]) if wrong else
                 f"{len(rounds)} rounds, {counted} taps: " + ", ".join(
                     _AS_WALKED[kind] for kind in _AS_WALKED
                     if any(r.kind == kind for r in rounds)))


def _alarms(facts: Facts, expected: Expected) -> Check:
    """Every sensor event raised its alert, and every alert was acknowledged (or was over)
    within the target."""
    target = timedelta(minutes=expected.alert_ack_minutes)
    missing = [key for key, at in expected.alarms
               if not any(k.startswith(key) and raised >= at - timedelta(seconds=1)
                          for k, raised, _, _ in facts.alerts)]
    slow = []
    for key, raised, acked, resolved in facts.alerts:
        if expected.alarms_until is not None and raised >= expected.alarms_until:
            continue
        answered = min((t for t in (acked, resolved) if t is not None), default=None)
        if answered is None or answered - raised > target:
            late = "never" if answered is None else f"after {answered - raised}"
            slow.append(f"{key} answered {late}")
    return Check("alarms acted on within the target", not missing and not slow,
                 f"{len(facts.alerts)} alerts, each answered within "
                 f"{expected.alert_ack_minutes:g} min" if not missing and not slow else
                 "; ".join([*(f"no alert {k}" for k in missing), *slow][:4]))


def check(facts: Facts, expected: Expected) -> list[Check]:
    """Every invariant, in the order the report shows them."""
    checks = [_events_once(facts), _no_gaps(facts), _billed_once(facts, expected),
              _money(facts)]
    if expected.tailgates:
        checks.append(_counted(facts, "tailgate", expected.tailgates, "tailgate"))
    if expected.help_presses:
        checks.append(_counted(facts, "help_pressed", expected.help_presses, "help press"))
    if expected.alarms:
        checks.append(_alarms(facts, expected))
    if expected.rounds and expected.regime is not None:
        checks.append(_patrol(facts, expected.rounds, expected.regime))
    checks.append(Check("dead letters within target",
                        facts.dead_letters <= expected.max_dead_letters,
                        f"{facts.dead_letters} (target at most {expected.max_dead_letters})"))
    return checks


def all_passed(checks: Iterable[Check]) -> bool:
    return all(c.passed for c in checks)
