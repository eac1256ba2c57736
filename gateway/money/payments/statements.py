"""Reading the providers' daily statement files (pure: text in, lines out).

- **WeChat Pay trade bill** (交易账单, ``bill_type=ALL``): comma-separated text; the first
  line names the columns, each data cell starts with a backtick (so spreadsheets keep long
  numbers as text), then a totals header (``总交易单数,...``) and one totals line. A
  payment is a row whose 交易状态 is ``SUCCESS``; a refund one whose state is ``REFUND``
  (amount in 退款金额). Times are Beijing time.
- **Alipay business bill** (业务明细 CSV inside the bill download, GBK): ``#`` comment lines
  around a header row and the data rows, cells padded with spaces or tabs; 业务类型 ``交易``
  is a payment (商家实收), ``退款`` a refund (商家实收 negative, 退款批次号/请求号).

Both files carry their own totals; a file whose rows do not add up to them is refused as
damaged rather than reconciled.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Literal
from zoneinfo import ZoneInfo

from parkguard.core.ledger import Fen

BEIJING = ZoneInfo("Asia/Shanghai")

Kind = Literal["payment", "refund"]


class StatementError(ValueError):
    """A statement file that cannot be read as the provider's format, or does not add up."""


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One money movement as the provider reports it, keyed by our out_trade_no."""

    kind: Kind
    out_trade_no: str
    provider_trade_no: str
    amount_fen: Fen
    at: datetime
    refund_no: str = ""


@dataclass(frozen=True, slots=True)
class Statement:
    """A provider's statement for one day (``day`` as the file says, or from its rows)."""

    provider: Literal["wechat", "alipay"]
    day: date | None
    lines: tuple[StatementLine, ...]

    def total(self, kind: Kind) -> Fen:
        return sum(line.amount_fen for line in self.lines if line.kind == kind)

    def count(self, kind: Kind) -> int:
        return sum(1 for line in self.lines if line.kind == kind)


def _fen(text: str, where: str) -> Fen:
    try:
        amount = Decimal(text.strip() or "0") * 100
    except InvalidOperation:
        raise StatementError(f"{where}: {text!r} is not an amount in yuan") from None
    if amount != amount.to_integral_value():
        raise StatementError(f"{where}: {text!r} is not a whole number of fen")
    return int(amount)


def _time(text: str, where: str) -> datetime:
    try:
        return datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
    except ValueError:
        raise StatementError(f"{where}: {text!r} is not a time (YYYY-MM-DD HH:MM:SS)") from None


def _only_day(lines: list[StatementLine]) -> date | None:
    days = {line.at.date() for line in lines}
    return days.pop() if len(days) == 1 else None


def parse_wechat_bill(text: str) -> Statement:
    """A WeChat Pay trade bill (交易账单, ALL) as :class:`Statement`."""
    rows = [row for row in csv.reader(text.lstrip("\ufeff").splitlines()) if row]
    if not rows or rows[0][0].strip() != "交易时间":
        raise StatementError("not a WeChat Pay trade bill: the first line must name the "
                             "columns, starting 交易时间")
    names = [name.strip() for name in rows[0]]
    needed = ("交易时间", "微信订单号", "商户订单号", "交易状态", "应结订单金额", "退款金额",
              "商户退款单号")
    missing = [name for name in needed if name not in names]
    if missing:
        raise StatementError(f"WeChat Pay trade bill lacks the columns {missing}")
    at = {name: names.index(name) for name in needed}
    lines: list[StatementLine] = []
    totals: list[str] | None = None
    for index in range(1, len(rows)):
        cells = [cell.strip().removeprefix("`").strip() for cell in rows[index]]
        if cells[0] == "总交易单数":
            if index + 1 < len(rows):
                totals = [cell.strip().removeprefix("`") for cell in rows[index + 1]]
            break
        where = f"line {index + 1}"
        if len(cells) < len(names):
            raise StatementError(f"{where}: {len(cells)} cells, the header has {len(names)}")
        state = cells[at["交易状态"]]
        common = (cells[at["商户订单号"]], cells[at["微信订单号"]])
        when = _time(cells[at["交易时间"]], where)
        if state == "SUCCESS":
            lines.append(StatementLine("payment", *common,
                                       _fen(cells[at["应结订单金额"]], where), when))
        elif state == "REFUND":
            lines.append(StatementLine("refund", *common, _fen(cells[at["退款金额"]], where),
                                       when, cells[at["商户退款单号"]]))
    if totals is None or len(totals) < 3:
        raise StatementError("WeChat Pay trade bill has no totals line (总交易单数...): "
                             "the file is cut short")
    statement = Statement("wechat", _only_day(lines), tuple(lines))
    paid, refunded = _fen(totals[1], "totals"), _fen(totals[2], "totals")
    if (paid, refunded) != (statement.total("payment"), statement.total("refund")):
        raise StatementError(f"WeChat Pay trade bill does not add up: totals say paid {paid} "
                             f"and refunded {refunded} fen, its rows "
                             f"{statement.total('payment')} and {statement.total('refund')}")
    return statement


_ALIPAY_DAY = re.compile(r"起始日期：\[(\d{4})年(\d{2})月(\d{2})日")
_ALIPAY_TOTAL = re.compile(r"#(交易|退款)合计：(\d+)笔，商家实收共：(-?[\d.]+)元")


def decode_alipay_bill(data: bytes) -> str:
    """Alipay's bill text: GBK as downloaded, or UTF-8 if someone re-saved it."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return data.decode("gb18030")
        except UnicodeDecodeError:
            raise StatementError("Alipay bill is neither UTF-8 nor GBK text") from None


def parse_alipay_bill(text: str) -> Statement:
    """An Alipay 业务明细 CSV as :class:`Statement`."""
    day: date | None = None
    declared: dict[str, tuple[int, Fen]] = {}
    body: list[str] = []
    for raw in text.splitlines():
        if raw.startswith("#"):
            found = _ALIPAY_DAY.search(raw)
            if found:
                day = date(*(int(part) for part in found.groups()))
            total = _ALIPAY_TOTAL.search(raw)
            if total:
                declared[total.group(1)] = (int(total.group(2)),
                                            abs(_fen(total.group(3), "totals")))
        elif raw.strip():
            body.append(raw)
    rows = [[cell.strip() for cell in row] for row in csv.reader(body)]
    if not rows or "支付宝交易号" not in rows[0] or "商户订单号" not in rows[0]:
        raise StatementError("not an Alipay business bill: no header row naming "
                             "支付宝交易号 and 商户订单号")
    names = rows[0]
    needed = ("支付宝交易号", "商户订单号", "业务类型", "完成时间", "商家实收（元）",
              "退款批次号/请求号")
    missing = [name for name in needed if name not in names]
    if missing:
        raise StatementError(f"Alipay business bill lacks the columns {missing}")
    at = {name: names.index(name) for name in needed}
    lines: list[StatementLine] = []
    for number, cells in enumerate(rows[1:], start=2):
        if len(cells) < len(names):
            raise StatementError(f"row {number}: {len(cells)} cells, the header has "
                                 f"{len(names)}")
        where = f"row {number}"
        kind = cells[at["业务类型"]]
        common = (cells[at["商户订单号"]], cells[at["支付宝交易号"]])
        amount = _fen(cells[at["商家实收（元）"]], where)
        when = _time(cells[at["完成时间"]], where)
        if kind == "交易":
            lines.append(StatementLine("payment", *common, amount, when))
        elif kind == "退款":
            lines.append(StatementLine("refund", *common, abs(amount), when,
                                       cells[at["退款批次号/请求号"]]))
    statement = Statement("alipay", day or _only_day(lines), tuple(lines))
    kinds: tuple[tuple[str, Kind], ...] = (("交易", "payment"), ("退款", "refund"))
    for word, kind in kinds:
        counted = (statement.count(kind), statement.total(kind))
        if word in declared and declared[word] != counted:
            raise StatementError(f"Alipay bill does not add up: its {word}合计 line says "
                                 f"{declared[word][0]} for {declared[word][1]} fen, its rows "
                                 f"{counted[0]} for {counted[1]} fen")
    return statement
