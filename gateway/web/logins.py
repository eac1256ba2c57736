"""Server-side login sessions: what makes logging out (or a password change) final.

The signed cookie carries only a random session id; the database keeps its SHA-256, the
user it belongs to and when it expires. A cookie saved before logout names a row that is
gone, so it is refused, whatever its signature says. Only the hash is stored, so whoever
reads a copy of the database cannot replay a live session from it.

A session ended by a password change or a disabled account is not deleted but marked
(``ended``) until it would have expired: it is refused all the same, and the login page can
tell the person why they were sent back to it instead of a silent redirect.

Every stamp here, and the users' own (``users.created_at``, ``password_changed_at``), is on
the wall clock (:data:`WALL`), never the site clock: the simulator's clock runs a day ahead
in seconds, a person's login and a stolen cookie's lifetime do not. The demo once stamped
its users with the simulated evening and every login looked older than its password.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal, TypeAlias

import sqlite_utils

from parkguard.clock import Clock, SystemClock, utc_iso

TABLE = "web_sessions"
WALL: Final[Clock] = SystemClock()
"""The clock of logins, sessions and password stamps: the host's, whatever the site's is."""

Ended: TypeAlias = Literal["password_changed", "disabled"]
"""Why a session was ended on the server (logging out deletes it instead)."""


@dataclass(frozen=True, slots=True)
class Login:
    """A session row that has not expired: whose it is, and why it ended if it did."""

    username: str
    ended: Ended | None = None


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "replace")).hexdigest()


def open_session(db: sqlite_utils.Database, username: str, *, now: datetime,
                 hours: float) -> str:
    """A new session for ``username`` valid for ``hours``; returns its id (for the cookie).
    Expired rows (ended ones too) are swept on the way, so the table stays as small as the
    sessions of the last ``hours``."""
    session_id = secrets.token_urlsafe(32)
    stamp = utc_iso(now)
    db.execute(f"DELETE FROM {TABLE} WHERE expires_at <= ?", [stamp])  # noqa: S608 - constant
    db.table(TABLE).insert({"session_hash": _digest(session_id), "username": username,
                            "created_at": stamp,
                            "expires_at": utc_iso(now + timedelta(hours=hours))})
    return session_id


def find_session(db: sqlite_utils.Database, session_id: str, *, now: datetime) -> Login | None:
    """The session's row if it has not expired (live or ended), or None (unknown, logged
    out or expired)."""
    rows = list(db.query(
        f"SELECT username, ended FROM {TABLE} "  # noqa: S608 - constant
        "WHERE session_hash = ? AND expires_at > ?", [_digest(session_id), utc_iso(now)]))
    if not rows:
        return None
    ended = rows[0]["ended"]
    return Login(str(rows[0]["username"]),
                 "disabled" if ended == "disabled" else "password_changed" if ended else None)


def session_owner(db: sqlite_utils.Database, session_id: str, *, now: datetime) -> str | None:
    """The user name of a live session, or None (unknown, ended or expired)."""
    found = find_session(db, session_id, now=now)
    return found.username if found is not None and found.ended is None else None


def close_session(db: sqlite_utils.Database, session_id: str) -> None:
    """End one session (logout)."""
    db.execute(f"DELETE FROM {TABLE} WHERE session_hash = ?",  # noqa: S608 - constant
               [_digest(session_id)])


def close_sessions_of(db: sqlite_utils.Database, username: str,
                      reason: Ended = "password_changed") -> int:
    """End every open session of ``username`` (password changed, account disabled), keeping
    the reason for the login page; how many were open."""
    cursor = db.execute(f"UPDATE {TABLE} SET ended = ? "  # noqa: S608 - constant
                        "WHERE username = ? AND ended IS NULL", [reason, username])
    return int(cursor.rowcount)
