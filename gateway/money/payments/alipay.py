"""Alipay (支付宝) through its open API, with the ``python-alipay-sdk``: precreate for the
QR a driver pays on the phone, trade.pay (scene ``bar_code``) for 付款码, query, cancel and
refund, each request RSA2-signed and each answer's signature checked by the SDK; the
asynchronous notice (a form POST) is RSA2-checked with the SDK's ``verify``.

What the SDK does not, done here: pointing it at another gateway URL (a private
attribute), the notice's time window and replay check (by the signed ``notify_time`` and
``notify_id``, :class:`~.notices.NoticeGuard`), matching app id, seller and amount, turning
yuan text into fen without floating point, and the wait-query-cancel flow for a 付款码 that
waits for the payer (``WAIT_BUYER_PAY``).
"""

from __future__ import annotations

import logging
import time
import urllib.error
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from alipay import AliPay
from alipay.exceptions import AliPayException, AliPayValidationError
from alipay.utils import AliPayConfig

from gateway.money.payments.code_wait import CodeWait, OrderStates
from gateway.money.payments.errors import (
    BadSignatureError,
    IgnoredNoticeError,
    ProviderRefusedError,
    ProviderUnreachableError,
    UnknownOrderError,
)
from gateway.money.payments.provider import (
    CallbackReply,
    CodeCharge,
    PaymentNotice,
    ProviderOrder,
    RefundResult,
    merchant_no,
)
from gateway.money.payments.settings import AlipaySettings, read_key_file
from parkguard.clock import Clock, utc_iso
from parkguard.core.ledger import Fen
from parkguard.errors import ConfigError

log = logging.getLogger(__name__)

BEIJING = ZoneInfo("Asia/Shanghai")
"""Alipay's times (notify_time, gmt_payment) are Beijing wall-clock text."""

DECLINES = {
    "ACQ.PAYMENT_AUTH_CODE_INVALID": "invalid_code",
    "ACQ.BUYER_BALANCE_NOT_ENOUGH": "insufficient_funds",
    "ACQ.BUYER_BANKCARD_BALANCE_NOT_ENOUGH": "insufficient_funds",
    "ACQ.TRADE_HAS_CLOSE": "reversed",
    "ACQ.BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR": "over_limit",
    "ACQ.BUYER_PAYMENT_AMOUNT_MONTH_LIMIT_ERROR": "over_limit",
    "ACQ.PULL_MOBILE_CASHIER_FAIL": "refused_by_wallet",
}
PAID = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED"})
CODE_STATES = OrderStates(paid=PAID, failed={"TRADE_CLOSED": "reversed"},
                          missing="TRADE_NOT_EXIST")
"""How a trade.query answer reads while a 付款码 waits for the payer."""


def yuan(fen: Fen) -> str:
    """Fen as Alipay's yuan text: 1500 → ``15.00``."""
    return f"{fen // 100}.{fen % 100:02d}"


def fen_of(text: str) -> Fen:
    """Alipay's yuan text as fen, exactly: ``15.00`` → 1500; anything else is a ValueError."""
    try:
        amount = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{text!r} is not an amount in yuan") from None
    fen = amount * 100
    if fen != fen.to_integral_value() or fen < 0:
        raise ValueError(f"{text!r} is not a whole number of fen")
    return int(fen)


def beijing(text: str) -> datetime:
    """``2026-12-07 15:45:00`` (Beijing) as an aware instant."""
    return datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)


class AlipayProvider:
    """Alipay behind :class:`~gateway.money.payments.provider.PaymentProvider`.

    ``provider_ref`` is the merchant's own out_trade_no (the desk's order id for a QR order,
    ``pc`` + a hash of the idempotency key for a 付款码), as in the bill files.
    """

    name = "alipay"

    def __init__(self, *, app_id: str, app_private_key_pem: str, alipay_public_key_pem: str,
                 notify_url: str, clock: Clock,
                 api_base: str = "https://openapi.alipay.com/gateway.do",
                 seller_id: str | None = None, timeout_s: float = 10.0,
                 code_wait_s: float = 30.0, code_poll_s: float = 5.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.app_id, self.seller_id = app_id, seller_id
        self._clock = clock
        try:
            self._sdk = AliPay(appid=app_id, app_notify_url=notify_url,
                               app_private_key_string=app_private_key_pem,
                               alipay_public_key_string=alipay_public_key_pem,
                               sign_type="RSA2", config=AliPayConfig(timeout=timeout_s))
        except (ValueError, IndexError, TypeError) as error:
            raise ConfigError(f"payments: Alipay refused its keys ({type(error).__name__}): "
                              "check the PEM files") from None
        self._sdk._gateway = api_base  # the SDK offers only production and its sandbox
        self._codes = CodeWait(code_wait_s=code_wait_s, code_poll_s=code_poll_s, sleep=sleep)

    @classmethod
    def from_settings(cls, settings: AlipaySettings, clock: Clock, *,
                      sleep: Callable[[float], None] = time.sleep) -> AlipayProvider:
        """Built from ``[payments.alipay]``, its keys read from their files."""
        return cls(
            app_id=settings.app_id,
            app_private_key_pem=read_key_file(settings.app_private_key_file,
                                              "Alipay app private key"),
            alipay_public_key_pem=read_key_file(settings.alipay_public_key_file,
                                                "Alipay public key"),
            notify_url=settings.notify_url, clock=clock, api_base=settings.api_base,
            seller_id=settings.seller_id, timeout_s=settings.timeout_s,
            code_wait_s=settings.code_wait_s, code_poll_s=settings.code_poll_s, sleep=sleep)

    def _call(self, what: str, call: Callable[[], Any]) -> dict[str, Any]:
        """One SDK call: the signed, checked answer's fields. No answer raises
        :class:`ProviderUnreachableError`; an answer that fails its check
        :class:`ProviderRefusedError`."""
        try:
            data = call()
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            raise ProviderUnreachableError(f"Alipay {what}: no answer "
                                           f"({type(error).__name__})") from error
        except AliPayValidationError as error:
            raise ProviderRefusedError(f"Alipay {what}: the answer's signature fails") \
                from error
        except (AliPayException, ValueError, KeyError) as error:
            raise ProviderRefusedError(f"Alipay {what}: answer refused: "
                                       f"{type(error).__name__}") from error
        if not isinstance(data, dict):
            raise ProviderRefusedError(f"Alipay {what}: answer is not an object")
        if data.get("code") == "20000":  # the service itself failed: unknown outcome
            raise ProviderUnreachableError(f"Alipay {what}: {data.get('sub_code', '20000')}")
        return data

    def create_order(self, order_id: str, amount_fen: Fen, description: str) -> ProviderOrder:
        """alipay.trade.precreate: the ``qr_code`` URL the driver opens in Alipay."""
        data = self._call("precreate", lambda: self._sdk.api_alipay_trade_precreate(
            subject=description[:120], out_trade_no=order_id, total_amount=yuan(amount_fen)))
        if data.get("code") != "10000" or not isinstance(data.get("qr_code"), str):
            raise ProviderRefusedError(f"Alipay would not open order {order_id}: "
                                       f"{data.get('sub_code', data.get('code'))}")
        return ProviderOrder(order_id, data["qr_code"])

    def query_order(self, order_id: str) -> str:
        """The trade_status (``WAIT_BUYER_PAY``, ``TRADE_SUCCESS``, ``TRADE_CLOSED``...), or
        ``TRADE_NOT_EXIST``."""
        data = self._call("query", lambda: self._sdk.api_alipay_trade_query(
            out_trade_no=order_id))
        if data.get("code") != "10000":
            if data.get("sub_code") == "ACQ.TRADE_NOT_EXIST":
                return "TRADE_NOT_EXIST"
            raise ProviderRefusedError(f"Alipay query {order_id}: {data.get('sub_code')}")
        return str(data.get("trade_status", ""))

    def cancel_order(self, order_id: str) -> None:
        """alipay.trade.cancel until no retry is asked for (paid: Alipay refunds it)."""
        for _ in range(3):
            data = self._call("cancel", lambda: self._sdk.api_alipay_trade_cancel(
                out_trade_no=order_id))
            if data.get("code") == "10000" and data.get("retry_flag", "N") != "Y":
                return
            if data.get("sub_code") == "ACQ.TRADE_NOT_EXIST":
                return
        raise ProviderUnreachableError(f"Alipay did not confirm cancelling {order_id}")

    def refund(self, provider_ref: str, amount_fen: Fen, idempotency_key: str) -> RefundResult:
        """alipay.trade.refund with ``out_request_no`` from the key: a retry is one refund."""
        request_no = merchant_no("rf", idempotency_key)
        data = self._call("refund", lambda: self._sdk.api_alipay_trade_refund(
            refund_amount=yuan(amount_fen), out_trade_no=provider_ref,
            out_request_no=request_no))
        if data.get("code") == "10000":
            return RefundResult(True, amount_fen, refund_ref=request_no)
        reason = str(data.get("sub_code") or data.get("code") or "declined")
        return RefundResult(False, amount_fen, reason=reason.removeprefix("ACQ.").lower())

    # --- notices ------------------------------------------------------------------------

    def verify_callback(self, body: bytes, headers: Mapping[str, str]) -> PaymentNotice:
        """An asynchronous notice (``application/x-www-form-urlencoded``), RSA2 over the
        sorted fields but ``sign`` and ``sign_type``, with the Alipay public key."""
        try:
            fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                                    strict_parsing=True))
        except (UnicodeDecodeError, ValueError):
            raise BadSignatureError("Alipay notice is not a UTF-8 form") from None
        signature = fields.pop("sign", "")
        if fields.get("sign_type", "RSA2") != "RSA2" or not signature:
            raise BadSignatureError("Alipay notice without an RSA2 signature")
        try:
            genuine = self._sdk.verify(dict(fields), signature)
        except (AliPayException, ValueError, TypeError):
            genuine = False
        if not genuine:
            raise BadSignatureError("Alipay notice refused: its signature does not match")
        return self._paid(fields)

    def _paid(self, fields: dict[str, str]) -> PaymentNotice:
        if fields.get("app_id") != self.app_id or (
                self.seller_id is not None and fields.get("seller_id") != self.seller_id):
            raise UnknownOrderError("Alipay notice for another app or seller")
        status = fields.get("trade_status", "")
        if status not in PAID or fields.get("refund_fee") or fields.get("gmt_refund"):
            raise IgnoredNoticeError(f"Alipay notice {status or 'without status'}: "
                                     "not a payment")
        try:
            order_id = fields["out_trade_no"]
            amount = fen_of(fields["total_amount"])
            sent_at = beijing(fields["notify_time"])
            paid_at = beijing(fields.get("gmt_payment") or fields["notify_time"])
            notify_id = fields["notify_id"]
        except (KeyError, ValueError) as error:
            raise UnknownOrderError(f"Alipay notice incomplete: {error}") from None
        return PaymentNotice(order_id, order_id, amount, utc_iso(paid_at),
                             notice_id=f"alipay:{notify_id}", sent_at=sent_at)

    def callback_reply(self, accepted: bool, problem: str = "") -> CallbackReply:
        """Alipay reads the body: ``success`` stops it re-sending, anything else (``fail``)
        makes it send again later."""
        if accepted:
            return CallbackReply(200, b"success", "text/plain")
        return CallbackReply(400, b"fail", "text/plain")

    # --- 付款码 ---------------------------------------------------------------------------

    def charge_code(self, code: str, amount_fen: Fen, idempotency_key: str) -> CodeCharge:
        """alipay.trade.pay (bar_code) under an out_trade_no from the key; a code waiting for
        the payer is queried until final, and cancelled if the payer never completes."""
        out_trade_no = merchant_no("pc", idempotency_key)

        def settle() -> CodeCharge:
            return self._codes.settle(
                amount_fen, out_trade_no, states=CODE_STATES,
                submit=lambda: self._submit(code.strip(), amount_fen, out_trade_no),
                query=lambda: self._state(out_trade_no),
                give_up=lambda: self._cancel_unpaid(out_trade_no))

        return self._codes.once(out_trade_no, settle)

    def _submit(self, code: str, amount_fen: Fen, out_trade_no: str) -> CodeCharge | None:
        """trade.pay once: a final answer, or None while the outcome is unknown."""
        try:
            data = self._call("pay", lambda: self._sdk.api_alipay_trade_pay(
                out_trade_no, "bar_code", code, "停车费 parking", total_amount=yuan(amount_fen)))
        except ProviderUnreachableError:
            return None
        if data.get("code") == "10000":
            return CodeCharge(True, amount_fen, provider_ref=out_trade_no)
        sub = str(data.get("sub_code", ""))
        if data.get("code") == "10003" or sub == "ACQ.TRADE_HAS_SUCCESS":
            return None
        if data.get("code") != "40004":  # not the payer's wallet: our keys or parameters
            raise ProviderRefusedError(f"Alipay trade.pay refused the app's call: "
                                       f"{data.get('code')} {sub}")
        reason = DECLINES.get(sub, sub.removeprefix("ACQ.").lower() or "declined")
        return CodeCharge(False, amount_fen, reason=reason)

    def _state(self, out_trade_no: str) -> str | None:
        """The trade's status, or None for no answer (the wait goes on)."""
        try:
            return self.query_order(out_trade_no)
        except ProviderUnreachableError:
            return None

    def _cancel_unpaid(self, out_trade_no: str) -> None:
        self.cancel_order(out_trade_no)
        log.info("payment code trade %s cancelled: the payer did not complete", out_trade_no)
