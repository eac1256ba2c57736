"""WeChat Pay 付款码 by the API v2 micropay call (XML, HMAC-SHA256 signed), which the
``wechatpayv3`` SDK does not cover.

The flow WeChat Pay documents for a till: submit the code; if the answer is ``USERPAYING``
(the payer must enter a password), ``SYSTEMERROR``/``BANKERROR`` or nothing at all (a
timeout), query the same ``out_trade_no`` until it is final; if no such order arrived,
submit it again with the same ``out_trade_no`` (so it cannot be charged twice); if the payer
never completes, reverse the order so no money stays taken. A decline is an answer
(:class:`CodeCharge` with a reason); only "no answer at all, even to the reversal" raises.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import ssl
import time
from collections.abc import Callable, Mapping
from xml.etree.ElementTree import ParseError

import httpx
from defusedxml import ElementTree

from gateway.money.payments.code_wait import CodeWait, OrderStates
from gateway.money.payments.errors import ProviderRefusedError, ProviderUnreachableError
from gateway.money.payments.provider import CodeCharge
from parkguard.core.ledger import Fen

log = logging.getLogger(__name__)

PENDING_ERRORS = frozenset({"USERPAYING", "SYSTEMERROR", "BANKERROR", "ORDERPAID"})
"""Micropay error codes after which the outcome is unknown: query, do not decline."""

DECLINES = {
    "NOTENOUGH": "insufficient_funds",
    "AUTHCODEEXPIRE": "code_expired",
    "AUTH_CODE_INVALID": "invalid_code",
    "AUTH_CODE_ERROR": "invalid_code",
    "ORDERREVERSED": "reversed",
    "ORDERCLOSED": "reversed",
    "NOTSUPORTCARD": "card_not_supported",
    "BUYER_MISMATCH": "buyer_mismatch",
    "TRADE_ERROR": "refused_by_wallet",
}
"""WeChat's err_code → the desk's one-word decline reason (others: the code, lower-case)."""

FINAL_FAILURES = frozenset({"PAYERROR", "REVOKED", "CLOSED"})
CODE_STATES = OrderStates(paid=frozenset({"SUCCESS"}),
                          failed={state: state.lower() for state in FINAL_FAILURES},
                          missing="ORDERNOTEXIST")
"""How an orderquery answer reads while a 付款码 waits for the payer."""

MERCHANT_ERRORS = frozenset({
    "SIGNERROR", "PARAM_ERROR", "APPID_NOT_EXIST", "MCHID_NOT_EXIST", "APPID_MCHID_NOT_MATCH",
    "NOAUTH", "LACK_PARAMS", "XML_FORMAT_ERROR", "REQUIRE_POST_METHOD", "POST_DATA_EMPTY",
    "NOT_UTF8", "OUT_TRADE_NO_USED", "INVALID_REQUEST"})
"""Micropay errors that are the merchant's set-up, not the payer's wallet: raised, never
turned into a decline (which would put a debt on a driver who did nothing wrong)."""


def v2_sign(fields: Mapping[str, str], key: str) -> str:
    """API v2 ``sign`` with sign_type HMAC-SHA256: the non-empty fields but ``sign`` sorted
    as ``k=v&...``, then ``&key=<API v2 key>``, HMAC-SHA256 under the key, upper-case hex."""
    text = "&".join(f"{name}={value}" for name, value in sorted(fields.items())
                    if value != "" and name != "sign")
    return hmac.new(key.encode("utf-8"), f"{text}&key={key}".encode(),
                    hashlib.sha256).hexdigest().upper()


def to_xml(fields: Mapping[str, str]) -> bytes:
    """The v2 request body: ``<xml><name><![CDATA[value]]></name>...</xml>``."""
    parts = []
    for name, value in fields.items():
        if not name.isidentifier() or "]]>" in value:
            raise ValueError(f"field {name!r} cannot be sent in v2 XML")
        parts.append(f"<{name}><![CDATA[{value}]]></{name}>")
    return f"<xml>{''.join(parts)}</xml>".encode()


def from_xml(body: bytes) -> dict[str, str]:
    """A v2 answer's fields (``defusedxml``: entities and DTDs are refused)."""
    try:
        root = ElementTree.fromstring(body, forbid_dtd=True)
    except (ParseError, ValueError) as error:  # defusedxml's refusals are ValueErrors
        raise ProviderRefusedError(f"WeChat Pay answer refused as XML: "
                                   f"{type(error).__name__}") from None
    return {child.tag: (child.text or "") for child in root}


class Micropay:
    """Charges 付款码 for one merchant through the v2 API. ``sleep`` waits between queries
    (a test passes one that steps its clock)."""

    def __init__(self, *, api_base: str, mchid: str, appid: str, apiv2_key: str | None,
                 client_cert: tuple[str, str] | None, terminal_ip: str, timeout_s: float,
                 code_wait_s: float, code_poll_s: float,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._base = api_base.rstrip("/")
        self._mchid, self._appid, self._key = mchid, appid, apiv2_key
        self._cert = client_cert
        self._ip = terminal_ip
        self._timeout = timeout_s
        self._codes = CodeWait(code_wait_s=code_wait_s, code_poll_s=code_poll_s, sleep=sleep)

    def charge(self, code: str, amount_fen: Fen, out_trade_no: str, *,
               description: str) -> CodeCharge:
        """Charge ``code`` once under ``out_trade_no``; the same number again returns the
        first final answer (in this process) or WeChat's own for that order."""
        if self._key is None:
            return CodeCharge(False, amount_fen, reason="no_micropay")
        order = {"body": description, "out_trade_no": out_trade_no,
                 "total_fee": str(amount_fen), "spbill_create_ip": self._ip,
                 "auth_code": code.strip()}

        def settle() -> CodeCharge:
            return self._codes.settle(
                amount_fen, out_trade_no, states=CODE_STATES,
                submit=lambda: self._submit(order, amount_fen),
                query=lambda: self._query(out_trade_no),
                give_up=lambda: self._give_up(out_trade_no))

        return self._codes.once(out_trade_no, settle)

    def _give_up(self, out_trade_no: str) -> None:
        self._reverse(out_trade_no)
        log.info("payment code order %s reversed: the payer did not complete", out_trade_no)

    def _submit(self, order: dict[str, str], amount_fen: Fen) -> CodeCharge | None:
        """Micropay once: a final answer, or None when it is not known yet."""
        reply = self._post("/pay/micropay", order)
        if reply is None:
            return None
        if reply.get("result_code") == "SUCCESS":
            return CodeCharge(True, amount_fen, provider_ref=order["out_trade_no"])
        error = reply.get("err_code", "")
        if error in PENDING_ERRORS:
            return None
        if error in MERCHANT_ERRORS:
            raise ProviderRefusedError(f"WeChat Pay micropay refused the merchant's call: "
                                       f"{error}")
        return CodeCharge(False, amount_fen, reason=DECLINES.get(error, error.lower()
                                                                 or "declined"))

    def _query(self, out_trade_no: str) -> str | None:
        """The order's trade_state, ``ORDERNOTEXIST``, or None for no answer."""
        reply = self._post("/pay/orderquery", {"out_trade_no": out_trade_no})
        if reply is None:
            return None
        if reply.get("result_code") != "SUCCESS":
            return reply.get("err_code") or None
        return reply.get("trade_state") or None

    def _reverse(self, out_trade_no: str) -> None:
        """Reverse until WeChat says no recall is needed; no answer at all raises."""
        for _ in range(3):
            reply = self._post("/secapi/pay/reverse", {"out_trade_no": out_trade_no},
                               mutual_tls=True)
            if reply is not None and reply.get("recall", "N") != "Y" and (
                    reply.get("result_code") == "SUCCESS"
                    or reply.get("err_code") == "ORDERNOTEXIST"):
                return
        raise ProviderUnreachableError(f"WeChat Pay did not confirm reversing {out_trade_no}: "
                                       "the charge is unknown, retry with the same key")

    def _post(self, path: str, fields: dict[str, str], *,
              mutual_tls: bool = False) -> dict[str, str] | None:
        """One signed v2 call: its checked answer, or None for no answer (timeout, network,
        a 5xx). A communication failure WeChat reports (``return_code`` FAIL: our
        signature, our parameters) or an answer whose signature fails raises."""
        if self._key is None:  # pragma: no cover - charge() checked it
            raise ProviderRefusedError("WeChat Pay micropay has no API v2 key")
        body = {"appid": self._appid, "mch_id": self._mchid,
                "nonce_str": secrets.token_hex(16), "sign_type": "HMAC-SHA256", **fields}
        body["sign"] = v2_sign(body, self._key)
        verify: ssl.SSLContext | bool = True
        if mutual_tls and self._cert is not None:
            verify = ssl.create_default_context()
            verify.load_cert_chain(*self._cert)
        try:
            answer = httpx.post(f"{self._base}{path}", content=to_xml(body),
                                headers={"Content-Type": "text/xml"}, timeout=self._timeout,
                                verify=verify)
        except httpx.TransportError as error:
            log.warning("WeChat Pay %s: no answer (%s)", path, type(error).__name__)
            return None
        if answer.status_code >= 500:
            return None
        reply = from_xml(answer.content)
        if reply.get("return_code") != "SUCCESS":
            raise ProviderRefusedError(f"WeChat Pay {path} refused the call: "
                                       f"{reply.get('return_msg', answer.status_code)}")
        if not hmac.compare_digest(reply.get("sign", ""), v2_sign(reply, self._key)):
            raise ProviderRefusedError(f"WeChat Pay {path}: the answer's signature fails")
        return reply
