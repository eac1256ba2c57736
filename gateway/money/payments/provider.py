"""The payment-provider seam: what the desk asks of a provider, and the simulated one the
simulator, the tests and a bench site use (orders, signed callbacks, codes, refunds)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gateway.money.payments.errors import BadSignatureError, PaymentError
from parkguard.clock import Clock, utc_iso
from parkguard.core.ledger import Fen
from parkguard.core.payments import payment_code_wallet


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
