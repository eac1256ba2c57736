"""The payment-provider seam: what the desk asks of a provider (orders, signed notices,
payment codes, refunds) and how the gateway answers a provider's notice on the wire.

The providers themselves live beside this module: :mod:`.wechat` (WeChat Pay: API v3 Native
orders and notices, v2 micropay for 付款码), :mod:`.alipay` (Alipay open API, RSA2) and
:mod:`.simulated` (play money for the demo and tests, refused outside them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from gateway.money.payments.errors import BadSignatureError, PaymentError
from parkguard.core.ledger import Fen


@dataclass(frozen=True, slots=True)
class ProviderOrder:
    """An order opened at the provider: its reference and the page the driver pays on."""

    provider_ref: str
    pay_url: str


@dataclass(frozen=True, slots=True)
class PaymentNotice:
    """A verified "this order was paid" notice. ``paid_at`` is UTC ISO text.

    ``notice_id`` (the provider's nonce or notify id) and ``sent_at`` (when the provider
    signed it, from inside the signed material) let the desk refuse a replayed or stale
    notice; a provider that signs neither leaves them None.
    """

    order_id: str
    provider_ref: str
    amount_fen: Fen
    paid_at: str
    notice_id: str | None = None
    sent_at: datetime | None = None


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


@dataclass(frozen=True, slots=True)
class CallbackReply:
    """What the gateway's notify route sends back to the provider, in the provider's own
    terms (WeChat Pay v3 wants a status code and a JSON ``code``; Alipay the bare word
    ``success`` or anything else). A refusal makes the provider send the notice again."""

    status: int
    body: bytes
    media_type: str


@runtime_checkable
class PaymentProvider(Protocol):
    """What the desk needs from a payment provider (WeChat Pay, Alipay, the simulated one).

    Must override every method. ``verify_callback`` gets the raw request body and its
    headers, checks the provider's signature over them **before** reading anything, and
    raises :class:`~gateway.money.payments.errors.BadSignatureError` for a body the
    provider did not sign. ``charge_code`` and ``refund`` must be idempotent by
    ``idempotency_key``: called again with the same key they return the first answer and
    move no more money (the key becomes the out_trade_no / out_refund_no). Declines are
    answers (``ok=False``), not exceptions; exceptions mean "no answer" (the network failed)
    and the desk records nothing, so the caller can retry with the same key.
    ``callback_reply`` says how to answer a notice that was booked (``accepted``) or refused.
    """

    name: str

    def create_order(self, order_id: str, amount_fen: Fen, description: str) -> ProviderOrder:
        ...

    def verify_callback(self, body: bytes, headers: Mapping[str, str]) -> PaymentNotice: ...

    def callback_reply(self, accepted: bool, problem: str = "") -> CallbackReply: ...

    def charge_code(self, code: str, amount_fen: Fen, idempotency_key: str) -> CodeCharge: ...

    def refund(self, provider_ref: str, amount_fen: Fen,
               idempotency_key: str) -> RefundResult: ...


def merchant_no(prefix: str, key: str) -> str:
    """A provider-safe merchant number (out_trade_no, out_refund_no) for one of the desk's
    idempotency keys: ``prefix`` and 30 hex digits of the key's SHA-256, 32 characters in
    all, so the same key always names the same order at the provider (WeChat allows 32
    characters of ``[A-Za-z0-9_-|*]``; the desk's keys hold ``:``)."""
    return prefix[:2] + hashlib.sha256(key.encode("utf-8")).hexdigest()[:30]


def lowered(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers with lower-case names: HTTP names are case-insensitive, a plain dict is not."""
    return {str(name).lower(): str(value) for name, value in headers.items()}


class NoProvider:
    """``provider = "none"``: a site that takes no money online. Orders cannot be opened,
    notices are refused, payment codes are declined (``no_provider``, so an offline exit's
    code becomes a debt), refunds are paid over the counter instead."""

    name = "none"

    def create_order(self, order_id: str, amount_fen: Fen, description: str) -> ProviderOrder:
        raise PaymentError("no payment provider is configured ([payments] provider = "
                           "\"none\"): the pay page cannot take money online")

    def verify_callback(self, body: bytes, headers: Mapping[str, str]) -> PaymentNotice:
        raise BadSignatureError("no payment provider is configured: every notice is refused")

    def callback_reply(self, accepted: bool, problem: str = "") -> CallbackReply:
        return CallbackReply(200 if accepted else 400, (problem or "ok").encode("utf-8"),
                             "text/plain")

    def charge_code(self, code: str, amount_fen: Fen, idempotency_key: str) -> CodeCharge:
        return CodeCharge(False, amount_fen, reason="no_provider")

    def refund(self, provider_ref: str, amount_fen: Fen, idempotency_key: str) -> RefundResult:
        return RefundResult(False, amount_fen, reason="no_provider")
