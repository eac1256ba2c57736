"""A local Alipay open-API gateway (``gateway.do``): RSA2-checked requests, RSA2-signed
answers and asynchronous notices with a key made in the test, a scriptable wallet, and
the day's business bill (业务明细 CSV, GBK) written from its own records."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime
from urllib.parse import parse_qsl, urlencode, urlsplit
from zoneinfo import ZoneInfo

import httpx

from parkguard.clock import Clock
from tests.payments.wire import KeyPair, ProviderServer, Reply

BEIJING = ZoneInfo("Asia/Shanghai")


def _text(at: datetime) -> str:
    return at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def _fen(text: str) -> int:
    whole, _, part = text.partition(".")
    return int(whole) * 100 + int((part + "00")[:2])


@dataclass
class Trade:
    out_trade_no: str
    total: int
    subject: str
    status: str = "WAIT_BUYER_PAY"
    trade_no: str = ""
    paid_at: datetime | None = None
    created_at: datetime | None = None
    notify_url: str = ""
    auth_code: str = ""
    refunds: dict[str, tuple[int, datetime]] = field(default_factory=dict)


class AlipayServer(ProviderServer[Trade]):
    """``declines[code] = sub_code``; a waiting code is WAIT_BUYER_PAY until paid."""

    def __init__(self, clock: Clock, *, app: KeyPair, alipay: KeyPair,
                 app_id: str = "2021000123456789", seller_id: str = "2088102146225135") -> None:
        super().__init__(clock)
        self.app, self.alipay = app, alipay
        self.app_id, self.seller_id = app_id, seller_id
        self.pays: list[str] = []

    @staticmethod
    def signing_text(fields: dict[str, str], *, drop: tuple[str, ...]) -> str:
        return "&".join(f"{name}={value}" for name, value in sorted(fields.items())
                        if name not in drop)

    def _answer(self, method: str, data: dict[str, str]) -> Reply:
        inner = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        name = method.replace(".", "_") + "_response"
        text = f'{{"{name}":{inner},"sign":"{self.alipay.sign(inner)}"}}'
        return Reply(200, text.encode("utf-8"), {"Content-Type": "text/html;charset=utf-8"})

    def _handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        fields = dict(parse_qsl(urlsplit(path).query, keep_blank_values=True))
        name = fields.get("method", "")
        if fields.get("app_id") != self.app_id or not self.app.verifies(
                self.signing_text(fields, drop=("sign",)), fields.get("sign", "")):
            return self._answer(name, {"code": "40002", "msg": "Invalid Arguments",
                                       "sub_code": "isv.invalid-signature"})
        asked = json.loads(fields.get("biz_content") or "{}")
        with self._lock:
            no = str(asked.get("out_trade_no", ""))
            trade = self.trades.get(no)
            if name == "alipay.trade.precreate":
                if trade is None:
                    self.trades[no] = Trade(no, _fen(asked["total_amount"]), asked["subject"],
                                            created_at=self.clock.now(),
                                            notify_url=fields.get("notify_url", ""))
                return self._answer(name, {"code": "10000", "msg": "Success",
                                           "out_trade_no": no,
                                           "qr_code": f"https://qr.alipay.com/bax0{no[:8]}"})
            if name == "alipay.trade.pay":
                self.pays.append(no)
                return self._pay(name, asked, trade)
            if trade is None:
                return self._answer(name, {"code": "40004", "msg": "Business Failed",
                                           "sub_code": "ACQ.TRADE_NOT_EXIST"})
            if name == "alipay.trade.query":
                if trade.status == "WAIT_BUYER_PAY" and trade.auth_code \
                        and self._payer_done(trade.auth_code):
                    self._settle(trade)
                return self._answer(name, {"code": "10000", "msg": "Success",
                                           "out_trade_no": no, "trade_no": trade.trade_no,
                                           "trade_status": trade.status,
                                           "total_amount": _yuan(trade.total)})
            if name == "alipay.trade.cancel":
                trade.status = "TRADE_CLOSED"
                return self._answer(name, {"code": "10000", "msg": "Success",
                                           "out_trade_no": no, "retry_flag": "N",
                                           "action": "close"})
            if name == "alipay.trade.refund":
                return self._refund(name, asked, trade)
        return self._answer(name, {"code": "40004", "sub_code": "ACQ.UNKNOWN_METHOD"})

    def _pay(self, name: str, asked: dict[str, str], trade: Trade | None) -> Reply:
        code = asked["auth_code"]
        if trade is not None:
            sub = {"TRADE_SUCCESS": "ACQ.TRADE_HAS_SUCCESS",
                   "TRADE_CLOSED": "ACQ.TRADE_HAS_CLOSE"}.get(trade.status)
            if sub is None:
                return self._answer(name, {"code": "10003", "msg": "order success pay inprocess",
                                           "out_trade_no": trade.out_trade_no})
            return self._answer(name, {"code": "40004", "msg": "Business Failed",
                                       "sub_code": sub})
        if code in self.declines:
            return self._answer(name, {"code": "40004", "msg": "Business Failed",
                                       "sub_code": self.declines[code]})
        trade = Trade(asked["out_trade_no"], _fen(asked["total_amount"]), asked["subject"],
                      created_at=self.clock.now(), auth_code=code)
        self.trades[trade.out_trade_no] = trade
        if code in self.waits:
            return self._answer(name, {"code": "10003", "msg": "order success pay inprocess",
                                       "out_trade_no": trade.out_trade_no})
        self._settle(trade)
        return self._answer(name, {"code": "10000", "msg": "Success",
                                   "out_trade_no": trade.out_trade_no,
                                   "trade_no": trade.trade_no,
                                   "total_amount": _yuan(trade.total),
                                   "gmt_payment": _text(self.clock.now())})

    def _refund(self, name: str, asked: dict[str, str], trade: Trade) -> Reply:
        request_no = str(asked.get("out_request_no", trade.out_trade_no))
        fen = _fen(asked["refund_amount"])
        if request_no not in trade.refunds:
            taken = sum(amount for amount, _ in trade.refunds.values())
            if trade.status != "TRADE_SUCCESS" or taken + fen > trade.total:
                return self._answer(name, {"code": "40004", "msg": "Business Failed",
                                           "sub_code": "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"})
            trade.refunds[request_no] = (fen, self.clock.now())
        return self._answer(name, {"code": "10000", "msg": "Success", "fund_change": "Y",
                                   "out_trade_no": trade.out_trade_no,
                                   "trade_no": trade.trade_no, "refund_fee": _yuan(fen)})

    def _settle(self, trade: Trade) -> None:
        trade.status = "TRADE_SUCCESS"
        trade.trade_no = f"2026{secrets.randbelow(10**24):024d}"
        trade.paid_at = self.clock.now()

    # --- the wallet ----------------------------------------------------------------------

    def complete(self, out_trade_no: str) -> Trade:
        with self._lock:
            trade = self.trades[out_trade_no]
            if trade.status == "WAIT_BUYER_PAY":
                self._settle(trade)
            return trade

    def notice(self, out_trade_no: str, *, total: int | None = None,
               key: KeyPair | None = None, status: str = "TRADE_SUCCESS") -> bytes:
        """The asynchronous notice Alipay POSTs, form-encoded and RSA2-signed."""
        trade = self.trades[out_trade_no]
        assert trade.paid_at is not None and trade.created_at is not None
        amount = _yuan(trade.total if total is None else total)
        fields = {
            "gmt_create": _text(trade.created_at), "charset": "utf-8",
            "seller_id": self.seller_id, "notify_time": _text(self.clock.now()),
            "subject": trade.subject, "buyer_id": "2088102177846880",
            "invoice_amount": amount, "notify_id": secrets.token_hex(16),
            "notify_type": "trade_status_sync", "trade_status": status,
            "receipt_amount": amount, "app_id": self.app_id, "buyer_pay_amount": amount,
            "gmt_payment": _text(trade.paid_at), "trade_no": trade.trade_no,
            "out_trade_no": out_trade_no, "total_amount": amount, "version": "1.0",
            "auth_app_id": self.app_id, "sign_type": "RSA2"}
        fields["sign"] = (key or self.alipay).sign(
            self.signing_text(fields, drop=("sign", "sign_type")))
        return urlencode(fields).encode("utf-8")

    def deliver(self, out_trade_no: str, body: bytes) -> httpx.Response:
        return httpx.post(self.trades[out_trade_no].notify_url, content=body, timeout=10,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})

    def pay(self, out_trade_no: str) -> httpx.Response:
        self.complete(out_trade_no)
        return self.deliver(out_trade_no, self.notice(out_trade_no))

    # --- the statement -------------------------------------------------------------------

    def business_bill(self, day: date) -> bytes:
        """The day's 业务明细 CSV as Alipay's bill download holds it (GBK)."""
        columns = ("支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,"
                   "门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,"
                   "集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,"
                   "商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注")
        lines = ["#支付宝业务明细查询", f"#账号：[{self.seller_id}0156]",
                 f"#起始日期：[{day:%Y年%m月%d日} 00:00:00]   "
                 f"终止日期：[{day:%Y年%m月%d日} 23:59:59]",
                 "#" + "-" * 40 + "业务明细列表" + "-" * 40,
                 columns]
        paid = refunded = count = refunds = 0
        for trade in self.trades.values():
            if trade.paid_at is None or trade.created_at is None:
                continue
            if trade.paid_at.astimezone(BEIJING).date() == day:
                count, paid = count + 1, paid + trade.total
                lines.append(self._row(trade, "交易", trade.paid_at, trade.total, ""))
            for request_no, (fen, at) in trade.refunds.items():
                if at.astimezone(BEIJING).date() == day:
                    refunds, refunded = refunds + 1, refunded + fen
                    lines.append(self._row(trade, "退款", at, -fen, request_no))
        lines += ["#" + "-" * 40 + "业务明细列表结束" + "-" * 36,
                  f"#交易合计：{count}笔，商家实收共：{_yuan(paid)}元，商家优惠共：0.00元",
                  f"#退款合计：{refunds}笔，商家实收共：-{_yuan(refunded)}元，商家优惠共：0.00元",
                  f"#导出时间：[{self.clock.now().astimezone(BEIJING):%Y年%m月%d日 %H:%M:%S}]"]
        return ("\r\n".join(lines) + "\r\n").encode("gbk")

    def _row(self, trade: Trade, kind: str, at: datetime, fen: int, request_no: str) -> str:
        assert trade.created_at is not None
        amount = f"-{_yuan(-fen)}" if fen < 0 else _yuan(fen)
        cells = [f"{trade.trade_no}\t", f"{trade.out_trade_no}\t", kind, trade.subject,
                 _text(trade.created_at), _text(at), "", "", "", "", "158****1234",
                 _yuan(trade.total), amount, "0.00", "0.00", "0.00", "0.00", "0.00", "",
                 "0.00", "0.00", request_no, "0.00", "0.00", ""]
        return ",".join(f"{cell:<8}" if i < 2 else cell for i, cell in enumerate(cells))
