"""Config files: good ones load; every bad one fails at start naming the file, the field and why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from firmware.lane.config import LaneConfig, PinMap
from gateway.config import GatewayConfig
from gateway.money.pricing import EXAMPLE_TARIFF
from parkguard.configfile import load_config, parse_config
from parkguard.core.plates import MatchPolicy
from parkguard.errors import ConfigError

GOOD_LANE = """\
site = "mall-b2"
lane = "out1"
direction = "exit"

[broker]
host = "10.0.0.2"
port = 8883

[pins]
arming_loop = 5
safety_loop = "GPIO6"
barrier_relay = 13

[timing]
decide_deadline_ms = 250
pass_timeout_s = 90.5

[camera]
type = "picamera"
plate_region = [360, 240, 920, 660]
"""

GOOD_GATEWAY = """\
site = "mall-b2"
timezone = "Europe/Berlin"
database = "var/mall-b2.db"
tariff_file = "/etc/parkguard/tariff.toml"

[broker]
host = "broker.local"
port = 1884

[matching]
max_distance = 0.75
"""

MINIMAL_LANE = 'site = "mall-b2"\nlane = "in1"\ndirection = "entry"\n[camera]\ntype = "simulated"\n'
MINIMAL_GATEWAY = 'site = "mall-b2"\n'


def _write(tmp_path: Path, text: str, name: str = "site.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# Good files ---------------------------------------------------------------------


def test_good_lane_config_loads_with_every_value_it_sets(tmp_path: Path) -> None:
    config = load_config(LaneConfig, _write(tmp_path, GOOD_LANE))
    assert (config.site, config.lane, config.direction) == ("mall-b2", "out1", "exit")
    assert (config.broker.host, config.broker.port) == ("10.0.0.2", 8883)
    assert config.pins == PinMap(arming_loop=5, safety_loop="GPIO6", barrier_relay=13)
    assert (config.timing.decide_deadline_ms, config.timing.pass_timeout_s) == (250, 90.5)
    assert config.camera.type == "picamera"


def test_minimal_lane_config_takes_the_documented_defaults(tmp_path: Path) -> None:
    config = load_config(LaneConfig, _write(tmp_path, MINIMAL_LANE))
    assert (config.broker.host, config.broker.port) == ("127.0.0.1", 8883)
    pins = config.pins
    assert (pins.arming_loop, pins.safety_loop, pins.barrier_relay) == (17, 27, 22)
    assert (config.timing.decide_deadline_ms, config.timing.pass_timeout_s) == (300, 120.0)


def test_good_gateway_config_loads_with_every_value_it_sets(tmp_path: Path) -> None:
    config = load_config(GatewayConfig, _write(tmp_path, GOOD_GATEWAY))
    assert (config.site, config.timezone) == ("mall-b2", "Europe/Berlin")
    assert config.database == Path("var/mall-b2.db")
    assert (config.broker.host, config.broker.port) == ("broker.local", 1884)
    assert config.tariff_file == Path("/etc/parkguard/tariff.toml")
    assert config.matching.max_distance == 0.75


def test_minimal_gateway_config_takes_the_documented_defaults(tmp_path: Path) -> None:
    config = load_config(GatewayConfig, _write(tmp_path, MINIMAL_GATEWAY))
    assert config.timezone == "Asia/Shanghai"
    assert config.database == Path("var/gateway.db")
    assert config.tariff_file == EXAMPLE_TARIFF
    assert config.matching == MatchPolicy()


def test_configs_are_frozen(tmp_path: Path) -> None:
    config = load_config(LaneConfig, _write(tmp_path, MINIMAL_LANE))
    with pytest.raises(ValueError, match="frozen"):
        config.lane = "in2"


# Bad files ----------------------------------------------------------------------


def _config_error(model: type[LaneConfig] | type[GatewayConfig], path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(model, path)
    return str(caught.value)


def test_missing_file_is_a_config_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "lane.toml"
    message = _config_error(LaneConfig, path)
    assert str(path) in message
    assert "not found" in message


def test_invalid_toml_is_a_config_error_naming_the_path_and_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, 'site = "mall-b2"\nlane = in1\n')
    message = _config_error(LaneConfig, path)
    assert str(path) in message
    assert "not valid TOML" in message
    assert "line 2" in message


# model, file text, field path the message must name, reason it must give (a cross-field
# check on a section is reported at the section and names the clashing fields in its reason)
BAD_FILES = [
    pytest.param(LaneConfig, 'site = "mall-b2"\nlane = "in1"\ndirecion = "entry"\n',
                 "direcion", "Extra inputs are not permitted", id="lane-typo-key"),
    pytest.param(LaneConfig, MINIMAL_LANE + "[pins]\nsafty_loop = 5\n",
                 "pins.safty_loop", "Extra inputs are not permitted", id="lane-typo-nested-key"),
    pytest.param(GatewayConfig, MINIMAL_GATEWAY + "[matching]\nmax_distanse = 1.0\n",
                 "matching.max_distanse", "Extra inputs are not permitted",
                 id="gateway-typo-key"),
    pytest.param(LaneConfig, 'site = "mall-b2"\nlane = "in1"\n',
                 "direction", "Field required", id="lane-missing-direction"),
    pytest.param(LaneConfig, 'site = "mall-b2"\nlane = "in1"\ndirection = "entry"\n',
                 "camera", "Field required", id="lane-missing-camera"),
    pytest.param(GatewayConfig, MINIMAL_GATEWAY + '[broker]\nport = "eighteen"\n',
                 "broker.port", "valid integer", id="gateway-port-not-a-number"),
    pytest.param(LaneConfig, MINIMAL_LANE + "[broker]\nport = [1883]\n",
                 "broker.port", "valid integer", id="lane-port-a-list"),
    pytest.param(LaneConfig, MINIMAL_LANE + "[broker]\nport = 70000\n",
                 "broker.port", "less than or equal to 65535", id="lane-port-out-of-range"),
    pytest.param(LaneConfig, 'site = "mall-b2"\nlane = "in1"\ndirection = "sideways"\n',
                 "direction", "'entry' or 'exit'", id="lane-unknown-direction"),
    pytest.param(LaneConfig, 'site = "Mall B2"\nlane = "in1"\ndirection = "entry"\n',
                 "site", "should match pattern", id="lane-bad-site-slug"),
    pytest.param(GatewayConfig, 'site = "mall/b2"\n',
                 "site", "should match pattern", id="gateway-bad-site-slug"),
    pytest.param(LaneConfig, 'site = "mall-b2"\nlane = "in+1"\ndirection = "entry"\n',
                 "lane", "should match pattern", id="lane-bad-lane-id"),
    pytest.param(LaneConfig, MINIMAL_LANE + "[pins]\nsafety_loop = 17\n",
                 "pins", "pins.safety_loop uses pin 17, already used by pins.arming_loop",
                 id="two-pins-same-gpio"),
    pytest.param(LaneConfig, MINIMAL_LANE + '[pins]\narming_loop = "GPIO22"\n',
                 "pins", "pins.barrier_relay uses pin 22, already used by pins.arming_loop",
                 id="two-pins-same-gpio-by-name"),
    pytest.param(GatewayConfig, MINIMAL_GATEWAY + 'timezone = "Mars/Olympus_Mons"\n',
                 "timezone", "unknown time zone 'Mars/Olympus_Mons'", id="unknown-time-zone"),
    pytest.param(GatewayConfig, MINIMAL_GATEWAY + "[matching]\nmax_distance = 0.3\n",
                 "matching.max_distance", "multiple of 0.25", id="matching-off-the-quarter-grid"),
    pytest.param(LaneConfig, MINIMAL_LANE + "[timing]\ndecide_deadline_ms = 5\n",
                 "timing.decide_deadline_ms", "greater than or equal to 20",
                 id="lane-deadline-too-short"),
]


@pytest.mark.parametrize(("model", "text", "field", "reason"), BAD_FILES)
def test_bad_config_file_error_names_the_file_the_field_and_the_reason(
    tmp_path: Path, model: type[LaneConfig] | type[GatewayConfig], text: str, field: str,
    reason: str,
) -> None:
    path = _write(tmp_path, text)
    message = _config_error(model, path)
    assert str(path) in message
    assert f"{field}:" in message
    assert reason in message


def test_parse_config_names_the_source_it_is_given() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(LaneConfig, {"site": "mall-b2", "lane": "in1"}, source="bench dict")
    assert "bench dict" in str(caught.value)
    assert "direction: Field required" in str(caught.value)


def test_config_error_is_also_a_value_error() -> None:
    with pytest.raises(ValueError, match="site"):
        parse_config(GatewayConfig, {})


def test_config_file_that_is_not_utf8_is_a_config_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('site = "café"\n'.encode("latin-1"))
    assert str(path) in _config_error(GatewayConfig, path)


def test_config_path_that_is_a_directory_is_a_config_error_naming_the_path(
    tmp_path: Path,
) -> None:
    assert str(tmp_path) in _config_error(GatewayConfig, tmp_path)


# The real console script -------------------------------------------------------------


def _parkguard(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "parkguard"
    assert script.exists(), f"console script not installed next to {sys.executable}"
    return subprocess.run([str(script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)


def test_gateway_command_with_a_bad_config_exits_2_naming_field_and_reason(
    tmp_path: Path,
) -> None:
    _write(tmp_path, MINIMAL_GATEWAY + '[broker]\nport = "eighteen"\n', name="bad.toml")
    done = _parkguard("gateway", "-c", "bad.toml", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "bad.toml" in done.stderr
    assert "broker.port:" in done.stderr
    assert "valid integer" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_lane_command_with_two_pins_on_one_gpio_exits_2_naming_the_pins(tmp_path: Path) -> None:
    _write(tmp_path, MINIMAL_LANE + "[pins]\nsafety_loop = 17\n", name="lane.toml")
    done = _parkguard("lane", "-c", "lane.toml", "--mock-pins", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "pins.safety_loop" in done.stderr
    assert "already used by pins.arming_loop" in done.stderr
    assert "Traceback" not in done.stderr


def test_gateway_command_with_a_missing_config_exits_2_without_traceback(
    tmp_path: Path,
) -> None:
    done = _parkguard("gateway", "-c", "absent.toml", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "absent.toml: config file not found" in done.stderr
    assert "Traceback" not in done.stderr
