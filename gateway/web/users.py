"""Dashboard users: who may log in, with which role, under an argon2 password hash.

The ``users`` table lives in the gateway's SQLite file under its own migration set
(``parkguard.web``). Passwords are never stored, logged or returned: only argon2id hashes
(argon2-cffi's defaults, re-hashed on login when the parameters change). A merchant user
is tied to one merchant account and sees only that merchant's money.

Its stamps (``created_at``, ``password_changed_at``) are on the wall clock, the clock of
the web sessions (:data:`gateway.web.logins.WALL`), never a site clock handed in by the
caller: the demo's users were once stamped with the simulated evening.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, TypeAlias, cast

import sqlite_utils
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.storage.migrations.users import migrations
from gateway.web.logins import WALL, close_sessions_of
from parkguard.clock import Clock, utc_iso

Role: TypeAlias = Literal["guard", "supervisor", "manager", "merchant", "cleaner"]
ROLES: tuple[Role, ...] = ("guard", "supervisor", "manager", "merchant", "cleaner")
ROLE_LABELS: dict[str, tuple[str, str]] = {
    "guard": ("保安", "Guard"), "supervisor": ("值班主管", "Supervisor"),
    "manager": ("经理", "Manager"), "merchant": ("商户", "Merchant"),
    "cleaner": ("保洁员", "Cleaner"),
}
MIN_PASSWORD_LENGTH = 10
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")

_hasher = PasswordHasher()


class UserError(ValueError):
    """A user could not be added or changed: the message says why, never the password."""


@dataclass(frozen=True, slots=True)
class User:
    username: str
    role: Role
    merchant_id: str | None
    disabled: bool
    created_at: str
    password_changed_at: str = ""
    """When the password last changed: the change also deleted every open session."""

    @property
    def actor(self) -> str:
        """How the audit log names this person."""
        return f"{self.role}:{self.username}"


def hash_password(password: str, hasher: PasswordHasher | None = None) -> str:
    check_password(password)
    return (hasher or _hasher).hash(password)


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")


def check_username(username: str) -> None:
    """Refuse a name no user may have (checked before a password is asked for)."""
    if not _USERNAME.match(username):
        raise UserError(f"user name {username!r}: 2-32 of a-z 0-9 . _ -, starting with a "
                        "letter or digit")


def _user(row: dict[str, object]) -> User:
    return User(str(row["username"]), cast(Role, row["role"]),
                None if row["merchant_id"] is None else str(row["merchant_id"]),
                bool(row["disabled"]), str(row["created_at"]),
                str(row["password_changed_at"]))


class UserStore:
    """Users on one SQLite connection (the CLI's, or the gateway worker's for migrations).

    ``hasher`` is argon2-cffi's default (argon2id, 64 MiB, 3 passes) unless a test hands in
    a cheaper one; verification always uses the parameters stored in each hash. ``clock``
    stamps the changes: the wall clock (:data:`~gateway.web.logins.WALL`) unless a test
    steps its own; never the site's (sessions are on the wall clock).
    """

    def __init__(self, db: sqlite_utils.Database, *,
                 hasher: PasswordHasher | None = None, clock: Clock = WALL) -> None:
        self.db = db
        self._hasher = hasher
        self._clock = clock

    @staticmethod
    def migrate(db: sqlite_utils.Database) -> None:
        migrations.apply(db)

    def check_new(self, username: str, role: str, merchant_id: str | None = None) -> None:
        """Refuse a user that could not be added, for any reason but the password: the CLI
        asks this before it asks for a password, so a bad name is not found out after it."""
        check_username(username)
        if role not in ROLES:
            raise UserError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if (role == "merchant") != bool(merchant_id):
            raise UserError("a merchant user needs --merchant (its merchant id), and only "
                            "a merchant user may have one")
        if merchant_id and not self._merchant_exists(merchant_id):
            raise UserError(f"no merchant {merchant_id!r}: open its account first "
                            "(dashboard: Merchants), then add its user")
        if self.get(username) is not None:
            raise UserError(f"user {username!r} already exists")

    def add(self, username: str, role: str, password: str, *,
            merchant_id: str | None = None) -> User:
        self.check_new(username, role, merchant_id)
        stamp = utc_iso(self._clock.now())
        self.db.table("users").insert({
            "username": username, "role": role, "merchant_id": merchant_id,
            "password_hash": hash_password(password, self._hasher), "disabled": 0,
            "created_at": stamp, "password_changed_at": stamp,
        })
        return self._require(username)

    def _merchant_exists(self, merchant_id: str) -> bool:
        """A merchant user's pages read its account: one for a merchant that does not
        exist would only ever answer errors."""
        if not self.db["merchants"].exists():
            return False
        return bool(list(self.db.query("SELECT 1 FROM merchants WHERE merchant_id = ?",
                                       [merchant_id])))

    def get(self, username: str) -> User | None:
        rows = list(self.db.query("SELECT * FROM users WHERE username = ?", [username]))
        return _user(rows[0]) if rows else None

    def all(self) -> list[User]:
        return [_user(row) for row in self.db.query("SELECT * FROM users ORDER BY username")]

    def set_password(self, username: str, password: str) -> None:
        self._require(username)
        hashed = hash_password(password, self._hasher)
        self.db.execute("UPDATE users SET password_hash = ?, password_changed_at = ? "
                        "WHERE username = ?", [hashed, utc_iso(self._clock.now()), username])
        close_sessions_of(self.db, username)  # every open session ends with the old password

    def set_disabled(self, username: str, disabled: bool = True) -> None:
        self._require(username)
        self.db.execute("UPDATE users SET disabled = ? WHERE username = ?",
                        [int(disabled), username])
        if disabled:
            close_sessions_of(self.db, username, "disabled")

    def _require(self, username: str) -> User:
        user = self.get(username)
        if user is None:
            raise UserError(f"no user {username!r}")
        return user


def authenticate(db: sqlite_utils.Database, username: str, password: str) -> User | None:
    """The user if the password is right and the account enabled; None otherwise.

    Unknown users cost the same argon2 verification as known ones, so timing does not tell
    which names exist.
    """
    rows = list(db.query("SELECT * FROM users WHERE username = ?", [username]))
    stored = str(rows[0]["password_hash"]) if rows else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if not rows or rows[0]["disabled"]:
        return None
    return _user(rows[0])


def session_user(db: sqlite_utils.Database, username: str) -> User | None:
    """The logged-in user as the database says now: a disabled account loses its session."""
    rows = list(db.query("SELECT * FROM users WHERE username = ?", [username]))
    if not rows or rows[0]["disabled"]:
        return None
    return _user(rows[0])


_DUMMY_HASH = _hasher.hash("not-a-real-password-placeholder")
