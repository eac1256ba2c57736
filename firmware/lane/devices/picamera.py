"""The lane camera on a Raspberry Pi: picamera2 (Raspberry Pi OS's ``python3-picamera2``).

picamera2 is installed with apt on the Pi (it must match the system's libcamera), never from
PyPI, so it is imported only when a lane asks for it; anywhere else the simulator's cameras
stand in behind the same :class:`~firmware.lane.devices.camera.Camera` seam.
"""

from __future__ import annotations

import importlib
import io
import threading
from types import ModuleType
from typing import Any, Final

from firmware.lane.devices.camera import Frame
from parkguard.clock import Clock
from parkguard.errors import ConfigError

#: The stills the lane takes (16:9): ``camera.plate_region`` is in these pixels.
CAPTURE_SIZE: Final = (1280, 720)


def load_picamera2() -> ModuleType:
    """The picamera2 module, or a ConfigError saying how to install it."""
    try:
        return importlib.import_module("picamera2")
    except ImportError as error:
        raise ConfigError(
            "camera.type = \"picamera\" needs picamera2: on Raspberry Pi OS run "
            "`sudo apt install -y python3-picamera2 --no-install-recommends` and create the "
            "venv with --system-site-packages (hardware/lane-install.md)") from error


class PiCamera:
    """Still frames as JPEG bytes from the Pi camera, timestamped on the lane's clock.

    The camera is configured once for stills at ``size`` and left running, so a capture is a
    frame grab and a JPEG encode (tens of milliseconds), not a sensor start-up.
    """

    def __init__(self, *, clock: Clock, size: tuple[int, int] = CAPTURE_SIZE,
                 module: ModuleType | None = None) -> None:
        picamera2 = module or load_picamera2()
        self._clock = clock
        self._lock = threading.Lock()
        self._camera: Any = picamera2.Picamera2()
        self._camera.configure(self._camera.create_still_configuration(main={"size": size}))
        self._camera.start()

    def capture(self) -> Frame:
        with self._lock:
            taken = self._clock.now()
            buffer = io.BytesIO()
            self._camera.capture_file(buffer, format="jpeg")
        return Frame(taken=taken, image=buffer.getvalue())

    def close(self) -> None:
        with self._lock:
            self._camera.stop()
            self._camera.close()
