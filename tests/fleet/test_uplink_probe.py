"""``parkguard broker probe`` and the watchdog timer that restarts a hung uplink broker.

A hung Mosquitto 2.0.11 is a running process (docs/fleet.md, failure model), so systemd's
``Restart=always`` never restarts it; the probe tells it from a live one by whether a CONNECT
gets a CONNACK. Here: a provisioned uplink broker answers (exit 0, its CONNACK is "not
authorised"), the same broker hung the way ``test_uplink_isolation.py`` hangs it does not
(non-zero within the timeout), a closed port is "refused", and the unit files run the probe
on the port the inventory gives the uplink broker.
"""

from __future__ import annotations

import dataclasses
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from broker.probe import ProbeFailed, connect_packet, probe, read_connack
from broker.provision.generate import ProvisionResult, provision_site
from broker.provision.inventory import FleetSpec
from broker.runner import MosquittoBroker
from cli.probe import probe_command
from simulator.priority import unit_keys
from simulator.provisioned import simulated_inventory
from tests.fleet.conftest import FleetPki
from tests.fleet.test_uplink_isolation import (
    FIXED_IN,
    HANG_WITHIN_S,
    _dropped_silent,
    _version,
)
from tests.fleet.uplink import Uplink

REPO = Path(__file__).resolve().parents[2]
HARDWARE = REPO / "hardware"
PARKGUARD = str(Path(sys.executable).parent / "parkguard")
#: The probe's own timeout here, and what a busy 2-core machine may add to it: the hung
#: Mosquitto 2.0.11 spins a core, so beside a test run the probe may wait seconds for a CPU.
#: The bound tells "gave up at its own timeout" from "waited for something else" (a TCP
#: timeout is minutes), not a speed.
TIMEOUT_S = 2.0
SLACK_S = 10.0


def _cli(port: int, timeout_s: float = TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PARKGUARD, "broker", "probe", "--port", str(port),
                           "--timeout-s", str(timeout_s)],
                          capture_output=True, text=True, timeout=60, check=False)


def _site(tmp_path: Path, pki: FleetPki, fleet_port: int) -> ProvisionResult:
    """A provisioned site whose uplink broker dials ``fleet_port``; reconnects and the site
    broker's silence limit shortened as in tests/fleet/conftest.py (Fleet.add_site)."""
    inventory = simulated_inventory("north", entry_lanes=("in1",), exit_lanes=("out1",))
    inventory = inventory.model_copy(update={"fleet": FleetSpec(
        address="127.0.0.1", port=fleet_port, ca_file=pki.ca, kind="nats")})
    result = provision_site(inventory, tmp_path / "site")
    assert result.uplink is not None
    files = result.uplink.with_fleet(restart_base_s=1, restart_cap_s=2)
    files = dataclasses.replace(files, conf=dataclasses.replace(files.conf, site_keepalive_s=5))
    return dataclasses.replace(result, uplink=files)


def test_the_connect_packet_and_connack_parsing() -> None:
    packet = connect_packet("p", keepalive_s=10)
    assert packet == b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x0a\x00\x01p"
    assert read_connack(b"\x20\x02\x00\x05") == 5
    assert read_connack(b"\x20") is None
    with pytest.raises(ProbeFailed, match="other than a CONNACK"):
        read_connack(b"HTTP")


@pytest.mark.integration
def test_a_closed_port_is_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connecting is refused
        done = _cli(port)
    assert done.returncode != 0
    assert done.stderr.strip() == (
        f"error: 127.0.0.1:{port} refused the connection (no broker listening)")


@pytest.mark.integration
def test_a_running_uplink_broker_answers(tmp_path: Path, fleet_pki: FleetPki) -> None:
    # the fleet port refuses: the bridge retries, never meets the accept-then-close fault
    site = MosquittoBroker(tmp_path / "site-broker", site=_site(tmp_path, fleet_pki, 9)).start()
    try:
        with MosquittoBroker(tmp_path / "uplink", uplink_of=site) as uplink:
            done = _cli(uplink.port)
            answer = probe("127.0.0.1", uplink.port, TIMEOUT_S)
    finally:
        site.stop()
    assert done.returncode == 0, done.stderr
    assert "not authorised" in done.stdout  # nobody may log in there: still an answer
    assert answer.code == 5 and answer.elapsed_s < TIMEOUT_S


@pytest.mark.integration
@pytest.mark.skipif(_version() >= FIXED_IN, reason="Mosquitto >= 2.0.15: does not hang")
@pytest.mark.timeout(240)
def test_a_hung_uplink_broker_fails_the_probe_within_its_timeout(
        tmp_path: Path, fleet_pki: FleetPki) -> None:
    relay = Uplink([])
    relay.cut(fin=True)  # the fleet's balancer accepts and closes: the fault that hangs 2.0.11
    site = MosquittoBroker(tmp_path / "site-broker",
                           site=_site(tmp_path, fleet_pki, relay.port)).start()
    uplink = MosquittoBroker(tmp_path / "uplink", uplink_of=site)
    try:
        uplink.start()
        deadline = time.monotonic() + HANG_WITHIN_S
        # it may still answer for a while: the probe tells the two states apart, not time
        assert probe("127.0.0.1", uplink.port, TIMEOUT_S).code == 5
        while not _dropped_silent(site, "uplink"):  # silent for 1.5 keepalives: hung
            assert time.monotonic() < deadline, (
                f"the uplink broker met {relay.closed_with_fin} accept-then-close links and "
                "never hung")
            time.sleep(0.5)  # polling the site broker's log
        assert uplink.running, "the uplink broker died instead of hanging"
        # the kernel still completes its TCP handshake: only a CONNACK tells it is hung
        socket.create_connection(("127.0.0.1", uplink.port), timeout=TIMEOUT_S).close()
        started = time.monotonic()
        with pytest.raises(ProbeFailed, match=f"no CONNACK from 127.0.0.1:{uplink.port} in 2 s"):
            probe("127.0.0.1", uplink.port, TIMEOUT_S)
        took = time.monotonic() - started
        done = _cli(uplink.port)
    finally:
        uplink.kill()  # a spinning 2.0.11 never reaches its SIGTERM handler
        site.stop()
        relay.close()
    assert TIMEOUT_S <= took < TIMEOUT_S + SLACK_S, f"probe took {took:.2f} s"
    assert done.returncode != 0
    assert done.stderr.startswith(f"error: no CONNACK from 127.0.0.1:{uplink.port} in 2 s")




def test_the_watchdog_units_probe_the_uplink_port_and_restart_the_uplink() -> None:
    timer = unit_keys(HARDWARE / "parkguard-uplink-watchdog@.timer")
    service = unit_keys(HARDWARE / "parkguard-uplink-watchdog@.service")
    assert timer["Timer.Unit"] == ["parkguard-uplink-watchdog@%i.service"]
    assert timer["Timer.OnUnitActiveSec"] == ["30"]
    assert timer["Install.WantedBy"] == ["timers.target"]
    # the default port is the inventory's default uplink port
    env = dict(item.split("=", 1) for item in service["Service.Environment"])
    assert int(env["UPLINK_PORT"]) == FleetSpec.model_fields["uplink_port"].default
    (exec_start,) = service["Service.ExecStart"]
    shell = shlex.split(exec_start)
    assert shell[:2] == ["/bin/sh", "-c"]
    probe_part, _, restart_part = shell[2].partition(" || ")
    args = shlex.split(probe_part)
    assert args[0].endswith("/parkguard") and args[1:3] == ["broker", "probe"]
    assert args[args.index("--port") + 1] == "$UPLINK_PORT"
    # the options parse as the probe command's own, and its timeout fits in the interval
    context = probe_command.make_context(
        "probe", [arg.replace("$UPLINK_PORT", env["UPLINK_PORT"]) for arg in args[3:]])
    assert context.params["port"] == int(env["UPLINK_PORT"])
    assert context.params["timeout_s"] < int(timer["Timer.OnUnitActiveSec"][0])
    # ... and it restarts the uplink broker's own unit, which exists
    assert shlex.split(restart_part) == ["exec", "/bin/systemctl", "try-restart",
                                         "parkguard-uplink@%i.service"]
    assert (HARDWARE / "parkguard-uplink@.service").exists()
    # the same install path as the uplink broker's unit documents (/opt/parkguard venv)
    lane = unit_keys(HARDWARE / "parkguard-lane.service")
    assert lane["Service.ExecStart"][0].split()[0] == args[0]
