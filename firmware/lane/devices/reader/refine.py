"""The corner refiner's window: the detector's corners made exact on a close-up of the plate.

The detector sees the whole frame squashed to 128 × 96, so its corners are a few pixels off
(2.8 px on average on 320 × 240 held-out frames), and crops from them read 5–12 points worse
than crops from the true corners. The refiner is a second small CNN that looks at the plate
straightened from those coarse corners with room around it (:data:`WINDOW_MARGIN`) at
:data:`WINDOW_SIZE`, and says where the true corners are in that window. Training
(``scripts/train_reader.py refiner``) and the lane share these two mappings.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from firmware.lane.devices.reader.geometry import (
    Quad,
    apply_perspective,
    expand,
    perspective_coeffs,
    straighten,
)
from firmware.lane.devices.reader.preprocess import grey

#: The refiner's input, (width, height), grey.
WINDOW_SIZE: Final = (160, 64)
#: Room around the coarse corners (fraction of the plate's width, height on each side): wider
#: than the detector's worst error, so the true corners are inside the window.
WINDOW_MARGIN: Final = (0.12, 0.35)


def _rect() -> Quad:
    w, h = (float(v) for v in WINDOW_SIZE)
    return ((0.0, 0.0), (w, 0.0), (w, h), (0.0, h))


def window(image: Image.Image, coarse: Quad) -> Image.Image:
    """The close-up the refiner reads: the plate straightened from ``coarse``, with room."""
    return straighten(image, coarse, WINDOW_SIZE, margin=WINDOW_MARGIN, mode="L")


def window_tensor(picture: Image.Image) -> NDArray[np.float32]:
    """A window as the refiner's (1, H, W, 1) float input in [0, 1]."""
    return (np.asarray(grey(picture), dtype=np.float32) / 255.0)[None, :, :, None]


def target_in_window(true: Quad, coarse: Quad) -> NDArray[np.float32]:
    """Training target: the true corners in the window of ``coarse``, as fractions."""
    to_window = perspective_coeffs(_rect(), expand(coarse, *WINDOW_MARGIN))
    w, h = WINDOW_SIZE
    return np.asarray([c for x, y in (apply_perspective(to_window, p) for p in true)
                       for c in (x / w, y / h)], dtype=np.float32)


def corners_from_window(values: NDArray[np.float32], coarse: Quad) -> Quad:
    """The refiner's 8 outputs (fractions of the window) as corners in the frame."""
    to_frame = perspective_coeffs(expand(coarse, *WINDOW_MARGIN), _rect())
    w, h = WINDOW_SIZE
    v = np.asarray(values, dtype=np.float64).reshape(4, 2)
    pts = [apply_perspective(to_frame, (float(x) * w, float(y) * h)) for x, y in v]
    return (pts[0], pts[1], pts[2], pts[3])
