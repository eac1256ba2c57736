"""Choosing the provider by config: play money only in the demo and tests, no provider
means no online money, and key files are read without their contents ever shown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from gateway.app import GatewayApp
from gateway.config import GatewayConfig, PaymentSettings
from gateway.money.payments import NoProvider, SimulatedProvider
from gateway.money.payments.settings import WeChatPaySettings
from gateway.money.payments.wechat import WeChatPayProvider
from gateway.web import create_web_app
from parkguard.clock import ManualClock
from parkguard.configfile import BrokerSettings
from parkguard.errors import ConfigError
from tests.payments.conftest import START, wechat_settings
from tests.payments.wechat_server import WeChatPayServer


def config(tmp_path: Path, payments: PaymentSettings) -> GatewayConfig:
    return GatewayConfig(site="paytest", database=tmp_path / "gateway.db",
                         broker=BrokerSettings(host="127.0.0.1", port=1), payments=payments)


def test_the_simulated_provider_is_refused_outside_the_demo(tmp_path: Path) -> None:
    play = config(tmp_path, PaymentSettings(provider="simulated"))
    with pytest.raises(ConfigError, match=r"play money.*parkguard demo"):
        GatewayApp(play, clock=ManualClock(START))
    assert not (tmp_path / "gateway.db").exists()  # refused before anything was opened
    allowed = GatewayApp(play, clock=ManualClock(START), allow_simulated=True)
    try:
        assert isinstance(allowed.provider, SimulatedProvider)
        with TestClient(create_web_app(allowed)) as client:
            wallet = client.get("/sim-pay/nothing")  # the wallet page: no such order
            assert wallet.status_code == 404 and wallet.json() == {"detail": "no such order"}
    finally:
        allowed.store.close()


def test_the_gateway_command_refuses_play_money_with_a_clear_error(tmp_path: Path) -> None:
    file = tmp_path / "gateway.toml"
    file.write_text(f'site = "paytest"\ndatabase = "{tmp_path / "gw.db"}"\n'
                    '[payments]\nprovider = "simulated"\n', encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", "from cli.main import run; run()", "gateway", "-c",
                           str(file)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "play money" in done.stderr and "Traceback" not in done.stderr


def test_without_a_provider_there_is_no_wallet_and_no_online_money(tmp_path: Path) -> None:
    app = GatewayApp(config(tmp_path, PaymentSettings()), clock=ManualClock(START))
    try:
        assert isinstance(app.provider, NoProvider)
        with TestClient(create_web_app(app)) as client:
            wallet = client.get("/sim-pay/nothing")  # no such page at all
            assert wallet.status_code == 404 and "no such order" not in wallet.text
            notice = client.post("/api/payments/callback", content=b"{}")
            assert notice.status_code == 400
        charge = app.provider.charge_code("134567890123456789", 500, "code:x")
        assert (charge.ok, charge.reason) == (False, "no_provider")
    finally:
        app.store.close()


def test_a_provider_needs_its_section() -> None:
    with pytest.raises(ValidationError, match=r"needs a \[payments.alipay\] section"):
        PaymentSettings(provider="alipay")


def test_key_files_are_named_in_errors_but_never_shown(tmp_path: Path,
                                                       wechat: WeChatPayServer) -> None:
    settings = wechat_settings(wechat, tmp_path, "https://gw.example.cn/api/payments/callback")
    short = "k" * 31
    (tmp_path / "apiv3.key").write_text(short, encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        WeChatPayProvider.from_settings(settings, ManualClock(START))
    assert "apiv3.key" in str(refused.value) and short not in str(refused.value)
    gone = WeChatPaySettings.model_validate(
        {**settings.model_dump(), "merchant_key_file": tmp_path / "missing.pem"})
    with pytest.raises(ConfigError, match=r"missing\.pem not found"):
        WeChatPayProvider.from_settings(gone, ManualClock(START))
    dumped = repr(settings.model_dump())
    assert wechat.apiv3_key not in dumped and "PRIVATE KEY" not in dumped


def test_a_key_file_that_is_not_a_key_stops_the_start_with_a_config_error(
        tmp_path: Path, wechat: WeChatPayServer) -> None:
    settings = wechat_settings(wechat, tmp_path, "https://gw.example.cn/api/payments/callback")
    (tmp_path / "apiclient_key.pem").write_text("not a key", encoding="utf-8")
    with pytest.raises(ConfigError, match="WeChat Pay refused its keys"):
        WeChatPayProvider.from_settings(settings, ManualClock(START))
