"""The lane's IP camera against a real RTSP peer on this machine.

The peer: ``ffmpeg`` encodes a rendered gate-camera scene (``simulator.plates_render``, the
lane camera's 1280 x 720 with the plate where the lane's plate region looks) as H.264 at
10 frames a second, 2 Mbit/s (an IP camera's sub-stream), and publishes it to Debian's
``RTSP::Server`` (librtsp-server-perl), which serves it to the lane as a camera would
(``DESCRIBE``/``SETUP``/``PLAY``). ffmpeg alone cannot serve a stream to a client (its RTSP
muxer only publishes; ``-rtsp_flags listen`` receives), so it publishes and the relay serves.
The relay speaks RTP over UDP only, so these tests use ``transport = "udp"``; the default, RTP
over the RTSP TCP connection, is tested against GStreamer's RTSP server in
test_lane_rtsp_tcp.py (which reuses this file's scene and encoder settings).

The lane reads the plate from the stream with the real TFLite reader; killing the peer faults
the camera (the car that arrives meanwhile is reported as ``fault read_failed``); the peer
back, the camera reconnects by itself and the next car is read again.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import pytest
from click.testing import CliRunner
from pydantic import SecretStr, ValidationError

from firmware.lane.config import CameraSettings
from firmware.lane.devices.reader import TfliteReader
from firmware.lane.devices.rtsp import CameraOffline, RtspCamera, RtspSource
from firmware.lane.selftest import selftest
from parkguard.clock import ManualClock
from simulator.plates_render import LANE_720, RenderingCamera
from tests.conftest import SITE_START
from tests.helpers import eventually
from tests.lane_harness import MemoryLane

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
PLATE = "粤B12345"


def _lane_region() -> tuple[int, int, int, int]:
    region = LANE_720.region  # the lane camera's plate region, where the scene puts the plate
    assert region is not None
    return region


REGION = _lane_region()
PASSWORD = "pa:ss/w@rd-9"  # characters a URL must escape, so the scrubbing is tested too

RELAY = """\
use AnyEvent; use RTSP::Server;
my ($clients, $sources, $rtp) = @ARGV;
$RTSP::Server::RTP_START_PORT = $rtp;  # its housekeeping resets the RTP ports to this
my $server = RTSP::Server->new(
    log_level => 1, client_listen_port => $clients, source_listen_port => $sources,
    rtp_start_port => $rtp, client_listen_address => '127.0.0.1',
    source_listen_address => '127.0.0.1');
$server->listen or die "cannot listen";
AnyEvent->condvar->recv;
"""


#: ffmpeg's encoding of the scene: an IP camera's sub-stream (test_lane_rtsp_tcp.py uses it too)
H264 = ("-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "10",
        "-b:v", "2M", "-maxrate", "2M", "-bufsize", "400k", "-pix_fmt", "yuv420p")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RtspPeer:
    """ffmpeg publishing one picture as a 10 fps H.264 stream through the RTSP relay; it can
    be killed and started again on the same ports."""

    def __init__(self, workdir: Path, picture: Path) -> None:
        for tool in ("ffmpeg", "perl"):
            assert shutil.which(tool), f"{tool} is missing: run `make system-deps`"
        self.script = workdir / "relay.pl"
        self.script.write_text(RELAY, encoding="utf-8")
        self.picture = picture
        self.clients, self.sources = free_port(), free_port()
        self.rtp = free_port(socket.SOCK_DGRAM)
        self.url = f"rtsp://127.0.0.1:{self.clients}/lane"
        self.log = workdir / "peer.log"
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        with self.log.open("ab") as log:
            relay = subprocess.Popen(
                ["perl", str(self.script), str(self.clients), str(self.sources), str(self.rtp)],
                stdout=log, stderr=subprocess.STDOUT)
            self._procs.append(relay)
            self._wait_listening(self.sources, relay)
            self._procs.append(subprocess.Popen(
                ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-loop", "1",
                 "-framerate", "10", "-i", str(self.picture), "-t", "60", *H264,
                 "-f", "rtsp", f"rtsp://127.0.0.1:{self.sources}/lane"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT))

    def _wait_listening(self, port: int, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert process.poll() is None, f"the relay died: {self.log.read_text()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the RTSP relay never listened")

    def kill(self) -> None:
        for process in reversed(self._procs):
            process.kill()
            process.wait(timeout=10)
        self._procs.clear()


def render_scene(directory: Path) -> Path:
    """The gate camera's view of a car with :data:`PLATE`, as the JPEG ffmpeg encodes."""
    camera = RenderingCamera(clock=ManualClock(SITE_START), seed=3, view=LANE_720)
    camera.show(PLATE)
    frame = camera.capture()
    assert frame.image is not None
    path = directory / "lane.jpg"
    path.write_bytes(frame.image)
    return path


@pytest.fixture(scope="module")
def picture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_scene(tmp_path_factory.mktemp("scene"))


@pytest.fixture
def peer(tmp_path: Path, picture: Path) -> Iterator[RtspPeer]:
    running = RtspPeer(tmp_path, picture)
    running.start()
    try:
        yield running
    finally:
        running.kill()


def settings(url: str) -> CameraSettings:
    return CameraSettings(type="rtsp", url=url, username="lane", password=SecretStr(PASSWORD),
                          transport="udp", timeout_s=5, plate_region=LANE_720.region)


def camera_for(config: CameraSettings, clock: ManualClock) -> RtspCamera:
    assert config.url is not None
    source = RtspSource(config.url, config.username, config.password, config.transport,
                        config.timeout_s)
    return RtspCamera(source, clock=clock, backoff=(0.2, 1.0), name="in9 camera")


def drive_car(lane: MemoryLane) -> None:
    """A car arrives; the gateway stays silent, so the lane decides alone after its
    deadline; the car goes through if let, else backs out."""
    lane.pins.arming.drive_high()
    lane.settle()
    lane.step(milliseconds=400)
    if lane.relay_up:
        lane.pins.safety.drive_high()
        lane.pins.arming.drive_low()
        lane.pins.safety.drive_low()
    else:
        lane.pins.arming.drive_low()
    lane.settle()


class Restartable(Protocol):
    """A test peer that can be killed and started again on the same port."""

    def kill(self) -> None: ...

    def start(self) -> None: ...


def survives_a_peer_restart(lane: MemoryLane, camera: RtspCamera, peer: Restartable) -> None:
    """The peer dies (a camera reboots): the camera faults at once and the car arriving
    meanwhile is reported unread (``read_failed`` "camera offline"); the peer back, the
    camera reconnects by itself and the next car is read."""
    peer.kill()
    assert camera.wait_faulted(10), "a dead stream must fault the camera"
    with pytest.raises(CameraOffline, match="offline"):
        camera.capture()
    drive_car(lane)
    assert lane.events("plate_read")[-1]["plate"] is None
    fault = lane.events("fault")[-1]
    assert fault["code"] == "read_failed" and "in9 camera offline" in fault["detail"]
    peer.start()
    assert camera.wait_live(30), f"never reconnected: {camera.fault}"
    drive_car(lane)
    assert lane.events("plate_read")[-1]["plate"] == PLATE
    assert camera.connects == 2


def test_the_lane_reads_the_plate_from_the_stream_and_survives_a_dropped_stream(
    peer: RtspPeer, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock = ManualClock(SITE_START)
    config = settings(peer.url)
    camera = camera_for(config, clock)
    reader = TfliteReader(region=config.plate_region)
    try:
        assert camera.wait_live(30), f"never connected: {camera.fault}"
        with MemoryLane(tmp_path, clock=clock, camera=camera, reader=reader) as lane:
            drive_car(lane)
            first = lane.events("plate_read")[-1]
            assert first["plate"] == PLATE and first["reader"] == "tflite"

            # the newest frame, not a backlog: frames keep the lane's time when they arrived
            clock.advance(timedelta(minutes=5))
            arrived = camera.arrivals
            deadline = time.monotonic() + 10
            while camera.arrivals < arrived + 3:  # frames decoded after the clock moved
                assert time.monotonic() < deadline, "the stream stopped"
                time.sleep(0.01)
            assert camera.capture().taken == clock.now()

            survives_a_peer_restart(lane, camera, peer)
    finally:
        camera.close()
    assert PASSWORD not in caplog.text and "pa%3Ass" not in caplog.text
    assert peer.url in caplog.text  # the camera is named in the log, its login is not
    assert PASSWORD not in repr(config) and PASSWORD not in str(camera.source)


def test_a_camera_that_cannot_connect_is_faulted_and_never_shows_its_login() -> None:
    port = free_port()  # nobody listens there
    config = settings(f"rtsp://127.0.0.1:{port}/lane")
    camera = camera_for(config, ManualClock(SITE_START))
    try:
        eventually(lambda: "refused" in str(camera.fault).lower(), timeout=10,
                   what="the refused connection")
        with pytest.raises(CameraOffline) as raised:
            camera.capture()
    finally:
        camera.close()
    assert "refused" in str(raised.value).lower()
    assert PASSWORD not in str(raised.value) and "pa%3Ass" not in str(raised.value)


@pytest.mark.parametrize(("fields", "reason"), [
    ({"plate_region": LANE_720.region}, "url is required"),
    ({"url": "rtsp://admin:12345@192.0.2.10/ch1", "plate_region": LANE_720.region},
     "must not carry a user name or password"),
    ({"url": "http://192.0.2.10/ch1", "plate_region": LANE_720.region}, "rtsp://host"),
    ({"url": "rtsp://192.0.2.10/ch1"}, "plate_region is required"),
    ({"url": "rtsp://192.0.2.10/ch1", "username": "admin", "plate_region": LANE_720.region},
     "username and password go together"),
])
def test_a_bad_rtsp_camera_config_is_refused_naming_the_field(
    fields: dict[str, object], reason: str,
) -> None:
    with pytest.raises(ValidationError, match=reason):
        CameraSettings.model_validate({"type": "rtsp", **fields})


#: Runs ``parkguard lane -c CONFIG --mock-pins`` up to where the lane node would start and
#: prints what the command built from the config (the node itself replaced: nothing to run).
_CHILD = """
import json, sys
import firmware.lane.node as node

class Started(Exception):
    pass

class Node:
    def __init__(self, config, **kwargs):
        raise Started(json.dumps({part: type(kwargs[part]).__name__
                                  for part in ("camera", "reader", "display")}))

node.LaneNode = Node
from cli.main import main
try:
    main(["lane", "-c", sys.argv[1], "--mock-pins"], standalone_mode=False)
except Started as started:
    print(started)
"""


def test_parkguard_lane_builds_the_ip_camera_and_the_led_display_from_its_config(
    tmp_path: Path,
) -> None:
    left, top, right, bottom = REGION
    config = tmp_path / "lane.toml"
    config.write_text(f"""
site = "mall-b2"
lane = "in1"
direction = "entry"

[camera]
type = "rtsp"
url = "rtsp://127.0.0.1:{free_port()}/Streaming/Channels/102"
username = "lane"
password = "{PASSWORD}"
plate_region = [{left}, {top}, {right}, {bottom}]

[display]
type = "led_rs485"
port = "{tmp_path / 'ttyUSB0'}"
baud = 9600
address = 1
""", encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", _CHILD, str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    built = json.loads(done.stdout.splitlines()[-1])
    assert built == {"camera": "RtspCamera", "reader": "TfliteReader", "display": "LedDisplay"}
    assert PASSWORD not in done.stdout + done.stderr


def _selftest(tmp_path: Path, url: str, wait_s: float, timeout_s: float = 5) -> tuple[int, str]:
    left, top, right, bottom = REGION
    config = tmp_path / "selftest.toml"
    config.write_text(f'site = "mall-b2"\nlane = "in1"\ndirection = "entry"\n[camera]\n'
                      f'type = "rtsp"\nurl = "{url}"\ntransport = "udp"\ntimeout_s = {timeout_s}\n'
                      f'plate_region = [{left}, {top}, {right}, {bottom}]\n', encoding="utf-8")
    script = tmp_path / "answers.txt"  # outputs (raise, lower, green, red), the five inputs
    script.write_text("\n".join(["", "y", "", "y", "", "y", "y"] + ["trigger"] * 5) + "\n",
                      encoding="utf-8")
    result = CliRunner().invoke(selftest, ["-c", str(config), "--mock-pins", "--script",
                                           str(script), "--wait", str(wait_s)])
    return result.exit_code, result.output


def test_the_installers_selftest_reads_a_frame_from_the_camera(
    peer: RtspPeer, tmp_path: Path,
) -> None:
    code, output = _selftest(tmp_path, peer.url, wait_s=30)  # returns at the first frame
    assert code == 0, output
    assert "PASS  camera stream" in output


def test_the_installers_selftest_fails_a_camera_that_sends_nothing(tmp_path: Path) -> None:
    code, output = _selftest(tmp_path, f"rtsp://127.0.0.1:{free_port()}/lane", wait_s=0.5,
                             timeout_s=1)
    assert code == 1
    assert "FAIL  camera stream" in output and "refused" in output.lower()
