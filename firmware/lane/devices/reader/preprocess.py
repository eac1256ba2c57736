"""What the models see: the exact preprocessing shared by training, the reader and the bench.

Change anything here and the committed models must be retrained (the CI floor test
``tests/test_reader_models.py`` fails otherwise).
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from firmware.lane.devices.reader.geometry import Quad, straighten

#: Recogniser input, (width, height): a 440 × 140 mm plate at ~0.3 px/mm.
REC_SIZE: Final = (128, 40)
#: How much room around the detected corners the crop keeps (fraction of width, height),
#: so a detector a few pixels off does not cut a character.
REC_MARGIN: Final = (0.04, 0.10)
#: Detector input, (width, height): the detector's view of the frame (4:3), grey, resized.
DET_SIZE: Final = (128, 96)

#: A box in a frame, (left, top, right, bottom) in pixels: a lane's plate region, or the
#: part of the frame the detector looks at.
Box = tuple[int, int, int, int]


class RegionOutsideFrameError(ValueError):
    """The lane's plate region does not lie on the camera's frames (wrong numbers, or a
    camera of another size)."""


def detector_view(size: tuple[int, int], region: Box | None = None) -> Box:
    """The 4:3 part of a frame of ``size`` the detector looks at.

    The detector learnt on 4:3 frames (320 × 240 scenes) whose plate is a fifth to a half of
    the frame's width. A lane camera's frame is 16:9 (1280 × 720) and a well-placed plate a
    tenth of its width or less: squashed whole into the detector's input the plate would be
    a dozen pixels wide, and narrowed by a quarter. So a lane names its plate region
    (``camera.plate_region``, found with ``parkguard read --find-region``), and the view is
    that region, or the whole frame when there is none, grown to 4:3 about its centre. The
    part of the view beyond the frame reads as black. A 4:3 frame without a region is its
    own view, as in training.
    """
    width, height = size
    left, top, right, bottom = region if region is not None else (0, 0, width, height)
    if right <= left or bottom <= top:
        raise RegionOutsideFrameError(f"plate region {region} is empty: it is "
                                      "(left, top, right, bottom) in pixels")
    overlap_w = min(right, width) - max(left, 0)
    overlap_h = min(bottom, height) - max(top, 0)
    if overlap_w * overlap_h * 2 < (right - left) * (bottom - top):
        raise RegionOutsideFrameError(
            f"plate region {region} lies mostly outside the camera's {width}x{height} "
            "frames: set camera.plate_region for this camera (parkguard read --find-region)")
    cx, cy = (left + right) / 2, (top + bottom) / 2
    w, h = float(right - left), float(bottom - top)
    if w * 3 > h * 4:
        h = w * 3 / 4
    else:
        w = h * 4 / 3
    return (round(cx - w / 2), round(cy - h / 2), round(cx + w / 2), round(cy + h / 2))


def grey(image: Image.Image) -> Image.Image:
    """The image in grey; itself, not a copy, when it already is."""
    return image if image.mode == "L" else image.convert("L")


def recogniser_crop(image: Image.Image, quad: Quad,
                    margin: tuple[float, float] = REC_MARGIN) -> Image.Image:
    """The plate straightened to :data:`REC_SIZE` in grey."""
    return straighten(image, quad, REC_SIZE, margin=margin, mode="L")


def recogniser_tensor(crop: Image.Image) -> NDArray[np.float32]:
    """A straightened crop (any size; resized) as the (1, H, W, 1) float input in [0, 1]."""
    picture = grey(crop)
    if picture.size != REC_SIZE:
        picture = picture.resize(REC_SIZE, Image.Resampling.BILINEAR)
    return (np.asarray(picture, dtype=np.float32) / 255.0)[None, :, :, None]


def detector_tensor(image: Image.Image) -> NDArray[np.float32]:
    """A whole frame as the detector's (1, H, W, 1) float input in [0, 1]."""
    picture = grey(image).resize(DET_SIZE, Image.Resampling.BILINEAR)
    return (np.asarray(picture, dtype=np.float32) / 255.0)[None, :, :, None]


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
