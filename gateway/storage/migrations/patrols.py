"""Patrol taps, tag counters and the rounds judged from them (set ``parkguard.patrols``)."""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("parkguard.patrols")


@migrations()
def m001_patrols(db: sqlite_utils.Database) -> None:
    db.table("patrol_taps").create(
        {"id": int, "reader": str, "seq": int, "received_at": str, "tapped_at": str,
         "reader_time": str, "uploaded": str, "tag_id": str, "checkpoint": str, "badge": str,
         "person": str, "sun": str, "counter": int, "status": str, "reason": str,
         "detail": str, "flags": str, "answers": str},
        pk="id",
        not_null=["reader", "seq", "received_at", "tapped_at", "reader_time", "tag_id",
                  "badge", "status", "flags", "answers"],
        strict=True,
    )
    db.execute("CREATE UNIQUE INDEX patrol_taps_reader_seq ON patrol_taps(reader, seq)")
    db.execute("CREATE INDEX patrol_taps_time ON patrol_taps(tapped_at)")
    db.execute("CREATE INDEX patrol_taps_tag ON patrol_taps(tag_id, counter)")
    db.table("patrol_tag_counters").create(
        {"tag_id": str, "last_counter": int, "last_tapped_at": str, "updated_at": str},
        pk="tag_id", not_null=["last_counter", "last_tapped_at", "updated_at"], strict=True,
    )
    db.table("patrol_rounds").create(
        {"id": int, "obligation": str, "subject": str, "window_label": str,
         "window_start": str, "window_end": str, "deadline": str, "status": str,
         "required": int, "counted": int, "rounds": str, "evaluated_at": str,
         "escalate_to": str, "alerted_at": str, "alert_key": str},
        pk="id",
        not_null=["obligation", "subject", "window_label", "window_start", "window_end",
                  "deadline", "status", "required", "counted", "rounds", "evaluated_at"],
        strict=True,
    )
    db.execute("CREATE UNIQUE INDEX patrol_rounds_key ON "
               "patrol_rounds(obligation, subject, window_start)")
