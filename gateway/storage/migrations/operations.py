"""Running the site by the book (set ``parkguard.operations``): plates held at the exit, the
shift handover log, complaints' answer-by times and call-backs (docs/incidents.md,
docs/handover.md)."""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("parkguard.operations")


@migrations()
def m001_plate_holds(db: sqlite_utils.Database) -> None:
    """Holds on plates at the exit, kept after they are lifted (who, why, when, both ends).
    At most one hold per plate is in force (a partial unique index)."""
    db.create_table(
        "plate_holds",
        {"id": int, "plate": str, "reason": str, "incident_id": str, "held_by": str,
         "held_at": str, "lifted_at": str, "lifted_by": str, "lift_reason": str},
        pk="id", not_null={"plate", "reason", "held_by", "held_at"}, strict=True,
    )
    db.execute("CREATE UNIQUE INDEX plate_holds_in_force ON plate_holds (plate) "
               "WHERE lifted_at IS NULL")


@migrations()
def m002_handovers(db: sqlite_utils.Database) -> None:
    """Shift handovers: one row per handover, its items (gathered and typed in) beside it."""
    db.create_table(
        "handovers",
        {"handover_id": str, "from_shift": str, "to_shift": str, "outgoing": str,
         "created_at": str, "note": str, "state": str, "accepted_by": str,
         "accepted_at": str, "carried_from": str},
        pk="handover_id", not_null={"outgoing", "created_at", "state"}, strict=True,
    )
    db.table("handovers").create_index(["state", "created_at"])
    db.create_table(
        "handover_items",
        {"id": int, "handover_id": str, "kind": str, "ref": str, "text": str,
         "amount_fen": int},
        pk="id", not_null={"handover_id", "kind", "text"},
        foreign_keys=[("handover_id", "handovers", "handover_id")], strict=True,
    )
    db.table("handover_items").create_index(["handover_id"])


@migrations()
def m003_complaint_deadlines(db: sqlite_utils.Database) -> None:
    """Answer-by times of incidents whose kind has one (complaints, fee disputes), and the
    call-backs made to the people who raised them."""
    db.create_table(
        "incident_deadlines",
        {"incident_id": str, "kind": str, "opened_at": str, "due_at": str,
         "answered_at": str, "answered_by": str},
        pk="incident_id", not_null={"kind", "opened_at", "due_at"},
        foreign_keys=[("incident_id", "incidents", "incident_id")], strict=True,
    )
    db.table("incident_deadlines").create_index(["answered_at", "due_at"])
    db.create_table(
        "incident_callbacks",
        {"id": int, "incident_id": str, "at": str, "by": str, "reached": int,
         "outcome": str},
        pk="id", not_null={"incident_id", "at", "by", "reached", "outcome"},
        foreign_keys=[("incident_id", "incidents", "incident_id")], strict=True,
    )
    db.table("incident_callbacks").create_index(["incident_id"])
