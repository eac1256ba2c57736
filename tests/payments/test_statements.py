"""Daily reconciliation: a day of payments through the real providers and the local
servers, the servers' statement files made from their own records, and every kind of
mismatch found and reported by ``parkguard payments reconcile``."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main
from gateway.money.payments import PaymentDesk
from gateway.money.payments.alipay import AlipayProvider
from gateway.money.payments.reconcile_statement import our_side, reconcile
from gateway.money.payments.statements import (
    StatementError,
    decode_alipay_bill,
    parse_alipay_bill,
    parse_wechat_bill,
)
from gateway.money.payments.wechat import WeChatPayProvider
from gateway.records.audit import AuditLog
from gateway.storage.database import open_database
from parkguard.clock import ManualClock
from tests.payments.alipay_server import AlipayServer
from tests.payments.conftest import PLATE, alipay_settings, wechat_settings
from tests.payments.wechat_server import WeChatPayServer

DAY = date(2026, 12, 6)
NOTIFY = "https://gw.invalid/api/payments/callback"


def reconcile_cli(provider: str, db: Path, statement: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["payments", "reconcile", "--provider", provider,
                                       "--db", str(db), str(statement)])
    return result.exit_code, result.output


def wechat_day(tmp_path: Path, clock: ManualClock,
               wechat: WeChatPayServer) -> tuple[PaymentDesk, dict[str, str]]:
    """A day at the till: two QR orders (one notice lost), a 付款码, a refund."""
    provider = WeChatPayProvider.from_settings(wechat_settings(wechat, tmp_path, NOTIFY), clock,
                                               sleep=lambda _s: None)
    db = open_database(tmp_path / "gateway.db")
    desk = PaymentDesk(db, clock=clock, audit=AuditLog(db, clock=clock), provider=provider)
    a = desk.start_prepayment("s-a", PLATE, 1_500).payment_id
    wechat.complete(a)
    desk.handle_callback(*wechat.notice(a))
    b = desk.start_prepayment("s-b", "粤B54321", 800).payment_id
    wechat.complete(b)  # paid on the phone; its notice never reached us
    clock.advance(timedelta(hours=1))
    c = desk.pay_with_code("s-c", "湘A88888", "134567890123456789", 700,
                           captured_at=clock.now(), event_id="ev-c")
    desk.refund(a, 500, actor="max", reason="barrier fault")
    assert c.provider_ref is not None
    return desk, {"a": a, "b": b, "c": c.payment_id, "c_ref": c.provider_ref}


def test_a_clean_wechat_day_reconciles(tmp_path: Path, clock: ManualClock,
                                       wechat: WeChatPayServer) -> None:
    provider = WeChatPayProvider.from_settings(wechat_settings(wechat, tmp_path, NOTIFY), clock)
    db = open_database(tmp_path / "gateway.db")
    desk = PaymentDesk(db, clock=clock, audit=AuditLog(db, clock=clock), provider=provider)
    order = desk.start_prepayment("s-a", PLATE, 1_500).payment_id
    wechat.complete(order)
    desk.handle_callback(*wechat.notice(order))
    desk.refund(order, 300, actor="max", reason="complaint upheld")
    bill = tmp_path / "wechat-2026-12-06.csv"
    bill.write_text(wechat.trade_bill(DAY), encoding="utf-8")
    statement = parse_wechat_bill(bill.read_text(encoding="utf-8"))
    assert (statement.day, statement.total("payment"), statement.total("refund")) == (
        DAY, 1_500, 300)
    code, output = reconcile_cli("wechat", tmp_path / "gateway.db", bill)
    assert code == 0, output
    assert "一致 All reconciled" in output and "¥15.00" in output


def test_every_kind_of_wechat_mismatch_is_reported(tmp_path: Path, clock: ManualClock,
                                                   wechat: WeChatPayServer) -> None:
    desk, ids = wechat_day(tmp_path, clock, wechat)
    # Our books go wrong in two ways the provider's cannot: a payment it never saw, and
    # an amount that differs from what it took; and it loses a refund we made.
    desk.record_exit_payment("s-d", "京A22222", 600, "exit", provider_ref="ghost0000001")
    desk.db.execute("UPDATE payments SET amount_fen = 650 WHERE payment_id = ?", [ids["c"]])
    desk.refund(ids["c"], 100, actor="max", reason="wrong fee")
    del wechat.trades[ids["c_ref"]].refunds[next(iter(wechat.trades[ids["c_ref"]].refunds))]
    statement = parse_wechat_bill(wechat.trade_bill(DAY))
    found = {(m.kind, m.out_trade_no): (m.ours_fen, m.theirs_fen)
             for m in reconcile(statement, our_side(desk.db, DAY, wallet="wechat"))}
    assert found == {
        ("missing_ours", ids["b"]): (None, 800),
        ("missing_theirs", "ghost0000001"): (600, None),
        ("amount_differs", ids["c_ref"]): (650, 700),
        ("refund_differs", ids["c_ref"]): (100, 0),
    }
    bill = tmp_path / "bill.csv"
    bill.write_text(wechat.trade_bill(DAY), encoding="utf-8")
    code, output = reconcile_cli("wechat", tmp_path / "gateway.db", bill)
    assert code == 1
    for label in ("我方缺失 missing on our side", "对方缺失 missing on theirs",
                  "金额不符 amount differs", "退款不符 refund differs"):
        assert label in output
    assert "我方为 ours is pending" in output  # the lost notice: pending here


def test_an_alipay_day_is_reconciled_from_its_gbk_business_bill(
        tmp_path: Path, clock: ManualClock, alipay: AlipayServer) -> None:
    provider = AlipayProvider.from_settings(alipay_settings(alipay, tmp_path, NOTIFY), clock,
                                            sleep=lambda _s: None)
    db = open_database(tmp_path / "gateway.db")
    desk = PaymentDesk(db, clock=clock, audit=AuditLog(db, clock=clock), provider=provider)
    order = desk.start_prepayment("s-a", PLATE, 1_500).payment_id
    alipay.complete(order)
    desk.handle_callback(alipay.notice(order), {})
    code_paid = desk.pay_with_code("s-c", "湘A88888", "281234567890123456", 700,
                                   captured_at=clock.now(), event_id="ev-c")
    desk.refund(order, 200, actor="max", reason="complaint upheld")
    bill = tmp_path / "20881021462251350156_20261206_业务明细.csv"
    bill.write_bytes(alipay.business_bill(DAY))
    statement = parse_alipay_bill(decode_alipay_bill(bill.read_bytes()))
    assert statement.day == DAY and statement.count("payment") == 2
    assert statement.total("refund") == 200
    assert reconcile_cli("alipay", tmp_path / "gateway.db", bill)[0] == 0
    desk.db.execute("UPDATE payments SET state = 'pending', paid_at = NULL "
                    "WHERE payment_id = ?", [code_paid.payment_id])
    code, output = reconcile_cli("alipay", tmp_path / "gateway.db", bill)
    assert code == 1 and "我方缺失 missing on our side" in output


def test_a_damaged_statement_is_refused_not_reconciled(tmp_path: Path,
                                                       wechat: WeChatPayServer,
                                                       alipay: AlipayServer) -> None:
    wechat.trades.clear()
    text = wechat.trade_bill(DAY)
    assert parse_wechat_bill(text).lines == ()
    short = "\r\n".join(text.splitlines()[:1]) + "\r\n"  # cut before the totals
    with pytest.raises(StatementError, match="cut short"):
        parse_wechat_bill(short)
    lying = text.replace("`0.00,`0.00,`0.00,`0.00000", "`9.00,`0.00,`0.00,`0.00000", 1)
    with pytest.raises(StatementError, match="does not add up"):
        parse_wechat_bill(lying)
    with pytest.raises(StatementError, match="not a WeChat Pay trade bill"):
        parse_wechat_bill("hello,world\r\n")
    with pytest.raises(StatementError, match="not an Alipay business bill"):
        parse_alipay_bill("#only comments\n")
    damaged = tmp_path / "bill.csv"
    damaged.write_text(short, encoding="utf-8")
    open_database(tmp_path / "gateway.db").close()
    code, output = reconcile_cli("wechat", tmp_path / "gateway.db", damaged)
    assert code == 2 and "cut short" in output
