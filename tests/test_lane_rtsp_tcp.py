"""The lane's IP camera with its default transport, RTP over the RTSP TCP connection, against
a real RTSP server on this machine.

test_lane_rtsp_camera.py's peer (ffmpeg through Debian's RTSP::Server) speaks RTP over UDP
only, and a camera's default (``transport = "tcp"``, RTP interleaved in the RTSP connection) is
what most lanes will run. The peer here is GStreamer's RTSP server (``tests/rtsp_tcp_peer.py``,
run by the system Python with Debian's ``gir1.2-gst-rtsp-server-1.0``): it serves the same
rendered gate scene, encoded by ffmpeg with the same settings as the other test's stream, as
an MP4 clip, and it asks for a login by HTTP Digest as cameras do. Its lower transports are
restricted to TCP, so a plate read through it went over TCP, and a camera set to ``udp`` is
refused (``461 Unsupported transport``, which FFmpeg reports as "Protocol not supported"). The
same server offering UDP as well serves the ``udp`` camera: the refusal is the transport.

Skipped only when the system Python cannot load GStreamer's RTSP server (``make system-deps``
installs it, and CI runs that).
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from firmware.lane.config import CameraSettings
from firmware.lane.devices.health import DeviceHealth
from firmware.lane.devices.reader import TfliteReader
from firmware.lane.devices.rtsp import CameraOffline
from parkguard.clock import ManualClock
from simulator.plates_render import LANE_720
from tests.conftest import SITE_START
from tests.lane_harness import MemoryLane
from tests.test_lane_rtsp_camera import (
    H264,
    PASSWORD,
    PLATE,
    camera_for,
    drive_car,
    free_port,
    render_scene,
    survives_a_peer_restart,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / "tests" / "rtsp_tcp_peer.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's python3-gi: the venv has no GStreamer bindings
USER = "lane"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two minutes of the gate scene as H.264 in MP4: three seconds encoded as the other test
    encodes its stream, then repeated by copying (encoding two minutes would cost the busy
    test machine half a minute). Each connection plays the clip from its start."""
    check = subprocess.run([SYSTEM_PYTHON, str(PEER), "--check"], capture_output=True,
                           text=True, timeout=60, check=False) if os.path.exists(
                               SYSTEM_PYTHON) else None
    if check is None or check.returncode != 0:
        why = "no /usr/bin/python3" if check is None else check.stderr.strip()
        pytest.skip(f"GStreamer's RTSP server is missing ({why}): run `make system-deps`")
    workdir = tmp_path_factory.mktemp("clip")
    picture = render_scene(workdir)
    short, long = workdir / "short.mp4", workdir / "lane.mp4"
    for command in (
        ["-loop", "1", "-framerate", "10", "-i", str(picture), "-t", "3", *H264, str(short)],
        ["-stream_loop", "39", "-i", str(short), "-c", "copy", str(long)],
    ):
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *command],
                       check=True, timeout=120, stdin=subprocess.DEVNULL)
    return long


class TcpPeer:
    """GStreamer's RTSP server serving the clip at ``/lane`` behind a Digest login; it can be
    killed and started again on the same port."""

    def __init__(self, workdir: Path, clip: Path, protocols: str = "tcp",
                 basic: bool = False) -> None:
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/lane"
        self.log = workdir / f"gst-peer-{self.port}.log"
        self._command = [SYSTEM_PYTHON, str(PEER), str(self.port), str(clip),
                         "--protocols", protocols, "--user", USER, *(["--basic"] * basic)]
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.write_text("", encoding="utf-8")
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                self._command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PEER_PASSWORD": PASSWORD})
        deadline = time.monotonic() + 30
        while f"listening {self.port}" not in self.log.read_text(encoding="utf-8"):
            assert self._process.poll() is None, f"the peer died: {self.log.read_text()}"
            assert time.monotonic() < deadline, "the RTSP server never listened"
            time.sleep(0.05)

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None


def peer_for(tmp_path: Path, clip: Path, protocols: str = "tcp",
             basic: bool = False) -> Iterator[TcpPeer]:
    """A running peer for the length of one ``for`` (a fixture's ``yield from`` or a test's
    loop), killed after it."""
    running = TcpPeer(tmp_path, clip, protocols, basic)
    running.start()
    try:
        yield running
    finally:
        running.kill()


@pytest.fixture
def tcp_only(tmp_path: Path, clip: Path) -> Iterator[TcpPeer]:
    yield from peer_for(tmp_path, clip)


def camera_settings(url: str, password: str = PASSWORD, **fields: object) -> CameraSettings:
    """The lane's camera section as an installer writes it: no ``transport`` unless given."""
    return CameraSettings.model_validate({
        "type": "rtsp", "url": url, "username": USER, "password": SecretStr(password),
        "timeout_s": 5, "plate_region": LANE_720.region, **fields})


class Heard:
    """The camera's health changes as the lane hears them (on the camera's thread)."""

    def __init__(self) -> None:
        self.changes: list[DeviceHealth] = []
        self.fault = threading.Event()

    def __call__(self, change: DeviceHealth) -> None:
        self.changes.append(change)
        if change.faulted:
            self.fault.set()


def test_the_default_transport_reads_the_plate_over_tcp_and_reconnects_when_the_camera_is_back(
    tcp_only: TcpPeer, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    config = camera_settings(tcp_only.url)
    assert config.transport == "tcp"  # the default an installer gets
    clock = ManualClock(SITE_START)
    camera = camera_for(config, clock)
    reader = TfliteReader(region=config.plate_region)
    try:
        assert camera.wait_live(30), f"never connected: {camera.fault}"
        with MemoryLane(tmp_path, clock=clock, camera=camera, reader=reader) as lane:
            drive_car(lane)
            first = lane.events("plate_read")[-1]
            assert first["plate"] == PLATE and first["reader"] == "tflite"

            survives_a_peer_restart(lane, camera, tcp_only)  # its TCP connection closes
    finally:
        camera.close()
    assert PASSWORD not in caplog.text and "pa%3Ass" not in caplog.text


def test_a_tcp_only_camera_refuses_the_udp_transport_and_serves_tcp(
    tcp_only: TcpPeer, tmp_path: Path,
) -> None:
    clock = ManualClock(SITE_START)
    over_udp = camera_for(camera_settings(tcp_only.url, transport="udp"), clock)
    heard = Heard()
    over_udp.when_health(heard)
    try:
        # the first attempt's end: the lane hears the fault (still connecting is none)
        assert heard.fault.wait(30), f"the udp camera never failed: {over_udp.fault}"
        refused = heard.changes[0]
        assert refused.faulted and refused.code == "camera_offline"
        assert "protocol not supported" in refused.detail.lower(), refused.detail
        assert 'refused transport = "udp": try "tcp"' in refused.detail  # the installer's hint
        with pytest.raises(CameraOffline, match=r"(?i)protocol not supported"):
            over_udp.capture()

        over_tcp = camera_for(camera_settings(tcp_only.url), clock)
        try:
            assert over_tcp.wait_live(30), f"tcp never connected: {over_tcp.fault}"
            with MemoryLane(tmp_path, clock=clock, camera=over_tcp,
                            reader=TfliteReader(region=LANE_720.region)) as lane:
                drive_car(lane)
                assert lane.events("plate_read")[-1]["plate"] == PLATE
        finally:
            over_tcp.close()
        # while the tcp camera read the stream the udp one retried and never had a frame
        assert over_udp.arrivals == 0 and over_udp.connects == 0
        assert "protocol not supported" in str(over_udp.fault).lower()
        assert [change.faulted for change in heard.changes] == [True]
    finally:
        over_udp.close()
    assert PASSWORD not in refused.detail and "pa%3Ass" not in refused.detail


def test_the_same_server_offering_udp_too_serves_the_udp_camera(
    tmp_path: Path, clip: Path,
) -> None:
    """The control: the refusal above is the TCP-only flag, not a peer that cannot do UDP."""
    for peer in peer_for(tmp_path, clip, protocols="all"):
        camera = camera_for(camera_settings(peer.url, transport="udp"), ManualClock(SITE_START))
        try:
            assert camera.wait_live(30), f"udp never connected: {camera.fault}"
        finally:
            camera.close()


@pytest.mark.parametrize("basic", [False, True], ids=["digest", "basic"])
def test_a_wrong_password_is_refused_by_the_camera_and_never_shown(
    tmp_path: Path, clip: Path, basic: bool,
) -> None:
    """The login meets a real server both ways cameras ask for it: the right password (with
    the characters a URL must escape) is let in, a wrong one gets 401."""
    for peer in peer_for(tmp_path, clip, basic=basic):
        good = camera_for(camera_settings(peer.url), ManualClock(SITE_START))
        try:
            assert good.wait_live(30), f"the right password was refused: {good.fault}"
        finally:
            good.close()
        wrong = PASSWORD[::-1]
        bad = camera_for(camera_settings(peer.url, password=wrong), ManualClock(SITE_START))
        heard = Heard()
        bad.when_health(heard)
        try:
            assert heard.fault.wait(30), f"the wrong password never failed: {bad.fault}"
        finally:
            bad.close()
        detail = heard.changes[0].detail
        assert "401" in detail and "unauthorized" in detail.lower(), detail
        assert wrong not in detail and PASSWORD not in detail
