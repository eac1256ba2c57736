"""The merchant desk: accounts, prepaid or on credit; coupons issued, claimed, revoked and
redeemed; monthly statements. Every money movement is one ledger entry, audited in the same
transaction."""

from __future__ import annotations

import logging
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
    DailyCapError,
    InsufficientFundsError,
    TooManyCouponsError,
    UnknownMerchantError,
)
from gateway.money.merchants.rows import (
    already,
    balance_json,
    check_daily_cap,
    coupon_from,
    grant_from,
    hash_code,
    new_claim_code,
    require_positive,
    subject,
)
from gateway.money.merchants.values import (
    AccountMode,
    Balance,
    ClaimBatch,
    ClaimCode,
    CouponGrant,
    IssuedCoupon,
    Redemption,
    Statement,
    StatementLine,
)
from gateway.records.audit import AuditLog
from parkguard.clock import Clock, utc_iso
from parkguard.core.ledger import Account, Entry, Fen, Posting
from parkguard.core.plates import PlateError, parse_plate, stored_spelling
from parkguard.core.plates.normalise import normalise_plate

_log = logging.getLogger(__name__)


MAX_LIVE_PER_PLATE = 16
"""Live coupons one plate may hold at once: a lane's replica carries them all in one
bounded delta (``wire.contract.messages.PlateCoupons``); nobody shops at 16 merchants in
one visit."""


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
        self._touched: set[str] = set()

    # --- accounts --------------------------------------------------------------------------

    def open_account(self, merchant_id: str, *, name: str, actor: str, reason: str,
                     overdraft_limit_fen: Fen = 0, daily_cap: int | None = None) -> Balance:
        """Open a prepaid account (limit 0) or an overdraft account (limit > 0); with a
        ``daily_cap`` it gives at most that many coupons per site-local day."""
        check_daily_cap(daily_cap)
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
                "daily_cap": daily_cap,
            })
            balance = self.balance(merchant_id)
            self._audit.record(actor=actor, action="merchant.open", subject=subject(merchant_id),
                               reason=reason, after={"name": name, "mode": mode,
                                                     "daily_cap": daily_cap,
                                                     **balance_json(balance)})
        return balance

    def set_daily_cap(self, merchant_id: str, daily_cap: int | None, *, actor: str,
                      reason: str) -> None:
        """Change the most coupons the merchant gives per site-local day (None: no cap)."""
        check_daily_cap(daily_cap)
        with self.db.atomic():
            before = self._require_merchant(merchant_id).get("daily_cap")
            self.db.execute("UPDATE merchants SET daily_cap = ? WHERE merchant_id = ?",
                            [daily_cap, merchant_id])
            self._audit.record(actor=actor, action="merchant.terms",
                               subject=subject(merchant_id), reason=reason,
                               before={"daily_cap": before}, after={"daily_cap": daily_cap})

    def issued_today(self, merchant_id: str) -> tuple[int, int | None]:
        """(coupons the merchant gave since site-local midnight, its daily cap or None)."""
        row = self._require_merchant(merchant_id)
        local = self._clock.now().astimezone(self._zone)
        midnight = utc_iso(local.replace(hour=0, minute=0, second=0, microsecond=0))
        count = self.db.execute(
            "SELECT count(*) FROM merchant_coupons WHERE merchant_id = ? AND issued_at >= ?",
            [merchant_id, midnight]).fetchone()[0]
        return int(count), row.get("daily_cap")

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
        require_positive("amount_fen", amount_fen)
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
                               subject=subject(merchant_id), reason=reason,
                               before=balance_json(before),
                               after={**balance_json(after), "amount_fen": amount_fen,
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
        return [coupon_from(row) for row in rows]

    def live_coupons(self) -> list[IssuedCoupon]:
        """Every live coupon of the site, by plate and then oldest first: a lane's snapshot."""
        rows = self.db.query(
            "SELECT * FROM merchant_coupons WHERE state = 'issued' AND expires_at > ? "
            "ORDER BY plate, issued_at, coupon_id", [self._now_iso()])
        return [coupon_from(row) for row in rows]

    def drain_touched(self) -> set[str]:
        """The plates whose coupons were issued, claimed, revoked or used since the last
        call (normalised): the lanes' replicas are told about each."""
        touched, self._touched = self._touched, set()
        return touched

    def revoke(self, coupon_id: str, *, actor: str, reason: str) -> None:
        """Withdraw an unused coupon (given by mistake, customer refunded); its hold is released."""
        with self.db.atomic():
            row = self._coupon_row(coupon_id)
            if row["state"] != "issued":
                raise already(row)
            before = self.balance(row["merchant_id"])
            self.db.execute(
                "UPDATE merchant_coupons SET state = 'revoked', revoked_at = ?, "
                "revoke_reason = ? WHERE coupon_id = ? AND state = 'issued'",
                [self._now_iso(), reason, coupon_id])
            self._touched.add(row["plate"])
            self._audit.record(actor=actor, action="coupon.revoke",
                               subject=f"coupon:{coupon_id}", reason=reason,
                               before={"state": "issued", **balance_json(before)},
                               after={"state": "revoked",
                                      **balance_json(self.balance(row["merchant_id"]))})

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
                raise already(row)
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
            self._touched.add(row["plate"])
            self._audit.record(actor=actor, action="coupon.redeem",
                               subject=f"coupon:{coupon_id}", reason=f"exit of {session_id}",
                               before={"state": "issued", **balance_json(before)},
                               after={"state": "redeemed", "applied_fen": applied_fen,
                                      "charged_fen": charged, "entry_id": entry_id,
                                      **balance_json(self.balance(merchant_id))})
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
        codes = tuple(new_claim_code() for _ in range(count))
        with self.db.atomic():
            self._require_merchant(merchant_id)
            self.db.table("claim_codes").insert_all(
                {"code_hash": hash_code(code), "batch_id": batch_id, "merchant_id": merchant_id,
                 "kind": grant.kind, "minutes": grant.minutes, "fen": grant.fen,
                 "cap_fen": grant.cap_fen, "created_at": now, "expires_at": expires,
                 "rule": grant.rule or None}
                for code in codes)
            self._audit.record(actor=actor, action="coupon.claim_batch",
                               subject=subject(merchant_id), reason=reason,
                               after={"batch_id": batch_id, "count": count,
                                      "grant": asdict(grant), "expires_at": expires})
        return ClaimBatch(batch_id, merchant_id, grant, expires, codes)

    def claim_code(self, code: str) -> ClaimCode | None:
        """What a claim code gives and whose it is, for the claim page before the driver
        types a plate; None for a code that does not exist."""
        rows = list(self.db.query(
            "SELECT c.*, m.name, m.daily_cap FROM claim_codes c JOIN merchants m "
            "USING (merchant_id) WHERE c.code_hash = ?", [hash_code(code)]))
        if not rows:
            return None
        row = rows[0]
        return ClaimCode(row["merchant_id"], row["name"], grant_from(row), row["expires_at"],
                         row["claimed_at"] is not None, row["daily_cap"])

    def claim(self, code: str, *, plate: str) -> IssuedCoupon:
        """A driver claims a code for their plate: it becomes that plate's coupon, once.

        One coupon per plate per visit from each merchant: refused while the plate holds a
        live coupon of this merchant, or got one since its car came in (the open session's
        entry), so a stack of codes cannot pile up on one car. The merchant's daily cap and
        money are checked as for any coupon it gives."""
        now = self._now_iso()
        try:  # typed by the driver: a real plate, not just letters and digits
            parse_plate(plate)
            spelled = stored_spelling(plate)
        except PlateError as error:
            raise ClaimRefusedError("bad_plate", f"plate {plate!r}: {error}") from error
        with self.db.atomic():
            rows = list(self.db.query("SELECT * FROM claim_codes WHERE code_hash = ?",
                                      [hash_code(code)]))
            if not rows:
                raise ClaimRefusedError("unknown", "no such claim code")
            row = rows[0]
            if row["claimed_at"] is not None:
                raise ClaimRefusedError("used", "this claim code has already been claimed")
            if now >= row["expires_at"]:
                raise ClaimRefusedError("expired", f"this claim code expired at "
                                                   f"{row['expires_at']}")
            if self._claimed_this_visit(row["merchant_id"], spelled, now):
                raise ClaimRefusedError(
                    "claimed_this_visit", f"{spelled} already has a coupon from "
                                          f"{row['merchant_id']} for this visit")
            coupon = self._issue(
                row["merchant_id"], spelled, grant_from(row),
                expires_at=datetime.fromisoformat(row["expires_at"]),
                actor=f"claim:{row['batch_id']}", reason="driver claimed a QR code",
                claim_batch=row["batch_id"])
            self.db.execute(
                "UPDATE claim_codes SET claimed_at = ?, coupon_id = ? "
                "WHERE code_hash = ? AND claimed_at IS NULL",
                [now, coupon.coupon_id, row["code_hash"]])
        return coupon

    def _claimed_this_visit(self, merchant_id: str, plate: str, now: str) -> bool:
        """Whether ``plate`` holds a live coupon of this merchant or got one since its car
        came in. The visit is the plate's open session in the gateway's ``sessions`` table
        (this desk shares the gateway's file); a car not inside has only its live coupons."""
        normalised = normalise_plate(plate)
        entered = self.db.execute(
            "SELECT min(entry_at) FROM sessions WHERE state = 'open' AND plate = ?",
            [plate]).fetchone()[0] if self.db["sessions"].exists() else None
        found = self.db.execute(
            "SELECT count(*) FROM merchant_coupons WHERE merchant_id = ? AND plate = ? "
            "AND ((state = 'issued' AND expires_at > ?) OR issued_at >= ?)",
            [merchant_id, normalised, now, entered or "9999"]).fetchone()[0]
        return bool(found)

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
                           subject=subject(merchant_id), reason=reason,
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
        issued, cap = self.issued_today(merchant_id)
        if cap is not None and issued >= cap:
            raise DailyCapError(f"商户 {merchant_id} 今日已发 {issued} 张券，已达每日上限 / "
                                f"merchant {merchant_id} has given its {cap} coupons for today")
        live = self.db.execute(
            "SELECT count(*) FROM merchant_coupons WHERE plate = ? AND state = 'issued' "
            "AND expires_at > ?", [normalised, now]).fetchone()[0]
        if live >= MAX_LIVE_PER_PLATE:
            raise TooManyCouponsError(f"{normalised} already holds {live} live coupons, the "
                                      f"most one plate may hold")
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
            "state": "issued", "claim_batch": claim_batch, "rule": grant.rule or None,
        })
        self._touched.add(normalised)
        self._audit.record(actor=actor, action="coupon.issue",
                           subject=f"coupon:{coupon.coupon_id}", reason=reason,
                           before=balance_json(before),
                           after={"merchant_id": merchant_id, "plate": normalised,
                                  "grant": asdict(grant), "expires_at": expires,
                                  **balance_json(self.balance(merchant_id))})
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
