"""Config mistakes name the field and the reason, and never print the secret they are about.

Probe 12: a short HMAC key in a lane config came back in the error (62 of its 64 hex
digits, in the log). Every config that holds a secret is tried here: lane, gateway, device
bundle, safety file (alert contacts), patrol file (tag keys), the sensor node's config.json
and the bridge section the provisioning writes. A secret counts as leaked when any 8 of its
characters in a row appear in the message or the log.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import secrets
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from broker.provision.bridge import BridgeConf, render_bridge
from broker.provision.bundle import BundleBroker, DeviceBundle, load_bundle
from firmware.lane.config import CommandSettings, KioskSettings, LaneConfig
from gateway.config import GatewayConfig, SafetySettings
from gateway.safety.alerts.settings import AlertSettings, Person
from parkguard.configfile import BrokerSettings, load_config
from parkguard.core.patrol import PatrolConfig
from parkguard.core.patrol.model import Checkpoint
from parkguard.errors import ConfigError

RUN = 8
SENSOR_CONFIG = Path(__file__).parents[2] / "firmware" / "sensor" / "pgsensor" / "config.py"


def leaked(secret: str, text: str) -> str | None:
    """A run of :data:`RUN` characters of ``secret`` found in ``text``, if any."""
    return next((secret[i:i + RUN] for i in range(len(secret) - RUN + 1)
                 if secret[i:i + RUN] in text), None)


def hex_secret(digits: int) -> str:
    return secrets.token_hex(digits // 2 + 1)[:digits]


LANE = 'site = "mall-b2"\nlane = "in1"\ndirection = "entry"\n[camera]\ntype = "simulated"\n'
GATEWAY = 'site = "mall-b2"\n'
BUNDLE = """\
site = "mall-b2"
device = "lane-in1"
kind = "lane"
node = "in1"
{top}
[broker]
host = "gw.mall-b2.lan"
port = 8883
client_id = "lane-in1"
username = "lane-in1"
password = {password}
{tail}
"""
SAFETY = """\
[alerts]
shifts = [{{ name = "a", start = 08:00:00 }}]
{owner}
[[alerts.people]]
id = "wang"
name = "Wang"
role = "guard"
shift = "a"
contacts = {{ {contact} }}
"""
PATROL = """\
timezone = "Asia/Shanghai"
[[checkpoints]]
id = "b1-stair"
tag = "04A1B2C3D4E5F6"
place = "B1 stair"
level = "B1"
position = [0.0, 0.0]
key = "{key}"
"""


def _case(model: type[BaseModel], text: str, secret: str, field: str, reason: str,
          case_id: str) -> Any:
    return pytest.param(model, text, secret, field, reason, id=case_id)


def _cases() -> list[Any]:
    short, not_hex = hex_secret(62), hex_secret(60) + "zzzz"
    site_key, lane_key = hex_secret(30), hex_secret(62)
    password = "Pa55-" + secrets.token_urlsafe(18)
    number = str(10**15 + secrets.randbelow(10**15))
    tag_key = hex_secret(30)
    token = "dingtalk://" + secrets.token_hex(24)
    cases = [
        _case(LaneConfig, LANE + f'[commands]\nhmac_key = "{short}"\n', short,
              "commands.hmac_key", "must be at least 32 bytes (64 hex digits), got 31 bytes",
              "lane-short-hmac-key"),
        _case(LaneConfig, LANE + f'[commands]\nhmac_key = "{not_hex}"\n', not_hex,
              "commands.hmac_key", "must be hexadecimal", "lane-hmac-key-not-hex"),
        _case(LaneConfig, LANE + f'[commands]\nhmac_kye = "{short}aa"\n', short,
              "commands.hmac_kye", "Extra inputs are not permitted", "lane-typo-of-a-secret"),
        _case(LaneConfig, LANE + f'[kiosk]\nsite_key = "{site_key}"\n', site_key,
              "kiosk.site_key", "must be at least 16 bytes", "lane-short-site-key"),
        _case(LaneConfig, LANE + f'[broker]\nusername = "lane-in1"\npassword = {number}\n',
              number, "broker.password", "valid string", "lane-password-a-number"),
        _case(LaneConfig, LANE + f'[broker]\npassword = "{password}"\n', password,
              "broker", "username and password go together", "lane-password-without-user"),
        _case(GatewayConfig, GATEWAY + f'[lane_keys]\nin1 = "{lane_key}"\n', lane_key,
              "lane_keys.in1", "must be at least 32 bytes", "gateway-short-lane-key"),
        _case(GatewayConfig, GATEWAY + f'[broker]\nusername = "gateway"\npassword = {number}\n',
              number, "broker.password", "valid string", "gateway-password-a-number"),
        _case(DeviceBundle, BUNDLE.format(top=f'hmac_key = "{short}"', password=f'"{password}"',
                                          tail=""),
              short, "hmac_key", "must be at least 32 bytes", "bundle-short-hmac-key"),
        _case(DeviceBundle, BUNDLE.format(top="", password=number, tail=""), number,
              "broker.password", "valid string", "bundle-password-a-number"),
        _case(DeviceBundle, BUNDLE.format(top="", password=f'"{password}"',
                                          tail=f'[lane_keys]\nout1 = "{lane_key}"\n'),
              lane_key, "lane_keys.out1", "must be at least 32 bytes", "bundle-short-lane-key"),
        _case(SafetySettings, SAFETY.format(owner="", contact=f"app = {number}"), number,
              "alerts.people.0.contacts.app", "valid string", "safety-contact-a-number"),
        _case(SafetySettings, SAFETY.format(owner=f"owner_message_url = {number}",
                                            contact=f'app = "{token}"'),
              number, "alerts.owner_message_url", "valid string", "safety-owner-url-a-number"),
        _case(PatrolConfig, PATROL.format(key=tag_key), tag_key, "checkpoints.0.key",
              "must be 32 hexadecimal digits", "patrol-short-tag-key"),
    ]
    return cases


@pytest.mark.parametrize(("model", "text", "secret", "field", "reason"), _cases())
def test_a_bad_secret_is_named_with_its_reason_and_never_printed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, model: type[BaseModel], text: str,
    secret: str, field: str, reason: str,
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError) as caught:
        load_config(model, path)
    message = str(caught.value)
    assert f"{field}:" in message and reason in message, message
    assert str(path) in message
    assert leaked(secret, message) is None, message
    assert leaked(secret, caplog.text) is None
    assert caught.value.__cause__ is None  # no chained pydantic text that could quote it


def test_a_bundle_with_a_bad_key_fails_to_load_without_printing_it(tmp_path: Path) -> None:
    key = hex_secret(62)
    path = tmp_path / "device.toml"
    path.write_text(BUNDLE.format(top=f'hmac_key = "{key}"', password='"pw-long-enough"',
                                  tail=""), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_bundle(path)
    assert leaked(key, str(caught.value)) is None


def test_loaded_secrets_never_show_in_a_repr_or_a_dump() -> None:
    key, password = hex_secret(64), "Pa55-" + secrets.token_urlsafe(18)
    lane = LaneConfig.model_validate({
        "site": "mall-b2", "lane": "in1", "direction": "entry",
        "camera": {"type": "simulated"}, "commands": {"hmac_key": key},
        "kiosk": {"site_key": key}, "broker": {"username": "lane-in1", "password": password}})
    for text in (repr(lane), str(lane), lane.model_dump_json(), str(lane.model_dump())):
        assert leaked(key, text) is None and leaked(password, text) is None
    assert lane.command_key() == bytes.fromhex(key)


def _parkguard(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "parkguard"
    return subprocess.run([str(script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.mark.parametrize(("command", "text"), [
    pytest.param(("lane", "--mock-pins"), LANE + '[commands]\nhmac_key = "{secret}"\n',
                 id="lane"),
    pytest.param(("gateway",), GATEWAY + '[lane_keys]\nin1 = "{secret}"\n', id="gateway"),
])
def test_the_console_script_log_names_the_field_and_not_the_key(
    tmp_path: Path, command: tuple[str, ...], text: str,
) -> None:
    """As the probe saw it: a lane started with a key two digits short."""
    secret = hex_secret(62)
    (tmp_path / "site.toml").write_text(text.format(secret=secret), encoding="utf-8")
    done = _parkguard(command[0], "-c", "site.toml", *command[1:], cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "hmac_key:" in done.stderr or "lane_keys.in1:" in done.stderr
    assert "must be at least 32 bytes" in done.stderr
    assert leaked(secret, done.stderr + done.stdout) is None, done.stderr


def _sensor_config() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pg_sensor_config", SENSOR_CONFIG)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("broken", [
    pytest.param({"kind": "smoke"}, id="unknown-kind"),
    pytest.param({"broker": {"password": "{password}", "port": 8883}}, id="broker-without-host"),
    pytest.param({"flood": None, "kind": "flood"}, id="missing-section"),
])
def test_a_sensor_node_config_error_does_not_print_its_password(
    tmp_path: Path, broken: dict[str, Any],
) -> None:
    config = _sensor_config()
    password = "Pa55-" + secrets.token_urlsafe(18)
    data: dict[str, Any] = {
        "node": "flood1", "site": "mall-b2", "kind": "flood", "flood": {"pin": 5},
        "broker": {"host": "gw", "user": "sensor-flood1", "password": password},
        "wifi": {"ssid": "site", "password": password}}
    data.update(json.loads(json.dumps(broken).replace("{password}", password)))
    if data.get("flood") is None:
        data.pop("flood")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(config.ConfigError) as caught:
        config.load(str(path))
    assert leaked(password, str(caught.value)) is None, caught.value


def test_a_bridge_password_with_a_line_break_is_refused_without_printing_it() -> None:
    password = "Pa55-" + secrets.token_urlsafe(18)
    conf = BridgeConf(site="mall-b2", address="fleet.example", port=8883,
                      cafile=Path("fleet-ca.crt"), username="bridge-mall-b2",
                      password=password + "\nconnection evil")
    with pytest.raises(ValueError, match="password must not contain a line break") as caught:
        render_bridge(conf)
    assert leaked(password, str(caught.value)) is None


def test_secret_fields_are_secret_types_everywhere() -> None:
    """Every field that holds a key, a password or a URL with a token is a SecretStr."""
    fields: list[tuple[type[BaseModel], str]] = [
        (CommandSettings, "hmac_key"), (KioskSettings, "site_key"),
        (BrokerSettings, "password"), (BundleBroker, "password"), (DeviceBundle, "hmac_key"),
        (DeviceBundle, "lane_keys"), (GatewayConfig, "lane_keys"), (Person, "contacts"),
        (AlertSettings, "owner_message_url"), (Checkpoint, "key")]
    for model, name in fields:
        annotation = str(model.model_fields[name].annotation)
        assert SecretStr.__name__ in annotation, (model.__name__, name)
