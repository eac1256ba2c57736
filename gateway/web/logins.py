"""Server-side login sessions: what makes logging out (or a password change) final.

The signed cookie carries only a random session id; the database keeps its SHA-256, the
user it belongs to and when it expires. A cookie saved before logout names a row that is
gone, so it is refused, whatever its signature says. Only the hash is stored, so whoever
reads a copy of the database cannot replay a live session from it.

Times are real UTC (the host's clock), not the site clock: the simulator's clock jumps, a
stolen cookie's lifetime does not.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

import sqlite_utils

from parkguard.clock import utc_iso

TABLE = "web_sessions"


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "replace")).hexdigest()


def open_session(db: sqlite_utils.Database, username: str, *, now: datetime,
                 hours: float) -> str:
    """A new session for ``username`` valid for ``hours``; returns its id (for the cookie).
    Expired rows are swept on the way, so the table stays as small as the live sessions."""
    session_id = secrets.token_urlsafe(32)
    stamp = utc_iso(now)
    db.execute(f"DELETE FROM {TABLE} WHERE expires_at <= ?", [stamp])  # noqa: S608 - constant
    db.table(TABLE).insert({"session_hash": _digest(session_id), "username": username,
                            "created_at": stamp,
                            "expires_at": utc_iso(now + timedelta(hours=hours))})
    return session_id


def session_owner(db: sqlite_utils.Database, session_id: str, *, now: datetime) -> str | None:
    """The user name of a live session, or None (unknown, ended or expired)."""
    rows = list(db.query(
        f"SELECT username FROM {TABLE} WHERE session_hash = ? AND expires_at > ?",  # noqa: S608
        [_digest(session_id), utc_iso(now)]))
    return str(rows[0]["username"]) if rows else None


def close_session(db: sqlite_utils.Database, session_id: str) -> None:
    """End one session (logout)."""
    db.execute(f"DELETE FROM {TABLE} WHERE session_hash = ?",  # noqa: S608 - constant
               [_digest(session_id)])


def close_sessions_of(db: sqlite_utils.Database, username: str) -> int:
    """End every session of ``username`` (password changed, account disabled); how many."""
    cursor = db.execute(f"DELETE FROM {TABLE} WHERE username = ?",  # noqa: S608 - constant
                        [username])
    return int(cursor.rowcount)
