"""One-time codes for the no-plate kiosk (set ``parkguard.otp``; gateway/lanes/otp.py)."""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("parkguard.otp")


@migrations()
def m001_otp_codes(db: sqlite_utils.Database) -> None:
    """Codes by phone identity (an HMAC of the number, never the number) with an HMAC of the
    code, expiry and tries left; ``state``: sending, active, confirmed, locked, expired,
    replaced, send_failed, void (made before the gateway restarted)."""
    db.create_table(
        "otp_codes",
        {"id": int, "identity": str, "lane": str, "correlation_id": str, "salt": str,
         "code_hash": str, "created_at": str, "expires_at": str, "attempts_left": int,
         "state": str},
        pk="id",
        not_null={"identity", "lane", "correlation_id", "salt", "code_hash", "created_at",
                  "expires_at", "attempts_left", "state"},
        strict=True,
    )
    db.table("otp_codes").create_index(["identity", "created_at"])
