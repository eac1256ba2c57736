"""The gateway's SQLite file: schema migrations and the few queries the services need.

WAL mode so readers (reports, the dashboard) never block ingestion; tables are
created explicitly (strict, integer fen) rather than inferred from rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("parkguard.gateway")


@migrations()
def m001_events_sessions_dead_letters(db: sqlite_utils.Database) -> None:
    db.create_table(
        "events",
        {"event_id": str, "lane": str, "seq": int, "type": str, "ts": str, "payload": str,
         "received_at": str},
        pk="event_id", not_null={"lane", "seq", "type", "ts", "payload", "received_at"},
        strict=True,
    )
    db.table("events").create_index(["lane", "seq"])
    db.create_table(
        "decisions",
        {"correlation_id": str, "lane": str, "direction": str, "plate": str, "action": str,
         "reason": str, "fee_fen": int, "session_id": str, "requested_at": str,
         "answered_at": str},
        pk="correlation_id",
        not_null={"lane", "direction", "action", "reason", "fee_fen", "answered_at"},
        strict=True,
    )
    db.create_table(
        "sessions",
        {"session_id": str, "plate": str, "state": str, "entry_lane": str, "entry_at": str,
         "entry_event_id": str, "exit_lane": str, "exit_at": str, "exit_event_id": str,
         "fee_fen": int, "tariff": str, "review": str},
        pk="session_id", not_null={"plate", "state", "entry_lane", "entry_at", "fee_fen"},
        defaults={"fee_fen": 0}, strict=True,
    )
    db.table("sessions").create_index(["plate", "state"])
    db.create_table(
        "dead_letters",
        {"id": int, "received_at": str, "topic": str, "payload": bytes, "reason": str},
        pk="id", not_null={"received_at", "topic", "payload", "reason"}, strict=True,
    )


@migrations()
def m002_plate_reads_and_match_evidence(db: sqlite_utils.Database) -> None:
    """Keep what the camera read beside the plate it was taken for, and why (fee disputes)."""
    sessions = db.table("sessions")
    sessions.add_column("entry_read", str)
    sessions.add_column("exit_read", str)
    sessions.add_column("exit_match", str)
    db.table("decisions").add_column("match", str)


@migrations()
def m003_session_access_and_exit_bills(db: sqlite_utils.Database) -> None:
    """How a car came in (visitor, pass, whitelisted) and the bill each exit decision showed:
    the money at exit follows from them, and a disputed fee is answered with the same lines."""
    sessions = db.table("sessions")
    sessions.add_column("access", str)
    sessions.add_column("pass_id", str)
    db.table("decisions").add_column("bill", str)


def open_database(path: Path) -> sqlite_utils.Database:
    """Open (creating if needed) a SQLite file in WAL mode, usable from the one worker thread
    that owns it even though another thread opened it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db = sqlite_utils.Database(conn)
    db.enable_wal()
    db.execute("PRAGMA synchronous=NORMAL")
    return db


class GatewayStore:
    """Sessions, decisions, ingested events and dead letters in one SQLite file.

    ``db`` is the writer's connection and belongs to the gateway's worker thread;
    anyone else (reports, the dashboard, tests) reads through :meth:`reader`, its own
    connection — WAL lets readers and the writer work at the same time.
    """

    def __init__(self, db: sqlite_utils.Database, path: Path | None = None) -> None:
        self.db = db
        self.path = path
        migrations.apply(db)

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

    def open_sessions(self) -> list[dict[str, Any]]:
        """Every car inside, oldest first."""
        return list(self.db.query(
            "SELECT session_id, plate FROM sessions WHERE state = 'open' ORDER BY entry_at"))

    def session(self, session_id: str) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM sessions WHERE session_id = ?", [session_id]))
        return rows[0] if rows else None

    def last_session_id(self, plate: str) -> str | None:
        """The plate's latest session, open or closed (a payment code scanned after the fact)."""
        row = self.db.execute(
            "SELECT session_id FROM sessions WHERE plate = ? ORDER BY entry_at DESC LIMIT 1",
            [plate]).fetchone()
        return str(row[0]) if row else None

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
