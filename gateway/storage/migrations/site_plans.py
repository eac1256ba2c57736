"""The owner contact register, fire drills and flood readiness (set ``parkguard.site_plans``;
gateway/contacts/, gateway/plans/)."""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("parkguard.site_plans")


@migrations()
def m001_contacts(db: sqlite_utils.Database) -> None:
    """Consenting owners' numbers: ``phone_token`` Fernet ciphertext, ``phone_index`` a keyed
    digest (to find a number without decrypting), ``phone_masked`` for screens; a deleted
    contact keeps only its tombstone (who, when, why). ``contact_messages``: each text, the
    target masked."""
    db.create_table(
        "contacts",
        {"id": int, "contact_id": str, "phone_token": str, "phone_index": str,
         "phone_masked": str, "plate": str, "source": str, "consent_at": str,
         "wording_version": str, "state": str, "deleted_at": str, "deleted_by": str,
         "delete_reason": str},
        pk="id",
        not_null={"contact_id", "phone_token", "phone_index", "phone_masked", "plate",
                  "source", "consent_at", "wording_version", "state"},
        strict=True,
    )
    db.execute("CREATE UNIQUE INDEX contacts_contact_id ON contacts(contact_id)")
    db.execute("CREATE INDEX contacts_plate ON contacts(plate) WHERE state = 'active'")
    db.execute("CREATE INDEX contacts_phone ON contacts(phone_index) WHERE state = 'active'")
    db.create_table(
        "contact_messages",
        {"id": int, "contact_id": str, "kind": str, "actor": str, "target": str,
         "status": str, "error": str, "queued_at": str, "done_at": str},
        pk="id", not_null={"contact_id", "kind", "actor", "target", "status", "queued_at"},
        strict=True,
    )


@migrations()
def m002_drills_and_flood_readiness(db: sqlite_utils.Database) -> None:
    """Fire drills (``state``: scheduled, running, over; ``alerts``: JSON team → alert id)
    and heavy-rain readiness runs with their checked items."""
    db.create_table(
        "drills",
        {"id": int, "drill_id": str, "kind": str, "state": str, "scheduled_for": str,
         "started_at": str, "started_by": str, "note": str, "barriers": str, "alerts": str,
         "ended_at": str, "ended_by": str},
        pk="id", not_null={"drill_id", "kind", "state", "started_by", "note", "alerts"},
        strict=True,
    )
    db.execute("CREATE UNIQUE INDEX drills_drill_id ON drills(drill_id)")
    db.create_table(
        "flood_readiness",
        {"id": int, "run_id": str, "state": str, "started_at": str, "started_by": str,
         "note": str, "alert_id": str, "completed_at": str},
        pk="id", not_null={"run_id", "state", "started_at", "started_by", "note"}, strict=True,
    )
    db.execute("CREATE UNIQUE INDEX flood_readiness_run ON flood_readiness(run_id)")
    db.create_table(
        "flood_checks",
        {"id": int, "run_id": str, "item": str, "checked_at": str, "checked_by": str,
         "via": str},
        pk="id", not_null={"run_id", "item", "checked_at", "checked_by", "via"}, strict=True,
    )
    db.execute("CREATE UNIQUE INDEX flood_checks_item ON flood_checks(run_id, item)")


@migrations()
def m003_equipment_checks(db: sqlite_utils.Database) -> None:
    """Monthly checks of the fire equipment (``month``: site-local ``YYYY-MM``; ``result``:
    ok or fault)."""
    db.create_table(
        "equipment_checks",
        {"id": int, "item": str, "month": str, "checked_at": str, "checked_by": str,
         "via": str, "result": str, "note": str},
        pk="id", not_null={"item", "month", "checked_at", "checked_by", "via", "result"},
        strict=True,
    )
    db.execute("CREATE INDEX equipment_checks_month ON equipment_checks(month, item)")
