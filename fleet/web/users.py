"""The fleet dashboard's people: who may log in, their role, and which sites they see.

A ``fleet_admin`` sees every site; an ``operator`` only the sites in ``fleet_user_sites``.
The scope is decided here, once, and every page asks :func:`visible_sites`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

Role = Literal["fleet_admin", "operator"]
ROLES: tuple[Role, ...] = ("fleet_admin", "operator")
_hasher = PasswordHasher()
Conn = psycopg.Connection[tuple[object, ...]]


@dataclass(frozen=True, slots=True)
class FleetUser:
    username: str
    role: Role
    sites: frozenset[str]

    def sees(self, site: str) -> bool:
        return self.role == "fleet_admin" or site in self.sites


def add_user(conn: Conn, username: str, password: str, role: Role,
             sites: Iterable[str] = ()) -> FleetUser:
    """Create (or replace) a user; an operator without sites sees nothing."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if len(password) < 12:
        raise ValueError("password: at least 12 characters")
    chosen = frozenset(sites)
    with conn.transaction():
        conn.execute("INSERT INTO fleet_users (username, password_hash, role) VALUES (%s, %s, %s)"
                     " ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash,"
                     " role = EXCLUDED.role", (username, _hasher.hash(password), role))
        conn.execute("DELETE FROM fleet_user_sites WHERE username = %s", (username,))
        for site in sorted(chosen):
            conn.execute("INSERT INTO fleet_user_sites (username, site) VALUES (%s, %s)",
                         (username, site))
    return FleetUser(username, role, chosen)


def load_user(conn: Conn, username: str) -> FleetUser | None:
    row = conn.execute("SELECT role FROM fleet_users WHERE username = %s", (username,)).fetchone()
    if row is None:
        return None
    sites = frozenset(str(r[0]) for r in conn.execute(
        "SELECT site FROM fleet_user_sites WHERE username = %s", (username,)).fetchall())
    role: Role = "fleet_admin" if row[0] == "fleet_admin" else "operator"
    return FleetUser(username, role, sites)


def check_login(conn: Conn, username: str, password: str) -> FleetUser | None:
    """The user when the password is theirs; None otherwise (never says which was wrong)."""
    row = conn.execute("SELECT password_hash FROM fleet_users WHERE username = %s",
                       (username,)).fetchone()
    if row is None:
        _hasher.hash(password)  # the same work either way: no timing tells names apart
        return None
    try:
        _hasher.verify(str(row[0]), password)
    except (VerificationError, InvalidHashError):
        return None
    return load_user(conn, username)


def visible_sites(user: FleetUser, known: Iterable[str]) -> list[str]:
    return sorted(site for site in set(known) if user.sees(site))
