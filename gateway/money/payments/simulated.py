"""The simulated payment provider: play money for ``parkguard demo`` and the tests.

It is refused everywhere else (``gateway.app.GatewayApp`` needs ``allow_simulated``), since a
gateway that believes it is taking money while nobody pays is worse than one that takes none.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.money.payments.errors import BadSignatureError, PaymentError
from gateway.money.payments.provider import (
    CallbackReply,
    CodeCharge,
    PaymentNotice,
    ProviderOrder,
    RefundResult,
    lowered,
)
from parkguard.clock import Clock, utc_iso
from parkguard.core.ledger import Fen
from parkguard.core.payments import payment_code_wallet

SIGNATURE_HEADER = "X-Signature"
"""The header the simulated provider's notice carries its HMAC in."""


@dataclass
class _SimOrder:
    order_id: str
    amount_fen: Fen
    description: str
    paid_at: str | None = None


class SimulatedProvider:
    """A payment provider in memory, for the demo and tests: no network, real signatures.

    Notices are JSON bodies signed with HMAC-SHA256 over the exact bytes (hex digest in the
    ``X-Signature`` header). :meth:`pay` plays the driver paying on the pay page and returns
    the ``(body, headers)`` that would be POSTed to the gateway. Payment codes are charged if
    well formed, not used before and not listed in :attr:`declined` (code → reason), which a
    test fills to make the wallet say no. Refunds never exceed what a payment took; charges
    and refunds are idempotent by key.
    """

    name = "simulated"

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

    def pay(self, provider_ref: str) -> tuple[bytes, dict[str, str]]:
        """The driver pays the order; returns the signed notice ``(body, headers)``.
        Paying twice returns the same notice, as a provider re-sending it would."""
        with self._lock:
            order = self._orders[provider_ref]
            if order.paid_at is None:
                order.paid_at = utc_iso(self._clock.now())
                self._captured[provider_ref] = order.amount_fen
            body = json.dumps({"order_id": order.order_id, "provider_ref": provider_ref,
                               "amount_fen": order.amount_fen, "paid_at": order.paid_at},
                              sort_keys=True, separators=(",", ":")).encode("utf-8")
        return body, {SIGNATURE_HEADER: self.sign(body), "Content-Type": "application/json"}

    def verify_callback(self, body: bytes, headers: Mapping[str, str]) -> PaymentNotice:
        signature = lowered(headers).get(SIGNATURE_HEADER.lower(), "")
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

    def callback_reply(self, accepted: bool, problem: str = "") -> CallbackReply:
        body = {"ok": True} if accepted else {"ok": False, "error": problem or "refused"}
        return CallbackReply(200 if accepted else 400, json.dumps(body).encode("utf-8"),
                             "application/json")

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
