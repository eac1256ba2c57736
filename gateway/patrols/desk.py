"""The patrol desk: every checkpoint tap stored once, verified, and judged by the regime.

``PatrolDesk.ingest`` takes a :class:`~wire.contract.messages.PatrolTap` (topic
``patrol/{reader}/tap``) as it arrives — live, or hours later when a reader that was out of
signal uploads its buffer in ``seq`` order — and stores it exactly once per
``(reader, seq)``: accepted, or refused with the reason (unknown badge or tag, a SUN
message whose MAC is not the tag's (a cloned tag), a counter already used or out of time
order (a replayed tap), no SUN from a SUN tag). Refusals are kept: the report shows them,
and a cloned or replayed tag raises an alert.

Compliance is the pure engine's (:mod:`parkguard.core.patrol`) over the stored accepted
taps; :meth:`PatrolDesk.check_overdue` alerts the next person up the roster about every
obligation past its deadline, through the ``raise_alert`` seam (``AlertDesk.raise_alert``).

``db`` is the gateway worker's connection: call the desk on the worker (``Gateway.call``).
Times: the reader's clock is site-local and naive; taps are judged by it (an upload hours
late is judged by when it was tapped), stored as UTC.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, Protocol

import sqlite_utils

from parkguard.clock import Clock, utc_iso
from parkguard.core.patrol import (
    ObligationResult,
    PatrolConfig,
    StaffingGap,
    SunError,
    Tap,
    counter_verdict,
    evaluate,
    staffing_gaps,
    verify_sun,
)
from wire.contract.messages import PatrolTap

__all__ = [
    "PatrolDesk",
    "RaiseAlert",
    "StoredTap",
    "TapOutcome",
    "engine_taps",
    "read_taps",
]

log = logging.getLogger(__name__)

Refusal = Literal["unknown_badge", "unknown_tag", "no_sun", "malformed_sun", "cloned",
                  "uid_mismatch", "replayed", "plain_not_allowed"]
_ALERTED_REFUSALS: Final = ("cloned", "uid_mismatch", "replayed", "no_sun")
_MAX_CHECKLIST: Final = 32


class RaiseAlert(Protocol):
    """The alerting seam: :meth:`gateway.safety.alerts.AlertDesk.raise_alert` fits it."""

    def __call__(self, key: str, *, kind: str, severity: Literal["info", "warning", "critical"],
                 title_zh: str, title_en: str, detail: str = "",
                 team: str | None = None) -> object: ...


@dataclass(frozen=True, slots=True)
class TapOutcome:
    """What became of one tap."""

    reader: str
    seq: int
    status: Literal["accepted", "refused"]
    duplicate: bool
    reason: str | None
    checkpoint: str | None
    person: str | None
    counter: int | None
    flags: tuple[str, ...]
    tapped_at: datetime


@dataclass(frozen=True, slots=True)
class StoredTap:
    """A stored tap as the reports show it."""

    reader: str
    seq: int
    tapped_at: datetime
    received_at: datetime
    tag_id: str
    checkpoint: str | None
    badge: str
    person: str | None
    status: str
    reason: str | None
    counter: int | None
    flags: tuple[str, ...]
    answers: dict[str, str]

    @property
    def delay_min(self) -> float:
        """How long the tap took to reach the gateway (a reader out of signal)."""
        return (self.received_at - self.tapped_at).total_seconds() / 60


# --- the desk ----------------------------------------------------------------------------------


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def engine_taps(stored: Iterable[StoredTap]) -> list[Tap]:
    """The accepted ones of ``stored`` as the compliance engine takes them (key
    ``reader#seq``)."""
    return [Tap(key=f"{t.reader}#{t.seq}", at=t.tapped_at, checkpoint=t.checkpoint or "",
                person=t.person or "", answers=tuple(sorted(t.answers.items())))
            for t in stored if t.status == "accepted"]


def read_taps(db: sqlite_utils.Database, start: datetime, end: datetime) -> Iterator[StoredTap]:
    """Every stored tap (refused ones too) tapped in ``[start, end)``, in tap order; works
    on a read-only connection (the dashboard's reader, ``parkguard patrol report``)."""
    for row in db.query(
            "SELECT * FROM patrol_taps WHERE tapped_at >= ? AND tapped_at < ? "
            "ORDER BY tapped_at, reader, seq", [utc_iso(start), utc_iso(end)]):
        yield StoredTap(
            reader=row["reader"], seq=row["seq"], tapped_at=_parse(row["tapped_at"]),
            received_at=_parse(row["received_at"]), tag_id=row["tag_id"],
            checkpoint=row["checkpoint"], badge=row["badge"], person=row["person"],
            status=row["status"], reason=row["reason"], counter=row["counter"],
            flags=tuple(json.loads(row["flags"])), answers=json.loads(row["answers"]))


class PatrolDesk:
    """Stores and verifies taps; judges rounds; alerts about overdue ones."""

    def __init__(self, db: sqlite_utils.Database, *, config: PatrolConfig, clock: Clock,
                 raise_alert: RaiseAlert | None = None) -> None:
        self.db = db
        self.config = config
        self._clock = clock
        self._raise = raise_alert
        self._keys = {c.tag: bytes.fromhex(c.key.get_secret_value())
                      for c in config.checkpoints if c.key is not None}
        self._tap_listeners: list[Callable[[str, str, datetime], None]] = []

    def on_accepted_tap(self, listener: Callable[[str, str, datetime], None]) -> None:
        """``listener(checkpoint, person, tapped_at)`` after each new accepted tap, on the
        worker (a readiness item or an extinguisher checked by the tap at it)."""
        self._tap_listeners.append(listener)

    def now(self) -> datetime:
        return self._clock.now()

    # --- ingest ----------------------------------------------------------------------------

    def ingest(self, tap: PatrolTap, received_at: datetime, *,
               answers: Mapping[str, str] | None = None) -> TapOutcome:
        """Store one tap once per ``(reader, seq)``; a repeat returns the stored outcome.

        ``answers``: the checklist answered at the checkpoint (item → ``ok``, ``fault`` or a
        note); taken from the tap itself when the contract carries them.
        """
        existing = self._row(tap.reader, tap.seq)
        if existing is not None:
            return self._outcome(existing, duplicate=True)
        given = dict(answers or getattr(tap, "answers", None) or {})
        given = {str(k)[:64]: str(v)[:200] for k, v in list(given.items())[:_MAX_CHECKLIST]}
        tapped_at = tap.reader_time.replace(tzinfo=self.config.zone).astimezone(UTC)
        point = self.config.by_tag.get(tap.tag_id)
        person = self.config.by_badge.get(tap.badge)
        flags: list[str] = []
        reason: str | None = None
        detail = ""
        counter: int | None = None
        if tapped_at - received_at > timedelta(minutes=self.config.reader_clock_tolerance_min):
            flags.append("reader_clock_ahead")
        if person is None:
            reason, detail = "unknown_badge", f"badge {tap.badge} is on nobody's roster"
        elif point is None:
            reason, detail = "unknown_tag", f"tag {tap.tag_id} is no checkpoint"
        elif tap.tag_id in self._keys:
            reason, detail, counter = self._check_sun(tap, tapped_at)
        elif not self.config.allow_plain_tags:
            reason, detail = "plain_not_allowed", "plain tags are not accepted"
        else:
            flags.append("plain")
        status: Literal["accepted", "refused"] = "refused" if reason else "accepted"
        with self.db.atomic():
            self.db.table("patrol_taps").insert({
                "reader": tap.reader, "seq": tap.seq, "received_at": utc_iso(received_at),
                "tapped_at": utc_iso(tapped_at), "reader_time": tap.reader_time.isoformat(),
                "uploaded": None if tap.uploaded is None else utc_iso(tap.uploaded),
                "tag_id": tap.tag_id, "checkpoint": None if point is None else point.id,
                "badge": tap.badge, "person": None if person is None else person.id,
                "sun": tap.sun, "counter": counter, "status": status, "reason": reason,
                "detail": detail, "flags": json.dumps(flags),
                "answers": json.dumps(given, ensure_ascii=False, sort_keys=True),
            })
            if status == "accepted" and counter is not None:
                self._remember_counter(tap.tag_id, counter, tapped_at, received_at)
        if reason is not None:
            log.warning("patrols: refused tap %s#%d (%s): %s", tap.reader, tap.seq, reason,
                        detail)
            if reason in _ALERTED_REFUSALS and self._raise is not None:
                where = point.place if point is not None else tap.tag_id
                self._raise(
                    f"patrol-tag:{tap.tag_id}:{reason}", kind="patrol_tag",
                    severity="warning", title_zh=f"巡更点标签异常: {where}",
                    title_en=f"Patrol tag {reason.replace('_', ' ')}: {where}",
                    detail=f"reader {tap.reader} seq {tap.seq} badge {tap.badge}: {detail}",
                    team="patrol-captain")
        if status == "accepted" and point is not None and person is not None:
            for listener in self._tap_listeners:
                try:
                    listener(point.id, person.id, tapped_at)
                except Exception:
                    log.exception("patrols: a tap listener failed on %s", point.id)
        row = self._row(tap.reader, tap.seq)
        if row is None:  # pragma: no cover - inserted just above in this transaction
            raise LookupError(f"tap {tap.reader}#{tap.seq} vanished")
        return self._outcome(row, duplicate=False)

    def _check_sun(self, tap: PatrolTap, tapped_at: datetime
                   ) -> tuple[str | None, str, int | None]:
        if tap.sun is None:
            return "no_sun", "a SUN tag answered without its SUN message (a UID copy)", None
        uid = bytes.fromhex(tap.tag_id) if len(tap.tag_id) == 14 else None
        try:
            reading = verify_sun(tap.sun, self._keys[tap.tag_id], uid=uid)
        except SunError as error:
            refusal = {"malformed": "malformed_sun", "forged": "cloned",
                       "uid_mismatch": "uid_mismatch"}[error.reason]
            return refusal, error.detail, None
        if uid is None and reading.uid_hex != tap.tag_id:
            return "uid_mismatch", f"the message is from tag {reading.uid_hex}", None
        seen = [(r["counter"], _parse(r["tapped_at"])) for r in self.db.query(
            "SELECT counter, tapped_at FROM patrol_taps WHERE tag_id = ? AND status = "
            "'accepted' AND counter IS NOT NULL", [tap.tag_id])]
        verdict = counter_verdict(reading.counter, tapped_at, seen)
        if verdict == "replayed":
            return "replayed", f"counter {reading.counter} was already used", reading.counter
        if verdict == "stale":
            return "replayed", (f"counter {reading.counter} is out of time order with the "
                                "tag's earlier taps (a harvested message)"), reading.counter
        return None, "", reading.counter

    def _remember_counter(self, tag: str, counter: int, tapped_at: datetime,
                          now: datetime) -> None:
        row = next(self.db.query(
            "SELECT last_counter FROM patrol_tag_counters WHERE tag_id = ?", [tag]), None)
        if row is None or counter > row["last_counter"]:
            self.db.table("patrol_tag_counters").upsert({
                "tag_id": tag, "last_counter": counter, "last_tapped_at": utc_iso(tapped_at),
                "updated_at": utc_iso(now)}, pk="tag_id")

    def _row(self, reader: str, seq: int) -> dict[str, Any] | None:
        return next(self.db.query(
            "SELECT * FROM patrol_taps WHERE reader = ? AND seq = ?", [reader, seq]), None)

    @staticmethod
    def _outcome(row: Mapping[str, Any], *, duplicate: bool) -> TapOutcome:
        return TapOutcome(
            reader=row["reader"], seq=row["seq"], status=row["status"], duplicate=duplicate,
            reason=row["reason"], checkpoint=row["checkpoint"], person=row["person"],
            counter=row["counter"], flags=tuple(json.loads(row["flags"])),
            tapped_at=_parse(row["tapped_at"]))

    # --- reading back ---------------------------------------------------------------------

    def stored(self, start: datetime, end: datetime) -> Iterator[StoredTap]:
        """Every tap (refused ones too) tapped in ``[start, end)``, in tap order."""
        return read_taps(self.db, start, end)

    def taps(self, start: datetime, end: datetime) -> list[Tap]:
        """The accepted taps in ``[start, end)`` as the compliance engine takes them."""
        return engine_taps(self.stored(start, end))

    def seq_gaps(self, start: datetime, end: datetime) -> dict[str, list[int]]:
        """Per reader, the seqs missing between the first and last stored in the range
        (taps lost on a reader, or not uploaded yet)."""
        seen: dict[str, set[int]] = {}
        for tap in self.stored(start, end):
            seen.setdefault(tap.reader, set()).add(tap.seq)
        return {reader: gaps for reader, seqs in sorted(seen.items())
                if (gaps := sorted(set(range(min(seqs), max(seqs) + 1)) - seqs))}

    def last_counters(self) -> dict[str, int]:
        return {r["tag_id"]: r["last_counter"] for r in self.db.query(
            "SELECT tag_id, last_counter FROM patrol_tag_counters ORDER BY tag_id")}

    # --- compliance ------------------------------------------------------------------------

    def evaluate(self, start: datetime, end: datetime, *, now: datetime | None = None,
                 store: bool = True) -> list[ObligationResult]:
        """Every obligation for every window overlapping ``[start, end)``, as of ``now``;
        the verdicts are kept in ``patrol_rounds`` (``store``)."""
        now = now or self._clock.now()
        margin = timedelta(days=32)  # the month (or week) windows reach beyond the range
        results = evaluate(self.config, self.taps(start - margin, end + margin), start, end,
                           now=now)
        if store:
            with self.db.atomic():
                for result in results:
                    self._store(result, now)
        return results

    def _store(self, result: ObligationResult, now: datetime) -> None:
        key = [result.obligation, result.subject, utc_iso(result.window.start)]
        rounds = [{"route": r.route, "status": r.status, "flags": list(r.flags),
                   "start": r.start and utc_iso(r.start), "end": r.end and utc_iso(r.end),
                   "missed": list(r.missed), "taps": list(r.taps)} for r in result.rounds]
        values = {"window_label": result.window.label, "window_end": utc_iso(result.window.end),
                  "deadline": utc_iso(result.deadline), "status": result.status,
                  "required": result.required, "counted": result.counted,
                  "rounds": json.dumps(rounds), "evaluated_at": utc_iso(now),
                  "escalate_to": result.escalate_to}
        done = self.db.execute(
            "UPDATE patrol_rounds SET window_label = :window_label, window_end = :window_end, "
            "deadline = :deadline, status = :status, required = :required, counted = :counted, "
            "rounds = :rounds, evaluated_at = :evaluated_at, escalate_to = :escalate_to "
            "WHERE obligation = :o AND subject = :s AND window_start = :w",
            {**values, "o": key[0], "s": key[1], "w": key[2]})
        if done.rowcount == 0:
            self.db.table("patrol_rounds").insert({
                "obligation": key[0], "subject": key[1], "window_start": key[2], **values,
                "alerted_at": None, "alert_key": None})

    def check_overdue(self, now: datetime | None = None, *,
                      lookback: timedelta = timedelta(days=1)) -> list[ObligationResult]:
        """Alert the next person up about every obligation whose deadline passed in the last
        ``lookback`` unmet (once per obligation, subject and window); return them."""
        now = now or self._clock.now()
        raised: list[ObligationResult] = []
        for result in self.evaluate(now - lookback, now, now=now):
            if result.status not in ("overdue", "missed") or result.deadline < now - lookback:
                continue
            window_start = utc_iso(result.window.start)
            row = next(self.db.query(
                "SELECT alerted_at FROM patrol_rounds WHERE obligation = ? AND subject = ? "
                "AND window_start = ?", [result.obligation, result.subject, window_start]))
            if row["alerted_at"] is not None or self._ticked_enough(result):
                continue
            alert_key = f"patrol:{result.obligation}:{result.subject}:{window_start}"
            if self._raise is not None:
                self._alert(result, alert_key)
            self.db.execute(
                "UPDATE patrol_rounds SET alerted_at = ?, alert_key = ? WHERE obligation = ? "
                "AND subject = ? AND window_start = ?",
                [utc_iso(now), alert_key, result.obligation, result.subject, window_start])
            raised.append(result)
        return raised

    def _ticked_enough(self, result: ObligationResult) -> bool:
        """A cleaning task ticked done on the cleaner's page (gateway.patrols.cleaning):
        its ticks make up what the taps lack."""
        if result.kind != "cleaning":
            return False
        rule = next(o for o in self.config.obligations if o.id == result.obligation)
        ticks = self.db.execute(
            "SELECT count(*) FROM cleaning_ticks WHERE obligation = ? AND window_start = ? "
            "AND (? OR person = ?)", [result.obligation, utc_iso(result.window.start),
                                     int(not rule.each), result.subject]).fetchone()[0]
        return bool(result.counted + int(ticks) >= result.required)

    def check_staffing(self, now: datetime | None = None, *,
                       days_ahead: int = 1) -> list[StaffingGap]:
        """Warn the captain once about every short roster (a staffing rule that finds too
        few people rostered) from today to ``days_ahead`` days on: time to call staff in."""
        now = now or self._clock.now()
        today = now.astimezone(self.config.zone).date()
        warned: list[StaffingGap] = []
        for gap in staffing_gaps(self.config, today, today + timedelta(days=days_ahead)):
            key = f"staffing:{gap.rule}:{gap.day.isoformat()}:{gap.from_hour:02d}"
            if self.db.execute("SELECT 1 FROM staffing_alerts WHERE key = ?",
                               [key]).fetchone() is not None:
                continue
            if self._raise is not None:
                self._raise(
                    key, kind="staffing_short", severity="warning",
                    title_zh=f"排班不足: {gap.day.isoformat()} {gap.hours} 缺 {gap.short} 人",
                    title_en=f"Roster short: {gap.day.isoformat()} {gap.hours}, "
                             f"{gap.short} more needed",
                    detail=gap.line(), team="patrol-captain")
            self.db.table("staffing_alerts").insert({
                "key": key, "rule": gap.rule, "day": gap.day.isoformat(),
                "from_hour": gap.from_hour, "alerted_at": utc_iso(now)})
            warned.append(gap)
        return warned

    def _alert(self, result: ObligationResult, key: str) -> None:
        if self._raise is None:
            return
        who = self.config.person.get(result.subject)
        name = who.name if who is not None else result.subject
        above = self.config.person.get(result.escalate_to or "")
        to = f"{above.name} ({above.role})" if above is not None else "the manager"
        team = f"patrol-{above.role}" if above is not None else "patrol-manager"
        self._raise(
            key, kind="patrol_overdue", severity="warning",
            title_zh=f"巡查逾期: {name} {result.title}",
            title_en=f"Patrol overdue: {name} — {result.title}",
            detail=(f"{result.window.label}: {result.counted} of {result.required} rounds by "
                    f"{result.deadline.astimezone(self.config.zone):%Y-%m-%d %H:%M}; "
                    f"for {to}"),
            team=team)
