"""The audit log, its head record and the triggers that keep it append-only (set ``audit``).

See :mod:`gateway.records.audit` for the chain these tables hold.
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

GENESIS_HASH = "0" * 64
"""What entry 1 chains to: there is no entry 0."""
LOG_TABLE = "audit_log"
HEAD_TABLE = "audit_head"
HEAD_ID = 1

migrations = Migrations("audit")


@migrations()
def m001_create_audit_log(db: Database) -> None:
    """Create the log, its head record and the triggers that keep application code append-only."""
    db.table(LOG_TABLE).create(
        {
            "seq": int,
            "ts": str,
            "actor": str,
            "action": str,
            "subject": str,
            "reason": str,
            "before": str,
            "after": str,
            "prev_hash": str,
            "hash": str,
        },
        pk="seq",
        not_null=["ts", "actor", "action", "subject", "reason", "prev_hash", "hash"],
        strict=True,
    )
    head = db.table(HEAD_TABLE).create(
        {"id": int, "count": int, "last_hash": str},
        pk="id",
        not_null=["count", "last_hash"],
        strict=True,
    )
    head.insert({"id": HEAD_ID, "count": 0, "last_hash": GENESIS_HASH})
    for statement in (
        f"""CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON {LOG_TABLE}
            BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: no UPDATE'); END""",
        f"""CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON {LOG_TABLE}
            BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: no DELETE'); END""",
        f"""CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON {HEAD_TABLE}
            BEGIN SELECT RAISE(ABORT, 'audit_head cannot be deleted'); END""",
        f"""CREATE TRIGGER audit_head_no_shrink BEFORE UPDATE ON {HEAD_TABLE}
            WHEN NEW.count < OLD.count
            BEGIN SELECT RAISE(ABORT, 'audit_head count cannot go down'); END""",
    ):
        db.execute(statement)
