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


class StaleNoticeError(BadSignatureError):
    """A correctly signed notice sent (by its own signed time) outside the window the desk
    accepts: a late replay, or a provider clock far off. Refused, nothing recorded."""


class ReplayedNoticeError(BadSignatureError):
    """A correctly signed notice the desk has already booked, sent again with the same nonce
    or notify id: someone replaying what they captured. Refused; the payment stands once."""


class IgnoredNoticeError(PaymentError):
    """A genuine notice that books nothing (a trade closed, a refund's echo): the route
    acknowledges it so the provider stops sending it."""


class ProviderUnreachableError(PaymentError, ConnectionError):
    """The provider gave no answer (network down, timeout, a 5xx): nothing is known to have
    happened, and the caller may retry with the same key."""


class ProviderRefusedError(PaymentError):
    """The provider answered, and said no to a request that is not a driver's decline (an
    order it would not open, a malformed answer, a signature on its answer that fails)."""
