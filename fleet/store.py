"""Write delivered messages to PostgreSQL: one transaction per batch, each event once.

The events insert is ``ON CONFLICT (event_id) DO NOTHING ... RETURNING event_id``: only the
events that were new in this transaction write their sessions, payments, taps and the rest,
so a redelivered batch (the service was killed between commit and ack) changes nothing. The
latest-state tables (alarms, device health) keep the newest ``ts``, whatever order they come.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

import psycopg

from fleet.rows import DeadLetter, Delivered, Rows, SessionPassage, read

# A batch is one statement, in the common case where every event in it is new: the events go
# in (arrays unnested, ON CONFLICT DO NOTHING) and, in the same statement, the sessions and
# payments of those events, guarded by "every event was new" (count of RETURNING = batch
# size). A repeat or a duplicate within the batch makes the guard false: the sessions and
# payments are then written in Python's second step, for the new events only, as before.
# Fewer round trips is what matters here: each is a wake-up of PostgreSQL and of the writing
# thread (which waits for the GIL), milliseconds each on a loaded machine (docs/fleet.md).
# The arrays go as binary parameters (%b): psycopg's text arrays quote-checked every element
# with a regular expression, about half of the client's writing time.
_EVENTS = """INSERT INTO events (event_id, site, kind, node, type, seq, ts, stream_seq, payload)
SELECT e.event_id, e.site, e.kind, e.node, e.type, e.seq, e.ts, e.stream_seq, e.payload::jsonb
FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::bigint[],
%b::timestamptz[], %b::bigint[], %b::text[])
AS e(event_id, site, kind, node, type, seq, ts, stream_seq, payload)
ORDER BY e.stream_seq ON CONFLICT (event_id) DO NOTHING RETURNING event_id"""
# ORDER BY: rows go in in stream order, so the first copy of a repeated id is the one kept.
# One upsert per session for the batch's entry and exit together: a column of one direction
# is written only when the batch has that direction for the session (its time is not NULL),
# otherwise the row keeps what it had; the plate is the first one seen, as before.
_SESSION_INSERT = """INSERT INTO sessions AS s (site, session_id, plate, entry_lane, entered_at,
exit_lane, exited_at, fee_fen, settled)
SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::timestamptz[],
%b::text[], %b::timestamptz[], %b::bigint[], %b::text[])"""
_SESSION_UPSERT = """ON CONFLICT (site, session_id) DO UPDATE SET
plate = COALESCE(s.plate, EXCLUDED.plate),
entry_lane = CASE WHEN EXCLUDED.entered_at IS NULL THEN s.entry_lane ELSE EXCLUDED.entry_lane END,
entered_at = COALESCE(EXCLUDED.entered_at, s.entered_at),
exit_lane = CASE WHEN EXCLUDED.exited_at IS NULL THEN s.exit_lane ELSE EXCLUDED.exit_lane END,
exited_at = COALESCE(EXCLUDED.exited_at, s.exited_at),
fee_fen = CASE WHEN EXCLUDED.exited_at IS NULL THEN s.fee_fen ELSE EXCLUDED.fee_fen END,
settled = CASE WHEN EXCLUDED.exited_at IS NULL THEN s.settled ELSE EXCLUDED.settled END"""
_SESSION = f"{_SESSION_INSERT}\n{_SESSION_UPSERT}"
_PAYMENT_INSERT = """INSERT INTO payments (event_id, site, lane, session_id, source, settled,
fee_fen, ts)
SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
%b::bigint[], %b::timestamptz[])"""
_PAYMENT = f"{_PAYMENT_INSERT} ON CONFLICT DO NOTHING"
_ALL_NEW = "WHERE (SELECT count(*) FROM new) = %b::bigint"
_ONE_STATEMENT = f"""WITH new AS ({_EVENTS}),
sessions_written AS ({_SESSION_INSERT} {_ALL_NEW} {_SESSION_UPSERT}),
payments_written AS ({_PAYMENT_INSERT} {_ALL_NEW} ON CONFLICT DO NOTHING)
SELECT event_id FROM new"""  # noqa: S608 (our own constants, no input)
_ALARM = """INSERT INTO alarms (site, kind, active, source, zone, since, ts)
VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (site, kind) DO UPDATE SET
active = EXCLUDED.active, source = EXCLUDED.source, zone = EXCLUDED.zone,
since = EXCLUDED.since, ts = EXCLUDED.ts WHERE alarms.ts <= EXCLUDED.ts"""
_HEALTH = """INSERT INTO device_health AS h (site, device, online, fault, detail, ts)
VALUES (%(site)s, %(device)s, %(online)s, %(fault)s, %(detail)s, %(ts)s)
ON CONFLICT (site, device) DO UPDATE SET
online = COALESCE(EXCLUDED.online, h.online),
fault = CASE WHEN %(clears)s THEN NULL ELSE COALESCE(EXCLUDED.fault, h.fault) END,
detail = COALESCE(EXCLUDED.detail, h.detail), ts = GREATEST(h.ts, EXCLUDED.ts)"""
_TAP = """INSERT INTO patrol_taps (event_id, site, reader, seq, tag_id, badge, reader_time)
VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"""
_AUDIT_HEAD = """INSERT INTO audit_heads (site, length, head_hash, ts) VALUES (%s, %s, %s, %s)
ON CONFLICT (site, length) DO NOTHING"""
_ACK = """INSERT INTO fleet_acks (command_id, site, kind, status, reason, version, ts)
VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (command_id, site, status) DO NOTHING"""
_DEAD = """INSERT INTO dead_letters (subject, stream_seq, reason, payload) VALUES (%s, %s, %s, %s)
ON CONFLICT (stream_seq) DO NOTHING"""


class BatchResult:
    """How many messages were new, repeats, or dead letters."""

    def __init__(self) -> None:
        self.new = 0
        self.repeated = 0
        self.dead = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    """A batch read and ready to write: what it keeps and what it dead-letters (pure)."""

    rows: tuple[Rows, ...]
    dead: tuple[DeadLetter, ...]


def prepare(messages: Sequence[Delivered]) -> Batch:
    """Read every message (the CPU half of a batch: the service does it while PostgreSQL is
    still busy with the batch before, docs/fleet.md "Scale")."""
    read_back = [read(message) for message in messages]
    return Batch(tuple(item for item in read_back if isinstance(item, Rows)),
                 tuple(item for item in read_back if isinstance(item, DeadLetter)))


def write_batch(conn: psycopg.Connection[tuple[object, ...]],
                messages: Sequence[Delivered]) -> BatchResult:
    """Write ``messages`` in one transaction; the caller acknowledges them only after this."""
    return write_prepared(conn, prepare(messages))


def write_prepared(conn: psycopg.Connection[tuple[object, ...]], batch: Batch) -> BatchResult:
    """Write a prepared batch in one transaction (the caller acks only after this)."""
    result = BatchResult()
    rows, dead = batch.rows, batch.dead
    with conn.transaction(), conn.cursor() as cur:
        new_ids: set[str] = set()
        money_written = False
        if rows:
            sessions, payments = _columns(_session_rows(rows)), _payment_columns(rows)
            events = _columns([r.event for r in rows], 9)  # EventRow: _EVENTS' columns
            new_ids = {str(found[0]) for found in cur.execute(
                _ONE_STATEMENT, [*events, *_padded(sessions, 9), len(rows),
                                 *_padded(payments, 8), len(rows)]).fetchall()}
            money_written = len(new_ids) == len(rows)  # the guard held: all of them new
        first: dict[str, Rows] = {}  # an id twice in one batch: its first copy, as stored
        for r in rows:
            if r.event.event_id in new_ids:
                first.setdefault(r.event.event_id, r)
        fresh = list(first.values())
        _write_details(cur, fresh, money_written)
        if dead:
            cur.executemany(_DEAD, [(d.subject, d.stream_seq, d.reason, d.payload)
                                    for d in dead])
    result.new = len(fresh)
    result.repeated = len(rows) - len(fresh)
    result.dead = len(dead)
    return result


def _write_details(cur: psycopg.Cursor[tuple[object, ...]], fresh: Sequence[Rows],
                   money_written: bool = False) -> None:
    """Everything but the events of the ``fresh`` (new) rows; the sessions and payments only
    when the events' statement did not write them already (``money_written``)."""
    if not money_written:
        sessions = _session_rows(fresh)
        if sessions:
            cur.execute(_SESSION, _columns(sessions, 9))
        payments = _payment_columns(fresh)
        if payments:
            cur.execute(_PAYMENT, payments)
    alarms = [r.alarm for r in fresh if r.alarm is not None]
    if alarms:
        cur.executemany(_ALARM, [(a.site, a.kind, a.active, a.source, a.zone, a.since, a.ts)
                                 for a in alarms])
    health = [h for r in fresh for h in r.health]
    if health:
        cur.executemany(_HEALTH, [{"site": h.site, "device": h.device, "online": h.online,
                                   "fault": h.fault, "clears": h.clears_fault,
                                   "detail": h.detail, "ts": h.ts} for h in health])
    taps = [r.tap for r in fresh if r.tap is not None]
    if taps:
        cur.executemany(_TAP, [(t.event_id, t.site, t.reader, t.seq, t.tag_id, t.badge,
                                t.reader_time) for t in taps])
    heads = [r.audit_head for r in fresh if r.audit_head is not None]
    if heads:
        cur.executemany(_AUDIT_HEAD, [(h.site, h.length, h.head_hash, h.ts) for h in heads])
    acks = [r.ack for r in fresh if r.ack is not None]
    if acks:
        cur.executemany(_ACK, [(a.command_id, a.site, a.kind, a.status, a.reason, a.version,
                                a.ts) for a in acks])


SessionRow = tuple[str, str, str | None, str | None, datetime | None, str | None,
                   datetime | None, int, str | None]


def _columns(rows: Sequence[tuple[object, ...]], width: int = 0) -> list[list[object]]:
    """Rows to columns (one array parameter each); ``width`` empty columns when no rows."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else \
        [[] for _ in range(width)]


def _padded(columns: list[list[object]], width: int) -> list[list[object]]:
    return columns or [[] for _ in range(width)]


def _payment_columns(fresh: Sequence[Rows]) -> list[list[object]]:
    """PaymentRow's fields are :data:`_PAYMENT_INSERT`'s columns, in order."""
    return _columns([r.payment for r in fresh if r.payment is not None])


def _session_rows(fresh: Sequence[Rows]) -> list[SessionRow]:
    """One row per (site, session) for :data:`_SESSION`: the batch's last entry and last exit
    of it (:func:`_one_per_session`), the plate the first one seen in stream order whatever
    its direction (an exit comes first when the entry lane was offline and replays later), as
    one message at a time would leave it."""
    first_plate: dict[tuple[str, str], str] = {}
    for r in fresh:
        if r.session is not None and r.session.plate is not None:
            first_plate.setdefault((r.session.site, r.session.session_id), r.session.plate)
    entries = {(p.site, p.session_id): p for p in _one_per_session(
        [r.session for r in fresh if r.session and r.session.direction == "entry"])}
    exits = {(p.site, p.session_id): p for p in _one_per_session(
        [r.session for r in fresh if r.session and r.session.direction == "exit"])}
    rows: list[SessionRow] = []
    for key in entries | exits:
        entry, out = entries.get(key), exits.get(key)
        rows.append((key[0], key[1], first_plate.get(key),
                     entry.lane if entry else None, entry.ts if entry else None,
                     out.lane if out else None, out.ts if out else None,
                     out.fee_fen if out else 0, out.settled if out else None))
    return rows


def _one_per_session(passages: list[SessionPassage]) -> list[SessionPassage]:
    """One passage per (site, session) and direction, the last in stream order (as one upsert
    after another would leave it): a single INSERT may not touch a row twice."""
    return list({(p.site, p.session_id): p for p in passages}.values())
