"""Drivers' money: prepayment with grace, payment at the exit, offline payment codes, debts,
refunds and fee overrides, behind a payment-provider interface.

How money comes in (``docs/payments.md`` has the long form):

- **Prepay** on the pay page: :meth:`PaymentDesk.start_prepayment` opens an order at the
  provider and returns the ``pay_url``; the provider later POSTs a signed callback that
  :meth:`PaymentDesk.handle_callback` verifies and records once, however often it comes.
  The driver then has ``grace_minutes`` to leave; overstaying costs only the extra
  (:func:`parkguard.core.payments.amount_due`).
- **At the exit**, cash or a terminal: :meth:`PaymentDesk.record_exit_payment`.
- **Payment codes** (付款码): the lane scans the code the driver's wallet made offline and
  submits it, or journals it while the gateway is unreachable and replays it later;
  :meth:`PaymentDesk.pay_with_code` charges it once per lane event. A code the provider
  declines becomes a **debt** on the plate, shown at the car's next entry
  (:meth:`PaymentDesk.debts_for`) and paid off with :meth:`PaymentDesk.settle_debts`.

Every money movement is one balanced entry in the site's :class:`~gateway.money.books.Books`, in
the same transaction as the row it describes; refunds, fee overrides and debts are also
audited in that transaction (give the desk an :class:`AuditLog` on the same database).

Provider calls happen *outside* database transactions (a real provider is a network call and
SQLite's write lock must not wait on it), with idempotency keys derived from what the caller
already knows (the lane's event id, the payment id and refund number), so a retry after a
crash between the provider's answer and the commit repeats the answer instead of the charge.

>>> from datetime import UTC, datetime
>>> import sqlite_utils
>>> from parkguard.clock import ManualClock
>>> db = sqlite_utils.Database(memory=True)
>>> clock = ManualClock(datetime(2026, 5, 1, 2, 0, tzinfo=UTC))
>>> provider = SimulatedProvider(b"test-secret", clock)
>>> desk = PaymentDesk(db, clock=clock, audit=AuditLog(db, clock=clock), provider=provider)
>>> pending = desk.start_prepayment("s-1", "沪A12345", 1_000)
>>> body, signature = provider.pay(pending.provider_ref)
>>> desk.handle_callback(body, signature).state
'paid'
>>> desk.due("s-1", fee_now_fen=1_200).due_fen  # still inside the grace window
0
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

import sqlite_utils
from sqlite_utils.migrations import Migrations

from gateway.money.books import Books
from gateway.records.audit import AuditLog
from parkguard.clock import Clock, utc_iso
from parkguard.core.ledger import Account, Entry, Fen, Posting
from parkguard.core.payments import Due, amount_due, payment_code_wallet
from parkguard.core.plates.normalise import normalise_plate
from parkguard.errors import ParkGuardError

__all__ = [
    "AmountMismatchError",
    "BadSignatureError",
    "CodeCharge",
    "Debt",
    "FeeOverride",
    "IdempotencyConflictError",
    "Method",
    "Payment",
    "PaymentDesk",
    "PaymentError",
    "PaymentNotice",
    "PaymentProvider",
    "PendingPayment",
    "ProviderOrder",
    "Refund",
    "RefundRefusedError",
    "RefundResult",
    "RevenueReport",
    "SessionMoney",
    "SimulatedProvider",
    "UnknownOrderError",
    "UnknownPaymentError",
    "migrations",
]

_log = logging.getLogger(__name__)

Method: TypeAlias = Literal["prepay", "exit", "payment_code", "cash"]
ExitMethod: TypeAlias = Literal["exit", "cash"]
PaymentState: TypeAlias = Literal["pending", "paid", "failed", "refunded", "partly_refunded"]
Purpose: TypeAlias = Literal["fee", "debts"]

_EXIT_METHODS = frozenset({"exit", "cash"})
_MONEY_IN_STATES = ("paid", "partly_refunded", "refunded")
_REFUNDABLE_STATES = frozenset({"paid", "partly_refunded"})
_LEDGER_KINDS = ("payment", "debt", "debt_settlement", "refund")


# --- errors ----------------------------------------------------------------------------------


class PaymentError(ParkGuardError):
    """Base of every payment, debt, refund and fee-override error."""


class BadSignatureError(PaymentError, ValueError):
    """A provider callback's signature does not match its body: it was not sent by the
    provider, or was changed on the way. Nothing is recorded."""


class UnknownOrderError(PaymentError, LookupError):
    """A callback names an order this desk never opened (or another order's provider ref)."""


class UnknownPaymentError(PaymentError, LookupError):
    """No payment has that id."""


class AmountMismatchError(PaymentError, ValueError):
    """A callback's amount differs from the order's: refused, never recorded as paid."""


class IdempotencyConflictError(PaymentError, ValueError):
    """An idempotency key was reused for a different payment (another session or amount)."""


class RefundRefusedError(PaymentError, ValueError):
    """A refund cannot be made; ``reason`` says why in one word (``exceeds_paid``,
    ``not_paid``, or the provider's own reason)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --- the provider interface ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProviderOrder:
    """An order opened at the provider: its reference and the page the driver pays on."""

    provider_ref: str
    pay_url: str


@dataclass(frozen=True, slots=True)
class PaymentNotice:
    """A verified "this order was paid" callback. ``paid_at`` is UTC ISO text."""

    order_id: str
    provider_ref: str
    amount_fen: Fen
    paid_at: str


@dataclass(frozen=True, slots=True)
class CodeCharge:
    """The outcome of charging a payment code: ``ok``, or declined with a one-word reason
    (``insufficient_funds``, ``code_expired``, ``code_reused``, ``invalid_code``, ...)."""

    ok: bool
    amount_fen: Fen
    provider_ref: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RefundResult:
    """The outcome of a refund at the provider: ``ok`` with its reference, or a reason."""

    ok: bool
    amount_fen: Fen
    refund_ref: str | None = None
    reason: str | None = None


@runtime_checkable
class PaymentProvider(Protocol):
    """What the desk needs from a payment provider (WeChat Pay, Alipay, a bank aggregator).

    Must override every method. ``verify_callback`` raises :class:`BadSignatureError` for a
    body the provider did not sign. ``charge_code`` and ``refund`` must be idempotent by
    ``idempotency_key``: called again with the same key they return the first answer and
    move no more money (real providers take an out_trade_no / out_refund_no for this).
    Declines are answers (``ok=False``), not exceptions; exceptions mean "no answer" (the
    network failed) and the desk records nothing, so the caller can retry with the same key.
    """

    def create_order(self, order_id: str, amount_fen: Fen, description: str) -> ProviderOrder:
        ...

    def verify_callback(self, body: bytes, signature: str) -> PaymentNotice: ...

    def charge_code(self, code: str, amount_fen: Fen, idempotency_key: str) -> CodeCharge: ...

    def refund(self, provider_ref: str, amount_fen: Fen,
               idempotency_key: str) -> RefundResult: ...


@dataclass
class _SimOrder:
    order_id: str
    amount_fen: Fen
    description: str
    paid_at: str | None = None


class SimulatedProvider:
    """A payment provider in memory, for tests and the simulator: no network, real signatures.

    Callbacks are JSON bodies signed with HMAC-SHA256 over the exact bytes (hex digest), as
    real providers do with their own schemes. :meth:`pay` plays the driver paying on the
    pay page and returns the callback that would be POSTed to the gateway. Payment codes are
    charged if well formed, not used before and not listed in :attr:`declined` (code →
    reason), which a test fills to make the wallet say no. Refunds never exceed what a
    payment took; charges and refunds are idempotent by key.
    """

    def __init__(self, secret: bytes, clock: Clock, *,
                 pay_base_url: str = "https://pay.invalid/sim/") -> None:
        if not secret:
            raise ValueError("the simulated provider needs a non-empty signing secret")
        self._secret = secret
        self._clock = clock
        self._base = pay_base_url
        self._lock = threading.Lock()
        self._orders: dict[str, _SimOrder] = {}
        self._refs_by_order: dict[str, str] = {}
        self._captured: dict[str, Fen] = {}
        self._refunded: dict[str, Fen] = {}
        self._charges: dict[str, CodeCharge] = {}
        self._refunds: dict[str, RefundResult] = {}
        self._used_codes: set[str] = set()
        self.declined: dict[str, str] = {}
        """Codes the wallet refuses, with the reason it gives (``insufficient_funds``...)."""
        self.calls: list[str] = []
        """Every method called, in order: lets a test see that a replay did not charge."""

    def sign(self, body: bytes) -> str:
        """The hex HMAC-SHA256 of ``body`` under the shared secret."""
        return hmac.new(self._secret, body, hashlib.sha256).hexdigest()

    def create_order(self, order_id: str, amount_fen: Fen, description: str) -> ProviderOrder:
        with self._lock:
            self.calls.append("create_order")
            ref = self._refs_by_order.get(order_id)
            if ref is None:
                ref = f"sim-{uuid.uuid4().hex}"
                self._orders[ref] = _SimOrder(order_id, amount_fen, description)
                self._refs_by_order[order_id] = ref
            return ProviderOrder(ref, f"{self._base}{ref}")

    def pay(self, provider_ref: str) -> tuple[bytes, str]:
        """The driver pays the order; returns the signed callback ``(body, signature)``.
        Paying twice returns the same callback, as a provider re-sending a notice would."""
        with self._lock:
            order = self._orders[provider_ref]
            if order.paid_at is None:
                order.paid_at = utc_iso(self._clock.now())
                self._captured[provider_ref] = order.amount_fen
            body = json.dumps({"order_id": order.order_id, "provider_ref": provider_ref,
                               "amount_fen": order.amount_fen, "paid_at": order.paid_at},
                              sort_keys=True, separators=(",", ":")).encode("utf-8")
        return body, self.sign(body)

    def verify_callback(self, body: bytes, signature: str) -> PaymentNotice:
        # Compared as bytes: compare_digest refuses non-ASCII str, and a forged header may
        # hold anything.
        given = signature.strip().lower().encode("utf-8", "replace")
        if not hmac.compare_digest(self.sign(body).encode("ascii"), given):
            raise BadSignatureError("payment callback refused: its signature does not match "
                                    "its body")
        try:
            data = json.loads(body)
            return PaymentNotice(str(data["order_id"]), str(data["provider_ref"]),
                                 int(data["amount_fen"]), str(data["paid_at"]))
        except (ValueError, KeyError, TypeError) as error:  # signed but malformed: our bug
            raise PaymentError(f"signed payment callback is malformed: {error}") from error

    def charge_code(self, code: str, amount_fen: Fen, idempotency_key: str) -> CodeCharge:
        with self._lock:
            self.calls.append("charge_code")
            if idempotency_key in self._charges:
                return self._charges[idempotency_key]
            try:
                payment_code_wallet(code)
            except ValueError:
                result = CodeCharge(False, amount_fen, reason="invalid_code")
            else:
                if code in self.declined:
                    result = CodeCharge(False, amount_fen, reason=self.declined[code])
                elif code in self._used_codes:
                    result = CodeCharge(False, amount_fen, reason="code_reused")
                else:
                    self._used_codes.add(code)
                    ref = f"sim-{uuid.uuid4().hex}"
                    self._captured[ref] = amount_fen
                    result = CodeCharge(True, amount_fen, provider_ref=ref)
            self._charges[idempotency_key] = result
            return result

    def refund(self, provider_ref: str, amount_fen: Fen, idempotency_key: str) -> RefundResult:
        with self._lock:
            self.calls.append("refund")
            if idempotency_key in self._refunds:
                return self._refunds[idempotency_key]
            captured = self._captured.get(provider_ref)
            refunded = self._refunded.get(provider_ref, 0)
            if captured is None:
                result = RefundResult(False, amount_fen, reason="unknown_payment")
            elif amount_fen <= 0 or refunded + amount_fen > captured:
                result = RefundResult(False, amount_fen, reason="exceeds_paid")
            else:
                self._refunded[provider_ref] = refunded + amount_fen
                result = RefundResult(True, amount_fen, refund_ref=f"simr-{uuid.uuid4().hex}")
            self._refunds[idempotency_key] = result
            return result

    def refunded_fen(self, provider_ref: str) -> Fen:
        """What the provider has paid back on one payment (for tests to compare with)."""
        return self._refunded.get(provider_ref, 0)


# --- schema ----------------------------------------------------------------------------------

migrations = Migrations("parkguard.payments")
"""The "parkguard.payments" migration set; :class:`PaymentDesk` applies it."""


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


# --- values ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Payment:
    """One payment as stored. ``session_id`` is None for a payment of old debts;
    ``refunded_fen`` is what was paid back of ``amount_fen``; ``failure`` is a declined
    code's reason."""

    payment_id: str
    purpose: Purpose
    session_id: str | None
    plate: str
    method: Method
    amount_fen: Fen
    refunded_fen: Fen
    state: PaymentState
    provider_ref: str | None
    created_at: str
    paid_at: str | None
    failure: str | None
    entry_id: str | None


@dataclass(frozen=True, slots=True)
class PendingPayment:
    """A prepayment waiting for the driver: the pay page shows ``pay_url``."""

    payment_id: str
    session_id: str
    plate: str
    amount_fen: Fen
    provider_ref: str
    pay_url: str


@dataclass(frozen=True, slots=True)
class Debt:
    """A fee a plate left without paying; open until ``settled_at`` (by payment ``settled_by``)."""

    debt_id: str
    plate: str
    session_id: str | None
    amount_fen: Fen
    reason: str
    created_at: str
    settled_at: str | None
    settled_by: str | None


@dataclass(frozen=True, slots=True)
class Refund:
    """Money paid back on one payment, through the provider or over the counter (``via``)."""

    refund_id: str
    payment_id: str
    amount_fen: Fen
    via: Literal["provider", "cash"]
    provider_ref: str | None
    created_at: str
    entry_id: str


@dataclass(frozen=True, slots=True)
class FeeOverride:
    """A person set a session's fee by hand: the quote said ``quoted_fen``, they said
    ``fee_fen``."""

    session_id: str
    quoted_fen: Fen
    fee_fen: Fen
    actor: str
    reason: str
    created_at: str


@dataclass(frozen=True, slots=True)
class SessionMoney:
    """A session's money: ``paid_fen`` net of refunds, when it was last paid, and its debts
    (``booked_debt_fen`` all ever recorded for it, ``open_debt_fen`` those not yet paid)."""

    session_id: str
    paid_fen: Fen
    last_paid_at: datetime | None
    open_debt_fen: Fen
    booked_debt_fen: Fen


@dataclass(frozen=True, slots=True)
class RevenueReport:
    """Money for ``since <= t < until`` from the payment tables, beside the ledger's view.

    Identities that hold for any period (the tests check them):
    ``ledger_revenue_fen == sum(fees_by_method.values()) + debts_recorded_fen`` and
    ``ledger_refunds_fen == refunds_fen``. ``debts_settled_fen`` is money in that was already
    revenue (when the debt was booked), so it is not revenue again.
    """

    since: str
    until: str
    fees_by_method: Mapping[str, Fen]
    debts_recorded_fen: Fen
    debts_settled_fen: Fen
    refunds_fen: Fen
    ledger_revenue_fen: Fen
    ledger_refunds_fen: Fen
    open_debts_fen: Fen
    """Debts booked before ``until`` and not settled by then: what drivers still owe."""

    @property
    def net_revenue_fen(self) -> Fen:
        """Parking revenue earned in the period minus refunds paid in it."""
        return self.ledger_revenue_fen - self.ledger_refunds_fen


# --- the desk --------------------------------------------------------------------------------


class PaymentDesk:
    """Takes drivers' money, books what they owe, pays refunds and records fee overrides.

    ``db`` is the gateway's writer connection (one thread); ``audit`` must be on the same
    database so each audited action and its entry commit together. ``grace_minutes`` is the
    time a driver has to leave after paying.
    """

    def __init__(self, db: sqlite_utils.Database, *, clock: Clock, audit: AuditLog,
                 provider: PaymentProvider, grace_minutes: int = 15) -> None:
        if isinstance(grace_minutes, bool) or not isinstance(grace_minutes, int) \
                or grace_minutes < 0:
            raise ValueError(f"grace_minutes must be a non-negative int, got {grace_minutes!r}")
        self.db = db
        self._clock = clock
        self._audit = audit
        self._provider = provider
        self.grace_minutes = grace_minutes
        self.books = Books(db, clock=clock)
        migrations.apply(db)

    # --- what a session owes ---------------------------------------------------------------

    def money_for(self, session_id: str) -> SessionMoney:
        """What was paid for a session (net of refunds), when, and its debts."""
        paid = 0
        last: str | None = None
        for row in self.db.query(
                "SELECT amount_fen, refunded_fen, paid_at FROM payments WHERE session_id = ? "
                "AND purpose = 'fee' AND state IN (?, ?, ?)",
                [session_id, *_MONEY_IN_STATES]):
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

    def handle_callback(self, body: bytes, signature: str) -> Payment:
        """Record a provider's "paid" callback once; a repeat returns the recorded payment.

        Refused with nothing written: a bad signature (:class:`BadSignatureError`), an order
        this desk never opened (:class:`UnknownOrderError`), an amount other than the
        order's (:class:`AmountMismatchError`). The payment counts from the provider's
        ``paid_at``, but never from later than now, so a provider clock running fast cannot
        lengthen the grace.
        """
        notice = self._provider.verify_callback(body, signature)
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
                      captured_at: datetime, event_id: str) -> Payment:
        """Charge a scanned payment code once per lane event, live or replayed from a journal.

        If the code is malformed or the provider declines it, the payment is recorded as
        ``failed`` with the reason and ``amount_fen`` becomes a debt on the plate (the car
        may already be gone); the failed payment is returned. Only the code's last four
        digits are kept.
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
            if not charge.ok:
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
        start, end = utc_iso(since), utc_iso(until)
        fees: dict[str, Fen] = {}
        for row in self.db.query(
                "SELECT method, sum(amount_fen) AS fen FROM payments WHERE purpose = 'fee' "
                "AND state IN (?, ?, ?) AND paid_at >= ? AND paid_at < ? GROUP BY method "
                "ORDER BY method", [*_MONEY_IN_STATES, start, end]):
            fees[row["method"]] = int(row["fen"])

        def scalar(sql: str, params: list[str]) -> Fen:
            return int(self.db.execute(sql, params).fetchone()[0])

        settled = scalar(
            "SELECT coalesce(sum(amount_fen), 0) FROM payments WHERE purpose = 'debts' "
            "AND state IN (?, ?, ?) AND paid_at >= ? AND paid_at < ?",
            [*_MONEY_IN_STATES, start, end])
        recorded = scalar("SELECT coalesce(sum(amount_fen), 0) FROM debts "
                          "WHERE created_at >= ? AND created_at < ?", [start, end])
        still_open = scalar("SELECT coalesce(sum(amount_fen), 0) FROM debts "
                            "WHERE created_at < ? AND (settled_at IS NULL OR settled_at >= ?)",
                            [end, end])
        refunds = scalar("SELECT coalesce(sum(amount_fen), 0) FROM refunds "
                         "WHERE created_at >= ? AND created_at < ?", [start, end])
        revenue = 0
        for kind in _LEDGER_KINDS:
            debit, credit = self.books.totals([Account.parking_revenue()], since=start,
                                              until=end, kind=kind)
            revenue += credit - debit
        refund_debit, refund_credit = self.books.totals([Account.refunds()], since=start,
                                                        until=end, kind="refund")
        return RevenueReport(start, end, fees, recorded, settled, refunds, revenue,
                             refund_debit - refund_credit, still_open)

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


def _check_refundable(row: dict[str, Any], amount_fen: Fen) -> None:
    if row["state"] not in _REFUNDABLE_STATES:
        raise RefundRefusedError("not_paid", f"payment {row['payment_id']} is {row['state']}: "
                                             "there is nothing to refund")
    left = int(row["amount_fen"]) - int(row["refunded_fen"])
    if amount_fen > left:
        raise RefundRefusedError(
            "exceeds_paid", f"payment {row['payment_id']} has {left} fen left to refund "
                            f"(paid {row['amount_fen']}, refunded {row['refunded_fen']}); "
                            f"{amount_fen} fen refused")


def _same_payment(row: dict[str, Any], session_id: str, amount_fen: Fen) -> Payment:
    """The payment an idempotency key already made, if the retry asks for the same thing."""
    if row["session_id"] != session_id or int(row["amount_fen"]) != amount_fen:
        raise IdempotencyConflictError(
            f"idempotency key {row['idempotency_key']!r} already paid {row['amount_fen']} fen "
            f"for session {row['session_id']}, not {amount_fen} fen for {session_id}")
    return _payment_from(row)


def _payment_from(row: dict[str, Any]) -> Payment:
    return Payment(row["payment_id"], row["purpose"], row["session_id"], row["plate"],
                   row["method"], row["amount_fen"], row["refunded_fen"], row["state"],
                   row["provider_ref"], row["created_at"], row["paid_at"], row["failure"],
                   row["entry_id"])


def _debt_from(row: dict[str, Any]) -> Debt:
    return Debt(row["debt_id"], row["plate"], row["session_id"], row["amount_fen"],
                row["reason"], row["created_at"], row["settled_at"], row["settled_by"])


def _plate(plate: str) -> str:
    normalised = normalise_plate(plate)
    if not normalised:
        raise ValueError(f"plate {plate!r} has no letters or digits")
    return normalised


def _iso(text: str) -> str:
    """Any ISO-8601 instant with a zone, as ParkGuard's UTC text (so text order is time order)."""
    return utc_iso(datetime.fromisoformat(text.replace("Z", "+00:00")))


def _require_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int (fen), got {value!r}")


def _require_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
