"""Why a merchant action was refused, as exceptions a caller can tell apart."""

from __future__ import annotations

from typing import Literal, TypeAlias

from parkguard.errors import ParkGuardError

RefusalReason: TypeAlias = Literal["unknown", "expired", "used", "revoked", "wrong_plate"]


class MerchantError(ParkGuardError):
    """Base of every merchant-account and merchant-coupon error."""


class UnknownMerchantError(MerchantError, LookupError):
    """No merchant account has that id."""


class InsufficientFundsError(MerchantError, ValueError):
    """The merchant's balance (plus overdraft) cannot cover what it asked for."""


class CouponRefusedError(MerchantError, ValueError):
    """A coupon cannot be redeemed or revoked; ``reason`` says why in one word."""

    def __init__(self, reason: RefusalReason, message: str) -> None:
        super().__init__(message)
        self.reason: RefusalReason = reason


class ClaimRefusedError(MerchantError, ValueError):
    """A QR claim code cannot be claimed; ``reason`` says why in one word."""

    def __init__(self, reason: RefusalReason, message: str) -> None:
        super().__init__(message)
        self.reason: RefusalReason = reason
