"""Why a merchant action was refused, as exceptions a caller can tell apart."""

from __future__ import annotations

from typing import Literal, TypeAlias

from parkguard.errors import ParkGuardError

RefusalReason: TypeAlias = Literal["unknown", "expired", "used", "revoked", "wrong_plate",
                                   "claimed_this_visit", "daily_cap", "bad_plate"]

#: What a driver's claim page says for each refusal, Chinese then English.
CLAIM_REFUSALS: dict[str, tuple[str, str]] = {
    "unknown": ("券码无效，请向商户重新索取", "This coupon code is not valid: ask the shop "
                                            "for a new one"),
    "expired": ("券码已过期", "This coupon code has expired"),
    "used": ("该券码已被领取", "This coupon code has already been claimed"),
    "claimed_this_visit": ("本车本次停车已领过该商户的停车券（每车每次限领一张）",
                           "This car already has this shop's coupon for this visit (one per "
                           "car per visit)"),
    "daily_cap": ("该商户今日停车券已发完，请明天再来", "This shop has given all of today's "
                                                      "parking coupons: try again tomorrow"),
    "funds": ("该商户暂时不能发放停车券，请联系商户", "This shop cannot give parking coupons "
                                                    "right now: please ask at the counter"),
    "bad_plate": ("车牌号无效，请检查后重新输入", "That is not a valid plate number: check it "
                                                 "and try again"),
    "throttled": ("操作过于频繁，请一分钟后再试", "Too many tries: try again in a minute"),
}


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


class DailyCapError(MerchantError, ValueError):
    """The merchant has given as many coupons today (site-local) as its terms allow."""

    reason: RefusalReason = "daily_cap"


class TooManyCouponsError(MerchantError, ValueError):
    """The plate already holds as many live coupons as a lane's replica carries for it."""


class SpendTooLowError(MerchantError, ValueError):
    """The amount the shopper spent earns no coupon under the tariff's rules."""


class NoSpendRuleError(MerchantError, LookupError):
    """The tariff has no coupon rule a till may issue for a spend (no ``min_spend_fen``)."""
