"""The Pi camera seam: picamera2 configured once for stills, each capture a JPEG the TFLite
reader reads. picamera2 only exists on a Pi, so the sensor is faked here (the physical edge)
with frames from the plate renderer."""

from __future__ import annotations

import io
import types
from typing import Any

import pytest
from PIL import Image

from firmware.lane.devices.camera import Frame
from firmware.lane.devices.picamera import CAPTURE_SIZE, PiCamera, load_picamera2
from firmware.lane.devices.reader import make_reader
from parkguard.clock import ManualClock
from parkguard.errors import ConfigError
from simulator.plates_render import GATE_320, LANE_720, RenderingCamera
from tests.conftest import SITE_START


class FakeSensor:
    """What picamera2.Picamera2 does with our calls: records them, writes rendered JPEGs."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.scene = RenderingCamera(clock=ManualClock(SITE_START), seed=5)

    def create_still_configuration(self, main: dict[str, Any]) -> dict[str, Any]:
        """The sensor's frames from now on are the size asked for (the lane's 1280 x 720:
        a commissioned lane's view of the car on the arming loop)."""
        self.calls.append(f"still {main['size']}")
        view = LANE_720 if tuple(main["size"]) == LANE_720.size else GATE_320
        self.scene = RenderingCamera(clock=ManualClock(SITE_START), seed=5, view=view)
        self.scene.show("粤B12345")
        return {"main": main}

    def configure(self, config: dict[str, Any]) -> None:
        self.calls.append("configure")

    def start(self) -> None:
        self.calls.append("start")

    def capture_file(self, output: io.BytesIO, format: str) -> None:
        self.calls.append(f"capture {format}")
        image = self.scene.capture().image
        assert image is not None
        output.write(image)

    def stop(self) -> None:
        self.calls.append("stop")

    def close(self) -> None:
        self.calls.append("close")


def fake_picamera2(sensor: FakeSensor) -> types.ModuleType:
    module = types.ModuleType("picamera2")
    module.Picamera2 = lambda: sensor  # type: ignore[attr-defined]
    return module


def test_the_camera_is_configured_once_and_each_capture_is_a_timestamped_jpeg() -> None:
    sensor, clock = FakeSensor(), ManualClock(SITE_START)
    camera = PiCamera(clock=clock, size=(640, 480), module=fake_picamera2(sensor))
    frames = [camera.capture() for _ in range(3)]
    camera.close()

    assert sensor.calls == ["still (640, 480)", "configure", "start", "capture jpeg",
                            "capture jpeg", "capture jpeg", "stop", "close"]
    assert all(f.image is not None and f.image[:2] == b"\xff\xd8" for f in frames)
    assert all(f.taken == SITE_START and type(f) is Frame for f in frames)  # no ground truth


def test_the_tflite_reader_reads_what_the_pi_camera_captured_through_the_plate_region() -> None:
    camera = PiCamera(clock=ManualClock(SITE_START), module=fake_picamera2(FakeSensor()))
    frames = [camera.capture() for _ in range(3)]
    with Image.open(io.BytesIO(frames[0].image or b"")) as first:
        assert first.size == CAPTURE_SIZE == (1280, 720)
    reader = make_reader("tflite", region=LANE_720.region)
    readings = [reader.read(frame) for frame in frames]
    assert all(r.read_ms > 0 for r in readings)
    assert sum(r.plate == "粤B12345" for r in readings) >= 2, readings


def test_without_picamera2_the_lane_says_how_to_install_it() -> None:
    try:
        import picamera2  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("picamera2 is installed: this is a Pi")
    with pytest.raises(ConfigError, match="python3-picamera2"):
        load_picamera2()
