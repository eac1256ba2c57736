"""Alipay end to end against the local Alipay gateway: precreate QR orders, RSA2 notices
POSTed to the running gateway, refunds, and 付款码 by trade.pay (decline,
WAIT_BUYER_PAY, a lost request, a payer who never completes)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest

from gateway.app import GatewayApp
from gateway.money.payments import RefundRefusedError
from gateway.money.payments.alipay import AlipayProvider, fen_of, yuan
from parkguard.clock import ManualClock
from tests.payments.alipay_server import AlipayServer
from tests.payments.conftest import (
    PLATE,
    CodeDesk,
    alipay_settings,
    code_desk,
    payment_entries,
    provider_gateway,
    state_of,
)
from tests.payments.conftest import open_order as open_desk_order
from tests.payments.wire import KeyPair

CODE = "281234567890123456"  # an Alipay 付款码 starts 25-30


@pytest.fixture
def gateway(tmp_path: Path, clock: ManualClock, alipay: AlipayServer) -> Iterator[GatewayApp]:
    with provider_gateway(tmp_path, clock, "alipay",
                          lambda notify: alipay_settings(alipay, tmp_path, notify)) as app:
        yield app


def open_order(app: GatewayApp, session_id: str = "s-1", fen: int = 1_500) -> str:
    return open_desk_order(app, "https://qr.alipay.com/", session_id, fen)


def test_yuan_text_and_fen_convert_exactly() -> None:
    assert [yuan(f) for f in (0, 5, 1_500, 123_456)] == ["0.00", "0.05", "15.00", "1234.56"]
    assert [fen_of(t) for t in ("15.00", "0.1", "7", " 1234.56 ")] == [1500, 10, 700, 123456]
    for bad in ("1.005", "-1.00", "abc", ""):
        with pytest.raises(ValueError):
            fen_of(bad)


def test_a_paid_precreate_order_is_booked_once(gateway: GatewayApp,
                                                alipay: AlipayServer) -> None:
    order = open_order(gateway)
    assert alipay.trades[order].total == 1_500
    answer = alipay.pay(order)
    assert (answer.status_code, answer.text) == (200, "success")
    assert state_of(gateway, order) == "paid"
    again = alipay.deliver(order, alipay.notice(order))  # re-sent under a new notify_id
    assert (again.status_code, again.text) == (200, "success")
    finished = alipay.deliver(order, alipay.notice(order, status="TRADE_FINISHED"))
    assert finished.text == "success"
    assert payment_entries(gateway) == 1


def test_forged_replayed_wrong_amount_and_late_notices_are_refused(
        gateway: GatewayApp, alipay: AlipayServer, keys: dict[str, KeyPair],
        clock: ManualClock) -> None:
    order = open_order(gateway)
    alipay.complete(order)
    forged = alipay.deliver(order, alipay.notice(order, key=keys["forger"]))
    fields = dict(parse_qsl(alipay.notice(order).decode()))
    fields["total_amount"] = "0.01"
    altered = alipay.deliver(order, urlencode(fields).encode())
    wrong = alipay.deliver(order, alipay.notice(order, total=1))
    genuine = alipay.notice(order)
    clock.advance(timedelta(minutes=6))
    late = alipay.deliver(order, genuine)
    assert [(r.status_code, r.text) for r in (forged, altered, wrong, late)] == [
        (400, "fail")] * 4
    assert state_of(gateway, order) == "pending" and payment_entries(gateway) == 0
    fresh = alipay.notice(order)
    assert alipay.deliver(order, fresh).text == "success"
    assert alipay.deliver(order, fresh).text == "fail"  # the same notify_id again: a replay
    assert payment_entries(gateway) == 1


def test_a_closed_trade_notice_is_acknowledged_and_books_nothing(
        gateway: GatewayApp, alipay: AlipayServer) -> None:
    order = open_order(gateway)
    alipay.complete(order)
    closed = alipay.deliver(order, alipay.notice(order, status="TRADE_CLOSED"))
    assert closed.text == "success" and state_of(gateway, order) == "pending"


def test_orders_are_queried_cancelled_and_refunded(gateway: GatewayApp,
                                                   alipay: AlipayServer) -> None:
    provider = gateway.provider
    assert isinstance(provider, AlipayProvider)
    unpaid = open_order(gateway, "s-1")
    assert provider.query_order(unpaid) == "WAIT_BUYER_PAY"
    provider.cancel_order(unpaid)
    assert provider.query_order(unpaid) == "TRADE_CLOSED"
    assert provider.query_order("nosuchorder") == "TRADE_NOT_EXIST"
    paid = open_order(gateway, "s-2", 2_000)
    assert alipay.pay(paid).text == "success"
    desk = gateway.billing.payments
    refund = gateway.service.call(
        lambda: desk.refund(paid, 500, actor="max", reason="barrier fault"))
    assert refund.via == "provider"
    assert [fen for fen, _ in alipay.trades[paid].refunds.values()] == [500]
    with pytest.raises(RefundRefusedError):
        gateway.service.call(lambda: desk.refund(paid, 1_600, actor="max", reason="too much"))


# --- 付款码 by trade.pay -----------------------------------------------------------------


@pytest.fixture
def codes(tmp_path: Path, clock: ManualClock, alipay: AlipayServer) -> CodeDesk:
    settings = alipay_settings(alipay, tmp_path, "https://gw.invalid/api/payments/callback")
    return code_desk(tmp_path, clock,
                     lambda sleep: AlipayProvider.from_settings(settings, clock, sleep=sleep))


def charge(codes: CodeDesk, event_id: str) -> str:
    return codes.charge(event_id, CODE)


def test_a_code_is_charged_once(codes: CodeDesk, alipay: AlipayServer) -> None:
    assert charge(codes, "ev-1") == "paid:"
    assert charge(codes, "ev-1") == "paid:"
    (trade,) = alipay.trades.values()
    assert trade.status == "TRADE_SUCCESS" and alipay.pays == [trade.out_trade_no]


def test_a_declined_code_is_an_answer_and_becomes_a_debt(codes: CodeDesk,
                                                        alipay: AlipayServer) -> None:
    alipay.declines[CODE] = "ACQ.BUYER_BALANCE_NOT_ENOUGH"
    assert charge(codes, "ev-2") == "failed:insufficient_funds"
    assert [d.amount_fen for d in codes.desk.debts_for(PLATE)] == [700]


def test_a_payer_confirming_on_the_phone_is_waited_for(codes: CodeDesk,
                                                       alipay: AlipayServer) -> None:
    alipay.waits[CODE] = 1
    assert charge(codes, "ev-3") == "paid:"
    assert codes.waited == [5.0]


def test_a_payer_who_never_confirms_is_cancelled(codes: CodeDesk,
                                                 alipay: AlipayServer) -> None:
    alipay.waits[CODE] = -1
    assert charge(codes, "ev-4") == "failed:payer_timeout"
    (trade,) = alipay.trades.values()
    assert trade.status == "TRADE_CLOSED"


def test_a_lost_pay_request_is_retried_with_the_same_out_trade_no(
        codes: CodeDesk, alipay: AlipayServer) -> None:
    alipay.http.stall("/gateway.do")  # the first call (trade.pay) never gets an answer
    assert charge(codes, "ev-5") == "paid:"
    (trade,) = alipay.trades.values()
    assert alipay.pays == [trade.out_trade_no] and trade.status == "TRADE_SUCCESS"
    sent = [dict(parse_qsl(path.split("?", 1)[1]))["biz_content"]
            for _, path, _ in alipay.http.requests if "alipay.trade.pay" in path]
    assert len(sent) == 2 and all(trade.out_trade_no in text for text in sent)
