"""Merchant money as values: coupon grants, balances, issued coupons, claim batches,
redemptions and monthly statements."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, TypeAlias

from parkguard.core.ledger import Fen
from parkguard.core.tariffs.quote import Coupon

CouponKindName: TypeAlias = Literal["free_minutes", "amount_off", "full_free", "rule"]
COUPON_KINDS: tuple[CouponKindName, ...] = ("free_minutes", "amount_off", "full_free", "rule")
RULE_CODE_MAX = 32
"""The longest tariff rule code (``CouponRule.code``)."""
AccountMode: TypeAlias = Literal["prepaid", "overdraft"]


@dataclass(frozen=True, slots=True)
class CouponGrant:
    """What a coupon gives the driver and the most it may cost the merchant (``cap_fen``).

    An ``amount_off`` coupon's cap is its amount. Free-minutes and full-free coupons name the
    cap the merchant agreed to (typically the tariff's daily cap): their real cost depends on
    the stay, and the cap is what is held against the merchant's money until exit.

    A ``rule`` coupon names a rule of the site's tariff (``spend_88``): the tariff, not the
    merchant, says what it gives, so the same stay gets the same grant at the gateway and at
    an offline lane, and the holiday upgrade follows the calendar of the car's entry date.

    >>> CouponGrant.amount_off(500), CouponGrant.full_free(cap_fen=6_000).as_tariff_coupon()
    (CouponGrant(kind='amount_off', minutes=0, fen=500, cap_fen=500, rule=''), \
Coupon(kind='full_free', minutes=0, fen=0, rule=None, ref=None))
    >>> CouponGrant.for_rule("spend_88", cap_fen=6_000).as_tariff_coupon()
    Coupon(kind='rule', minutes=0, fen=0, rule='spend_88', ref=None)
    """

    kind: CouponKindName
    minutes: int = 0
    fen: Fen = 0
    cap_fen: Fen = 0
    rule: str = ""
    """For ``rule`` coupons: the tariff rule's code."""

    def __post_init__(self) -> None:
        for name in ("minutes", "fen", "cap_fen"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"coupon {name} must be a non-negative int, got {value!r}")
        if self.kind == "free_minutes" and (self.minutes <= 0 or self.fen):
            raise ValueError("a free_minutes coupon needs minutes > 0 and no fen")
        if self.kind == "amount_off" and (self.fen <= 0 or self.minutes or
                                          self.cap_fen != self.fen):
            raise ValueError("an amount_off coupon needs fen > 0, no minutes, and cap_fen == fen")
        if self.kind == "full_free" and (self.minutes or self.fen):
            raise ValueError("a full_free coupon carries neither minutes nor fen")
        if self.kind == "rule" and (self.minutes or self.fen or not self.rule
                                    or len(self.rule) > RULE_CODE_MAX):
            raise ValueError(f"a rule coupon names a tariff rule code of 1 to {RULE_CODE_MAX} "
                             f"characters and carries neither minutes nor fen, got "
                             f"{self.rule!r}")
        if self.kind != "rule" and self.rule:
            raise ValueError(f"only a rule coupon names a tariff rule, not {self.kind!r}")
        if self.kind not in COUPON_KINDS:
            raise ValueError(f"unknown coupon kind {self.kind!r}")
        if self.cap_fen <= 0:
            raise ValueError("a coupon's cap_fen (the most it can cost the merchant) must be > 0")

    @classmethod
    def free_minutes(cls, minutes: int, *, cap_fen: Fen) -> CouponGrant:
        return cls("free_minutes", minutes=minutes, cap_fen=cap_fen)

    @classmethod
    def amount_off(cls, fen: Fen) -> CouponGrant:
        return cls("amount_off", fen=fen, cap_fen=fen)

    @classmethod
    def full_free(cls, *, cap_fen: Fen) -> CouponGrant:
        return cls("full_free", cap_fen=cap_fen)

    @classmethod
    def for_rule(cls, code: str, *, cap_fen: Fen) -> CouponGrant:
        """A coupon the tariff's rule ``code`` prices at exit; ``cap_fen`` is the most it may
        cost the merchant (what is held until it is used)."""
        return cls("rule", cap_fen=cap_fen, rule=code)

    def as_tariff_coupon(self) -> Coupon:
        """The coupon to hand to ``quote(..., coupons=[...])`` at exit."""
        if self.kind == "rule":
            return Coupon("rule", rule=self.rule)
        return Coupon(self.kind, minutes=self.minutes, fen=self.fen)

    def describe(self) -> str:
        """How a page names it: ``rule:spend_88``, ``free_minutes:120``, ``amount_off:500``."""
        return str(self.as_tariff_coupon())


@dataclass(frozen=True, slots=True)
class Balance:
    """A merchant's money as the car park sees it, all in fen.

    ``prepaid_fen`` is what it paid in and has not used, ``owed_fen`` what it used beyond that
    (overdraft), ``held_fen`` the caps of its live coupons. ``available_fen`` is what a new
    coupon may still hold.
    """

    merchant_id: str
    prepaid_fen: Fen
    owed_fen: Fen
    held_fen: Fen
    overdraft_limit_fen: Fen

    @property
    def available_fen(self) -> Fen:
        return self.prepaid_fen - self.owed_fen + self.overdraft_limit_fen - self.held_fen


@dataclass(frozen=True, slots=True)
class IssuedCoupon:
    """A coupon given to one plate: single use, valid until ``expires_at`` (UTC ISO)."""

    coupon_id: str
    merchant_id: str
    plate: str
    grant: CouponGrant
    issued_at: str
    expires_at: str

    def as_tariff_coupon(self) -> Coupon:
        """The coupon to offer the exit quote, carrying this coupon's id so the discount it
        earns can be charged to its merchant."""
        return dataclasses.replace(self.grant.as_tariff_coupon(), ref=self.coupon_id)


@dataclass(frozen=True, slots=True)
class ClaimBatch:
    """QR claim codes printed by a merchant. The codes are shown once: only hashes are kept."""

    batch_id: str
    merchant_id: str
    grant: CouponGrant
    expires_at: str
    codes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ClaimCode:
    """One claim code as the driver's claim page shows it before claiming."""

    merchant_id: str
    merchant_name: str
    grant: CouponGrant
    expires_at: str
    claimed: bool
    daily_cap: int | None = None
    """The merchant's cap on coupons per site-local day, if it has one."""


@dataclass(frozen=True, slots=True)
class Redemption:
    """A coupon used at exit: what the quote took off and what the merchant was charged."""

    coupon_id: str
    session_id: str
    applied_fen: Fen
    charged_fen: Fen
    entry_id: str | None


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One redeemed coupon on a merchant's monthly statement."""

    coupon_id: str
    plate: str
    kind: str
    session_id: str
    redeemed_at: str
    applied_fen: Fen
    charged_fen: Fen


@dataclass(frozen=True, slots=True)
class Statement:
    """A merchant's site-local month: each redeemed coupon and totals that tie to the ledger.

    Balances are the merchant's net money (``prepaid - owed``). They reconcile:
    ``closing = opening + top_ups - coupons_charged``, ``coupons_charged`` is the sum of the
    lines, and ``ledger_debits_fen`` (debits to the merchant's accounts this month) equals it.
    """

    merchant_id: str
    month: str
    period_start: str
    period_end: str
    lines: tuple[StatementLine, ...]
    opening_balance_fen: Fen
    top_ups_fen: Fen
    coupons_charged_fen: Fen
    ledger_debits_fen: Fen
    closing_balance_fen: Fen
