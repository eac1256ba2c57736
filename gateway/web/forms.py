"""What people type into the dashboard's forms: read (CSRF-checked) and checked before
anything is written."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from fastapi import HTTPException, Request

from gateway.money.merchants import CouponGrant, MerchantError
from gateway.web.security import CSRF_FIELD, csrf_ok

Fields = dict[str, str]


class BadForm(ValueError):
    """A form field is missing or wrong: shown to the person, nothing is written."""


async def read_form(request: Request) -> Fields:
    """The POSTed form as text fields, after its CSRF token checked out (else 403)."""
    data = await request.form()
    fields = {key: value.strip() for key, value in data.items() if isinstance(value, str)}
    if not csrf_ok(request, fields.get(CSRF_FIELD)):
        raise HTTPException(403, "CSRF token missing or wrong: reload the page / "
                                 "请刷新页面后重试")
    return fields


def parse_yuan(text: str, *, field: str = "amount") -> int:
    """``"12.5"`` → ``1250`` fen; refuses negatives, more than two decimals and junk."""
    try:
        value = Decimal(text.strip().lstrip("¥"))
    except InvalidOperation as error:
        raise BadForm(f"{field}: {text!r} is not an amount in yuan / 金额格式不对") from error
    fen = value * 100
    if value < 0 or fen != fen.to_integral_value() or fen > 100_000_000:
        raise BadForm(f"{field}: {text!r} is not an amount in yuan (0.00 or more, at most two "
                      "decimals) / 金额格式不对")
    return int(fen)


def require_reason(reason: str, zh: str = "原因") -> str:
    """Every office action that changes money or a barrier says why: 4 characters at least.
    ``zh`` names the reason in the Chinese half of the message."""
    if len(reason) < 4:
        raise BadForm(f"a reason is required (at least 4 characters) / 必须填写{zh}")
    return reason


def local_target(target: str, default: str) -> str:
    """``target`` if it is a path on this site, else ``default``: a form's "next" never
    sends anyone to another host."""
    if not target.startswith("/") or target.startswith("//"):
        return default
    return target


def coupon_grant(kind: str, minutes: str, amount: str, cap_fen: int) -> CouponGrant:
    """The coupon a merchant's form asks for."""
    try:
        if kind == "free_minutes":
            return CouponGrant.free_minutes(int(minutes or "0"), cap_fen=cap_fen)
        if kind == "amount_off":
            return CouponGrant.amount_off(parse_yuan(amount, field="amount"))
        if kind == "full_free":
            return CouponGrant.full_free(cap_fen=cap_fen)
    except (ValueError, MerchantError) as error:
        raise BadForm(str(error)) from error
    raise BadForm(f"unknown coupon kind {kind!r}")
