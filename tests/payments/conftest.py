"""Fixtures: keys made once per run, the local provider servers, and a running gateway
(its worker, a memory broker and its web server on a free port) configured for them."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.app import GatewayApp, gateway_client_id
from gateway.config import GatewayConfig, PaymentSettings, WebConfig
from gateway.money.payments.settings import AlipaySettings, WeChatPaySettings
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
