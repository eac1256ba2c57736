"""A local WeChat Pay: API v3 (Native orders, query, close, refunds; answers and notices
signed with a platform key made in the test, resources AES-256-GCM encrypted with the
APIv3 key) and API v2 micropay (XML, HMAC-SHA256), with a scriptable wallet.

It checks what real WeChat Pay checks of the merchant (the ``Authorization`` signature over
method, path, timestamp, nonce and body with the merchant key; the v2 ``sign``) and keeps its
own records, from which :meth:`trade_bill` writes the day's statement in WeChat's format.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.money.payments.wechat_codes import from_xml, to_xml, v2_sign
from parkguard.clock import Clock
from tests.payments.wire import KeyPair, ProviderServer, Reply

BEIJING = ZoneInfo("Asia/Shanghai")
_AUTH = re.compile(r'^WECHATPAY2-SHA256-RSA2048 (.*)$')


@dataclass
class Trade:
    out_trade_no: str
    total: int
    description: str
    kind: str  # NATIVE or MICROPAY
    state: str = "NOTPAY"
    transaction_id: str = ""
    success_time: datetime | None = None
    notify_url: str = ""
    auth_code: str = ""
    refunds: dict[str, tuple[str, int, datetime]] = field(default_factory=dict)


class WeChatPayServer(ProviderServer[Trade]):
    """The local WeChat Pay: ``declines[code] = err_code``; a waiting code is USERPAYING
    until paid."""

    def __init__(self, clock: Clock, *, mchid: str = "1900000109", appid: str = "wxparkguard01",
                 merchant: KeyPair, platform: KeyPair, key_id: str = "PUB_KEY_ID_0001",
                 apiv3_key: str, apiv2_key: str) -> None:
        super().__init__(clock)
        self.mchid, self.appid, self.key_id = mchid, appid, key_id
        self.merchant, self.platform = merchant, platform
        self.apiv3_key, self.apiv2_key = apiv3_key, apiv2_key
        self.micropays: list[str] = []

    # --- the wire ------------------------------------------------------------------------

    def _signed(self, status: int, data: object | None) -> Reply:
        body = "" if data is None else json.dumps(data, ensure_ascii=False)
        timestamp, nonce = str(int(self.clock.now().timestamp())), secrets.token_hex(16)
        signature = self.platform.sign(f"{timestamp}\n{nonce}\n{body}\n")
        headers = {"Content-Type": "application/json", "Wechatpay-Timestamp": timestamp,
                   "Wechatpay-Nonce": nonce, "Wechatpay-Serial": self.key_id,
                   "Wechatpay-Signature": signature,
                   "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048"}
        return Reply(status, body.encode("utf-8"), headers)

    def _merchant_signed(self, method: str, path: str, headers: dict[str, str],
                         body: bytes) -> bool:
        found = _AUTH.match(headers.get("authorization", ""))
        if not found:
            return False
        parts = dict(re.findall(r'(\w+)="([^"]*)"', found.group(1)))
        if parts.get("mchid") != self.mchid:
            return False
        text = f"{method}\n{path}\n{parts.get('timestamp')}\n{parts.get('nonce_str')}\n" \
               f"{body.decode('utf-8')}\n"
        return self.merchant.verifies(text, parts.get("signature", ""))

    def _handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        route = urlsplit(path).path
        if route in ("/pay/micropay", "/pay/orderquery", "/secapi/pay/reverse"):
            return self._v2(route, body)
        if not self._merchant_signed(method, path, headers, body):
            return Reply(401, b'{"code":"SIGN_ERROR","message":"bad signature"}',
                         {"Content-Type": "application/json"})
        with self._lock:
            if route == "/v3/pay/transactions/native":
                return self._native(json.loads(body))
            found = re.fullmatch(r"/v3/pay/transactions/out-trade-no/([^/]+)(/close)?", route)
            if found and found.group(2):
                trade = self.trades.get(found.group(1))
                if trade is not None and trade.state == "NOTPAY":
                    trade.state = "CLOSED"
                return self._signed(204, None)
            if found:
                trade = self.trades.get(found.group(1))
                if trade is None:
                    return Reply(404, b'{"code":"ORDER_NOT_EXIST","message":"no order"}',
                                 {"Content-Type": "application/json"})
                return self._signed(200, self._transaction(trade))
            if route == "/v3/refund/domestic/refunds":
                return self._refund(json.loads(body))
        return Reply(404, b'{"code":"NOT_FOUND"}', {"Content-Type": "application/json"})

    def _native(self, order: dict[str, object]) -> Reply:
        amount = order["amount"]
        assert isinstance(amount, dict)
        no = str(order["out_trade_no"])
        if no not in self.trades:
            self.trades[no] = Trade(no, int(amount["total"]), str(order["description"]),
                                    "NATIVE", notify_url=str(order["notify_url"]))
        return self._signed(200, {"code_url": f"weixin://wxpay/bizpayurl?pr={no[:10]}"})

    def _transaction(self, trade: Trade) -> dict[str, object]:
        answer: dict[str, object] = {
            "appid": self.appid, "mchid": self.mchid, "out_trade_no": trade.out_trade_no,
            "trade_type": trade.kind, "trade_state": trade.state,
            "amount": {"total": trade.total, "currency": "CNY"}}
        if trade.transaction_id:
            answer["transaction_id"] = trade.transaction_id
        if trade.success_time is not None:
            answer["success_time"] = trade.success_time.astimezone(BEIJING).isoformat()
        return answer

    def _refund(self, asked: dict[str, object]) -> Reply:
        trade = self.trades.get(str(asked.get("out_trade_no")))
        amount = asked["amount"]
        assert isinstance(amount, dict)
        no = str(asked["out_refund_no"])
        if trade is None or trade.state not in ("SUCCESS", "REFUND"):
            return Reply(404, b'{"code":"RESOURCE_NOT_EXISTS"}',
                         {"Content-Type": "application/json"})
        if no not in trade.refunds:
            taken = sum(fen for _, fen, _ in trade.refunds.values())
            if int(amount["total"]) != trade.total \
                    or taken + int(amount["refund"]) > trade.total:
                return Reply(400, b'{"code":"INVALID_REQUEST","message":"amount"}',
                             {"Content-Type": "application/json"})
            trade.refunds[no] = (f"5030{secrets.randbelow(10**24):024d}",
                                 int(amount["refund"]), self.clock.now())
            trade.state = "REFUND"
        refund_id, fen, _ = trade.refunds[no]
        return self._signed(200, {"refund_id": refund_id, "out_refund_no": no,
                                  "status": "SUCCESS", "amount": {"refund": fen}})

    # --- v2 micropay ---------------------------------------------------------------------

    def _v2(self, route: str, body: bytes) -> Reply:
        fields = from_xml(body)
        if fields.get("sign") != v2_sign(fields, self.apiv2_key):
            return self._xml({"return_code": "FAIL", "return_msg": "签名错误"}, sign=False)
        with self._lock:
            no = fields["out_trade_no"]
            trade = self.trades.get(no)
            if route == "/pay/micropay":
                self.micropays.append(no)
                return self._micropay(fields, trade)
            if route == "/pay/orderquery":
                if trade is None:
                    return self._result({"err_code": "ORDERNOTEXIST"})
                if trade.state == "USERPAYING" and self._payer_done(trade.auth_code):
                    self._settle(trade)
                return self._result({"trade_state": trade.state, "out_trade_no": no,
                                     "transaction_id": trade.transaction_id,
                                     "total_fee": str(trade.total)})
            if trade is not None and trade.state in ("USERPAYING", "NOTPAY", "SUCCESS"):
                trade.state = "REVOKED"
            return self._result({"recall": "N"})

    def _micropay(self, fields: dict[str, str], trade: Trade | None) -> Reply:
        code = fields["auth_code"]
        if trade is not None:
            if trade.state == "SUCCESS":
                return self._result({"err_code": "ORDERPAID"})
            if trade.state == "REVOKED":
                return self._result({"err_code": "ORDERREVERSED"})
            return self._result({"err_code": "USERPAYING"})
        if code in self.declines:
            return self._result({"err_code": self.declines[code]})
        trade = Trade(fields["out_trade_no"], int(fields["total_fee"]), fields["body"],
                      "MICROPAY", auth_code=code)
        self.trades[trade.out_trade_no] = trade
        if code in self.waits:
            trade.state = "USERPAYING"
            return self._result({"err_code": "USERPAYING"})
        self._settle(trade)
        return self._result({"transaction_id": trade.transaction_id,
                             "out_trade_no": trade.out_trade_no, "total_fee": str(trade.total)})

    def _settle(self, trade: Trade) -> None:
        trade.state = "SUCCESS"
        trade.transaction_id = f"4200{secrets.randbelow(10**24):024d}"
        trade.success_time = self.clock.now()

    def _result(self, fields: dict[str, str]) -> Reply:
        ok = "err_code" not in fields
        return self._xml({"return_code": "SUCCESS", "result_code": "SUCCESS" if ok else "FAIL",
                          **fields})

    def _xml(self, fields: dict[str, str], *, sign: bool = True) -> Reply:
        answer = {"appid": self.appid, "mch_id": self.mchid,
                  "nonce_str": secrets.token_hex(8), **fields}
        if sign:
            answer["sign"] = v2_sign(answer, self.apiv2_key)
        return Reply(200, to_xml(answer), {"Content-Type": "text/xml"})

    # --- the wallet ----------------------------------------------------------------------

    def complete(self, out_trade_no: str) -> Trade:
        """The driver pays a Native order on the phone."""
        with self._lock:
            trade = self.trades[out_trade_no]
            if trade.state == "NOTPAY":
                self._settle(trade)
            return trade

    def notice(self, out_trade_no: str, *, total: int | None = None,
               key: KeyPair | None = None) -> tuple[bytes, dict[str, str]]:
        """The signed, encrypted TRANSACTION.SUCCESS notice for a paid order, as WeChat Pay
        sends it (``total`` and ``key`` let a test forge a wrong amount or a signature)."""
        trade = self.trades[out_trade_no]
        assert trade.success_time is not None
        resource = self._transaction(trade)
        resource["amount"] = {"total": trade.total if total is None else total,
                              "payer_total": trade.total, "currency": "CNY",
                              "payer_currency": "CNY"}
        resource["payer"] = {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}
        nonce = secrets.token_hex(6)
        sealed = AESGCM(self.apiv3_key.encode()).encrypt(
            nonce.encode(), json.dumps(resource).encode("utf-8"), b"transaction")
        now = self.clock.now()
        envelope = {
            "id": f"EV-{secrets.token_hex(8)}",
            "create_time": now.astimezone(BEIJING).isoformat(),
            "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS",
            "summary": "支付成功",
            "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                         "ciphertext": base64.b64encode(sealed).decode(),
                         "associated_data": "transaction", "nonce": nonce}}
        body = json.dumps(envelope, ensure_ascii=False)
        timestamp, header_nonce = str(int(now.timestamp())), secrets.token_hex(16)
        signature = (key or self.platform).sign(f"{timestamp}\n{header_nonce}\n{body}\n")
        return body.encode("utf-8"), {
            "Content-Type": "application/json", "Wechatpay-Timestamp": timestamp,
            "Wechatpay-Nonce": header_nonce, "Wechatpay-Serial": self.key_id,
            "Wechatpay-Signature": signature,
            "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048"}

    def deliver(self, out_trade_no: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        """POST a notice to the notify_url the order was opened with."""
        return httpx.post(self.trades[out_trade_no].notify_url, content=body, headers=headers,
                          timeout=10)

    def pay(self, out_trade_no: str) -> httpx.Response:
        """The driver pays and WeChat Pay notifies the merchant: the gateway's answer."""
        self.complete(out_trade_no)
        return self.deliver(out_trade_no, *self.notice(out_trade_no))

    # --- the statement -------------------------------------------------------------------

    def trade_bill(self, day: date) -> str:
        """The day's trade bill (交易账单, bill_type ALL) in WeChat Pay's text format: a
        header line, one line per payment and per refund with every field prefixed by a
        backtick, then the totals."""
        header = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,"
                  "交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,"
                  "商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,"
                  "手续费,费率,订单金额,申请退款金额,费率备注")
        rows: list[list[str]] = []
        paid = refunded = fees = 0
        for trade in self.trades.values():
            if trade.success_time is None:
                continue
            if trade.success_time.astimezone(BEIJING).date() == day:
                fee = round(trade.total * 0.006)
                paid, fees = paid + trade.total, fees + fee
                rows.append(self._row(trade, trade.success_time, "SUCCESS", "", "", 0, fee))
            for refund_no, (refund_id, fen, at) in trade.refunds.items():
                if at.astimezone(BEIJING).date() == day:
                    refunded += fen
                    rows.append(self._row(trade, at, "REFUND", refund_id, refund_no, fen, 0))
        total_line = ("总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,"
                      "订单总金额,申请退款总金额")
        totals = [str(len(rows)), _yuan(paid), _yuan(refunded), "0.00", _yuan(fees, 5),
                  _yuan(paid), _yuan(refunded)]
        lines = [header] + [",".join(f"`{cell}" for cell in row) for row in rows]
        lines += [total_line, ",".join(f"`{cell}" for cell in totals)]
        return "\r\n".join(lines) + "\r\n"

    def _row(self, trade: Trade, at: datetime, state: str, refund_id: str, refund_no: str,
             refund_fen: int, fee: int) -> list[str]:
        when = at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
        return [when, self.appid, self.mchid, "0", "", trade.transaction_id, trade.out_trade_no,
                "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", trade.kind, state, "OTHERS", "CNY",
                _yuan(trade.total if state == "SUCCESS" else 0), "0.00", refund_id or "0",
                refund_no or "0", _yuan(refund_fen), "0.00", "ORIGINAL" if refund_id else "",
                "SUCCESS" if refund_id else "", trade.description, "", _yuan(fee, 5), "0.60%",
                _yuan(trade.total), _yuan(refund_fen), ""]


def _yuan(fen: int, places: int = 2) -> str:
    return f"{fen / 100:.{places}f}"
