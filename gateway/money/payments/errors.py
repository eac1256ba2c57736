"""What can go wrong with drivers' money, as exceptions a caller can tell apart."""

from __future__ import annotations

from parkguard.errors import ParkGuardError


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
