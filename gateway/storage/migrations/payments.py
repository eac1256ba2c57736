"""Drivers' money: payments, refunds, debts and fee overrides (set ``parkguard.payments``)."""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("parkguard.payments")


@migrations()
def m001_payments_refunds_debts_overrides(db: sqlite_utils.Database) -> None:
    """Payments, refunds, drivers' debts and fee overrides, all integer fen and UTC ISO text.

    ``idempotency_key`` columns are unique where set, so a replayed lane event or a retried
    request can never write a second row, whatever the code above gets wrong.
    """
    db.create_table(
        "payments",
        {"payment_id": str, "purpose": str, "session_id": str, "plate": str, "method": str,
         "amount_fen": int, "refunded_fen": int, "state": str, "provider_ref": str,
         "idempotency_key": str, "wallet": str, "code_tail": str, "captured_at": str,
         "created_at": str, "paid_at": str, "failure": str, "entry_id": str},
        pk="payment_id",
        not_null={"purpose", "plate", "method", "amount_fen", "refunded_fen", "state",
                  "created_at"},
        defaults={"refunded_fen": 0}, strict=True,
    )
    payments = db.table("payments")
    payments.create_index(["session_id", "state"])
    payments.create_index(["provider_ref"])
    payments.create_index(["idempotency_key"], unique=True)
    payments.create_index(["paid_at"])
    db.create_table(
        "refunds",
        {"refund_id": str, "payment_id": str, "amount_fen": int, "via": str,
         "provider_ref": str, "idempotency_key": str, "actor": str, "reason": str,
         "created_at": str, "entry_id": str},
        pk="refund_id",
        not_null={"payment_id", "amount_fen", "via", "idempotency_key", "actor", "reason",
                  "created_at", "entry_id"},
        foreign_keys=[("payment_id", "payments", "payment_id")], strict=True,
    )
    db.table("refunds").create_index(["payment_id"])
    db.table("refunds").create_index(["idempotency_key"], unique=True)
    db.table("refunds").create_index(["created_at"])
    db.create_table(
        "debts",
        {"debt_id": str, "plate": str, "session_id": str, "amount_fen": int, "reason": str,
         "idempotency_key": str, "created_at": str, "entry_id": str, "settled_at": str,
         "settled_by": str},
        pk="debt_id",
        not_null={"plate", "amount_fen", "reason", "created_at", "entry_id"},
        foreign_keys=[("settled_by", "payments", "payment_id")], strict=True,
    )
    db.table("debts").create_index(["plate", "settled_at"])
    db.table("debts").create_index(["session_id"])
    db.table("debts").create_index(["idempotency_key"], unique=True)
    db.table("debts").create_index(["created_at"])
    db.create_table(
        "fee_overrides",
        {"id": int, "session_id": str, "quoted_fen": int, "fee_fen": int, "actor": str,
         "reason": str, "created_at": str},
        pk="id",
        not_null={"session_id", "quoted_fen", "fee_fen", "actor", "reason", "created_at"},
        strict=True,
    )
    db.table("fee_overrides").create_index(["session_id"])
