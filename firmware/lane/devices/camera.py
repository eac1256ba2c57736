"""Camera and plate-reader seams: one small interface each, a real and a simulated backend.

Must override: ``Camera.capture``, ``PlateReader.read`` and ``PlateReader.read_many`` (several
frames of one arriving car, fused into one reading).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Frame:
    """One picture of the lane: when it was taken and the encoded image (None: the camera
    saw nothing it could encode). Simulated frames carry their ground truth in a subclass
    of their own (``simulator.camera.SimulatedFrame``), never here."""

    taken: datetime
    image: bytes | None = None


@dataclass(frozen=True, slots=True)
class PlateReading:
    """What a reader made of a frame; ``plate`` is None when nothing could be read.
    ``box`` (left, top, right, bottom in the first frame's pixels): where the reader found
    the plate, when it knows; the lane keeps that crop as evidence (docs/evidence.md)."""

    plate: str | None
    confidence: float
    char_confidences: tuple[float, ...]
    read_ms: float
    box: tuple[float, float, float, float] | None = None


class Camera(Protocol):
    def capture(self) -> Frame: ...


class PlateReader(Protocol):
    name: str

    def read(self, frame: Frame) -> PlateReading: ...

    def read_many(self, frames: Sequence[Frame]) -> PlateReading:
        """Several frames of one car fused; ``read_ms`` is the time for all of them (a frame
        :meth:`read` has just read may be reused, not read again)."""
        ...
