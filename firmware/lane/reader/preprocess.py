"""What the models see: the exact preprocessing shared by training, the reader and the bench.

Change anything here and the committed models must be retrained (the CI floor test
``tests/test_reader_models.py`` fails otherwise).
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from firmware.lane.reader.geometry import Quad, straighten

#: Recogniser input, (width, height): a 440 × 140 mm plate at ~0.3 px/mm.
REC_SIZE: Final = (128, 40)
#: How much room around the detected corners the crop keeps (fraction of width, height),
#: so a detector a few pixels off does not cut a character.
REC_MARGIN: Final = (0.04, 0.10)
#: Detector input, (width, height): the whole frame, grey, squashed to this.
DET_SIZE: Final = (128, 96)


def recogniser_crop(image: Image.Image, quad: Quad,
                    margin: tuple[float, float] = REC_MARGIN) -> Image.Image:
    """The plate straightened to :data:`REC_SIZE` in grey."""
    return straighten(image.convert("L"), quad, REC_SIZE, margin=margin)


def recogniser_tensor(crop: Image.Image) -> NDArray[np.float32]:
    """A straightened crop (any size; resized) as the (1, H, W, 1) float input in [0, 1]."""
    grey = crop.convert("L")
    if grey.size != REC_SIZE:
        grey = grey.resize(REC_SIZE, Image.Resampling.BILINEAR)
    return (np.asarray(grey, dtype=np.float32) / 255.0)[None, :, :, None]


def detector_tensor(image: Image.Image) -> NDArray[np.float32]:
    """A whole frame as the detector's (1, H, W, 1) float input in [0, 1]."""
    grey = image.convert("L").resize(DET_SIZE, Image.Resampling.BILINEAR)
    return (np.asarray(grey, dtype=np.float32) / 255.0)[None, :, :, None]


def corners_from_output(values: NDArray[np.float32], size: tuple[int, int]) -> Quad:
    """The detector's 8 outputs (x, y per corner, as fractions of the frame) in pixels."""
    w, h = size
    v = np.asarray(values, dtype=np.float64).reshape(4, 2)
    pts = [(float(x) * w, float(y) * h) for x, y in v]
    return (pts[0], pts[1], pts[2], pts[3])


def corners_to_target(quad: Quad, size: tuple[int, int]) -> NDArray[np.float32]:
    """The detector's training target for a quad in a frame of ``size``."""
    w, h = size
    return np.asarray([c for x, y in quad for c in (x / w, y / h)], dtype=np.float32)
