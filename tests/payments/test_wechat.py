"""WeChat Pay end to end against the local WeChat Pay: a Native order opened by the desk,
its notice POSTed by the server to the running gateway's notify route, refunds, and
付款码 by micropay (decline, USERPAYING, a lost request, a payer who never completes)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.app import GatewayApp
from gateway.money.payments import RefundRefusedError
from gateway.money.payments.errors import ProviderRefusedError
from gateway.money.payments.settings import WeChatPaySettings
from gateway.money.payments.wechat import WeChatPayProvider
from gateway.money.payments.wechat_codes import from_xml
from parkguard.clock import ManualClock
from tests.payments.conftest import (
    PLATE,
    CodeDesk,
    code_desk,
    payment_entries,
    provider_gateway,
    state_of,
    wechat_settings,
)
from tests.payments.conftest import open_order as open_desk_order
from tests.payments.wechat_server import WeChatPayServer
from tests.payments.wire import KeyPair

CODE = "134567890123456789"  # a WeChat 付款码 is 18 digits starting 10-15


@pytest.fixture
def gateway(tmp_path: Path, clock: ManualClock, wechat: WeChatPayServer) -> Iterator[GatewayApp]:
    with provider_gateway(tmp_path, clock, "wechat",
                          lambda notify: wechat_settings(wechat, tmp_path, notify)) as app:
        yield app


def open_order(app: GatewayApp, session_id: str = "s-1", fen: int = 1_500) -> str:
    return open_desk_order(app, "weixin://wxpay/bizpayurl?pr=", session_id, fen)


def test_a_paid_native_order_is_booked_once_however_often_it_is_notified(
        gateway: GatewayApp, wechat: WeChatPayServer) -> None:
    order = open_order(gateway)
    assert wechat.trades[order].total == 1_500 and wechat.trades[order].kind == "NATIVE"
    answer = wechat.pay(order)
    assert answer.status_code == 200 and answer.json()["code"] == "SUCCESS"
    assert state_of(gateway, order) == "paid"
    again = wechat.deliver(order, *wechat.notice(order))  # WeChat re-sends, newly signed
    assert again.status_code == 200 and again.json()["code"] == "SUCCESS"
    assert payment_entries(gateway) == 1


def test_forged_notices_are_refused_and_book_nothing(
        gateway: GatewayApp, wechat: WeChatPayServer, keys: dict[str, KeyPair]) -> None:
    order = open_order(gateway)
    wechat.complete(order)
    body, headers = wechat.notice(order, key=keys["forger"])
    forged = wechat.deliver(order, body, headers)
    assert forged.status_code == 401 and forged.json()["code"] == "FAIL"
    body, headers = wechat.notice(order)
    envelope = json.loads(body)
    envelope["summary"] = "改过 changed"
    altered = wechat.deliver(order, json.dumps(envelope).encode(), headers)
    unknown_key = wechat.deliver(order, body, {**headers, "Wechatpay-Serial": "PUB_KEY_ID_9"})
    unsigned = wechat.deliver(order, body, {"Content-Type": "application/json"})
    assert [r.status_code for r in (altered, unknown_key, unsigned)] == [401, 401, 401]
    assert state_of(gateway, order) == "pending" and payment_entries(gateway) == 0
    assert wechat.deliver(order, body, headers).status_code == 200  # the genuine one
    assert state_of(gateway, order) == "paid"


def test_a_replayed_notice_is_refused_and_the_payment_stands_once(
        gateway: GatewayApp, wechat: WeChatPayServer) -> None:
    order = open_order(gateway)
    wechat.complete(order)
    body, headers = wechat.notice(order)
    assert wechat.deliver(order, body, headers).status_code == 200
    replay = wechat.deliver(order, body, headers)
    assert replay.status_code == 401 and replay.json() == {"code": "FAIL",
                                                           "message": "replayed"}
    assert payment_entries(gateway) == 1


def test_a_notice_for_another_amount_is_refused(gateway: GatewayApp,
                                                wechat: WeChatPayServer) -> None:
    order = open_order(gateway, fen=1_500)
    wechat.complete(order)
    answer = wechat.deliver(order, *wechat.notice(order, total=1))
    assert answer.status_code == 400 and answer.json()["message"] == "amount_mismatch"
    assert state_of(gateway, order) == "pending"


def test_a_late_notice_is_refused_as_stale(gateway: GatewayApp, wechat: WeChatPayServer,
                                           clock: ManualClock) -> None:
    order = open_order(gateway)
    wechat.complete(order)
    body, headers = wechat.notice(order)
    clock.advance(timedelta(minutes=6))  # the window is 5 minutes
    late = wechat.deliver(order, body, headers)
    assert late.status_code == 401 and late.json()["message"] == "stale"
    assert state_of(gateway, order) == "pending"
    assert wechat.deliver(order, *wechat.notice(order)).status_code == 200  # a fresh one


def test_orders_are_queried_closed_and_refunded_through_v3(
        gateway: GatewayApp, wechat: WeChatPayServer) -> None:
    provider = gateway.provider
    assert isinstance(provider, WeChatPayProvider)
    unpaid = open_order(gateway, "s-1")
    assert provider.query_order(unpaid) == "NOTPAY"
    provider.close_order(unpaid)
    assert provider.query_order(unpaid) == "CLOSED"
    assert provider.query_order("nosuchorder000") == "ORDER_NOT_EXIST"
    paid = open_order(gateway, "s-2", 2_000)
    assert wechat.pay(paid).status_code == 200
    desk = gateway.billing.payments
    refund = gateway.service.call(
        lambda: desk.refund(paid, 500, actor="max", reason="barrier fault"))
    assert refund.via == "provider" and refund.provider_ref
    assert sum(fen for _, fen, _ in wechat.trades[paid].refunds.values()) == 500
    with pytest.raises(RefundRefusedError):
        gateway.service.call(lambda: desk.refund(paid, 1_600, actor="max", reason="too much"))
    assert sum(fen for _, fen, _ in wechat.trades[paid].refunds.values()) == 500


# --- 付款码 by micropay ------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path, wechat: WeChatPayServer) -> WeChatPaySettings:
    return wechat_settings(wechat, tmp_path, "https://gw.invalid/api/payments/callback")


@pytest.fixture
def codes(tmp_path: Path, clock: ManualClock, settings: WeChatPaySettings) -> CodeDesk:
    return code_desk(tmp_path, clock,
                     lambda sleep: WeChatPayProvider.from_settings(settings, clock, sleep=sleep))


def charge(codes: CodeDesk, event_id: str) -> str:
    return codes.charge(event_id, CODE)


def micropay_numbers(wechat: WeChatPayServer) -> list[str]:
    """The out_trade_no of every micropay request the server received, answered or not."""
    return [from_xml(body)["out_trade_no"] for _, path, body in wechat.http.requests
            if path == "/pay/micropay"]


def test_a_payment_code_is_charged_once_even_when_retried(
        codes: CodeDesk, wechat: WeChatPayServer, settings: WeChatPaySettings) -> None:
    assert charge(codes, "ev-1") == "paid:"
    assert charge(codes, "ev-1") == "paid:"  # the lane's journal replays the event
    # A gateway that crashed between WeChat's answer and its commit asks again with the
    # same key: the same out_trade_no, which WeChat answers ORDERPAID, then a query.
    restarted = WeChatPayProvider.from_settings(settings, codes.clock)
    again = restarted.charge_code(CODE, 700, "code:ev-1")
    (trade,) = wechat.trades.values()
    assert again.ok and again.provider_ref == trade.out_trade_no
    assert trade.state == "SUCCESS" and trade.total == 700
    assert micropay_numbers(wechat) == [trade.out_trade_no] * 2


def test_a_declined_code_is_an_answer_and_becomes_a_debt(codes: CodeDesk,
                                                        wechat: WeChatPayServer) -> None:
    wechat.declines[CODE] = "NOTENOUGH"
    assert charge(codes, "ev-2") == "failed:insufficient_funds"
    (debt,) = codes.desk.debts_for(PLATE)
    assert debt.amount_fen == 700


def test_a_payer_entering_a_password_is_waited_for(codes: CodeDesk,
                                                  wechat: WeChatPayServer) -> None:
    wechat.waits[CODE] = 2  # USERPAYING for two queries
    assert charge(codes, "ev-3") == "paid:"
    assert codes.waited == [5.0, 5.0]


def test_a_payer_who_never_completes_is_reversed(codes: CodeDesk,
                                                 wechat: WeChatPayServer) -> None:
    wechat.waits[CODE] = -1
    assert charge(codes, "ev-4") == "failed:payer_timeout"
    (trade,) = wechat.trades.values()
    assert trade.state == "REVOKED"
    assert sum(codes.waited) == 20.0  # code_wait_s
    assert [d.amount_fen for d in codes.desk.debts_for(PLATE)] == [700]


def test_a_lost_micropay_is_retried_with_the_same_out_trade_no(
        codes: CodeDesk, wechat: WeChatPayServer) -> None:
    wechat.http.stall("/pay/micropay")  # the first request never gets an answer
    assert charge(codes, "ev-5") == "paid:"
    first, second = micropay_numbers(wechat)
    assert first == second
    (trade,) = wechat.trades.values()
    assert trade.out_trade_no == first and trade.state == "SUCCESS"


def test_a_merchant_set_up_error_is_raised_not_booked_as_a_drivers_decline(
        codes: CodeDesk, wechat: WeChatPayServer) -> None:
    wechat.declines[CODE] = "APPID_MCHID_NOT_MATCH"  # our configuration, not their wallet
    with pytest.raises(ProviderRefusedError, match="APPID_MCHID_NOT_MATCH"):
        charge(codes, "ev-6")
    assert codes.desk.payments_for("s-1") == [] and codes.desk.debts_for(PLATE) == []
