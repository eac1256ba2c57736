"""``[web] lane_stale_s`` in the gateway's config: bounded, named when wrong, and the age the
running dashboard's live view greys a silent lane after (docs/configuration.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from firmware.lane.config import LaneTiming
from gateway.app import GatewayApp, gateway_client_id
from gateway.config import GatewayConfig
from gateway.web import WebSettings
from parkguard.clock import ManualClock
from parkguard.configfile import load_config
from parkguard.errors import ConfigError
from wire.memory import MemoryBroker

NOW = datetime(2026, 5, 6, 2, 0, tzinfo=UTC)


def config_file(tmp_path: Path, web: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(f'site = "test"\ndatabase = "{tmp_path / "gw.db"}"\n'
                    f'[broker]\nhost = "memory"\n'
                    f'[web]\nport = 0\nsecret_key_file = "{tmp_path / "web.key"}"\n{web}\n',
                    encoding="utf-8")
    return path


def test_35_s_by_default_off_on_request_and_bounded(tmp_path: Path) -> None:
    """35 s: three of the lanes' 10 s state heartbeats missed (firmware/lane/status.py)."""
    default = load_config(GatewayConfig, config_file(tmp_path, "")).web
    assert default is not None and default.lane_stale_s == 35
    assert WebSettings().lane_stale_s == 35  # the dashboard alone (the simulator's) agrees
    assert default.lane_stale_s > 3 * LaneTiming().state_heartbeat_s
    ok = load_config(GatewayConfig, config_file(tmp_path, "lane_stale_s = 30"))
    assert ok.web is not None and ok.web.lane_stale_s == 30
    off = load_config(GatewayConfig, config_file(tmp_path, "lane_stale_s = 0"))
    assert off.web is not None and off.web.lane_stale_s == 0
    for bad, why in (("-1", "greater than or equal to 0"), ("3601", "less than or equal"),
                     ("5", "at least 10 s")):
        with pytest.raises(ConfigError) as caught:
            load_config(GatewayConfig, config_file(tmp_path, f"lane_stale_s = {bad}"))
        assert "lane_stale_s" in str(caught.value) and why in str(caught.value)
    with pytest.raises(ConfigError, match="three of the lanes' 10 s heartbeats"):
        load_config(GatewayConfig, config_file(tmp_path, "lane_stale_s = 5"))


def test_the_running_dashboard_greys_lanes_after_the_configured_age(
        memory: MemoryBroker, tmp_path: Path) -> None:
    config = load_config(GatewayConfig, config_file(tmp_path, "lane_stale_s = 45"))
    bus = memory.bus(gateway_client_id("test"), persistent=True, manual_ack=True)
    app = GatewayApp(config, clock=ManualClock(NOW), bus=bus)
    app.start()
    try:
        assert app.web is not None
        assert app.web.app.state.web.board.stale_s == 45
        assert app.web.app.state.web.settings.lane_stale_s == 45
    finally:
        app.stop()
