"""Passes, their plates, the white and black lists, and who is inside on a pass
(set ``parkguard.passes``)."""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("parkguard.passes")


@migrations()
def m001_passes_lists_presence(db: sqlite_utils.Database) -> None:
    """Passes and their plates, the two lists, and which session is inside on which pass.

    Times are integer milliseconds since the epoch (UTC): compared as numbers, never parsed.
    Presence rows are kept after the car leaves (``left_at_ms``): they are the evidence when
    a holder disputes a "pass in use" at the gate.
    """
    db.create_table(
        "passes",
        {"pass_id": str, "kind": str, "holder": str, "valid_from_ms": int,
         "valid_until_ms": int, "vehicle_class": str, "phone": str, "max_inside": int,
         "issued_at_ms": int, "revoked_at_ms": int, "revoke_reason": str},
        pk="pass_id",
        not_null={"kind", "holder", "valid_from_ms", "valid_until_ms", "max_inside",
                  "issued_at_ms"},
        strict=True,
    )
    db.create_table(
        "pass_plates",
        {"pass_id": str, "plate": str},
        pk=("pass_id", "plate"), not_null={"pass_id", "plate"},
        foreign_keys=[("pass_id", "passes", "pass_id")], strict=True,
    )
    db.table("pass_plates").create_index(["plate"])
    db.create_table(
        "access_lists",
        {"list_name": str, "plate": str, "reason": str, "until_ms": int, "listed_at_ms": int,
         "listed_by": str},
        pk=("list_name", "plate"),
        not_null={"list_name", "plate", "reason", "listed_at_ms", "listed_by"},
        strict=True,
    )
    db.table("access_lists").create_index(["plate"])
    db.create_table(
        "pass_presence",
        {"session_id": str, "pass_id": str, "plate": str, "entered_at_ms": int,
         "left_at_ms": int, "over_limit": int},
        pk="session_id",
        not_null={"pass_id", "plate", "entered_at_ms", "over_limit"},
        foreign_keys=[("pass_id", "passes", "pass_id")], strict=True,
    )
    db.table("pass_presence").create_index(["pass_id", "left_at_ms"])
