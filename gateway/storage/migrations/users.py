"""Dashboard users (set ``parkguard.web``): who may log in, with which role, under an argon2
hash. The rules for them live in :mod:`gateway.web.users`."""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("parkguard.web")


@migrations()
def m001_users(db: sqlite_utils.Database) -> None:
    db.create_table(
        "users",
        {"username": str, "role": str, "merchant_id": str, "password_hash": str,
         "disabled": int, "created_at": str, "password_changed_at": str},
        pk="username",
        not_null={"role", "password_hash", "disabled", "created_at", "password_changed_at"},
        defaults={"disabled": 0}, strict=True,
    )


@migrations()
def m002_web_sessions(db: sqlite_utils.Database) -> None:
    """Server-side login sessions: the cookie carries only a random id, whose SHA-256 is
    kept here, so logging out or a password change ends a session for good."""
    db.create_table(
        "web_sessions",
        {"session_hash": str, "username": str, "created_at": str, "expires_at": str},
        pk="session_hash", not_null={"username", "created_at", "expires_at"}, strict=True,
    )
    db.table("web_sessions").create_index(["username"], if_not_exists=True)


@migrations()
def m003_web_sessions_ended(db: sqlite_utils.Database) -> None:
    """Why a session was ended on the server (``password_changed``, ``disabled``): such a
    row is kept, refused, until it expires, so the login page can say why."""
    db.execute("ALTER TABLE web_sessions ADD COLUMN ended TEXT")
