"""Write delivered messages to PostgreSQL: one transaction per batch, each event once.

The events insert is ``ON CONFLICT (event_id) DO NOTHING ... RETURNING event_id``: only the
events that were new in this transaction write their sessions, payments, taps and the rest,
so a redelivered batch (the service was killed between commit and ack) changes nothing. The
latest-state tables (alarms, device health) keep the newest ``ts``, whatever order they come.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import psycopg

from fleet.rows import DeadLetter, Delivered, Rows, SessionPassage, read

_SCRATCH = """CREATE TEMP TABLE IF NOT EXISTS incoming
(LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"""
_COPY = """COPY incoming (event_id, site, kind, node, type, seq, ts, stream_seq, payload)
FROM STDIN"""
# ORDER BY: rows go in in stream order, so the first copy of a repeated id is the one kept.
_FROM_SCRATCH = """INSERT INTO events (event_id, site, kind, node, type, seq, ts, stream_seq,
payload) SELECT event_id, site, kind, node, type, seq, ts, stream_seq, payload
FROM incoming ORDER BY stream_seq ON CONFLICT (event_id) DO NOTHING RETURNING event_id"""
# Sessions and payments go in with one statement per batch each (arrays unnested), not one
# per row: most of the batch's PostgreSQL time was these upserts (docs/fleet.md, "Scale").
_ENTRY = """INSERT INTO sessions (site, session_id, plate, entry_lane, entered_at)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::timestamptz[])
ON CONFLICT (site, session_id) DO UPDATE SET
plate = COALESCE(sessions.plate, EXCLUDED.plate), entry_lane = EXCLUDED.entry_lane,
entered_at = EXCLUDED.entered_at"""
_EXIT = """INSERT INTO sessions (site, session_id, plate, exit_lane, exited_at, fee_fen, settled)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::timestamptz[],
%s::bigint[], %s::text[])
ON CONFLICT (site, session_id) DO UPDATE SET
plate = COALESCE(sessions.plate, EXCLUDED.plate), exit_lane = EXCLUDED.exit_lane,
exited_at = EXCLUDED.exited_at, fee_fen = EXCLUDED.fee_fen, settled = EXCLUDED.settled"""
_PAYMENT = """INSERT INTO payments (event_id, site, lane, session_id, source, settled, fee_fen, ts)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
%s::bigint[], %s::timestamptz[]) ON CONFLICT DO NOTHING"""
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
        if rows:
            # COPY the batch into a scratch table, then one INSERT ... SELECT: a round trip
            # per batch, not per event.
            cur.execute(_SCRATCH)
            with cur.copy(_COPY) as copy:
                for r in rows:
                    e = r.event
                    copy.write_row((e.event_id, e.site, e.kind, e.node, e.type, e.seq, e.ts,
                                    e.stream_seq, e.payload))
            new_ids = {str(found[0]) for found in cur.execute(_FROM_SCRATCH).fetchall()}
        fresh = [r for r in rows if r.event.event_id in new_ids]
        seen: set[str] = set()
        fresh = [r for r in fresh if not (r.event.event_id in seen or seen.add(r.event.event_id))]  # type: ignore[func-returns-value]
        _write_details(cur, fresh)
        if dead:
            cur.executemany(_DEAD, [(d.subject, d.stream_seq, d.reason, d.payload)
                                    for d in dead])
    result.new = len(fresh)
    result.repeated = len(rows) - len(fresh)
    result.dead = len(dead)
    return result


def _write_details(cur: psycopg.Cursor[tuple[object, ...]], fresh: Sequence[Rows]) -> None:
    for direction, statement in (("entry", _ENTRY), ("exit", _EXIT)):
        passages = _one_per_session([r.session for r in fresh
                                     if r.session and r.session.direction == direction])
        if passages:
            columns: list[list[object]] = [[s.site for s in passages],
                                           [s.session_id for s in passages],
                                           [s.plate for s in passages],
                                           [s.lane for s in passages], [s.ts for s in passages]]
            if direction == "exit":
                columns += [[s.fee_fen for s in passages], [s.settled for s in passages]]
            cur.execute(statement, columns)
    payments = [r.payment for r in fresh if r.payment is not None]
    if payments:
        cur.execute(_PAYMENT, [[getattr(p, name) for p in payments] for name in (
            "event_id", "site", "lane", "session_id", "source", "settled", "fee_fen", "ts")])
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


def _one_per_session(passages: list[SessionPassage]) -> list[SessionPassage]:
    """One passage per (site, session) and direction, the last in stream order (as one upsert
    after another would leave it) but with the first plate seen: a single INSERT may not touch
    a row twice."""
    kept: dict[tuple[str, str], SessionPassage] = {}
    for passage in passages:
        key = (passage.site, passage.session_id)
        before = kept.get(key)
        if before is not None and before.plate is not None:
            passage = dataclasses.replace(passage, plate=before.plate)
        kept[key] = passage
    return list(kept.values())
