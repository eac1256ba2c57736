"""Conflicts between what lanes did offline and what the gateway knew
(set ``parkguard.reconcile``)."""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("parkguard.reconcile")


@migrations()
def m001_conflicts(db: sqlite_utils.Database) -> None:
    """One row per conflict found, unique per (kind, lane event): a replayed event (the
    lane's journal sends again after a crash) finds the conflict it already made."""
    db.create_table(
        "conflicts",
        {"id": int, "kind": str, "lane": str, "plate": str, "event_id": str,
         "event_ts": str, "decided_by": str, "session_id": str, "detail": str,
         "detected_at": str, "state": str, "resolved_by": str, "resolved_at": str,
         "resolution": str},
        pk="id",
        not_null={"kind", "lane", "plate", "event_id", "event_ts", "decided_by", "detail",
                  "detected_at", "state"},
        strict=True,
    )
    conflicts = db.table("conflicts")
    conflicts.create_index(["kind", "event_id"], unique=True)
    conflicts.create_index(["state"])
