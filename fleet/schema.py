"""Bring the fleet database to the newest schema with yoyo (``fleet/migrations/*.sql``).

Each migration is applied once, in its own transaction, and recorded in yoyo's own tables;
running it again is a no-op, so the service migrates at every start.
"""

from __future__ import annotations

from importlib import resources
from urllib.parse import quote

from yoyo import get_backend, read_migrations


def _yoyo_url(dsn: str) -> str:
    """yoyo wants a URL; ours is a libpq key=value string (it may hold a password)."""
    parts = dict(item.split("=", 1) for item in dsn.split())
    user = parts.get("user", "")
    password = parts.get("password", "")
    login = f"{quote(user)}:{quote(password)}@" if password else (f"{quote(user)}@" if user else "")
    host = parts.get("host", "127.0.0.1")
    port = parts.get("port", "5432")
    return f"postgresql+psycopg://{login}{host}:{port}/{parts.get('dbname', 'fleet')}"


def migrate(dsn: str) -> int:
    """Apply what is missing; returns how many migrations were applied now."""
    folder = resources.files("fleet.migrations")
    migrations = read_migrations(str(folder))
    backend = get_backend(_yoyo_url(dsn))
    with backend.lock():
        todo = backend.to_apply(migrations)
        backend.apply_migrations(todo)
    return len(todo)
