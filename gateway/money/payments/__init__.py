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
>>> from gateway.records.audit import AuditLog
>>> from gateway.storage.migrations import migrate
>>> db = migrate(sqlite_utils.Database(memory=True))
>>> clock = ManualClock(datetime(2026, 5, 1, 2, 0, tzinfo=UTC))
>>> provider = SimulatedProvider(b"test-secret", clock)
>>> desk = PaymentDesk(db, clock=clock, audit=AuditLog(db, clock=clock), provider=provider)
>>> pending = desk.start_prepayment("s-1", "沪A12345", 1_000)
>>> body, headers = provider.pay(pending.provider_ref)
>>> desk.handle_callback(body, headers).state
'paid'
>>> desk.due("s-1", fee_now_fen=1_200).due_fen  # still inside the grace window
0
"""

from __future__ import annotations

from gateway.money.payments.desk import PaymentDesk
from gateway.money.payments.errors import (
    AmountMismatchError,
    BadSignatureError,
    IdempotencyConflictError,
    IgnoredNoticeError,
    PaymentError,
    RefundRefusedError,
    ReplayedNoticeError,
    StaleNoticeError,
    UnknownOrderError,
    UnknownPaymentError,
)
from gateway.money.payments.provider import (
    CallbackReply,
    CodeCharge,
    NoProvider,
    PaymentNotice,
    PaymentProvider,
    ProviderOrder,
    RefundResult,
)
from gateway.money.payments.reports import RevenueReport
from gateway.money.payments.simulated import SimulatedProvider
from gateway.money.payments.values import (
    Debt,
    FeeOverride,
    Method,
    Payment,
    PendingPayment,
    Refund,
    SessionMoney,
)

__all__ = [
    "AmountMismatchError",
    "BadSignatureError",
    "CallbackReply",
    "CodeCharge",
    "Debt",
    "FeeOverride",
    "IdempotencyConflictError",
    "IgnoredNoticeError",
    "Method",
    "NoProvider",
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
    "ReplayedNoticeError",
    "RevenueReport",
    "SessionMoney",
    "SimulatedProvider",
    "StaleNoticeError",
    "UnknownOrderError",
    "UnknownPaymentError",
]
