"""Merchant parking coupons and the money behind them: accounts, coupons, claim codes, settlement.

A mall merchant pays the car park for its customers' parking. It either prepays (coupons must
be covered by its balance) or has an overdraft limit (it may owe up to the limit and settles
monthly). It gives a coupon to a plate directly, or prints QR claim codes that drivers claim for
their own plate, or — the tariff's spend rules — types what the shopper spent and the tariff's
rule (``spend_88``) becomes the coupon. At exit the quote applies the coupon and the merchant
is charged **the discount actually applied, never more than the coupon's cap** — what a
merchant expects: a "2 h free" coupon on a 40-minute stay costs it the 40 minutes' fee, not
two hours. Until then the cap is held against the merchant's available money, so a
redemption can never overdraw it.

Every top-up and redemption is a balanced :class:`~parkguard.core.ledger.Entry` in the site's
shared :class:`~gateway.money.books.Books`; every top-up,
issue, claim-code batch, claim, revoke, redemption and settlement statement is audited in the
same transaction as the write it describes (when the :class:`AuditLog` shares this database).

>>> from datetime import UTC, datetime, timedelta
>>> import sqlite_utils
>>> from parkguard.clock import ManualClock
>>> from gateway.records.audit import AuditLog
>>> from gateway.storage.migrations import migrate
>>> db = migrate(sqlite_utils.Database(memory=True))
>>> clock = ManualClock(datetime(2026, 5, 1, 2, 0, tzinfo=UTC))
>>> desk = MerchantAccounts(db, clock=clock, audit=AuditLog(db, clock=clock))
>>> _ = desk.open_account("M001", name="星巴克 Starbucks", actor="manager:01",
...                       reason="new tenant")
>>> _ = desk.top_up("M001", 10_000, actor="cashier:03", reason="receipt 5521")
>>> coupon = desk.issue_coupon("M001", "沪A12345", CouponGrant.free_minutes(120, cap_fen=1_000),
...                            expires_at=clock.now() + timedelta(hours=6), actor="M001:till2",
...                            reason="spend ¥88")
>>> desk.redeem(coupon.coupon_id, session_id="s-1", plate="沪A12345", applied_fen=700).charged_fen
700
>>> desk.balance("M001").available_fen
9300
"""

from __future__ import annotations

from gateway.money.merchants.desk import MAX_LIVE_PER_PLATE, MerchantAccounts
from gateway.money.merchants.errors import (
    CLAIM_REFUSALS,
    ClaimRefusedError,
    CouponRefusedError,
    DailyCapError,
    InsufficientFundsError,
    MerchantError,
    NoSpendRuleError,
    RefusalReason,
    SpendTooLowError,
    TooManyCouponsError,
    UnknownMerchantError,
)
from gateway.money.merchants.rules import (
    describe_grant,
    describe_rule,
    grant_minutes,
    rule_for_spend,
    spend_rules,
)
from gateway.money.merchants.values import (
    Balance,
    ClaimBatch,
    ClaimCode,
    CouponGrant,
    IssuedCoupon,
    Redemption,
    Statement,
    StatementLine,
)

__all__ = [
    "CLAIM_REFUSALS",
    "MAX_LIVE_PER_PLATE",
    "Balance",
    "ClaimBatch",
    "ClaimCode",
    "ClaimRefusedError",
    "CouponGrant",
    "CouponRefusedError",
    "DailyCapError",
    "InsufficientFundsError",
    "IssuedCoupon",
    "MerchantAccounts",
    "MerchantError",
    "NoSpendRuleError",
    "Redemption",
    "RefusalReason",
    "SpendTooLowError",
    "Statement",
    "StatementLine",
    "TooManyCouponsError",
    "UnknownMerchantError",
    "describe_grant",
    "describe_rule",
    "grant_minutes",
    "rule_for_spend",
    "spend_rules",
]
