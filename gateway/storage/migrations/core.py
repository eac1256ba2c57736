"""Events, decisions, sessions, dead letters and sequence gaps: the gateway's own tables
(set ``parkguard.gateway``)."""

from __future__ import annotations

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


@migrations()
def m004_seq_gaps(db: sqlite_utils.Database) -> None:
    """Runs of a lane's ``seq`` the gateway has not seen (yet): lost or merely late events."""
    db.create_table(
        "seq_gaps",
        {"id": int, "lane": str, "from_seq": int, "to_seq": int, "detected_at": str,
         "filled_at": str},
        pk="id", not_null={"lane", "from_seq", "to_seq", "detected_at"}, strict=True,
    )
    db.table("seq_gaps").create_index(["lane", "filled_at"])


@migrations()
def m005_lane_decisions_by_correlation(db: sqlite_utils.Database) -> None:
    """Each passage looks up the lane's own ``decision`` event (offline, manual open, fire):
    an index keeps that a lookup as the events table grows."""
    db.execute(
        "CREATE INDEX IF NOT EXISTS events_decision_correlation ON events "
        "(lane, json_extract(payload, '$.correlation_id')) WHERE type = 'decision'")


@migrations()
def m006_sessions_by_state(db: sqlite_utils.Database) -> None:
    """Replica snapshots and the open-session queries read the cars inside (``state =
    'open'``): without an index each read scanned every stay ever (94 ms on a soak's fourth
    day, 0.09 ms with it; docs/scenarios.md)."""
    db.execute("CREATE INDEX IF NOT EXISTS sessions_state ON sessions (state)")


@migrations()
def m007_decisions_by_session(db: sqlite_utils.Database) -> None:
    """A paid exit's passage looks up the ``payment_due`` decision of its session
    (``Sessions._held_for_money``): without an index each lookup scanned every decision ever
    (45 ms on a soak's 13th day, 88 000 decisions; 0.015 ms with it; docs/scenarios.md)."""
    db.execute("CREATE INDEX IF NOT EXISTS decisions_session ON decisions (session_id)")
