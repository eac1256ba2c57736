"""Alerts, their events, notifications and used acknowledgement tokens, and what the alarm
monitor remembers of each sensor node (set ``parkguard.alerts``)."""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("parkguard.alerts")


@migrations()
def m001_alerts(db: sqlite_utils.Database) -> None:
    db.table("alerts").create(
        {
            "id": int, "alert_id": str, "key": str, "kind": str, "severity": str,
            "state": str, "title_zh": str, "title_en": str, "detail": str, "team": str,
            "all_at_once": int, "raised_at": str, "notified_at": str, "step": int,
            "round": int, "next_due": str, "acked_at": str, "acked_by": str,
            "acked_via": str, "resolved_at": str, "resolved_by": str, "resolve_reason": str,
            "updated_at": str,
        },
        pk="id",
        not_null=["alert_id", "key", "kind", "severity", "state", "title_zh", "title_en",
                  "detail", "all_at_once", "raised_at", "step", "round", "updated_at"],
        strict=True,
    )
    db.execute("CREATE UNIQUE INDEX alerts_alert_id ON alerts(alert_id)")
    # The dedup rule itself: one unresolved alert per condition.
    db.execute("CREATE UNIQUE INDEX alerts_open_key ON alerts(key) WHERE state <> 'resolved'")
    db.execute("CREATE INDEX alerts_due ON alerts(next_due) WHERE next_due IS NOT NULL")
    db.table("alert_events").create(
        {"id": int, "alert_id": str, "at": str, "event": str, "actor": str, "detail": str},
        pk="id", not_null=["alert_id", "at", "event", "actor"], strict=True,
    )
    db.execute("CREATE INDEX alert_events_alert ON alert_events(alert_id)")
    db.table("alert_notifications").create(
        {"id": int, "alert_id": str, "step": int, "round": int, "person": str,
         "channel": str, "target": str, "status": str, "error": str, "queued_at": str,
         "done_at": str},
        pk="id", not_null=["alert_id", "step", "round", "person", "channel", "target",
                           "status", "queued_at"], strict=True,
    )
    db.execute("CREATE INDEX alert_notifications_alert ON alert_notifications(alert_id)")
    # Owner messages ("please move your car") go once per alert and phone.
    db.execute("CREATE UNIQUE INDEX alert_notifications_owner ON "
               "alert_notifications(alert_id, target) WHERE channel = 'owner'")
    db.table("alert_ack_tokens").create(
        {"digest": str, "alert_id": str, "person": str, "used_at": str},
        pk="digest", not_null=["alert_id", "person", "used_at"], strict=True,
    )


@migrations()
def m002_sensor_nodes(db: sqlite_utils.Database) -> None:
    """Each sensor node's count and flood or fire-panel state (JSON, any seq fits), so a
    restart neither forgets an active flood nor mistakes a resend for a new reading."""
    db.table("sensor_nodes").create(
        {"node": str, "state": str, "updated_at": str},
        pk="node", not_null=["state", "updated_at"], strict=True,
    )
