"""Site provisioning without a broker: what ``init`` writes, what it keeps, what it refuses.

The broker's verdict on these files is in ``security/test_broker_acl.py``; here we check the
generator's own promises: idempotent re-runs, rotation of exactly what was named, file
modes, errors that name the field, hashes Mosquitto's own tool agrees with.
"""

from __future__ import annotations

import base64
import doctest
import os
import pwd
import shutil
import stat
import subprocess
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from broker.provision import (
    ProvisionResult,
    SiteInventory,
    UnknownSecretError,
    load_bundle,
    load_inventory,
    provision_site,
    rotate_secret,
    rotation_targets,
)
from broker.provision import acl as acl_module
from broker.provision import bridge as bridge_module
from broker.provision import bundle as bundle_module
from broker.provision import conf as conf_module
from broker.provision import generate as generate_module
from broker.provision import inventory as inventory_module
from broker.provision import passwords as passwords_module
from broker.provision import pki as pki_module
from broker.provision.acl import grants, render_acl, summary_table
from broker.provision.errors import ProvisionError
from broker.provision.generate import stored_run
from broker.provision.passwords import (
    hash_password,
    parse_password_file,
    password_line,
    verify_hash,
    verify_line,
)
from broker.provision.pki import certificate_names, load, new_ca
from cli.provision import COMMANDS, init_command, rotate_command
from parkguard.configfile import parse_config
from parkguard.errors import ConfigError
from wire.contract import topics

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs/examples/site-inventory.toml"
NOW = datetime(2026, 3, 1, tzinfo=UTC)

BASE: dict[str, Any] = {
    "site": "mall-b2",
    "broker": {"address": "gw.mall-b2.lan", "extra_names": ["192.168.20.2"]},
    "lanes": [{"id": "in1", "direction": "entry"}, {"id": "out1", "direction": "exit"}],
    "sensors": [{"id": "fire1", "kind": "fire_panel"}, {"id": "flood1", "kind": "flood"}],
    "patrol_readers": [{"id": "reader1"}],
    "staff": [{"id": "li-na", "name": "Li Na"}],
}


def inventory(**changes: Any) -> SiteInventory:
    return SiteInventory.model_validate({**BASE, **changes})


def snapshot(out: Path) -> dict[str, bytes]:
    """Every file under ``out`` (relative path → bytes)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def changed_files(before: dict[str, bytes], after: dict[str, bytes]) -> set[str]:
    return {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}


def passwd_lines(result: ProvisionResult) -> dict[str, str]:
    return parse_password_file(result.password_file.read_text())


@pytest.fixture
def site(tmp_path: Path) -> ProvisionResult:
    return provision_site(inventory(), tmp_path / "out", now=NOW)


# Idempotence and rotation -----------------------------------------------------------------


def test_a_rerun_keeps_every_secret_and_every_byte(site: ProvisionResult) -> None:
    before = snapshot(site.out_dir)
    again = provision_site(inventory(), site.out_dir, now=NOW + timedelta(days=30))
    assert snapshot(site.out_dir) == before
    assert again.changed == ()
    assert {d: c.password for d, c in again.devices.items()} == {
        d: c.password for d, c in site.devices.items()
    }


def test_the_first_run_reports_every_secret_it_made(site: ProvisionResult) -> None:
    assert set(site.changed) == {
        "ca", "broker-cert", "lane-in1/hmac-key", "lane-out1/hmac-key",
        *(f"{d}/password" for d in site.devices),
    }


def test_rotating_a_password_changes_that_password_only(site: ProvisionResult) -> None:
    before, lines = snapshot(site.out_dir), passwd_lines(site)
    rotated = rotate_secret(site.out_dir, "sensor-flood1/password", now=NOW)
    assert rotated.changed == ("sensor-flood1/password",)
    assert rotated.device("sensor-flood1").password != site.device("sensor-flood1").password
    new_lines = passwd_lines(rotated)
    assert {u for u in lines if lines[u] != new_lines[u]} == {"sensor-flood1"}
    assert changed_files(before, snapshot(site.out_dir)) == {
        "broker/passwd", "devices/sensor-flood1/device.toml", "state/secrets.json",
    }


def test_rotating_a_lane_changes_its_password_and_key_and_the_gateways_copy(
    site: ProvisionResult,
) -> None:
    before = snapshot(site.out_dir)
    rotated = rotate_secret(site.out_dir, "lane-in1", now=NOW)
    assert set(rotated.changed) == {"lane-in1/password", "lane-in1/hmac-key"}
    key = rotated.lane("in1").hmac_key
    assert key is not None and key != site.lane("in1").hmac_key
    assert rotated.gateway.lane_keys["in1"] == key
    assert rotated.gateway.lane_keys["out1"] == site.gateway.lane_keys["out1"]
    assert changed_files(before, snapshot(site.out_dir)) == {
        "broker/passwd", "devices/lane-in1/device.toml", "devices/gateway/device.toml",
        "state/secrets.json",
    }


def test_rotating_only_a_lanes_hmac_key_keeps_its_password(site: ProvisionResult) -> None:
    rotated = rotate_secret(site.out_dir, "lane-out1/hmac-key", now=NOW)
    assert rotated.changed == ("lane-out1/hmac-key",)
    assert rotated.lane("out1").password == site.lane("out1").password
    assert rotated.lane("out1").hmac_key != site.lane("out1").hmac_key


def test_rotating_the_broker_certificate_keeps_the_ca(site: ProvisionResult) -> None:
    ca_before = site.ca_path.read_bytes()
    cert_before = site.server_cert_path.read_bytes()
    rotated = rotate_secret(site.out_dir, "broker-cert", now=NOW)
    assert rotated.changed == ("broker-cert",)
    assert site.ca_path.read_bytes() == ca_before
    assert site.server_cert_path.read_bytes() != cert_before


def test_rotating_the_ca_reissues_the_broker_certificate_and_every_bundle_ca(
    site: ProvisionResult,
) -> None:
    old_ca = site.ca_path.read_bytes()
    rotated = rotate_secret(site.out_dir, "ca", now=NOW)
    assert set(rotated.changed) == {"ca", "broker-cert"}
    new_ca_pem = rotated.ca_path.read_bytes()
    assert new_ca_pem != old_ca
    for creds in rotated.devices.values():
        assert creds.ca_path.read_bytes() == new_ca_pem
    server = load(rotated.server_key_path, rotated.server_cert_path)
    server.cert.verify_directly_issued_by(x509.load_pem_x509_certificate(new_ca_pem))


def test_an_unknown_rotation_target_writes_nothing_and_names_the_choices(
    site: ProvisionResult,
) -> None:
    before = snapshot(site.out_dir)
    with pytest.raises(UnknownSecretError, match="choose from: ca, broker-cert") as caught:
        provision_site(inventory(), site.out_dir, rotate=["lane-in1", "lane-in9"], now=NOW)
    assert "'lane-in9'" in str(caught.value)
    assert snapshot(site.out_dir) == before


def test_rotation_targets_cover_devices_passwords_and_lane_keys() -> None:
    targets = rotation_targets(inventory())
    assert {"ca", "broker-cert", "gateway", "lane-in1/hmac-key", "staff-li-na/password"} <= set(
        targets
    )
    assert "sensor-fire1/hmac-key" not in targets
    assert "bridge" not in targets  # no [fleet]


def test_rotate_needs_a_provisioned_directory(tmp_path: Path) -> None:
    with pytest.raises(ProvisionError, match="has not been provisioned"):
        rotate_secret(tmp_path, "lane-in1")


def test_another_sites_state_is_refused(site: ProvisionResult) -> None:
    with pytest.raises(ProvisionError, match="provisioned for site 'mall-b2', not 'mall-c1'"):
        provision_site(inventory(site="mall-c1"), site.out_dir, now=NOW)


# Adding and removing devices --------------------------------------------------------------


def test_adding_a_lane_adds_only_its_secrets(site: ProvisionResult) -> None:
    lanes = [*BASE["lanes"], {"id": "in2", "direction": "entry"}]
    grown = provision_site(inventory(lanes=lanes), site.out_dir, now=NOW)
    assert set(grown.changed) == {"lane-in2/password", "lane-in2/hmac-key"}
    for device_id, creds in site.devices.items():
        assert grown.device(device_id).password == creds.password
    assert set(grown.gateway.lane_keys) == {"in1", "out1", "in2"}
    assert "user lane-in2" in grown.acl_file.read_text()
    assert "lane-in2" in passwd_lines(grown)


def test_removing_a_device_revokes_its_login_and_deletes_its_bundle(
    site: ProvisionResult,
) -> None:
    shrunk = provision_site(inventory(staff=[]), site.out_dir, now=NOW)
    assert shrunk.removed == ("staff-li-na",)
    assert "staff-li-na" not in passwd_lines(shrunk)
    assert "staff-li-na" not in shrunk.acl_file.read_text()
    assert not (site.out_dir / "devices/staff-li-na").exists()
    assert "staff-li-na" not in (site.out_dir / "state/secrets.json").read_text()


# Files and modes --------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secrets_are_0600_in_0700_directories_and_certificates_public(
    site: ProvisionResult,
) -> None:
    out = site.out_dir
    for secret in [
        "state/secrets.json", "state/ca.key", "state/inventory.json", "broker/server.key",
        "broker/passwd", "broker/acl", "broker/mosquitto.conf",
        *(f"devices/{d}/device.toml" for d in site.devices),
    ]:
        assert _mode(out / secret) == 0o600, secret
    for private_dir in ["state", "broker/data", *(f"devices/{d}" for d in site.devices)]:
        assert _mode(out / private_dir) == 0o700, private_dir
    for public in ["broker/ca.crt", "broker/server.crt", "devices/lane-in1/ca.crt"]:
        assert _mode(out / public) == 0o644, public
    assert not list(out.rglob(".*.tmp")), "temporary files left behind"


def test_a_loosened_mode_is_tightened_on_the_next_run(site: ProvisionResult) -> None:
    site.password_file.chmod(0o644)
    provision_site(inventory(), site.out_dir, now=NOW)
    assert _mode(site.password_file) == 0o600


def test_the_ca_key_never_leaves_the_state_directory(site: ProvisionResult) -> None:
    ca_key = (site.out_dir / "state/ca.key").read_bytes()
    for path in site.out_dir.rglob("*"):
        if path.is_file() and "state" not in path.relative_to(site.out_dir).parts:
            assert ca_key not in path.read_bytes(), path


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can hand files to another user")
def test_broker_files_are_handed_to_the_broker_user(tmp_path: Path) -> None:
    try:
        user = pwd.getpwnam("mosquitto")
    except KeyError:
        pytest.skip("no mosquitto user on this host")
    result = provision_site(inventory(), tmp_path / "out", broker_user="mosquitto", now=NOW)
    for path in [result.password_file, result.acl_file, result.server_key_path, result.data_dir]:
        assert path.stat().st_uid == user.pw_uid, path
    assert (tmp_path / "out/state/ca.key").stat().st_uid == 0
    assert "\nuser mosquitto\n" in result.conf_path.read_text()
    # rotate remembers the broker user
    rotate_secret(tmp_path / "out", "gateway/password", now=NOW)
    assert result.password_file.stat().st_uid == user.pw_uid


def test_an_unknown_broker_user_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProvisionError, match="does not exist"):
        provision_site(inventory(), tmp_path, broker_user="no-such-user-pg", now=NOW)


# Passwords --------------------------------------------------------------------------------


def test_every_device_password_verifies_against_its_password_file_line(
    site: ProvisionResult,
) -> None:
    lines = passwd_lines(site)
    assert set(lines) == set(site.devices)
    for device_id, creds in site.devices.items():
        assert lines[device_id].startswith("$7$101$")
        assert verify_hash(lines[device_id], creds.password)
        assert not verify_hash(lines[device_id], creds.password + "x")


def test_passwords_are_long_random_and_distinct(site: ProvisionResult) -> None:
    passwords = [c.password for c in site.devices.values()]
    assert len(set(passwords)) == len(passwords)
    assert all(len(p) >= 32 for p in passwords)


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd missing")
def test_hashes_agree_with_mosquitto_passwd(tmp_path: Path) -> None:
    """Mosquitto's own tool and ours produce lines each side verifies the same way."""
    path = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), "lane-in1", "s3cret pw"],
                   check=True, capture_output=True)
    theirs = path.read_text().strip()
    ours = password_line("lane-in1", "s3cret pw")
    assert verify_line(theirs, "s3cret pw") and not verify_line(theirs, "s3cret")
    assert theirs.split("$")[:3] == ours.split("$")[:3] == ["lane-in1:", "7", "101"]
    assert [len(part) for part in theirs.split("$")[3:]] == [len(p) for p in ours.split("$")[3:]]


def test_a_known_hash_is_reproduced_exactly() -> None:
    # A line mosquitto_passwd 2.0.11 wrote for user alice, password "secret".
    known = ("$7$101$uVH2f5b6b0/T/Lze$X8fJArQF8vw9W+w7SdOnPqBXQReoFzi4Zjuu+Usle26kySmOL2S72"
             "qPIihyoTodUFELfZM6wyRuWUVlIp6RqmQ==")
    assert hash_password("secret", salt=base64.b64decode("uVH2f5b6b0/T/Lze")) == known
    assert not verify_hash("$6$salt$hash", "secret")
    assert not verify_hash("$7$x$!!$!!", "secret")


def test_a_user_name_cannot_break_the_password_file() -> None:
    with pytest.raises(ValueError, match="cannot go into"):
        password_line("evil:user", "pw")


# Certificates -----------------------------------------------------------------------------


def test_the_broker_certificate_names_every_address_and_chains_to_the_site_ca(
    site: ProvisionResult,
) -> None:
    server = load(site.server_key_path, site.server_cert_path)
    assert certificate_names(server.cert) == {
        "gw.mall-b2.lan", "192.168.20.2", "localhost", "127.0.0.1", "::1",
    }
    ca = x509.load_pem_x509_certificate(site.ca_path.read_bytes())
    server.cert.verify_directly_issued_by(ca)
    eku = server.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    assert server.cert.not_valid_after_utc - NOW > timedelta(days=365)


def test_a_new_broker_address_reissues_only_the_certificate(site: ProvisionResult) -> None:
    before = snapshot(site.out_dir)
    moved = provision_site(
        inventory(broker={"address": "broker.mall-b2.lan"}), site.out_dir, now=NOW
    )
    assert moved.changed == ("broker-cert",)
    server = load(moved.server_key_path, moved.server_cert_path)
    assert "broker.mall-b2.lan" in certificate_names(server.cert)
    changed = changed_files(before, snapshot(site.out_dir))
    assert "broker/ca.crt" not in changed and "broker/passwd" not in changed
    assert load_bundle(moved.lane("in1").config_path).broker.host == "broker.mall-b2.lan"


def test_a_certificate_close_to_expiry_is_renewed(site: ProvisionResult) -> None:
    later = NOW + timedelta(days=800)  # 825-day certificate, renewed 60 days before the end
    renewed = provision_site(inventory(), site.out_dir, now=later)
    assert renewed.changed == ("broker-cert",)
    server = load(renewed.server_key_path, renewed.server_cert_path)
    assert server.cert.not_valid_after_utc > later + timedelta(days=365)


# Bundles ----------------------------------------------------------------------------------


def test_a_lane_bundle_holds_what_the_lane_needs(site: ProvisionResult) -> None:
    creds = site.lane("in1")
    bundle = load_bundle(creds.config_path)
    assert (bundle.site, bundle.device, bundle.kind, bundle.node) == (
        "mall-b2", "lane-in1", "lane", "in1"
    )
    assert (bundle.broker.host, bundle.broker.port) == ("gw.mall-b2.lan", 8883)
    assert bundle.broker.username == bundle.broker.client_id == "lane-in1"
    assert bundle.broker.password.get_secret_value() == creds.password
    assert bundle.broker.ca_file == creds.ca_path
    assert bundle.broker.ca_file.read_bytes() == site.ca_path.read_bytes()
    assert bundle.hmac_key_bytes() == creds.hmac_key
    assert creds.hmac_key is not None and len(creds.hmac_key) == 32
    assert bundle.lane_keys == {}


def test_only_the_gateway_bundle_carries_every_lane_key(site: ProvisionResult) -> None:
    gateway = load_bundle(site.gateway.config_path)
    assert {lane: bytes.fromhex(k.get_secret_value())
            for lane, k in gateway.lane_keys.items()} == {
        "in1": site.lane("in1").hmac_key, "out1": site.lane("out1").hmac_key,
    }
    for device_id in ("sensor-fire1", "patrol-reader1", "staff-li-na"):
        bundle = load_bundle(site.device(device_id).config_path)
        assert bundle.hmac_key is None and bundle.lane_keys == {}


def test_unknown_devices_are_named_with_the_ones_that_exist(site: ProvisionResult) -> None:
    with pytest.raises(UnknownSecretError, match="no device 'lane-in9'; it has gateway"):
        site.lane("in9")


# Inventory errors -------------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """\
site = "mall-b2"
[broker]
address = "gw.mall-b2.lan"
[[lanes]]
id = "in1"
direction = "entry"
"""


@pytest.mark.parametrize(("extra", "field", "reason"), [
    ('[[lanes]]\nid = "in1"\ndirection = "exit"\n', "lanes:", "lanes[1].id 'in1' is already "
     "used by lanes[0]"),
    ('[[lanes]]\nid = "In 2"\ndirection = "exit"\n', "lanes.1.id:", "not a valid topic segment"),
    ('[[lanes]]\nid = "in2"\ndirection = "sideways"\n', "lanes.1.direction:", "'entry' or 'exit'"),
    ('[[lanes]]\nid = "in2"\ndirection = "exit"\ncolour = "red"\n', "lanes.1.colour:",
     "Extra inputs are not permitted"),
    ('[[sensors]]\nid = "s1"\nkind = "smoke"\n', "sensors.0.kind:", "'fire_panel' or 'flood'"),
    ('[[sensors]]\nid = "s1"\nkind = "flood"\n[[sensors]]\nid = "s1"\nkind = "fire_panel"\n',
     "sensors:", "sensors[1].id 's1' is already used by sensors[0]"),
    ('[[patrol_readers]]\nid = "r/1"\n', "patrol_readers.0.id:", "not a valid topic segment"),
    ('[[staff]]\nid = "li"\n', "staff.0.name:", "Field required"),
    ('[[staff]]\nid = "li"\nname = "Li"\n[[staff]]\nid = "li"\nname = "Li 2"\n', "staff:",
     "staff[1].id 'li' is already used by staff[0]"),
    ('[fleet]\naddress = "fleet.example.net"\n', "fleet.ca_file:", "Field required"),
])
def test_inventory_errors_name_the_file_the_field_and_the_reason(
    tmp_path: Path, extra: str, field: str, reason: str
) -> None:
    path = _write(tmp_path, GOOD + extra)
    with pytest.raises(ConfigError) as caught:
        load_inventory(path)
    message = str(caught.value)
    assert str(path) in message
    assert field in message
    assert reason in message


@pytest.mark.parametrize(("data", "field", "reason"), [
    ({"site": "Mall B2"}, "site:", "not a valid topic segment"),
    ({"lanes": []}, "lanes:", "at least 1 item"),
    ({"broker": {"address": "gw_bad!"}}, "broker.address:", "neither an IP address"),
    ({"broker": {"address": "gw", "port": 8883, "local_port": 8883}}, "broker:",
     "broker.local_port 8883 is also broker.port"),
    ({"broker": {"address": "gw", "max_packet_size": 10}}, "broker.max_packet_size:",
     "greater than or equal to 1024"),
    ({"gateway": {"id": "gw2"}}, "gateway.id:", "Extra inputs are not permitted"),
])
def test_inventory_values_are_checked(tmp_path: Path, data: dict[str, Any], field: str,
                                      reason: str) -> None:
    merged = {**tomllib.loads(GOOD), **data}
    with pytest.raises(ConfigError) as caught:
        parse_config(SiteInventory, merged, source="site.toml")
    assert field in str(caught.value) and reason in str(caught.value)


def test_a_relative_fleet_ca_is_relative_to_the_inventory(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD + '[fleet]\naddress = "fleet.example.net"\nca_file = "f.crt"\n')
    loaded = load_inventory(path)
    assert loaded.fleet is not None and loaded.fleet.ca_file == (tmp_path / "f.crt").resolve()


def test_a_missing_fleet_ca_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD + '[fleet]\naddress = "fleet.example.net"\nca_file = "f.crt"\n')
    with pytest.raises(ConfigError, match=r"fleet.ca_file: .*f.crt does not exist"):
        provision_site(load_inventory(path), tmp_path / "out", now=NOW)


def test_a_lane_and_a_sensor_may_share_an_id(tmp_path: Path) -> None:
    shared = inventory(sensors=[{"id": "in1", "kind": "flood"}])
    result = provision_site(shared, tmp_path, now=NOW)
    assert {"lane-in1", "sensor-in1"} <= set(result.devices)


# ACLs -------------------------------------------------------------------------------------


def test_acl_topics_are_the_contracts_topics() -> None:
    inv = inventory()
    lane = next(d for d in inv.devices() if d.device_id == "lane-in1")
    written = {g.topic for g in grants(lane, inv) if g.access == "write"}
    assert written == {
        topics.lane_event("mall-b2", "in1"), topics.lane_state("mall-b2", "in1"),
        topics.lane_decide("mall-b2", "in1"), topics.lane_otp("mall-b2", "in1"),
        topics.lane_evidence_reply("mall-b2", "in1"),
    }
    read = {g.topic for g in grants(lane, inv) if g.access == "read"}
    assert topics.lane_evidence_get("mall-b2", "in1") in read
    assert topics.lane_cmd("mall-b2", "in1") in read
    assert topics.lane_decide_reply("mall-b2", "in1") in read
    assert topics.lane_otp_reply("mall-b2", "in1") in read
    assert topics.all_alarms("mall-b2") in read


def test_only_fire_panel_nodes_may_write_the_fire_alarm() -> None:
    inv = inventory()
    by_id = {d.device_id: d for d in inv.devices()}
    fire_alarm = topics.alarm("mall-b2", "fire")
    writers = {
        device_id for device_id, device in by_id.items()
        if any(g.access == "write" and g.topic == fire_alarm for g in grants(device, inv))
    }
    assert writers == {"gateway", "sensor-fire1"}


def test_a_monitor_may_read_everything_and_write_nothing(tmp_path: Path) -> None:
    inv = inventory(monitors=[{"id": "control-room", "name": "wall screen"}])
    monitor = next(d for d in inv.devices() if d.kind == "monitor")
    assert monitor.device_id == "monitor-control-room"
    assert [(g.access, g.topic) for g in grants(monitor, inv)] == [
        ("read", "parkguard/v1/mall-b2/#"),
        ("read", "homeassistant/+/parkguard_mall_b2/#"),  # Home Assistant logs in as one
    ]


def test_the_acl_file_has_one_block_per_device_and_no_patterns() -> None:
    text = render_acl(inventory())
    users = [line.split()[1] for line in text.splitlines() if line.startswith("user ")]
    assert users == [d.device_id for d in inventory().devices()]
    assert "pattern" not in [line.split()[0] for line in text.splitlines() if line.strip()]
    assert "%u" not in text and "%c" not in text


def test_the_docs_acl_table_is_current() -> None:
    doc = (ROOT / "docs/broker-provisioning.md").read_text(encoding="utf-8")
    embedded = doc.split("<!-- acl-table:start -->\n")[1].split("<!-- acl-table:end -->")[0]
    assert embedded == summary_table(), "regenerate with broker.provision.acl.summary_table()"


# Config and bridge ------------------------------------------------------------------------


def test_the_broker_config_is_locked_down(site: ProvisionResult) -> None:
    lines = site.conf_path.read_text().splitlines()
    directives = {line.split()[0]: line.split(maxsplit=1)[1] for line in lines
                  if line and not line.startswith("#")}
    assert directives["allow_anonymous"] == "false"
    assert directives["per_listener_settings"] == "false"
    assert directives["password_file"] == str(site.password_file)
    assert directives["acl_file"] == str(site.acl_file)
    assert directives["persistence"] == "true"
    assert directives["require_certificate"] == "false"
    assert directives["use_username_as_clientid"] == "true"
    assert directives["set_tcp_nodelay"] == "true"
    assert [line for line in lines if line.startswith("listener ")] == ["listener 8883"]
    assert "user" not in directives and "connection" not in directives


def test_the_local_plain_listener_is_loopback_only_and_off_by_default(tmp_path: Path) -> None:
    result = provision_site(inventory(broker={"address": "gw", "local_port": 1884}), tmp_path,
                            now=NOW)
    listeners = [line for line in result.conf_path.read_text().splitlines()
                 if line.startswith("listener ")]
    assert listeners == ["listener 8883", "listener 1884 127.0.0.1"]


def test_a_value_with_a_line_break_cannot_inject_a_directive(site: ProvisionResult) -> None:
    with pytest.raises(ValueError, match="line break"):
        site.render_conf(run_as_user="root\nallow_anonymous true")


def _with_fleet(tmp_path: Path) -> ProvisionResult:
    fleet_ca = tmp_path / "fleet-ca.crt"
    fleet_ca.write_bytes(new_ca("fleet", now=NOW).cert_pem())
    inv = inventory(fleet={"address": "fleet.example.net", "ca_file": str(fleet_ca)})
    return provision_site(inv, tmp_path / "out", now=NOW)


def test_the_bridge_forwards_the_site_tree_and_brings_commands_back(tmp_path: Path) -> None:
    """The uplink broker carries it; the site broker never bridges (docs/fleet.md)."""
    result = _with_fleet(tmp_path)
    assert result.uplink is not None
    conf = result.uplink.conf_path.read_text()
    assert "connection parkguard-mall-b2\n" in conf
    assert "address fleet.example.net:8883\n" in conf
    assert f"bridge_cafile {result.uplink.directory / 'fleet-ca.crt'}\n" in conf
    assert "topic parkguard/v1/mall-b2/# out 1\n" in conf
    assert "topic parkguard/v1/mall-b2/lane/+/cmd in 1\n" in conf
    assert "cleansession false\n" in conf and "bridge_protocol_version mqttv311\n" in conf
    assert result.bridge is not None
    assert f"remote_password {result.bridge.password}\n" in conf
    assert _mode(result.uplink.conf_path) == 0o600
    # The other bridge: the site broker's loopback listener, plain, as user uplink.
    assert "connection parkguard-mall-b2-site\naddress 127.0.0.1:1884\n" in conf
    assert "topic parkguard/v1/mall-b2/# in 1\n" in conf
    assert "remote_username uplink\n" in conf
    # The watchdog probes the uplink's own port (hardware/parkguard-uplink-watchdog@.service).
    watchdog = (result.uplink.directory / "watchdog.env").read_text()
    assert f"UPLINK_PORT={result.uplink.conf.port}\n" in watchdog
    site_conf = result.conf_path.read_text()
    directives = [line.split()[0] for line in site_conf.splitlines()
                  if line and not line.startswith("#")]
    assert "connection" not in directives and not any(d.startswith("bridge") for d in directives)
    assert "listener 1884 127.0.0.1\n" in site_conf
    assert "uplink" in passwd_lines(result)
    acl = result.acl_file.read_text().split("user uplink\n")[1]
    assert [line for line in acl.splitlines() if line.startswith("topic")] == [
        "topic read parkguard/v1/mall-b2/#",
        "topic write parkguard/v1/mall-b2/lane/+/cmd",
        "topic write parkguard/v1/mall-b2/fleet/command/+",
    ]


def test_the_fleet_gets_a_user_line_and_an_acl_block_for_the_bridge(tmp_path: Path) -> None:
    result = _with_fleet(tmp_path)
    bridge = result.bridge
    assert bridge is not None and bridge.username == "bridge-mall-b2"
    assert verify_line(bridge.fleet_password_line.read_text(), bridge.password)
    assert _mode(bridge.fleet_password_line) == 0o600
    block = bridge.fleet_acl_block.read_text()
    assert "user bridge-mall-b2\n" in block
    assert "topic write parkguard/v1/mall-b2/#\n" in block
    assert "topic read parkguard/v1/mall-b2/lane/+/cmd\n" in block
    assert "bridge-mall-b2" not in passwd_lines(result)  # not a user of the site broker
    stored = stored_run(result.out_dir)
    assert stored is not None and "bridge" in rotation_targets(stored.inventory)


def test_rotating_the_bridge_changes_its_password_only(tmp_path: Path) -> None:
    result = _with_fleet(tmp_path)
    assert result.bridge is not None
    rotated = rotate_secret(result.out_dir, "bridge", now=NOW)
    assert rotated.changed == ("bridge-mall-b2/password",)
    assert rotated.bridge is not None and rotated.bridge.password != result.bridge.password


def test_dropping_the_fleet_section_revokes_the_bridge(tmp_path: Path) -> None:
    result = _with_fleet(tmp_path)
    assert result.bridge is not None
    alone = provision_site(inventory(), result.out_dir, now=NOW)
    assert alone.bridge is None and alone.removed == ("bridge-mall-b2", "uplink")
    assert alone.uplink is None and not (result.out_dir / "uplink").exists()
    assert "uplink" not in passwd_lines(alone) and "user uplink" not in alone.acl_file.read_text()
    assert not list((result.out_dir / "fleet").iterdir())


# The example and the CLI ------------------------------------------------------------------


def test_the_example_inventory_provisions_a_realistic_site(tmp_path: Path) -> None:
    inv = load_inventory(EXAMPLE)
    lanes = {lane.id: lane.direction for lane in inv.lanes}
    assert sorted(lanes.values()) == ["entry", "entry", "exit", "exit"]
    assert sorted(s.kind for s in inv.sensors) == ["fire_panel", "flood"]
    assert len(inv.patrol_readers) == 2 and len(inv.staff) == 2 and len(inv.monitors) == 1
    result = provision_site(inv, tmp_path, now=NOW)
    assert len(result.devices) == 1 + 4 + 2 + 2 + 2 + 1


def test_cli_init_then_rerun_then_rotate(tmp_path: Path) -> None:
    out = tmp_path / "out"
    runner = CliRunner()
    first = runner.invoke(init_command, ["--site", str(EXAMPLE), "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert "12 devices provisioned" in first.output
    assert "lane-in1/hmac-key" in first.output
    again = runner.invoke(init_command, ["--site", str(EXAMPLE), "--out", str(out)])
    assert again.exit_code == 0 and "no secret changed" in again.output
    rotated = runner.invoke(rotate_command, ["--out", str(out), "staff-li-na/password"])
    assert rotated.exit_code == 0, rotated.output
    assert "new or rotated: staff-li-na/password\n" in rotated.output


def test_cli_rotate_all_lane_keys(tmp_path: Path) -> None:
    runner = CliRunner()
    runner.invoke(init_command, ["--site", str(EXAMPLE), "--out", str(tmp_path)])
    result = runner.invoke(rotate_command, ["--out", str(tmp_path), "--all-lane-keys"])
    assert result.exit_code == 0, result.output
    for lane in ("in1", "in2", "out1", "out2"):
        assert f"lane-{lane}/hmac-key" in result.output
    assert "password" not in result.output.split("new or rotated:")[1].splitlines()[0]


def test_cli_rotate_without_a_name_is_a_usage_error(tmp_path: Path) -> None:
    runner = CliRunner()
    runner.invoke(init_command, ["--site", str(EXAMPLE), "--out", str(tmp_path)])
    result = runner.invoke(rotate_command, ["--out", str(tmp_path)])
    assert result.exit_code == 2 and "name a SECRET" in result.output


def test_cli_init_reports_inventory_errors_as_config_errors(tmp_path: Path) -> None:
    bad = _write(tmp_path, GOOD.replace('"in1"', '"IN1"'))
    result = CliRunner().invoke(init_command, ["--site", str(bad), "--out", str(tmp_path / "o")])
    assert isinstance(result.exception, ConfigError)
    assert "lanes.0.id" in str(result.exception)


@pytest.mark.parametrize("module", [
    acl_module, bridge_module, bundle_module, conf_module, generate_module, inventory_module,
    passwords_module, pki_module,
])
def test_the_docstring_examples_run(module: ModuleType) -> None:
    outcome = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert outcome.failed == 0


def test_the_commands_are_ready_to_mount_under_parkguard_broker() -> None:
    assert [command.name for command in COMMANDS] == ["init", "rotate"]
