"""Duties by the kind of day (set ``parkguard.duties``): cleaning rounds ticked on the
cleaner's page, and which short-roster warnings were sent (docs/patrols.md)."""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("parkguard.duties")


@migrations()
def m001_cleaning_ticks(db: sqlite_utils.Database) -> None:
    """A cleaning task ticked done on a page (a round without taps): who, when, which
    obligation and window, the checklist's answers."""
    db.create_table(
        "cleaning_ticks",
        {"id": int, "obligation": str, "window_start": str, "window_label": str,
         "person": str, "ticked_at": str, "answers": str, "note": str},
        pk="id", not_null={"obligation", "window_start", "window_label", "person",
                           "ticked_at", "answers", "note"}, strict=True,
    )
    db.table("cleaning_ticks").create_index(["obligation", "window_start"])


@migrations()
def m002_staffing_alerts(db: sqlite_utils.Database) -> None:
    """One row per short roster warned about (rule, day, first hour): warned once."""
    db.create_table(
        "staffing_alerts",
        {"key": str, "rule": str, "day": str, "from_hour": int, "alerted_at": str},
        pk="key", not_null={"rule", "day", "from_hour", "alerted_at"}, strict=True,
    )
