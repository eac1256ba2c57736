"""The simulated camera and its reader: fakes at the physical edge, behind the lane's seams."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from firmware.lane.camera import Frame, PlateReading
from parkguard.clock import Clock


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
            return Frame(taken=self._clock.now(), truth=self._plate)


class GroundTruthReader:
    """Reads the plate the simulator showed, perfectly. Stands in until the TFLite reader exists."""

    name = "ground_truth"

    def read(self, frame: Frame) -> PlateReading:
        if frame.truth is None:
            return PlateReading(None, 0.0, (), 0.0)
        return PlateReading(frame.truth, 0.99, tuple(0.99 for _ in frame.truth), 0.0)

    def read_many(self, frames: Sequence[Frame]) -> PlateReading:
        """Every frame shows the same truth: the first says it all."""
        return self.read(frames[0]) if frames else PlateReading(None, 0.0, (), 0.0)
