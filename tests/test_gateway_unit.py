"""The gateway's systemd unit (``hardware/parkguard-gateway.service``): the one an installer
copies onto the site's gateway box, which the fire bench also reads for the gateway's priority.

Read with the same parser the bench uses (:func:`simulator.priority.unit_keys`), and with
``systemd-analyze verify`` where this machine has it, so a key systemd would reject fails here.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from simulator.priority import read_unit, unit_keys

ROOT = Path(__file__).resolve().parent.parent
HARDWARE = ROOT / "hardware"
GATEWAY_UNIT = HARDWARE / "parkguard-gateway.service"


def test_the_gateway_unit_runs_the_gateway_as_the_lane_unit_runs_the_lane() -> None:
    keys = unit_keys(GATEWAY_UNIT)
    lane = unit_keys(HARDWARE / "parkguard-lane.service")
    # the same install: /opt/parkguard venv, parkguard user, state under /var/lib/parkguard
    assert keys["Service.ExecStart"] == [
        "/opt/parkguard/.venv/bin/parkguard gateway -c /etc/parkguard/gateway.toml"]
    assert keys["Service.ExecStart"][0].split()[0] == lane["Service.ExecStart"][0].split()[0]
    for key in ("Service.User", "Service.Group", "Service.WorkingDirectory",
                "Service.Restart", "Service.NoNewPrivileges", "Service.ProtectSystem",
                "Service.ProtectHome", "Service.PrivateTmp", "Install.WantedBy"):
        assert keys[key] == lane[key], key
    # the SQLite file (and its -wal) and the web session key are written there
    assert keys["Service.ReadWritePaths"] == ["/var/lib/parkguard"]
    # the site broker is on the same box: start after it, and pull it in
    assert "mosquitto.service" in keys["Unit.After"][0].split()
    assert "mosquitto.service" in keys["Unit.Wants"][0].split()
    # sd_notify like the lane: READY=1 once serving, WATCHDOG=1 while its worker goes round
    # (tests/test_gateway_watchdog.py), so a hung gateway is restarted as a dead one is
    for key in ("Service.Type", "Service.NotifyAccess", "Service.WatchdogSec"):
        assert keys[key] == lane[key], key
    assert keys["Service.Type"] == ["notify"] and keys["Service.WatchdogSec"] == ["30"]
    assert keys["Service.NotifyAccess"] == ["main"]


def test_the_gateway_runs_real_time_below_the_broker_and_the_lane() -> None:
    gateway = read_unit(GATEWAY_UNIT)
    lane = read_unit(HARDWARE / "parkguard-lane.service")
    broker = read_unit(HARDWARE / "mosquitto-parkguard.conf")
    assert (gateway.policy, gateway.realtime_priority) == ("rr", 30)
    assert gateway.realtime_priority is not None and lane.realtime_priority is not None
    assert broker.realtime_priority is not None
    # every hop crosses the broker, and a lane's fire reflex comes before the alert
    assert gateway.realtime_priority < lane.realtime_priority < broker.realtime_priority
    # not Nice= (autogroup and cgroups), and no reset on fork: the kernel would reset the
    # courier's and the web server's threads to the default policy too
    assert gateway.nice is None and not gateway.reset_on_fork
    assert gateway.not_applied == ()


def test_the_docs_install_the_gateway_unit() -> None:
    provisioning = (ROOT / "docs" / "broker-provisioning.md").read_text(encoding="utf-8")
    assert "sudo cp hardware/parkguard-gateway.service /etc/systemd/system/" in provisioning
    assert "systemctl enable --now parkguard-gateway" in provisioning
    assert "(parkguard-gateway.service)" in (HARDWARE / "README.md").read_text(encoding="utf-8")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_finds_nothing_wrong_with_the_unit_but_the_missing_venv() -> None:
    done = subprocess.run(["systemd-analyze", "verify", str(GATEWAY_UNIT)],
                          capture_output=True, text=True, timeout=60, check=False)
    problems = [line for line in (done.stdout + done.stderr).splitlines()
                if line.strip() and "/opt/parkguard/.venv/bin/parkguard" not in line]
    assert problems == [], problems
