"""Opening the gateway's SQLite file: the one way in, with every table there once it returns.

WAL mode so readers (reports, the dashboard) never block ingestion; tables are created
explicitly (strict, integer fen) rather than inferred from rows. ``synchronous=FULL``: a
commit is on the disk when it returns, so an event the gateway has acknowledged survives a
power cut, not just a crash. It costs an fsync per commit (≈0.5 ms here), which is why the
gateway commits lane events in batches.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlite_utils

from gateway.storage.fast_reads import GatewayDatabase
from gateway.storage.migrations import migrate


def open_database(path: Path) -> sqlite_utils.Database:
    """Open (creating if needed) the gateway's SQLite file in WAL mode and apply every
    registered migration set (:data:`gateway.storage.migrations.REGISTRY`, in its order).

    The connection may be used from the one worker thread that owns it even though another
    thread opened it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db = GatewayDatabase(conn)  # plain SELECTs without sqlite-utils' savepoint (fast_reads)
    db.enable_wal()
    db.execute("PRAGMA synchronous=FULL")
    return migrate(db)
