"""The payment desk: takes drivers' money, books what they owe, pays refunds and records fee
overrides, each in one transaction with its ledger entry and audit record."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlite_utils

from gateway.money.books import Books
from gateway.money.payments.errors import (
    AmountMismatchError,
    RefundRefusedError,
    UnknownOrderError,
    UnknownPaymentError,
)
from gateway.money.payments.notices import NoticeGuard
from gateway.money.payments.provider import CodeCharge, PaymentNotice, PaymentProvider
from gateway.money.payments.reports import MONEY_IN_STATES, RevenueReport, revenue_report
from gateway.money.payments.values import (
    Debt,
    ExitMethod,
    FeeOverride,
    Payment,
    PaymentState,
    PendingPayment,
    Refund,
    SessionMoney,
    _check_refundable,
    _debt_from,
    _iso,
    _payment_from,
    _plate,
    _require_positive,
    _require_text,
    _same_payment,
)
from gateway.records.audit import AuditLog
from parkguard.clock import Clock, utc_iso
from parkguard.core.ledger import Account, Entry, Fen, Posting
from parkguard.core.payments import Due, amount_due, payment_code_wallet

_log = logging.getLogger(__name__)


_EXIT_METHODS = frozenset({"exit", "cash"})


class PaymentDesk:
    """Takes drivers' money, books what they owe, pays refunds and records fee overrides.

    ``db`` is the gateway's writer connection (one thread); ``audit`` must be on the same
    database so each audited action and its entry commit together. ``grace_minutes`` is the
    time a driver has to leave after paying. ``notice_window_s`` is how far a provider's
    signed notice time may be from the gateway's clock (either way) before it is refused as
    stale.
    """

    def __init__(self, db: sqlite_utils.Database, *, clock: Clock, audit: AuditLog,
                 provider: PaymentProvider, grace_minutes: int = 15,
                 notice_window_s: int = 300) -> None:
        if isinstance(grace_minutes, bool) or not isinstance(grace_minutes, int) \
                or grace_minutes < 0:
            raise ValueError(f"grace_minutes must be a non-negative int, got {grace_minutes!r}")
        if isinstance(notice_window_s, bool) or not isinstance(notice_window_s, int) \
                or notice_window_s <= 0:
            raise ValueError(f"notice_window_s must be a positive int, got {notice_window_s!r}")
        self._notices = NoticeGuard(clock, timedelta(seconds=notice_window_s))
        self.db = db
        self._clock = clock
        self._audit = audit
        self._provider = provider
        self.grace_minutes = grace_minutes
        self.books = Books(db, clock=clock)

    # --- what a session owes ---------------------------------------------------------------

    def money_for(self, session_id: str) -> SessionMoney:
        """What was paid for a session (net of refunds), when, and its debts."""
        paid = 0
        last: str | None = None
        for row in self.db.query(
                "SELECT amount_fen, refunded_fen, paid_at FROM payments WHERE session_id = ? "
                "AND purpose = 'fee' AND state IN (?, ?, ?)",
                [session_id, *MONEY_IN_STATES]):
            net = int(row["amount_fen"]) - int(row["refunded_fen"])
            paid += net
            if net > 0 and (last is None or row["paid_at"] > last):
                last = row["paid_at"]
        booked, still_open = self.db.execute(
            "SELECT coalesce(sum(amount_fen), 0), "
            "coalesce(sum(CASE WHEN settled_at IS NULL THEN amount_fen ELSE 0 END), 0) "
            "FROM debts WHERE session_id = ?", [session_id]).fetchone()
        return SessionMoney(session_id, paid, datetime.fromisoformat(last) if last else None,
                            int(still_open), int(booked))

    def due(self, session_id: str, fee_now_fen: Fen, *, at: datetime | None = None) -> Due:
        """What the exit should ask for now: the grace rule over the session's payments.

        A fee override for the session replaces ``fee_now_fen`` (the manager's word beats the
        meter); debts already booked for the session count as covered, so a failed payment
        code is not asked for again at this exit but at the next entry. ``at`` is when the car
        leaves (default now): a passage replayed from a lane's journal is judged at its own
        time, so a driver who left within the grace is not charged for the replay's delay.
        """
        override = self.fee_override(session_id)
        money = self.money_for(session_id)
        return amount_due(fee_now_fen=fee_now_fen if override is None else override,
                          paid_fen=money.paid_fen, last_paid_at=money.last_paid_at,
                          grace_minutes=self.grace_minutes, now=at or self._clock.now(),
                          debt_fen=money.booked_debt_fen)

    # --- prepayment on the pay page ---------------------------------------------------------

    def start_prepayment(self, session_id: str, plate: str, amount_fen: Fen) -> PendingPayment:
        """Open an order at the provider for the fee the pay page quoted; it stays pending
        until the provider's callback says it was paid."""
        _require_positive("amount_fen", amount_fen)
        normalised = _plate(plate)
        payment_id = uuid.uuid4().hex
        order = self._provider.create_order(payment_id, amount_fen,
                                            f"停车费 parking {normalised}")
        with self.db.atomic():
            self.db.table("payments").insert({
                "payment_id": payment_id, "purpose": "fee", "session_id": session_id,
                "plate": normalised, "method": "prepay", "amount_fen": amount_fen,
                "refunded_fen": 0, "state": "pending", "provider_ref": order.provider_ref,
                "created_at": self._now_iso(),
            })
        return PendingPayment(payment_id, session_id, normalised, amount_fen,
                              order.provider_ref, order.pay_url)

    def handle_callback(self, body: bytes, headers: Mapping[str, str]) -> Payment:
        """Record a provider's "paid" notice once; a repeat returns the recorded payment.

        ``body`` is the raw request body and ``headers`` its HTTP headers, as received.
        Refused with nothing written: a bad signature (:class:`BadSignatureError`), a notice
        signed outside the time window (:class:`StaleNoticeError`) or one already booked
        coming back with the same nonce (:class:`ReplayedNoticeError`), an order this desk
        never opened (:class:`UnknownOrderError`), an amount other than the order's
        (:class:`AmountMismatchError`). The payment counts from the provider's ``paid_at``,
        but never from later than now, so a provider clock running fast cannot lengthen
        the grace.
        """
        notice = self._provider.verify_callback(body, headers)
        self._notices.check(notice)
        payment = self._book_notice(notice)
        self._notices.remember(notice)
        return payment

    def _book_notice(self, notice: PaymentNotice) -> Payment:
        now = self._now_iso()
        with self.db.atomic():
            row = self._payment_row(notice.order_id)
            if row is None or row["provider_ref"] != notice.provider_ref \
                    or row["method"] != "prepay":
                raise UnknownOrderError(f"payment callback for unknown order "
                                        f"{notice.order_id!r} ({notice.provider_ref!r})")
            if int(row["amount_fen"]) != notice.amount_fen:
                raise AmountMismatchError(
                    f"order {notice.order_id} is for {row['amount_fen']} fen but the callback "
                    f"says {notice.amount_fen} fen: refused")
            if row["state"] != "pending":
                _log.info("duplicate payment callback for %s ignored", notice.order_id)
                return _payment_from(row)
            paid_at = min(_iso(notice.paid_at), now)
            entry_id = self.books.post(
                "payment", f"prepayment {notice.order_id} for session {row['session_id']}",
                _payment_postings(notice.amount_fen), ts=paid_at)
            self.db.execute(
                "UPDATE payments SET state = 'paid', paid_at = ?, entry_id = ? "
                "WHERE payment_id = ? AND state = 'pending'",
                [paid_at, entry_id, notice.order_id])
            _log.info("prepayment %s paid: %d fen", notice.order_id, notice.amount_fen)
            return self.payment(notice.order_id)

    # --- at the exit -----------------------------------------------------------------------

    def record_exit_payment(self, session_id: str, plate: str, amount_fen: Fen,
                            method: ExitMethod, *, idempotency_key: str | None = None,
                            provider_ref: str | None = None) -> Payment:
        """Money taken at the exit: ``cash``, or ``exit`` (a terminal or QR at the lane, whose
        ``provider_ref`` makes it refundable through the provider). With an
        ``idempotency_key`` a repeat returns the first payment instead of taking it twice."""
        _require_positive("amount_fen", amount_fen)
        if method not in _EXIT_METHODS:
            raise ValueError(f"exit payment method must be 'exit' or 'cash', got {method!r}")
        key = None if idempotency_key is None else f"exit:{idempotency_key}"
        normalised = _plate(plate)
        now = self._now_iso()
        with self.db.atomic():
            existing = self._payment_by_key(key)
            if existing is not None:
                return _same_payment(existing, session_id, amount_fen)
            payment_id = uuid.uuid4().hex
            entry_id = self.books.post(
                "payment", f"{method} payment at exit for session {session_id}",
                _payment_postings(amount_fen), ts=now)
            self.db.table("payments").insert({
                "payment_id": payment_id, "purpose": "fee", "session_id": session_id,
                "plate": normalised, "method": method, "amount_fen": amount_fen,
                "refunded_fen": 0, "state": "paid", "provider_ref": provider_ref,
                "idempotency_key": key, "created_at": now, "paid_at": now,
                "entry_id": entry_id,
            })
            return self.payment(payment_id)

    def pay_with_code(self, session_id: str, plate: str, code: str, amount_fen: Fen, *,
                      captured_at: datetime, event_id: str,
                      debt_on_decline: bool = True) -> Payment:
        """Charge a scanned payment code once per lane event, live or replayed from a journal.

        If the code is malformed or the provider declines it, the payment is recorded as
        ``failed`` with the reason and ``amount_fen`` becomes a debt on the plate (the car
        may be gone; not with ``debt_on_decline=False``: it still waits at the barrier); the
        failed payment is returned. Only the code's last four digits are kept.
        """
        _require_positive("amount_fen", amount_fen)
        if not event_id:
            raise ValueError("pay_with_code needs the lane's event_id (its idempotency key)")
        key = f"code:{event_id}"
        captured = utc_iso(captured_at)  # a naive time fails here, before any money moves
        normalised = _plate(plate)
        existing = self._payment_by_key(key)
        if existing is not None:
            return _same_payment(existing, session_id, amount_fen)
        digits = code.strip()
        wallet: str | None
        try:
            wallet = payment_code_wallet(digits)
        except ValueError:
            wallet = None
            charge = CodeCharge(False, amount_fen, reason="invalid_code")
        else:
            charge = self._provider.charge_code(digits, amount_fen, key)
        now = self._now_iso()
        with self.db.atomic():
            existing = self._payment_by_key(key)
            if existing is not None:  # pragma: no cover - the writer thread is alone
                return _same_payment(existing, session_id, amount_fen)
            payment_id = uuid.uuid4().hex
            entry_id: str | None = None
            if charge.ok:
                entry_id = self.books.post(
                    "payment", f"payment code ({wallet}) for session {session_id}",
                    _payment_postings(amount_fen), ts=now)
            self.db.table("payments").insert({
                "payment_id": payment_id, "purpose": "fee", "session_id": session_id,
                "plate": normalised, "method": "payment_code", "amount_fen": amount_fen,
                "refunded_fen": 0, "state": "paid" if charge.ok else "failed",
                "provider_ref": charge.provider_ref, "idempotency_key": key, "wallet": wallet,
                "code_tail": digits[-4:], "captured_at": captured,
                "created_at": now, "paid_at": now if charge.ok else None,
                "failure": None if charge.ok else (charge.reason or "declined"),
                "entry_id": entry_id,
            })
            if not charge.ok and debt_on_decline:
                self._record_debt(session_id, normalised, amount_fen,
                                  f"payment code declined: {charge.reason or 'declined'}",
                                  key=key, actor="gateway")
            return self.payment(payment_id)

    # --- debts -----------------------------------------------------------------------------

    def record_debt(self, session_id: str, plate: str, amount_fen: Fen, reason: str, *,
                    idempotency_key: str | None = None, actor: str = "gateway") -> Debt:
        """Book an unpaid exit fee against the plate; it shows at the car's next entry.
        With an ``idempotency_key`` a repeat returns the first debt."""
        _require_positive("amount_fen", amount_fen)
        key = None if idempotency_key is None else f"debt:{idempotency_key}"
        with self.db.atomic():
            return self._record_debt(session_id, _plate(plate), amount_fen, reason, key=key,
                                     actor=actor)

    def debts_for(self, plate: str) -> list[Debt]:
        """A plate's open debts, oldest first; any spelling of the plate finds them."""
        return [_debt_from(row) for row in self.db.query(
            "SELECT * FROM debts WHERE plate = ? AND settled_at IS NULL "
            "ORDER BY created_at, debt_id", [_plate(plate)])]

    def settle_debts(self, plate: str, method: ExitMethod, actor: str, *,
                     idempotency_key: str | None = None,
                     provider_ref: str | None = None) -> Payment | None:
        """The plate pays all its open debts in one payment; None if it owed nothing."""
        if method not in _EXIT_METHODS:
            raise ValueError(f"debts are settled by 'exit' or 'cash', got {method!r}")
        normalised = _plate(plate)
        key = None if idempotency_key is None else f"settle:{idempotency_key}"
        now = self._now_iso()
        with self.db.atomic():
            existing = self._payment_by_key(key)
            if existing is not None:
                return _payment_from(existing)
            debts = self.debts_for(normalised)
            if not debts:
                return None
            total = sum(debt.amount_fen for debt in debts)
            payment_id = uuid.uuid4().hex
            entry_id = self.books.post(
                "debt_settlement", f"{normalised} paid {len(debts)} debt(s) by {method}",
                [Posting(Account.clearing(), debit_fen=total),
                 Posting(Account.parking_debtors(), credit_fen=total)], ts=now)
            self.db.table("payments").insert({
                "payment_id": payment_id, "purpose": "debts", "session_id": None,
                "plate": normalised, "method": method, "amount_fen": total, "refunded_fen": 0,
                "state": "paid", "provider_ref": provider_ref, "idempotency_key": key,
                "created_at": now, "paid_at": now, "entry_id": entry_id,
            })
            ids = [debt.debt_id for debt in debts]
            for debt_id in ids:
                self.db.execute("UPDATE debts SET settled_at = ?, settled_by = ? "
                                "WHERE debt_id = ? AND settled_at IS NULL",
                                [now, payment_id, debt_id])
            self._audit.record(actor=actor, action="debt.settle", subject=f"plate:{normalised}",
                               reason=f"paid {len(debts)} open debt(s) by {method}",
                               before={"open_debts": ids, "owed_fen": total},
                               after={"owed_fen": 0, "payment_id": payment_id,
                                      "entry_id": entry_id})
            return self.payment(payment_id)

    # --- refunds ---------------------------------------------------------------------------

    def refund(self, payment_id: str, amount_fen: Fen, *, actor: str, reason: str) -> Refund:
        """Pay back part or all of a payment, never more than it took minus earlier refunds.

        Through the provider when the payment went through one (its ``provider_ref``), else
        over the counter in cash. A provider decline raises :class:`RefundRefusedError` and
        records nothing. Audited as ``payment.refund``.
        """
        _require_positive("amount_fen", amount_fen)
        _require_text("actor", actor)
        _require_text("reason", reason)
        row = self._payment_row(payment_id)
        if row is None:
            raise UnknownPaymentError(f"no payment {payment_id!r}")
        _check_refundable(row, amount_fen)
        number = self.db.execute("SELECT count(*) FROM refunds WHERE payment_id = ?",
                                 [payment_id]).fetchone()[0] + 1
        # The same refund retried gets the same key (so the provider pays it once); a different
        # amount after a decline gets a new one (so the provider does not replay the decline).
        key = f"refund:{payment_id}:{number}:{amount_fen}"
        provider_ref = row["provider_ref"]
        refund_ref: str | None = None
        if provider_ref is not None and row["method"] != "cash":
            result = self._provider.refund(provider_ref, amount_fen, key)
            if not result.ok:
                raise RefundRefusedError(result.reason or "declined",
                                         f"the provider refused the refund of {amount_fen} fen "
                                         f"on payment {payment_id}: {result.reason}")
            refund_ref = result.refund_ref
        now = self._now_iso()
        with self.db.atomic():
            row = self._payment_row(payment_id)
            if row is None:  # pragma: no cover - payments are never deleted
                raise UnknownPaymentError(f"payment {payment_id!r} vanished")
            _check_refundable(row, amount_fen)
            refund_id = uuid.uuid4().hex
            entry_id = self.books.post(
                "refund", f"refund {refund_id} of payment {payment_id}: {reason}",
                [Posting(Account.refunds(), debit_fen=amount_fen),
                 Posting(Account.clearing(), credit_fen=amount_fen)], ts=now)
            via: Literal["provider", "cash"] = "cash" if refund_ref is None else "provider"
            self.db.table("refunds").insert({
                "refund_id": refund_id, "payment_id": payment_id, "amount_fen": amount_fen,
                "via": via, "provider_ref": refund_ref, "idempotency_key": key, "actor": actor,
                "reason": reason, "created_at": now, "entry_id": entry_id,
            })
            refunded = int(row["refunded_fen"]) + amount_fen
            state: PaymentState = ("refunded" if refunded == int(row["amount_fen"])
                                   else "partly_refunded")
            self.db.execute("UPDATE payments SET refunded_fen = ?, state = ? "
                            "WHERE payment_id = ?", [refunded, state, payment_id])
            self._audit.record(
                actor=actor, action="payment.refund", subject=f"payment:{payment_id}",
                reason=reason,
                before={"state": row["state"], "amount_fen": row["amount_fen"],
                        "refunded_fen": row["refunded_fen"]},
                after={"state": state, "refunded_fen": refunded, "refund_fen": amount_fen,
                       "refund_id": refund_id, "via": via, "entry_id": entry_id,
                       "session_id": row["session_id"]})
        _log.info("refunded %d fen of payment %s via %s", amount_fen, payment_id, via)
        return Refund(refund_id, payment_id, amount_fen, via, refund_ref, now, entry_id)

    # --- fee overrides ---------------------------------------------------------------------

    def override_fee(self, session_id: str, fee_fen: Fen, *, actor: str, reason: str,
                     quoted_fen: Fen) -> FeeOverride:
        """A person sets the session's fee by hand (barrier fault, lost ticket, complaint).

        No money moves, so nothing is posted: the books see whatever is then paid or left
        as a debt. The latest override wins; each one is audited as ``fee.override`` with the
        quoted fee before and the override after.
        """
        for name, value in (("fee_fen", fee_fen), ("quoted_fen", quoted_fen)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int (fen), got {value!r}")
        _require_text("actor", actor)
        _require_text("reason", reason)
        now = self._now_iso()
        with self.db.atomic():
            previous = self.fee_override(session_id)
            self.db.table("fee_overrides").insert({
                "session_id": session_id, "quoted_fen": quoted_fen, "fee_fen": fee_fen,
                "actor": actor, "reason": reason, "created_at": now,
            })
            before: dict[str, int] = {"fee_fen": quoted_fen}
            if previous is not None:
                before["previous_override_fen"] = previous
            self._audit.record(actor=actor, action="fee.override",
                               subject=f"session:{session_id}", reason=reason,
                               before=before, after={"fee_fen": fee_fen})
        return FeeOverride(session_id, quoted_fen, fee_fen, actor, reason, now)

    def fee_override(self, session_id: str) -> Fen | None:
        """The session's fee as last set by hand, or None if nobody overrode it."""
        rows = list(self.db.query(
            "SELECT fee_fen FROM fee_overrides WHERE session_id = ? ORDER BY id DESC LIMIT 1",
            [session_id]))
        return int(rows[0]["fee_fen"]) if rows else None

    # --- reading ---------------------------------------------------------------------------

    def payment(self, payment_id: str) -> Payment:
        """One payment by id, or :class:`UnknownPaymentError`."""
        row = self._payment_row(payment_id)
        if row is None:
            raise UnknownPaymentError(f"no payment {payment_id!r}")
        return _payment_from(row)

    def payments_for(self, session_id: str) -> list[Payment]:
        """Every payment attempt for a session, oldest first (pending and failed included)."""
        return [_payment_from(row) for row in self.db.query(
            "SELECT * FROM payments WHERE session_id = ? ORDER BY created_at, payment_id",
            [session_id])]

    def entries(self) -> Iterator[Entry]:
        """Every ledger entry of the site, re-checked for balance."""
        return self.books.entries()

    def revenue_report(self, since: datetime, until: datetime) -> RevenueReport:
        """Fees by method, debts booked and settled, and refunds for ``since <= t < until``,
        beside what the ledger says for the same period (they must agree)."""
        return revenue_report(self.db, self.books, since, until)

    # --- helpers ---------------------------------------------------------------------------

    def _record_debt(self, session_id: str | None, plate: str, amount_fen: Fen, reason: str, *,
                     key: str | None, actor: str) -> Debt:
        """Store the debt, book it and audit it; the caller holds the transaction."""
        _require_text("reason", reason)
        if key is not None:
            rows = list(self.db.query("SELECT * FROM debts WHERE idempotency_key = ?", [key]))
            if rows:
                return _debt_from(rows[0])
        now = self._now_iso()
        debt_id = uuid.uuid4().hex
        entry_id = self.books.post(
            "debt", f"unpaid fee of session {session_id} by {plate}: {reason}",
            [Posting(Account.parking_debtors(), debit_fen=amount_fen),
             Posting(Account.parking_revenue(), credit_fen=amount_fen)], ts=now)
        self.db.table("debts").insert({
            "debt_id": debt_id, "plate": plate, "session_id": session_id,
            "amount_fen": amount_fen, "reason": reason, "idempotency_key": key,
            "created_at": now, "entry_id": entry_id,
        })
        self._audit.record(actor=actor, action="debt.record", subject=f"plate:{plate}",
                           reason=reason,
                           after={"debt_id": debt_id, "session_id": session_id,
                                  "amount_fen": amount_fen, "entry_id": entry_id})
        _log.info("debt of %d fen booked against %s", amount_fen, plate)
        return Debt(debt_id, plate, session_id, amount_fen, reason, now, None, None)

    def _payment_row(self, payment_id: str) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM payments WHERE payment_id = ?", [payment_id]))
        return rows[0] if rows else None

    def _payment_by_key(self, key: str | None) -> dict[str, Any] | None:
        if key is None:
            return None
        rows = list(self.db.query("SELECT * FROM payments WHERE idempotency_key = ?", [key]))
        return rows[0] if rows else None

    def _now_iso(self) -> str:
        return utc_iso(self._clock.now())


def _payment_postings(amount_fen: Fen) -> list[Posting]:
    return [Posting(Account.clearing(), debit_fen=amount_fen),
            Posting(Account.parking_revenue(), credit_fen=amount_fen)]
