"""Device faults reach the control room as they happen, not when the next car's read fails
(issue 23).

The IP camera (a real RTSP peer: ffmpeg through the RTSP relay of
tests/test_lane_rtsp_camera.py) and the LED display (socat's pty pair and the board of
tests/test_lane_led_display.py) report their health; the lane's worker publishes each change
as a ``fault`` event, or a ``fault_cleared`` with the same code. Here a lane node on the real
Mosquitto and the real gateway, no car at all: the peer dies, the fault is in the gateway's
``events`` table; the peer comes back, so is its ``fault_cleared``; a device that keeps
failing while it retries is reported once. The kiosk's USB devices go the same way (recorded
event streams, the in-memory bus).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from firmware.lane.config import CameraSettings, DisplaySettings, JournalSettings, LaneConfig
from firmware.lane.devices.camera import Camera
from firmware.lane.devices.display import TEXTS, Display
from firmware.lane.devices.health import DeviceHealth, HealthSignal
from firmware.lane.devices.led_display import LedDisplay
from firmware.lane.devices.reader import TfliteReader
from firmware.lane.devices.scanner import UsbScanner
from firmware.lane.node import LaneNode
from parkguard.clock import ManualClock
from simulator.camera import GroundTruthReader, SimulatedCamera
from simulator.plates_render import LANE_720
from simulator.site import SimulatedSite, settings_of
from tests.conftest import SITE_START, TEST_SITE
from tests.helpers import eventually
from tests.hid_recording import RecordedDevice, UsbPort
from tests.lane_harness import MemoryLane
from tests.test_lane_led_display import Board, SerialPair
from tests.test_lane_rtsp_camera import (  # noqa: F401 - picture: a fixture
    PLATE,
    RtspPeer,
    camera_for,
    picture,
    settings,
)

pytestmark = pytest.mark.integration

WAIT_S = 60.0  # bound on waits for what must happen (they return as soon as it does)
LANE = "in9"


def test_a_signal_tells_each_change_once_and_a_late_listener_hears_a_fault_now() -> None:
    signal = HealthSignal("display /dev/ttyUSB0", "display_failed")
    early: list[DeviceHealth] = []
    late: list[DeviceHealth] = []
    signal.listen(early.append)
    signal.working()  # nothing was wrong: nothing to say
    signal.faulted("no reply from the board")
    signal.faulted("could not open port")  # still down while it retries: said once
    assert [(h.faulted, h.detail) for h in early] == [(True, "no reply from the board")]
    signal.listen(late.append)  # told at once, with what is wrong now
    assert [(h.faulted, h.detail) for h in late] == [(True, "could not open port")]
    signal.working("the board answers again")
    signal.faulted("x" * 600)
    assert [h.faulted for h in late] == [True, False, True]
    assert len(late[-1].detail) == 512 and late[-1].code == "display_failed"


@dataclass
class Site:
    gateway: SimulatedSite  # the gateway alone: no simulated lanes
    broker: MosquittoBroker
    clock: ManualClock
    workdir: Path


@pytest.fixture
def gateway_site(broker: MosquittoBroker, tmp_path: Path,
                 test_site: ProvisionResult) -> Iterator[Site]:
    clock = ManualClock(SITE_START)
    with SimulatedSite(site=TEST_SITE, broker=broker.address, workdir=tmp_path, clock=clock,
                       entry_lanes=(), exit_lanes=(),
                       lane_keys=test_site.device("gateway").lane_keys) as running:
        yield Site(running, broker, clock, tmp_path)


def lane_node(site: Site, *, camera: Camera, display: Display | None = None) -> LaneNode:
    """Lane in9 on mock pins and the real broker, with the devices under test."""
    config = LaneConfig(site=TEST_SITE, lane=LANE, direction="entry",
                        broker=settings_of(site.broker.address(f"lane-{LANE}")),
                        journal=JournalSettings(path=site.workdir / f"lane-{LANE}.db"),
                        camera=CameraSettings(type="simulated"))
    reader = (TfliteReader(region=LANE_720.region) if not isinstance(camera, SimulatedCamera)
              else GroundTruthReader())
    return LaneNode(config, clock=site.clock, camera=camera, reader=reader,
                    pin_factory=MockFactory(), display=display)


def faults_at_gateway(site: Site) -> list[dict[str, Any]]:
    """The lane's ``fault`` and ``fault_cleared`` events in the gateway's ``events`` table, in
    seq order (read from the SQLite file, read-only, beside the running gateway)."""
    db = sqlite3.connect(f"file:{site.workdir / 'gateway.db'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT payload FROM events WHERE lane = ? AND type IN ('fault', 'fault_cleared') "
            "ORDER BY seq", [LANE]).fetchall()
    finally:
        db.close()
    return [json.loads(payload) for (payload,) in rows]


def stored(site: Site) -> list[tuple[str, str]]:
    """(type, code) of :func:`faults_at_gateway`."""
    return [(event["type"], event["code"]) for event in faults_at_gateway(site)]


def all_stored(site: Site, node: LaneNode) -> None:
    """Wait until the gateway holds every event the lane emitted (so none is still coming)."""
    node.controller.wait_idle(WAIT_S)
    assert node.controller.outbox.flush(WAIT_S)
    emitted = node.controller.events_emitted
    service = site.gateway.gateway.service
    eventually(lambda: service.events_stored >= emitted, timeout=WAIT_S,
               what="every event of the lane at the gateway")
    service.wait_idle()


def test_a_dead_camera_is_a_fault_at_the_gateway_without_a_car_and_its_return_clears_it(
    gateway_site: Site, picture: Path, tmp_path: Path,  # noqa: F811 - the imported fixture
) -> None:
    peer = RtspPeer(tmp_path, picture)
    peer.start()
    camera = camera_for(settings(peer.url), gateway_site.clock)
    try:
        assert camera.wait_live(WAIT_S), f"never connected: {camera.fault}"
        with lane_node(gateway_site, camera=camera) as node:
            all_stored(gateway_site, node)
            assert stored(gateway_site) == []  # a live camera: nothing to report

            peer.kill()
            eventually(lambda: stored(gateway_site) == [("fault", "camera_offline")],
                       timeout=WAIT_S, what="the camera's fault at the gateway")
            # It keeps failing while it retries (the relay is gone: refused), said once.
            eventually(lambda: "refused" in str(camera.fault).lower(), timeout=WAIT_S,
                       what="a failed reconnect")

            peer.start()
            eventually(lambda: ("fault_cleared", "camera_offline") in stored(gateway_site),
                       timeout=WAIT_S, what="the camera back at the gateway")
            all_stored(gateway_site, node)
            assert stored(gateway_site) == [("fault", "camera_offline"),
                                            ("fault_cleared", "camera_offline")]
            assert node.controller.verdicts == 0  # no car came
            assert peer.url in faults_at_gateway(gateway_site)[0]["detail"]
    finally:
        camera.close()
        peer.kill()


def test_a_vanished_display_port_is_a_fault_at_the_gateway_and_its_return_clears_it(
    gateway_site: Site, tmp_path: Path,
) -> None:
    pair = SerialPair(tmp_path)
    pair.start()
    board = Board(pair.board)
    display = LedDisplay(DisplaySettings.model_validate(
        {"type": "led_rs485", "port": str(pair.lane), "address": 3}), retry=(0.05, 0.5))
    try:
        with lane_node(gateway_site, camera=SimulatedCamera(clock=gateway_site.clock),
                       display=display) as node:
            display.show(*TEXTS["idle"])
            assert display.wait_shown(WAIT_S) and board.showing(["欢迎光临", "Welcome", "", ""])
            board.close()
            pair.kill()  # the USB adapter pulled out
            display.show(*TEXTS["lot_full"])  # the next screen the lane shows cannot go out
            eventually(lambda: stored(gateway_site) == [("fault", "display_failed")],
                       timeout=WAIT_S, what="the display's fault at the gateway")
            eventually(lambda: "could not open port" in str(display.fault), timeout=WAIT_S,
                       what="a failed reopen")  # still down, retrying: said once

            pair.start()
            board = Board(pair.board)
            assert display.wait_shown(WAIT_S), f"never recovered: {display.fault}"
            all_stored(gateway_site, node)
            assert stored(gateway_site) == [("fault", "display_failed"),
                                            ("fault_cleared", "display_failed")]
            assert node.controller.verdicts == 0
    finally:
        display.close()
        board.close()
        pair.kill()


def test_a_kiosk_device_lost_and_back_is_a_fault_and_its_clearing(tmp_path: Path) -> None:
    port = UsbPort()  # not plugged in at start
    scanner = UsbScanner("/dev/input/by-id/usb-Scanner-event-kbd", opener=port,
                         reopen_s=0.01)
    with MemoryLane(tmp_path, lane=LANE, scanner=scanner) as lane:
        eventually(lambda: lane.faults() == ["kiosk_device_lost"], timeout=WAIT_S,
                   what="the scanner's fault")
        port.plug(RecordedDevice("USB Scanner"))
        eventually(lambda: bool(lane.events("fault_cleared")), timeout=WAIT_S,
                   what="the scanner back")
        lane.settle()
        assert lane.faults() == ["kiosk_device_lost"]  # looked for every 10 ms: said once
        cleared = lane.events("fault_cleared")
        assert [e["code"] for e in cleared] == ["kiosk_device_lost"]
        assert "USB Scanner" in cleared[0]["detail"]
