"""The few queries the gateway's worker needs on its SQLite file: events stored once, sequence
gaps, sessions and decisions, dead letters.

The file is opened (and every migration set applied) by
:func:`gateway.storage.database.open_database`; ``db`` is the worker's connection, and anyone
else reads through :meth:`GatewayStore.reader`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from gateway.storage.database import open_database

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SeqGap:
    """Seqs ``from_seq..to_seq`` (inclusive) of ``lane`` were skipped when first seen."""

    id: int
    lane: str
    from_seq: int
    to_seq: int
    detected_at: str
    filled_at: str | None


class GatewayStore:
    """Sessions, decisions, ingested events and dead letters in one SQLite file.

    ``db`` is the writer's connection and belongs to the gateway's worker thread;
    anyone else (reports, the dashboard, tests) reads through :meth:`reader`, its own
    connection — WAL lets readers and the writer work at the same time.
    """

    def __init__(self, db: sqlite_utils.Database, path: Path | None = None) -> None:
        self.db = db
        self.path = path
        self._highest_seq: dict[str, int] | None = None  # per lane; loaded on first use

    @classmethod
    def open(cls, path: Path) -> GatewayStore:
        return cls(open_database(path), path)

    @contextmanager
    def reader(self) -> Iterator[sqlite_utils.Database]:
        """A read-only connection of the caller's own, closed on exit."""
        if self.path is None:
            raise RuntimeError("an in-memory store has no second connection to read through")
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            yield sqlite_utils.Database(conn)
        finally:
            conn.close()

    @contextmanager
    def atomic(self) -> Iterator[sqlite_utils.Database]:
        with self.db.atomic() as db:
            yield db

    def insert_event_once(self, row: dict[str, Any]) -> bool:
        """Store an event unless its ``event_id`` is known; say whether it was new."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO events (event_id, lane, seq, type, ts, payload, received_at) "
            "VALUES (:event_id, :lane, :seq, :type, :ts, :payload, :received_at)",
            row,
        )
        return cursor.rowcount == 1

    # sequence gaps ---------------------------------------------------------------------

    def track_seq(self, lane: str, seq: int, seen_at: str) -> SeqGap | None:
        """Note a newly stored event's ``seq``; return the gap it opened, if any.

        Call it in the transaction that stored the event (so a rollback forgets both) and
        only for events that were new: dedupe is by ``event_id``, and an event that arrives
        out of order is late, not a duplicate. A jump past the lane's highest seq records a
        gap; an event below it may fill one, which is marked filled once every seq in it has
        been stored. A lane whose seq starts again from 1 (a reboot without a journal) only
        looks late: no gap is invented for it.
        """
        highest = self._highest()
        top = highest.get(lane)
        if top is None or seq == top + 1:
            highest[lane] = seq if top is None else max(top, seq)
            return None
        if seq > top + 1:
            cursor = self.db.execute(
                "INSERT INTO seq_gaps (lane, from_seq, to_seq, detected_at) VALUES (?, ?, ?, ?)",
                [lane, top + 1, seq - 1, seen_at])
            highest[lane] = seq
            gap = SeqGap(int(cursor.lastrowid or 0), lane, top + 1, seq - 1, seen_at, None)
            log.warning("gateway: lane %s skipped seq %d..%d (got %d after %d): lost or late",
                        lane, gap.from_seq, gap.to_seq, seq, top)
            return gap
        self._fill(lane, seq, seen_at)
        return None

    def _fill(self, lane: str, seq: int, seen_at: str) -> None:
        rows = self.db.execute(
            "SELECT id, from_seq, to_seq FROM seq_gaps WHERE lane = ? AND filled_at IS NULL "
            "AND ? BETWEEN from_seq AND to_seq", [lane, seq]).fetchall()
        for gap_id, low, high in rows:
            have = self.db.execute(
                "SELECT count(DISTINCT seq) FROM events WHERE lane = ? AND seq BETWEEN ? AND ?",
                [lane, low, high]).fetchone()[0]
            if have == high - low + 1:
                self.db.execute("UPDATE seq_gaps SET filled_at = ? WHERE id = ?",
                                [seen_at, gap_id])
                log.info("gateway: lane %s gap %d..%d filled by late events", lane, low, high)

    def _highest(self) -> dict[str, int]:
        if self._highest_seq is None:
            self._highest_seq = {
                str(lane): int(top) for lane, top in
                self.db.execute("SELECT lane, max(seq) FROM events GROUP BY lane").fetchall()}
        return self._highest_seq

    def forget_seq_cache(self) -> None:
        """Reread each lane's highest seq from the file (after a rolled-back transaction)."""
        self._highest_seq = None

    def open_gaps(self, lane: str | None = None) -> list[SeqGap]:
        """Gaps no late event has filled yet, oldest first (read through a connection of
        its own when the store has a file, so any thread may ask)."""
        sql = "SELECT * FROM seq_gaps WHERE filled_at IS NULL"
        params: list[Any] = []
        if lane is not None:
            sql += " AND lane = ?"
            params.append(lane)
        sql += " ORDER BY id"
        if self.path is None:
            return [SeqGap(**row) for row in self.db.query(sql, params)]
        with self.reader() as db:
            return [SeqGap(**row) for row in db.query(sql, params)]

    # sessions and decisions ----------------------------------------------------------

    def open_sessions(self) -> list[dict[str, Any]]:
        """Every car inside, oldest first."""
        return list(self.db.query(
            "SELECT session_id, plate FROM sessions WHERE state = 'open' ORDER BY entry_at"))

    def session(self, session_id: str) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM sessions WHERE session_id = ?", [session_id]))
        return rows[0] if rows else None

    def open_sessions_by_lane(self) -> list[dict[str, Any]]:
        """The cars inside with the lane they came in by, on what terms and under which
        plate, oldest first (capacity counts one car per plate)."""
        return list(self.db.query(
            "SELECT session_id, entry_lane, access, plate FROM sessions WHERE state = 'open' "
            "ORDER BY entry_at, rowid"))

    def lane_decision(self, lane: str, correlation_id: str) -> dict[str, Any] | None:
        """The ``decision`` event a lane reported for this correlation id, if stored (a
        manual open or a decision the lane took alone)."""
        row = self.db.execute(
            "SELECT payload FROM events WHERE lane = ? AND type = 'decision' "
            "AND json_extract(payload, '$.correlation_id') = ? LIMIT 1",
            [lane, correlation_id]).fetchone()
        return dict(json.loads(row[0])) if row else None

    def last_session_id(self, plate: str) -> str | None:
        """The plate's latest session, open or closed (a payment code scanned after the fact)."""
        row = self.db.execute(
            "SELECT session_id FROM sessions WHERE plate = ? ORDER BY entry_at DESC LIMIT 1",
            [plate]).fetchone()
        return str(row[0]) if row else None

    def waiting_at_exits(self) -> list[dict[str, Any]]:
        """The cars a restarted gateway finds waiting at an exit barrier for their money,
        oldest first: each exit lane's latest decision when it refused a car ``payment_due``,
        that car's stay is still open, and the lane has reported no decision of its own (a
        guard's open, an offline verdict, another car) or passage since. Rows: ``lane``,
        ``session_id``, ``plate``, ``fee_fen``, ``answered_at``.

        A car that backed out leaves no trace the gateway sees, so it may be counted as
        waiting until its lane's next decide request, as the in-memory note would have."""
        latest = self.db.query(
            "SELECT d.correlation_id, d.lane, d.session_id, d.fee_fen, d.action, d.reason, "
            "d.requested_at, d.answered_at, s.plate, s.state, max(d.answered_at) AS newest "
            "FROM decisions d LEFT JOIN sessions s ON s.session_id = d.session_id "
            "WHERE d.direction = 'exit' GROUP BY d.lane ORDER BY d.answered_at")
        return [{name: row[name] for name in
                 ("lane", "session_id", "plate", "fee_fen", "answered_at")}
                for row in latest
                if (row["action"], row["reason"], row["state"]) == ("refuse", "payment_due",
                                                                     "open")
                and not self._lane_moved_since(row["lane"], row["correlation_id"],
                                               row["requested_at"])]

    def _lane_moved_since(self, lane: str, correlation_id: str, requested_at: str) -> bool:
        """Whether ``lane`` reported a decision or a passage after the one it asked for
        under ``correlation_id``: after that decision's own event (by seq, on the index),
        or, not stored yet, after the request by the lane's clock."""
        mine = self.db.execute(
            "SELECT seq FROM events WHERE lane = ? AND type = 'decision' "
            "AND json_extract(payload, '$.correlation_id') = ? LIMIT 1",
            [lane, correlation_id]).fetchone()
        if mine is not None:
            later = self.db.execute(
                "SELECT 1 FROM events WHERE lane = ? AND seq > ? "
                "AND type IN ('decision', 'passed') LIMIT 1", [lane, mine[0]]).fetchone()
        else:
            later = self.db.execute(
                "SELECT 1 FROM events WHERE lane = ? AND ts > ? "
                "AND type IN ('decision', 'passed') LIMIT 1", [lane, requested_at]).fetchone()
        return later is not None

    def decision(self, correlation_id: str) -> dict[str, Any] | None:
        rows = list(self.db.query(
            "SELECT * FROM decisions WHERE correlation_id = ?", [correlation_id]
        ))
        return rows[0] if rows else None

    def dead_letter(self, *, received_at: str, topic: str, payload: bytes, reason: str) -> None:
        self.db.table("dead_letters").insert(
            {"received_at": received_at, "topic": topic, "payload": payload, "reason": reason}
        )

    def count(self, table: str, where: str = "1 = 1", params: tuple[Any, ...] = ()) -> int:
        """Rows of ``table`` matching ``where``, read through a connection of its own."""
        sql = f"SELECT count(*) FROM [{table}] WHERE {where}"  # noqa: S608 - internal callers
        with self.reader() as db:
            return int(db.execute(sql, params).fetchone()[0])

    def close(self) -> None:
        self.db.close()
