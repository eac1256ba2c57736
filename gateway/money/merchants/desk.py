"""The merchant desk: accounts, prepaid or on credit; coupons issued, claimed, revoked and
redeemed; monthly statements. Every money movement is one ledger entry, audited in the same
transaction."""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlite_utils

from gateway.money.books import Books
from gateway.money.merchants.errors import (
    ClaimRefusedError,
    CouponRefusedError,
    InsufficientFundsError,
    UnknownMerchantError,
)
from gateway.money.merchants.values import (
    AccountMode,
    Balance,
    ClaimBatch,
    CouponGrant,
    IssuedCoupon,
    Redemption,
    Statement,
    StatementLine,
)
from gateway.records.audit import AuditLog
from parkguard.clock import Clock, utc_iso
from parkguard.core.ledger import Account, Entry, Fen, Posting
from parkguard.core.plates.normalise import normalise_plate

_log = logging.getLogger(__name__)


_CLAIM_CODE_BYTES = 10  # 80 random bits: unguessable, and 16 base32 characters on a QR code


def _hash_code(code: str) -> str:
    return hashlib.sha256(code.strip().upper().encode("ascii", "replace")).hexdigest()


def _new_claim_code() -> str:
    return base64.b32encode(secrets.token_bytes(_CLAIM_CODE_BYTES)).decode("ascii")


def _grant_from(row: dict[str, Any]) -> CouponGrant:
    return CouponGrant(row["kind"], minutes=row["minutes"], fen=row["fen"],
                       cap_fen=row["cap_fen"])


class MerchantAccounts:
    """Merchant accounts, their coupons and claim codes, and the ledger behind them.

    ``db`` is the gateway's writer connection (one thread); pass an ``audit`` log on the same
    database so each action and its audit entry commit together. ``site_zone`` decides where
    a settlement month begins and ends.
    """

    def __init__(self, db: sqlite_utils.Database, *, clock: Clock, audit: AuditLog,
                 site_zone: ZoneInfo | None = None) -> None:
        self.db = db
        self._clock = clock
        self._audit = audit
        self._zone = site_zone or ZoneInfo("Asia/Shanghai")
        self._books = Books(db, clock=clock)

    # --- accounts --------------------------------------------------------------------------

    def open_account(self, merchant_id: str, *, name: str, actor: str, reason: str,
                     overdraft_limit_fen: Fen = 0) -> Balance:
        """Open a prepaid account (limit 0) or an overdraft account (limit > 0)."""
        if not merchant_id or ":" in merchant_id:
            raise ValueError(f"merchant id must be non-empty without ':', got {merchant_id!r}")
        if isinstance(overdraft_limit_fen, bool) or not isinstance(overdraft_limit_fen, int) \
                or overdraft_limit_fen < 0:
            raise ValueError(f"overdraft_limit_fen must be a non-negative int, got "
                             f"{overdraft_limit_fen!r}")
        mode: AccountMode = "overdraft" if overdraft_limit_fen else "prepaid"
        with self.db.atomic():
            if self._merchant_row(merchant_id) is not None:
                raise ValueError(f"merchant {merchant_id!r} already has an account")
            self.db.table("merchants").insert({
                "merchant_id": merchant_id, "name": name, "mode": mode,
                "overdraft_limit_fen": overdraft_limit_fen, "opened_at": self._now_iso(),
            })
            balance = self.balance(merchant_id)
            self._audit.record(actor=actor, action="merchant.open", subject=_subject(merchant_id),
                               reason=reason, after={"name": name, "mode": mode,
                                                     **_balance_json(balance)})
        return balance

    def balance(self, merchant_id: str) -> Balance:
        """The merchant's money now: prepaid, owed, held by live coupons, and its limit."""
        row = self._require_merchant(merchant_id)
        now = self._now_iso()
        held = self.db.execute(
            "SELECT coalesce(sum(cap_fen), 0) FROM merchant_coupons "
            "WHERE merchant_id = ? AND state = 'issued' AND expires_at > ?",
            [merchant_id, now]).fetchone()[0]
        return Balance(
            merchant_id=merchant_id,
            prepaid_fen=-self._books.balance(Account.merchant_prepaid(merchant_id)),
            owed_fen=self._books.balance(Account.merchant_receivable(merchant_id)),
            held_fen=int(held),
            overdraft_limit_fen=int(row["overdraft_limit_fen"]),
        )

    def top_up(self, merchant_id: str, amount_fen: Fen, *, actor: str, reason: str) -> Balance:
        """Money in from the merchant: it pays off any overdraft first, the rest is prepaid."""
        _require_positive("amount_fen", amount_fen)
        with self.db.atomic():
            before = self.balance(merchant_id)
            repaid = min(amount_fen, before.owed_fen)
            postings = [Posting(Account.clearing(), debit_fen=amount_fen)]
            if repaid:
                postings.append(Posting(Account.merchant_receivable(merchant_id),
                                        credit_fen=repaid))
            if amount_fen - repaid:
                postings.append(Posting(Account.merchant_prepaid(merchant_id),
                                        credit_fen=amount_fen - repaid))
            entry_id = self._books.post("top_up", f"top-up {merchant_id}: {reason}", postings,
                                        merchant_id=merchant_id)
            after = self.balance(merchant_id)
            self._audit.record(actor=actor, action="merchant.top_up",
                               subject=_subject(merchant_id), reason=reason,
                               before=_balance_json(before),
                               after={**_balance_json(after), "amount_fen": amount_fen,
                                      "entry_id": entry_id})
        return after

    # --- coupons ---------------------------------------------------------------------------

    def issue_coupon(self, merchant_id: str, plate: str, grant: CouponGrant, *,
                     expires_at: datetime, actor: str, reason: str) -> IssuedCoupon:
        """Give ``plate`` a single-use coupon; its cap must fit the merchant's available money."""
        with self.db.atomic():
            return self._issue(merchant_id, plate, grant, expires_at=expires_at, actor=actor,
                               reason=reason, claim_batch=None)

    def coupons_for(self, plate: str) -> list[IssuedCoupon]:
        """Live coupons for a plate, oldest first: what the exit quote should be offered."""
        rows = self.db.query(
            "SELECT * FROM merchant_coupons WHERE plate = ? AND state = 'issued' "
            "AND expires_at > ? ORDER BY issued_at, coupon_id",
            [normalise_plate(plate), self._now_iso()])
        return [_coupon_from(row) for row in rows]

    def revoke(self, coupon_id: str, *, actor: str, reason: str) -> None:
        """Withdraw an unused coupon (given by mistake, customer refunded); its hold is released."""
        with self.db.atomic():
            row = self._coupon_row(coupon_id)
            if row["state"] != "issued":
                raise _already(row)
            before = self.balance(row["merchant_id"])
            self.db.execute(
                "UPDATE merchant_coupons SET state = 'revoked', revoked_at = ?, "
                "revoke_reason = ? WHERE coupon_id = ? AND state = 'issued'",
                [self._now_iso(), reason, coupon_id])
            self._audit.record(actor=actor, action="coupon.revoke",
                               subject=f"coupon:{coupon_id}", reason=reason,
                               before={"state": "issued", **_balance_json(before)},
                               after={"state": "revoked",
                                      **_balance_json(self.balance(row["merchant_id"]))})

    def redeem(self, coupon_id: str, *, session_id: str, plate: str, applied_fen: Fen,
               actor: str = "gateway") -> Redemption:
        """Use a coupon at exit. ``applied_fen`` is the discount the quote actually applied;
        the merchant is charged that, capped at the coupon's cap, in one ledger entry."""
        if isinstance(applied_fen, bool) or not isinstance(applied_fen, int) or applied_fen < 0:
            raise ValueError(f"applied_fen must be a non-negative int, got {applied_fen!r}")
        now = self._now_iso()
        with self.db.atomic():
            row = self._coupon_row(coupon_id)
            if row["state"] != "issued":
                raise _already(row)
            if now >= row["expires_at"]:
                raise CouponRefusedError(
                    "expired", f"coupon {coupon_id} expired at {row['expires_at']}")
            if normalise_plate(plate) != row["plate"]:
                raise CouponRefusedError(
                    "wrong_plate", f"coupon {coupon_id} was given to another plate")
            merchant_id = row["merchant_id"]
            before = self.balance(merchant_id)
            charged = min(applied_fen, int(row["cap_fen"]))
            entry_id: str | None = None
            if charged:
                from_prepaid = min(charged, max(before.prepaid_fen, 0))
                postings = [Posting(Account.coupon_discounts(), credit_fen=charged)]
                if from_prepaid:
                    postings.append(Posting(Account.merchant_prepaid(merchant_id),
                                            debit_fen=from_prepaid))
                if charged - from_prepaid:
                    postings.append(Posting(Account.merchant_receivable(merchant_id),
                                            debit_fen=charged - from_prepaid))
                entry_id = self._books.post("redemption",
                                            f"coupon {coupon_id} used by session {session_id}",
                                            postings, merchant_id=merchant_id, ts=now)
            cursor = self.db.execute(
                "UPDATE merchant_coupons SET state = 'redeemed', redeemed_at = ?, "
                "session_id = ?, applied_fen = ?, charged_fen = ?, entry_id = ? "
                "WHERE coupon_id = ? AND state = 'issued'",
                [now, session_id, applied_fen, charged, entry_id, coupon_id])
            if cursor.rowcount != 1:  # pragma: no cover - the writer thread is alone
                raise CouponRefusedError("used", f"coupon {coupon_id} was used meanwhile")
            self._audit.record(actor=actor, action="coupon.redeem",
                               subject=f"coupon:{coupon_id}", reason=f"exit of {session_id}",
                               before={"state": "issued", **_balance_json(before)},
                               after={"state": "redeemed", "applied_fen": applied_fen,
                                      "charged_fen": charged, "entry_id": entry_id,
                                      **_balance_json(self.balance(merchant_id))})
        return Redemption(coupon_id, session_id, applied_fen, charged, entry_id)

    # --- QR claim codes --------------------------------------------------------------------

    def create_claim_batch(self, merchant_id: str, grant: CouponGrant, *, count: int,
                           expires_at: datetime, actor: str, reason: str) -> ClaimBatch:
        """Make ``count`` random single-use claim codes for a merchant's counter QR display.

        Nothing is held yet: the merchant's money is checked when a driver claims a code,
        because unclaimed codes cost nothing. Only the codes' SHA-256 is stored.
        """
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 10_000:
            raise ValueError(f"count must be 1..10000, got {count!r}")
        now = self._now_iso()
        expires = utc_iso(expires_at)
        if expires <= now:
            raise ValueError(f"claim codes would expire at {expires}, which is not after {now}")
        batch_id = uuid.uuid4().hex
        codes = tuple(_new_claim_code() for _ in range(count))
        with self.db.atomic():
            self._require_merchant(merchant_id)
            self.db.table("claim_codes").insert_all(
                {"code_hash": _hash_code(code), "batch_id": batch_id, "merchant_id": merchant_id,
                 "kind": grant.kind, "minutes": grant.minutes, "fen": grant.fen,
                 "cap_fen": grant.cap_fen, "created_at": now, "expires_at": expires}
                for code in codes)
            self._audit.record(actor=actor, action="coupon.claim_batch",
                               subject=_subject(merchant_id), reason=reason,
                               after={"batch_id": batch_id, "count": count,
                                      "grant": asdict(grant), "expires_at": expires})
        return ClaimBatch(batch_id, merchant_id, grant, expires, codes)

    def claim(self, code: str, *, plate: str) -> IssuedCoupon:
        """A driver claims a code for their plate: it becomes that plate's coupon, once."""
        now = self._now_iso()
        with self.db.atomic():
            rows = list(self.db.query("SELECT * FROM claim_codes WHERE code_hash = ?",
                                      [_hash_code(code)]))
            if not rows:
                raise ClaimRefusedError("unknown", "no such claim code")
            row = rows[0]
            if row["claimed_at"] is not None:
                raise ClaimRefusedError("used", "this claim code has already been claimed")
            if now >= row["expires_at"]:
                raise ClaimRefusedError("expired", f"this claim code expired at "
                                                   f"{row['expires_at']}")
            coupon = self._issue(
                row["merchant_id"], plate, _grant_from(row),
                expires_at=datetime.fromisoformat(row["expires_at"]),
                actor=f"claim:{row['batch_id']}", reason="driver claimed a QR code",
                claim_batch=row["batch_id"])
            self.db.execute(
                "UPDATE claim_codes SET claimed_at = ?, coupon_id = ? "
                "WHERE code_hash = ? AND claimed_at IS NULL",
                [now, coupon.coupon_id, row["code_hash"]])
        return coupon

    # --- settlement ------------------------------------------------------------------------

    def statement(self, merchant_id: str, year: int, month: int, *, actor: str,
                  reason: str = "monthly settlement") -> Statement:
        """The merchant's statement for a site-local calendar month; producing it is audited."""
        self._require_merchant(merchant_id)
        start_local = datetime(year, month, 1, tzinfo=self._zone)
        end_local = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=self._zone)
        start, end = utc_iso(start_local), utc_iso(end_local)
        lines = tuple(
            StatementLine(row["coupon_id"], row["plate"], row["kind"], row["session_id"],
                          row["redeemed_at"], row["applied_fen"], row["charged_fen"])
            for row in self.db.query(
                "SELECT * FROM merchant_coupons WHERE merchant_id = ? AND state = 'redeemed' "
                "AND redeemed_at >= ? AND redeemed_at < ? ORDER BY redeemed_at, coupon_id",
                [merchant_id, start, end]))
        accounts = [Account.merchant_prepaid(merchant_id),
                    Account.merchant_receivable(merchant_id)]
        before_debit, before_credit = self._books.totals(accounts, since="", until=start)
        month_debit, month_credit = self._books.totals(accounts, since=start, until=end)
        opening = before_credit - before_debit
        result = Statement(
            merchant_id=merchant_id, month=f"{year:04d}-{month:02d}", period_start=start,
            period_end=end, lines=lines, opening_balance_fen=opening, top_ups_fen=month_credit,
            coupons_charged_fen=sum(line.charged_fen for line in lines),
            ledger_debits_fen=month_debit,
            closing_balance_fen=opening + month_credit - month_debit,
        )
        self._audit.record(actor=actor, action="merchant.settlement",
                           subject=_subject(merchant_id), reason=reason,
                           after={k: v for k, v in asdict(result).items() if k != "lines"}
                           | {"coupons": len(lines)})
        return result

    # --- the books -------------------------------------------------------------------------

    def entries(self) -> Iterator[Entry]:
        """Every ledger entry of the site (merchants' and drivers'), re-checked for balance."""
        return self._books.entries()

    # --- helpers ---------------------------------------------------------------------------

    def _issue(self, merchant_id: str, plate: str, grant: CouponGrant, *, expires_at: datetime,
               actor: str, reason: str, claim_batch: str | None) -> IssuedCoupon:
        """Hold the cap and store the coupon; the caller holds the transaction."""
        now = self._now_iso()
        expires = utc_iso(expires_at)
        if expires <= now:
            raise ValueError(f"coupon would expire at {expires}, which is not after {now}")
        normalised = normalise_plate(plate)
        if not normalised:
            raise ValueError(f"plate {plate!r} has no letters or digits")
        before = self.balance(merchant_id)
        if grant.cap_fen > before.available_fen:
            raise InsufficientFundsError(
                f"merchant {merchant_id} has {before.available_fen} fen available, the coupon "
                f"may cost up to {grant.cap_fen} fen: top up first")
        coupon = IssuedCoupon(uuid.uuid4().hex, merchant_id, normalised, grant, now, expires)
        self.db.table("merchant_coupons").insert({
            "coupon_id": coupon.coupon_id, "merchant_id": merchant_id, "plate": normalised,
            "kind": grant.kind, "minutes": grant.minutes, "fen": grant.fen,
            "cap_fen": grant.cap_fen, "issued_at": now, "expires_at": expires,
            "state": "issued", "claim_batch": claim_batch,
        })
        self._audit.record(actor=actor, action="coupon.issue",
                           subject=f"coupon:{coupon.coupon_id}", reason=reason,
                           before=_balance_json(before),
                           after={"merchant_id": merchant_id, "plate": normalised,
                                  "grant": asdict(grant), "expires_at": expires,
                                  **_balance_json(self.balance(merchant_id))})
        _log.info("merchant %s issued coupon %s", merchant_id, coupon.coupon_id)
        return coupon

    def _merchant_row(self, merchant_id: str) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM merchants WHERE merchant_id = ?",
                                  [merchant_id]))
        return rows[0] if rows else None

    def _require_merchant(self, merchant_id: str) -> dict[str, Any]:
        row = self._merchant_row(merchant_id)
        if row is None:
            raise UnknownMerchantError(f"no merchant account {merchant_id!r}")
        return row

    def _coupon_row(self, coupon_id: str) -> dict[str, Any]:
        rows = list(self.db.query("SELECT * FROM merchant_coupons WHERE coupon_id = ?",
                                  [coupon_id]))
        if not rows:
            raise CouponRefusedError("unknown", f"no coupon {coupon_id!r}")
        return rows[0]

    def _now_iso(self) -> str:
        return utc_iso(self._clock.now())


def _already(row: dict[str, Any]) -> CouponRefusedError:
    if row["state"] == "revoked":
        return CouponRefusedError("revoked", f"coupon {row['coupon_id']} was revoked: "
                                             f"{row['revoke_reason']}")
    return CouponRefusedError("used", f"coupon {row['coupon_id']} was already used at "
                                      f"{row['redeemed_at']}")


def _coupon_from(row: dict[str, Any]) -> IssuedCoupon:
    return IssuedCoupon(row["coupon_id"], row["merchant_id"], row["plate"], _grant_from(row),
                        row["issued_at"], row["expires_at"])


def _subject(merchant_id: str) -> str:
    return f"merchant:{merchant_id}"


def _balance_json(balance: Balance) -> dict[str, int]:
    return {"prepaid_fen": balance.prepaid_fen, "owed_fen": balance.owed_fen,
            "held_fen": balance.held_fen, "available_fen": balance.available_fen}


def _require_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int (fen), got {value!r}")
