"""Rows of the merchant tables as values, and the small checks the desk shares."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any

from gateway.money.merchants.errors import CouponRefusedError
from gateway.money.merchants.values import Balance, CouponGrant, IssuedCoupon

_CLAIM_CODE_BYTES = 10  # 80 random bits: unguessable, and 16 base32 characters on a QR code


def hash_code(code: str) -> str:
    return hashlib.sha256(code.strip().upper().encode("ascii", "replace")).hexdigest()


def new_claim_code() -> str:
    return base64.b32encode(secrets.token_bytes(_CLAIM_CODE_BYTES)).decode("ascii")


def grant_from(row: dict[str, Any]) -> CouponGrant:
    return CouponGrant(row["kind"], minutes=row["minutes"], fen=row["fen"],
                       cap_fen=row["cap_fen"], rule=row.get("rule") or "")


def already(row: dict[str, Any]) -> CouponRefusedError:
    if row["state"] == "revoked":
        return CouponRefusedError("revoked", f"coupon {row['coupon_id']} was revoked: "
                                             f"{row['revoke_reason']}")
    return CouponRefusedError("used", f"coupon {row['coupon_id']} was already used at "
                                      f"{row['redeemed_at']}")


def coupon_from(row: dict[str, Any]) -> IssuedCoupon:
    return IssuedCoupon(row["coupon_id"], row["merchant_id"], row["plate"], grant_from(row),
                        row["issued_at"], row["expires_at"])


def subject(merchant_id: str) -> str:
    return f"merchant:{merchant_id}"


def balance_json(balance: Balance) -> dict[str, int]:
    return {"prepaid_fen": balance.prepaid_fen, "owed_fen": balance.owed_fen,
            "held_fen": balance.held_fen, "available_fen": balance.available_fen}


def require_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int (fen), got {value!r}")


def check_daily_cap(daily_cap: object) -> None:
    if daily_cap is not None and (isinstance(daily_cap, bool) or not isinstance(daily_cap, int)
                                  or not 1 <= daily_cap <= 100_000):
        raise ValueError(f"daily_cap must be None or 1..100000 coupons a day, got {daily_cap!r}")
