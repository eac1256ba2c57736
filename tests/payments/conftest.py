"""Fixtures: keys made once per run, the local provider servers, and a running gateway
(its worker, a memory broker and its web server on a free port) configured for them; what
the Alipay and WeChat Pay tests share (an order opened by the desk, a desk charging 付款码
whose waits step the clock)."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.app import GatewayApp, gateway_client_id
from gateway.config import GatewayConfig, PaymentSettings, WebConfig
from gateway.money.payments import PaymentDesk
from gateway.money.payments.provider import PaymentProvider
from gateway.money.payments.settings import AlipaySettings, WeChatPaySettings
from gateway.records.audit import AuditLog
from gateway.storage.database import open_database
from parkguard.clock import ManualClock
from parkguard.configfile import BrokerSettings
from tests.payments.alipay_server import AlipayServer
from tests.payments.wechat_server import WeChatPayServer
from tests.payments.wire import KeyPair
from wire.memory import MemoryBroker, MemoryBus

SITE = "paytest"
#: 10:00 in Shanghai.
START = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)
PLATE = "粤B12345"


@pytest.fixture(scope="session")
def keys() -> dict[str, KeyPair]:
    """RSA pairs made for this run: the merchant's, WeChat Pay's platform key, the Alipay
    app's, Alipay's, and a forger's."""
    return {name: KeyPair.make() for name in ("merchant", "platform", "app", "alipay",
                                              "forger")}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture
def wechat(clock: ManualClock, keys: dict[str, KeyPair]) -> Iterator[WeChatPayServer]:
    with WeChatPayServer(clock, merchant=keys["merchant"], platform=keys["platform"],
                         apiv3_key=secrets.token_hex(16), apiv2_key=secrets.token_hex(16)
                         ) as server:
        yield server


@pytest.fixture
def alipay(clock: ManualClock, keys: dict[str, KeyPair]) -> Iterator[AlipayServer]:
    with AlipayServer(clock, app=keys["app"], alipay=keys["alipay"]) as server:
        yield server


def wechat_settings(server: WeChatPayServer, tmp_path: Path, notify_url: str,
                    **overrides: object) -> WeChatPaySettings:
    """``[payments.wechat]`` for the local server, its keys in files under ``tmp_path``."""
    values: dict[str, object] = {
        "mchid": server.mchid, "appid": server.appid,
        "merchant_serial": "5157F09EFDC096DE15EBE81A47",
        "merchant_key_file": write(tmp_path / "apiclient_key.pem", server.merchant.private_pem),
        "apiv3_key_file": write(tmp_path / "apiv3.key", server.apiv3_key),
        "platform_public_key_file": write(tmp_path / "wechatpay_pub.pem",
                                       server.platform.public_pem),
        "platform_public_key_id": server.key_id, "notify_url": notify_url,
        "apiv2_key_file": write(tmp_path / "apiv2.key", server.apiv2_key),
        "api_base": server.url, "timeout_s": 0.5, "code_wait_s": 20, "code_poll_s": 5}
    values.update(overrides)
    return WeChatPaySettings.model_validate(values)


def alipay_settings(server: AlipayServer, tmp_path: Path, notify_url: str,
                    **overrides: object) -> AlipaySettings:
    values: dict[str, object] = {
        "app_id": server.app_id, "seller_id": server.seller_id,
        "app_private_key_file": write(tmp_path / "app_private.pem", server.app.private_pem),
        "alipay_public_key_file": write(tmp_path / "alipay_public.pem",
                                     server.alipay.public_pem),
        "notify_url": notify_url, "api_base": f"{server.url}/gateway.do", "timeout_s": 0.5,
        "code_wait_s": 20, "code_poll_s": 5}
    values.update(overrides)
    return AlipaySettings.model_validate(values)


GatewayFactory = Callable[[PaymentSettings], GatewayApp]


@contextmanager
def running_gateway(tmp_path: Path, clock: ManualClock, payments: PaymentSettings,
                    port: int) -> Iterator[GatewayApp]:
    """A started gateway with its pay page and notify route on ``port``."""
    broker = MemoryBroker()
    config = GatewayConfig(site=SITE, database=tmp_path / "gateway.db",
                           broker=BrokerSettings(host="memory"), payments=payments,
                           web=WebConfig(port=port, secret_key_file=tmp_path / "web.key"))
    bus = MemoryBus(broker, client_id=gateway_client_id(SITE), persistent=True,
                    manual_ack=True)
    try:
        with GatewayApp(config, clock=clock, bus=bus) as app:
            yield app
    finally:
        broker.close()


@contextmanager
def provider_gateway(tmp_path: Path, clock: ManualClock, provider: str,
                     settings: Callable[[str], object]) -> Iterator[GatewayApp]:
    """A started gateway taking money through ``provider``, configured by
    ``settings(notify_url)`` with the notify route of this gateway's own web server."""
    port = free_port()
    payments = PaymentSettings.model_validate(
        {"provider": provider,
         provider: settings(f"http://127.0.0.1:{port}/api/payments/callback")})
    with running_gateway(tmp_path, clock, payments, port) as app:
        yield app


def open_order(app: GatewayApp, pay_url_prefix: str, session_id: str = "s-1",
               fen: int = 1_500) -> str:
    """A prepayment the desk opens at the provider: its payment id (the out_trade_no)."""
    pending = app.service.call(
        lambda: app.billing.payments.start_prepayment(session_id, PLATE, fen))
    assert pending.pay_url.startswith(pay_url_prefix)
    return pending.payment_id


def state_of(app: GatewayApp, payment_id: str) -> str:
    return app.service.call(lambda: app.billing.payments.payment(payment_id).state)


def payment_entries(app: GatewayApp) -> int:
    with app.store.reader() as db:
        return int(db.execute("SELECT count(*) FROM ledger_entries WHERE kind = 'payment'"
                              ).fetchone()[0])


@dataclass
class CodeDesk:
    """A desk charging 付款码 through a real provider, and the waits it made."""

    desk: PaymentDesk
    clock: ManualClock
    waited: list[float]

    def charge(self, event_id: str, code: str, fen: int = 700) -> str:
        """``state:failure`` of the code charged to session s-1 for ``event_id``."""
        payment = self.desk.pay_with_code("s-1", PLATE, code, fen,
                                          captured_at=self.clock.now(), event_id=event_id)
        return f"{payment.state}:{payment.failure or ''}"


def code_desk(tmp_path: Path, clock: ManualClock,
              provider: Callable[[Callable[[float], None]], PaymentProvider]) -> CodeDesk:
    """``provider(sleep)`` behind a desk on its own database; its waits between queries
    step the clock instead of sleeping."""
    waited: list[float] = []

    def wait(seconds: float) -> None:
        waited.append(seconds)
        clock.advance(timedelta(seconds=seconds))

    db = open_database(tmp_path / "codes.db")
    desk = PaymentDesk(db, clock=clock, audit=AuditLog(db, clock=clock),
                       provider=provider(wait))
    return CodeDesk(desk, clock, waited)
