"""WeChat Pay (微信支付) for a direct merchant: API v3 Native QR orders, their notices,
order query and close, and refunds, through the ``wechatpayv3`` SDK; 付款码 by the v2
micropay API (:mod:`.wechat_codes`), which the SDK does not speak.

What the SDK does here: request signing (``Authorization: WECHATPAY2-SHA256-RSA2048``),
checking the signature on each answer and on a notice (RSA-SHA256 over
``timestamp\\nnonce\\nbody\\n`` with the platform public key), and AES-256-GCM decryption of a
notice's resource with the APIv3 key. What it does not, done here: refusing a notice signed
under another key id before the SDK sees it (the SDK would go and download certificates for
an unknown serial), the time window and replay check (:class:`~.notices.NoticeGuard`, by the
signed ``Wechatpay-Timestamp`` and ``Wechatpay-Nonce``), matching the merchant, app, amount
and currency, and pointing it at another host (its API host is a private attribute).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from requests.exceptions import RequestException
from wechatpayv3 import WeChatPay, WeChatPayType

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
    lowered,
    merchant_no,
)
from gateway.money.payments.settings import (
    WeChatPaySettings,
    read_key_file,
    read_symmetric_key,
)
from gateway.money.payments.values import _iso
from gateway.money.payments.wechat_codes import Micropay
from parkguard.clock import Clock
from parkguard.core.ledger import Fen
from parkguard.errors import ConfigError

log = logging.getLogger(__name__)

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
_REFUSED_STATUS = {"bad_signature": 401, "stale": 401, "replayed": 401}


class WeChatPayProvider:
    """WeChat Pay behind :class:`~gateway.money.payments.provider.PaymentProvider`.

    ``provider_ref`` is the merchant's own out_trade_no (the desk's order id for a QR order,
    ``pc`` + a hash of the idempotency key for a 付款码), so statements and notices name
    the same thing the payments table does.
    """

    name = "wechat"

    def __init__(self, *, mchid: str, appid: str, merchant_serial: str, merchant_key_pem: str,
                 apiv3_key: str, platform_public_key_pem: str, platform_public_key_id: str,
                 notify_url: str, clock: Clock, api_base: str = "https://api.mch.weixin.qq.com",
                 apiv2_key: str | None = None, client_cert: tuple[str, str] | None = None,
                 terminal_ip: str = "127.0.0.1", timeout_s: float = 10.0,
                 code_wait_s: float = 30.0, code_poll_s: float = 5.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.mchid, self.appid = mchid, appid
        self._key_id = platform_public_key_id
        self._clock = clock
        try:
            self._sdk = WeChatPay(
                wechatpay_type=WeChatPayType.NATIVE, mchid=mchid, private_key=merchant_key_pem,
                cert_serial_no=merchant_serial, appid=appid, apiv3_key=apiv3_key,
                notify_url=notify_url, public_key=platform_public_key_pem,
                public_key_id=platform_public_key_id, timeout=timeout_s)
        except Exception as error:  # the SDK raises bare Exception for a bad key
            raise ConfigError(f"payments: WeChat Pay refused its keys: {error}") from None
        # The SDK has no public setting for its host; tests and a proxy need another one.
        self._sdk._core._gate_way = api_base.rstrip("/")
        self.codes = Micropay(
            api_base=api_base, mchid=mchid, appid=appid, apiv2_key=apiv2_key,
            client_cert=client_cert, terminal_ip=terminal_ip, timeout_s=timeout_s,
            code_wait_s=code_wait_s, code_poll_s=code_poll_s, sleep=sleep)

    @classmethod
    def from_settings(cls, settings: WeChatPaySettings, clock: Clock, *,
                      sleep: Callable[[float], None] = time.sleep) -> WeChatPayProvider:
        """Built from ``[payments.wechat]``, its keys read from their files."""
        v2 = None if settings.apiv2_key_file is None \
            else read_symmetric_key(settings.apiv2_key_file, "WeChat Pay API v2 key")
        cert = None if settings.client_cert_file is None \
            else (str(settings.client_cert_file), str(settings.merchant_key_file))
        return cls(
            mchid=settings.mchid, appid=settings.appid,
            merchant_serial=settings.merchant_serial,
            merchant_key_pem=read_key_file(settings.merchant_key_file,
                                           "WeChat Pay merchant private key"),
            apiv3_key=read_symmetric_key(settings.apiv3_key_file, "WeChat Pay APIv3 key"),
            platform_public_key_pem=read_key_file(settings.platform_public_key_file,
                                                  "WeChat Pay platform public key"),
            platform_public_key_id=settings.platform_public_key_id,
            notify_url=settings.notify_url, clock=clock, api_base=settings.api_base,
            apiv2_key=v2, client_cert=cert, terminal_ip=settings.terminal_ip,
            timeout_s=settings.timeout_s, code_wait_s=settings.code_wait_s,
            code_poll_s=settings.code_poll_s, sleep=sleep)

    # --- v3 calls through the SDK -------------------------------------------------------

    def _call(self, what: str, call: Callable[[], tuple[int, Any]]) -> tuple[int, dict[str, Any]]:
        """One SDK call: (HTTP status, JSON answer). No answer, a 5xx or an answer whose
        signature fails raise; a 4xx is returned for the caller to read."""
        try:
            status, text = call()
        except RequestException as error:
            raise ProviderUnreachableError(f"WeChat Pay {what}: no answer "
                                           f"({type(error).__name__})") from error
        except Exception as error:  # the SDK's own "failed to verify the signature"
            raise ProviderRefusedError(f"WeChat Pay {what}: answer refused: {error}") from error
        if status >= 500:
            raise ProviderUnreachableError(f"WeChat Pay {what}: HTTP {status}")
        try:
            data = json.loads(text) if text else {}
        except (TypeError, ValueError) as error:
            raise ProviderRefusedError(f"WeChat Pay {what}: answer is not JSON") from error
        return status, data if isinstance(data, dict) else {}

    def create_order(self, order_id: str, amount_fen: Fen, description: str) -> ProviderOrder:
        """A Native order: the ``code_url`` (weixin://wxpay/bizpayurl?pr=...) to show as a QR."""
        status, data = self._call("native order", lambda: self._sdk.pay(
            description=description[:120], out_trade_no=order_id,
            amount={"total": amount_fen, "currency": "CNY"}))
        if status != 200 or not isinstance(data.get("code_url"), str):
            raise ProviderRefusedError(f"WeChat Pay would not open order {order_id}: "
                                       f"{data.get('code', status)}")
        return ProviderOrder(order_id, data["code_url"])

    def query_order(self, order_id: str) -> str:
        """The order's trade_state (``SUCCESS``, ``NOTPAY``, ``CLOSED``, ``REFUND``...), or
        ``ORDER_NOT_EXIST``."""
        status, data = self._call("order query",
                                  lambda: self._sdk.query(out_trade_no=order_id))
        if status == 404 or data.get("code") == "ORDER_NOT_EXIST":
            return "ORDER_NOT_EXIST"
        if status != 200:
            raise ProviderRefusedError(f"WeChat Pay order query {order_id}: "
                                       f"{data.get('code', status)}")
        return str(data.get("trade_state", ""))

    def close_order(self, order_id: str) -> None:
        """Close an unpaid order so it can no longer be paid (a driver who went to the exit)."""
        status, data = self._call("order close", lambda: self._sdk.close(out_trade_no=order_id))
        if status not in (200, 204):
            raise ProviderRefusedError(f"WeChat Pay would not close {order_id}: "
                                       f"{data.get('code', status)}")

    def refund(self, provider_ref: str, amount_fen: Fen, idempotency_key: str) -> RefundResult:
        """A v3 refund of part of an order; ``out_refund_no`` comes from the key, so a retry
        is the same refund. The order's total is asked first (the API wants it)."""
        status, order = self._call("order query",
                                   lambda: self._sdk.query(out_trade_no=provider_ref))
        if status != 200:
            return RefundResult(False, amount_fen, reason="unknown_payment")
        total = int(order.get("amount", {}).get("total", 0))
        refund_no = merchant_no("rf", idempotency_key)
        status, data = self._call("refund", lambda: self._sdk.refund(
            out_refund_no=refund_no, out_trade_no=provider_ref,
            amount={"refund": amount_fen, "total": total, "currency": "CNY"}))
        if status == 200 and data.get("status") in ("SUCCESS", "PROCESSING"):
            return RefundResult(True, amount_fen, refund_ref=str(data.get("refund_id", "")))
        reason = str(data.get("status") or data.get("code") or status).lower()
        return RefundResult(False, amount_fen, reason=reason)

    # --- notices ------------------------------------------------------------------------

    def verify_callback(self, body: bytes, headers: Mapping[str, str]) -> PaymentNotice:
        """Check a v3 notice's signature and decrypt its resource, then read the payment.

        Refused (:class:`BadSignatureError`) before the SDK sees it: another key id, no
        timestamp or nonce, another signature type. The desk then refuses it if stale or
        replayed; a notice that is not a successful payment raises
        :class:`IgnoredNoticeError` (acknowledged, nothing booked).
        """
        named = lowered(headers)
        if named.get("wechatpay-serial", "") != self._key_id:
            raise BadSignatureError("WeChat Pay notice signed under an unknown key id")
        timestamp, nonce = named.get("wechatpay-timestamp", ""), named.get("wechatpay-nonce", "")
        if not timestamp.isdigit() or len(timestamp) > 12 or not 0 < len(nonce) <= 64:
            raise BadSignatureError("WeChat Pay notice without a valid timestamp and nonce")
        named.setdefault("wechatpay-signature-type", SIGNATURE_TYPE)
        if named["wechatpay-signature-type"] != SIGNATURE_TYPE:
            raise BadSignatureError("WeChat Pay notice with an unsupported signature type")
        try:
            data = self._sdk.callback(named, body)
        except Exception:  # undecodable body, junk signature: the SDK raises bare Exception
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("resource"), dict):
            raise BadSignatureError("WeChat Pay notice refused: its signature or its "
                                    "encrypted resource does not check")
        sent_at = datetime.fromtimestamp(int(timestamp), UTC)
        return self._paid(data, f"wechatpay:{nonce}", sent_at)

    def _paid(self, data: dict[str, Any], notice_id: str, sent_at: datetime) -> PaymentNotice:
        paid: dict[str, Any] = data["resource"]
        if data.get("event_type") != "TRANSACTION.SUCCESS" \
                or paid.get("trade_state") != "SUCCESS":
            raise IgnoredNoticeError(f"WeChat Pay notice {data.get('event_type')}: "
                                     "not a payment")
        if paid.get("mchid") != self.mchid or paid.get("appid") != self.appid:
            raise UnknownOrderError("WeChat Pay notice for another merchant or app")
        amount = paid.get("amount")
        if not isinstance(amount, dict):
            raise UnknownOrderError("WeChat Pay notice without an amount")
        total = amount.get("total")
        if amount.get("currency", "CNY") != "CNY" or isinstance(total, bool) \
                or not isinstance(total, int):
            raise UnknownOrderError("WeChat Pay notice without a CNY amount in fen")
        try:
            paid_at = _iso(str(paid["success_time"]))
            order_id = str(paid["out_trade_no"])
        except (KeyError, ValueError) as error:
            raise UnknownOrderError(f"WeChat Pay notice incomplete: {error}") from None
        return PaymentNotice(order_id, order_id, total, paid_at, notice_id=notice_id,
                             sent_at=sent_at)

    def callback_reply(self, accepted: bool, problem: str = "") -> CallbackReply:
        """v3: 200 with ``{"code": "SUCCESS"}``; a refusal is a 4xx with ``{"code": "FAIL"}``,
        after which WeChat Pay sends the notice again on its schedule."""
        if accepted:
            body = {"code": "SUCCESS", "message": "成功"}
            return CallbackReply(200, json.dumps(body).encode("utf-8"), "application/json")
        body = {"code": "FAIL", "message": problem or "refused"}
        return CallbackReply(_REFUSED_STATUS.get(problem, 400),
                             json.dumps(body).encode("utf-8"), "application/json")

    # --- 付款码 ---------------------------------------------------------------------------

    def charge_code(self, code: str, amount_fen: Fen, idempotency_key: str) -> CodeCharge:
        """Micropay (v2): see :class:`~.wechat_codes.Micropay`."""
        return self.codes.charge(code, amount_fen, merchant_no("pc", idempotency_key),
                                 description="停车费 parking")
