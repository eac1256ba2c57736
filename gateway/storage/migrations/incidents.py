"""Incidents and their notes (set ``parkguard.incidents``)."""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("parkguard.incidents")


@migrations()
def m001_incidents_and_notes(db: sqlite_utils.Database) -> None:
    """Incidents with their evidence (JSON taken at opening) and their notes, oldest first."""
    db.create_table(
        "incidents",
        {"incident_id": str, "kind": str, "state": str, "lane": str, "session_id": str,
         "description": str, "reported_by": str, "contact_phone": str, "opened_at": str,
         "evidence": str, "closed_at": str, "closed_by": str, "outcome": str,
         "refund_id": str, "fee_override_id": int},
        pk="incident_id",
        not_null={"kind", "state", "description", "reported_by", "opened_at", "evidence"},
        strict=True,
    )
    db.table("incidents").create_index(["state", "opened_at"])
    db.table("incidents").create_index(["session_id"])
    db.create_table(
        "incident_notes",
        {"id": int, "incident_id": str, "at": str, "author": str, "text": str},
        pk="id", not_null={"incident_id", "at", "author", "text"},
        foreign_keys=[("incident_id", "incidents", "incident_id")], strict=True,
    )
    db.table("incident_notes").create_index(["incident_id"])


@migrations()
def m002_incident_photos(db: sqlite_utils.Database) -> None:
    """Photos of an incident (gateway/safety/incident_photos.py): the stored file's hash is
    also in the audit chain, which is what a check trusts."""
    db.create_table(
        "incident_photos",
        {"photo_id": str, "incident_id": str, "format": str, "bytes": int, "width": int,
         "height": int, "sha256": str, "uploaded_by": str, "uploaded_at": str},
        pk="photo_id",
        not_null={"incident_id", "format", "bytes", "width", "height", "sha256",
                  "uploaded_by", "uploaded_at"},
        foreign_keys=[("incident_id", "incidents", "incident_id")], strict=True,
    )
    db.table("incident_photos").create_index(["incident_id"])
