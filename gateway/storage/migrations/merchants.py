"""Merchant accounts, coupons and claim codes (set ``parkguard.merchants``)."""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("parkguard.merchants")


@migrations()
def m001_merchants_coupons_ledger(db: sqlite_utils.Database) -> None:
    """Merchant accounts, coupons and claim codes, all integer fen.

    Files made before the ledger had a set of its own got the ledger tables here too; they
    belong to :mod:`gateway.storage.migrations.ledger` now, which the registry applies first.
    """
    db.create_table(
        "merchants",
        {"merchant_id": str, "name": str, "mode": str, "overdraft_limit_fen": int,
         "opened_at": str},
        pk="merchant_id", not_null={"name", "mode", "overdraft_limit_fen", "opened_at"},
        strict=True,
    )
    db.create_table(
        "merchant_coupons",
        {"coupon_id": str, "merchant_id": str, "plate": str, "kind": str, "minutes": int,
         "fen": int, "cap_fen": int, "issued_at": str, "expires_at": str, "state": str,
         "claim_batch": str, "revoked_at": str, "revoke_reason": str, "redeemed_at": str,
         "session_id": str, "applied_fen": int, "charged_fen": int, "entry_id": str},
        pk="coupon_id",
        not_null={"merchant_id", "plate", "kind", "minutes", "fen", "cap_fen", "issued_at",
                  "expires_at", "state"},
        foreign_keys=[("merchant_id", "merchants", "merchant_id")], strict=True,
    )
    db.table("merchant_coupons").create_index(["merchant_id", "state"])
    db.table("merchant_coupons").create_index(["plate", "state"])
    db.table("merchant_coupons").create_index(["merchant_id", "redeemed_at"])
    db.create_table(
        "claim_codes",
        {"code_hash": str, "batch_id": str, "merchant_id": str, "kind": str, "minutes": int,
         "fen": int, "cap_fen": int, "created_at": str, "expires_at": str, "claimed_at": str,
         "coupon_id": str},
        pk="code_hash",
        not_null={"batch_id", "merchant_id", "kind", "minutes", "fen", "cap_fen",
                  "created_at", "expires_at"},
        foreign_keys=[("merchant_id", "merchants", "merchant_id")], strict=True,
    )
    db.table("claim_codes").create_index(["batch_id"])


@migrations()
def m002_rule_coupons_and_daily_caps(db: sqlite_utils.Database) -> None:
    """Coupons and claim codes that name a tariff rule (``spend_88``), and a merchant's
    optional cap on the coupons it gives per site-local day (NULL: no cap)."""
    db.execute("ALTER TABLE merchant_coupons ADD COLUMN rule TEXT")
    db.execute("ALTER TABLE claim_codes ADD COLUMN rule TEXT")
    db.execute("ALTER TABLE merchants ADD COLUMN daily_cap INTEGER")
    db.table("merchant_coupons").create_index(["merchant_id", "issued_at"])
