"""Frames from simulated cameras: a lane frame plus the plate that was shown.

Ground truth lives here, in the simulator, and never in the lane's own ``Frame``: production
code cannot read it by accident, and a real camera has nothing to put there.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware.lane.devices.camera import Frame


@dataclass(frozen=True, slots=True)
class SimulatedFrame(Frame):
    """A frame from a simulated camera, with the plate it showed (for the ground-truth
    reader and for scoring reads; a real camera has no such thing)."""

    truth: str | None = None


def truth_of(frame: Frame) -> str | None:
    """The plate a simulated frame showed; None for any other frame."""
    return frame.truth if isinstance(frame, SimulatedFrame) else None
