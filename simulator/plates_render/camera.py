"""A simulated gate camera that *renders* the plate it is shown, so a simulated lane runs the
real TFLite reader on pixels instead of reading a canned string.

Drop-in for :class:`simulator.camera.SimulatedCamera` (same ``show``/``capture``); frames
carry JPEG bytes in ``Frame.image`` and the shown plate in ``SimulatedFrame.truth`` (for scoring).
Frames are 320 × 240 (:data:`~.render.GATE_320`) unless a ``view`` is given, e.g.
:data:`~.render.LANE_720` for the lane camera's 1280 × 720 with a plate region.
"""

from __future__ import annotations

import io
import itertools
import threading

import numpy as np

from firmware.lane.devices.camera import Frame
from parkguard.clock import Clock
from parkguard.core.plates import PlateError, parse_plate
from simulator.frames import SimulatedFrame
from simulator.plates_render.render import GATE_320, CameraView, Scene, Split, render_scene


class RenderingCamera:
    """Renders the shown plate into a fresh scene at every capture (seeded, reproducible).

    Captures between one ``show`` and the next are frames of one car: the same painted plate
    under the same conditions, placed afresh. ``degraded_every`` > 0 makes every n-th car's first
    capture (by capture count) a degraded one (night, rain, dirt ...), and the car stays so.
    ``view``: the frame size and where the plate lands (see :class:`~.render.CameraView`).
    """

    def __init__(self, *, clock: Clock, seed: int = 0, split: Split = "heldout",
                 degraded_every: int = 0, jpeg_quality: int = 90,
                 view: CameraView = GATE_320) -> None:
        self._clock = clock
        self._view = view
        self._seed = seed
        self._split: Split = split
        self._degraded_every = degraded_every
        self._quality = jpeg_quality
        self._lock = threading.Lock()
        self._plate: str | None = None
        self._car: Scene | None = None
        self._arrivals = 0
        self._count = itertools.count()

    def show(self, plate: str | None) -> None:
        """A car arrives with ``plate`` (None: the lane is empty)."""
        with self._lock:
            self._plate, self._car = plate, None
            self._arrivals += 1

    def capture(self) -> Frame:
        with self._lock:
            plate, car, arrival = self._plate, self._car, self._arrivals
            index = next(self._count)
        taken = self._clock.now()
        if plate is None:
            return Frame(taken=taken)
        try:
            parsed = parse_plate(plate)
        except PlateError:  # a no-plate car (#P12...): nothing a camera could read
            return SimulatedFrame(taken=taken, truth=plate)
        rng = np.random.default_rng([self._seed, index])
        degraded = self._degraded_every > 0 and index % self._degraded_every == 0
        scene = render_scene(parsed.text, parsed.series, rng, split=self._split,
                             degraded=degraded, same_car_as=car, view=self._view)
        with self._lock:
            if self._arrivals == arrival and self._car is None:  # no new car meanwhile
                self._car = scene
        buffer = io.BytesIO()
        scene.image.save(buffer, format="JPEG", quality=self._quality)
        return SimulatedFrame(taken=taken, image=buffer.getvalue(), truth=parsed.text)
