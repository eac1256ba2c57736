"""The simulated camera and its reader: fakes at the physical edge, behind the lane's seams."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

from firmware.lane.config import CameraSettings
from firmware.lane.devices.camera import Camera, Frame, PlateReader, PlateReading
from parkguard.clock import Clock
from simulator.frames import SimulatedFrame, truth_of


class ShowingCamera(Protocol):
    """A simulated camera the car driver puts a plate in front of (ground truth or rendered)."""

    def show(self, plate: str | None) -> None: ...

    def capture(self) -> Frame: ...


class SimulatedCamera:
    """Shows whatever plate the simulator put in front of it (None: no readable plate)."""

    def __init__(self, *, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._plate: str | None = None

    def show(self, plate: str | None) -> None:
        with self._lock:
            self._plate = plate

    def capture(self) -> Frame:
        with self._lock:
            return SimulatedFrame(taken=self._clock.now(), truth=self._plate)


class GroundTruthReader:
    """Reads the plate the simulator showed, perfectly. Stands in until the TFLite reader exists."""

    name = "ground_truth"

    def read(self, frame: Frame) -> PlateReading:
        truth = truth_of(frame)
        if truth is None:
            return PlateReading(None, 0.0, (), 0.0)
        return PlateReading(truth, 0.99, tuple(0.99 for _ in truth), 0.0)

    def read_many(self, frames: Sequence[Frame]) -> PlateReading:
        """Every frame shows the same truth: the first says it all."""
        return self.read(frames[0]) if frames else PlateReading(None, 0.0, (), 0.0)


#: How simulated lanes see plates: ``ground_truth`` hands the reader the plate shown (fast,
#: perfect); ``tflite`` renders each frame (``simulator.plates_render``) at the Pi camera's
#: 1280 x 720 and runs the lane's real TFLite reader on the pixels through the lane's plate
#: region, so misreads, fusion and fuzzy matching are exercised as on a real lane.
ReaderKind = Literal["ground_truth", "tflite"]


def camera_and_reader(kind: ReaderKind, clock: Clock, *, seed: int = 0,
                      region: tuple[int, int, int, int] | None = None,
                      models: Path | None = None, recogniser: Literal["fp16", "int8"] = "int8"
                      ) -> tuple[ShowingCamera, PlateReader]:
    """A simulated camera and the reader that goes with it: for ``tflite`` a camera that
    renders the plate shown and the lane's real reader (``region``: the lane's
    ``camera.plate_region``; with one, frames are rendered at the lane camera's size;
    ``models`` and ``recogniser`` as ``camera.models`` and ``camera.recogniser``); otherwise
    the ground-truth camera and reader. ``parkguard lane`` takes a bench lane's parts from
    here; a real lane (``picamera``) never imports the simulator."""
    if kind == "tflite":
        # the models load only when asked for
        from firmware.lane.devices.reader import DEFAULT_MODELS, TfliteReader
        from simulator.plates_render import GATE_320, RenderingCamera, lane_view

        view = GATE_320 if region is None else lane_view(region)
        reader = TfliteReader(models or DEFAULT_MODELS, region=region, recogniser=recogniser)
        return RenderingCamera(clock=clock, seed=seed, view=view), reader
    return SimulatedCamera(clock=clock), GroundTruthReader()


def ground_truth_camera(settings: CameraSettings, clock: Clock) -> tuple[Camera, PlateReader]:
    """``[camera] type = "simulated"`` on a bench lane (entry point ``parkguard.cameras``)."""
    return camera_and_reader("ground_truth", clock)


def rendering_camera(settings: CameraSettings, clock: Clock) -> tuple[Camera, PlateReader]:
    """``[camera] type = "tflite"`` on a bench lane: rendered frames, the real reader."""
    return camera_and_reader("tflite", clock, region=settings.plate_region,
                             models=settings.models, recogniser=settings.recogniser)
