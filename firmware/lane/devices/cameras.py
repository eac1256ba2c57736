"""Which camera and plate reader a lane's ``[camera] type`` names: one registry.

The firmware registers the real lane's kinds, ``picamera`` (the Pi camera through picamera2
and our TFLite reader) and ``rtsp`` (an IP camera's stream through PyAV, same reader);
nothing here imports the simulator. Other kinds come from the
``parkguard.cameras`` entry point group: the simulator plugs in a bench lane's
``simulated`` (ground truth) and ``tflite`` (rendered frames read by the real reader)
through ``pyproject.toml``, loaded only when a config names one. A type nobody provides
stops the lane at start, naming the field, so a Pi can never quietly run a camera that sees
no plate.

>>> sorted(registered())
['picamera', 'rtsp']
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

from firmware.lane.config import CameraSettings
from firmware.lane.devices.camera import Camera, PlateReader
from parkguard.clock import Clock
from parkguard.errors import ConfigError

PLUGIN_GROUP = "parkguard.cameras"

CameraMaker = Callable[[CameraSettings, Clock], tuple[Camera, PlateReader]]
"""Builds a lane's camera and its reader from ``[camera]`` and the lane's clock."""

_MAKERS: dict[str, CameraMaker] = {}


def register(kind: str, maker: CameraMaker) -> None:
    """Make ``[camera] type = kind`` build its camera and reader with ``maker``."""
    _MAKERS[kind] = maker


def registered() -> frozenset[str]:
    return frozenset(_MAKERS)


def camera_and_reader(settings: CameraSettings, clock: Clock) -> tuple[Camera, PlateReader]:
    """The camera and reader ``settings.type`` names: registered here, else plugged in;
    ConfigError if neither."""
    maker = _MAKERS.get(settings.type) or _plugged_in(settings.type)
    if maker is None:
        known = sorted(_MAKERS) + sorted(p.name for p in entry_points(group=PLUGIN_GROUP))
        raise ConfigError(
            f"camera.type = {settings.type!r}: no such camera on this lane (known: "
            f"{', '.join(known)})")
    return maker(settings, clock)


def _plugged_in(kind: str) -> CameraMaker | None:
    """The maker another package plugs in as ``kind`` (loaded only now, when asked for)."""
    for point in entry_points(group=PLUGIN_GROUP, name=kind):
        maker: CameraMaker = point.load()
        return maker
    return None


def _pi_camera(settings: CameraSettings, clock: Clock) -> tuple[Camera, PlateReader]:
    """The Pi camera and our TFLite reader, looking in the lane's plate region (the models
    load, and picamera2 is imported, only when a lane asks for them)."""
    from firmware.lane.devices.picamera import PiCamera
    from firmware.lane.devices.reader import DEFAULT_MODELS, make_reader

    reader = make_reader("tflite", models=settings.models or DEFAULT_MODELS,
                         region=settings.plate_region, recogniser=settings.recogniser)
    return PiCamera(clock=clock), reader


def _rtsp_camera(settings: CameraSettings, clock: Clock) -> tuple[Camera, PlateReader]:
    """An IP camera's RTSP stream and our TFLite reader, looking in the lane's plate region
    (PyAV is imported, and the stream opened, only when a lane asks for it)."""
    from firmware.lane.devices.reader import DEFAULT_MODELS, make_reader
    from firmware.lane.devices.rtsp import RtspCamera, RtspSource

    if settings.url is None:  # the config refuses this; kept for a hand-built settings
        raise ConfigError("camera.url is required with camera.type = \"rtsp\"")
    reader = make_reader("tflite", models=settings.models or DEFAULT_MODELS,
                         region=settings.plate_region, recogniser=settings.recogniser)
    source = RtspSource(settings.url, settings.username, settings.password,
                        settings.transport, settings.timeout_s)
    return RtspCamera(source, clock=clock), reader


register("picamera", _pi_camera)
register("rtsp", _rtsp_camera)
