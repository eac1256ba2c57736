"""Finding a lane's plate region in a still of a car on the arming loop (commissioning).

The detector needs a 4:3 view in which the plate is a fifth to a half of the width
(:func:`~firmware.lane.devices.reader.preprocess.detector_view`); a lane camera's 1280 × 720
frame is neither. :func:`find_region` reads the still through 4:3 windows of a half, a third
and a quarter of the frame's width, keeps the most confident read that fits the plate
grammar, and suggests a region :data:`REGION_PLATE_WIDTHS` plate widths wide centred on that
plate: room for cars that stop a little earlier, later or to one side, with the plate still
a third of the view. The installer checks it on stills of cars at both ends of the loop."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from PIL import Image

from firmware.lane.devices.reader.geometry import box_of
from firmware.lane.devices.reader.preprocess import DET_SIZE, Box
from firmware.lane.devices.reader.reader import PlateRead, TfliteReader

#: How wide the suggested region is, in widths of the plate found.
REGION_PLATE_WIDTHS: Final = 3.0
#: The windows searched, as fractions of the frame's width (each 4:3, half-overlapping).
WINDOW_FRACTIONS: Final = (1 / 2, 1 / 3, 1 / 4)


class NoPlateFoundError(ValueError):
    """No window of the still gave a read that fits the plate grammar."""


@dataclass(frozen=True, slots=True)
class RegionSuggestion:
    """The region to configure and the read through it."""

    region: Box
    read: PlateRead


def windows(size: tuple[int, int]) -> Iterator[Box]:
    """The 4:3 windows searched: for each fraction of the width, half-overlapping, the last
    one of each row and column flush with the frame's edge."""
    width, height = size
    for fraction in WINDOW_FRACTIONS:
        w = max(round(width * fraction), DET_SIZE[0])
        h = min(round(w * 3 / 4), height)
        for top in _starts(height, h):
            for left in _starts(width, w):
                yield (left, top, left + w, top + h)


def _starts(total: int, span: int) -> list[int]:
    if span >= total:
        return [0]
    step = max(span // 2, 1)
    starts = list(range(0, total - span, step))
    return [*starts, total - span]


def region_around(corners_box: tuple[float, float, float, float], plate_width: float,
                  size: tuple[int, int]) -> Box:
    """A 4:3 region :data:`REGION_PLATE_WIDTHS` plate widths wide centred on the plate, moved
    (not shrunk) to lie inside the frame where it can."""
    width, height = size
    x0, y0, x1, y1 = corners_box
    w = max(plate_width * REGION_PLATE_WIDTHS, float(DET_SIZE[0]))
    w = min(w, float(width))
    h = min(w * 3 / 4, float(height))
    left = min(max((x0 + x1) / 2 - w / 2, 0.0), width - w)
    top = min(max((y0 + y1) / 2 - h / 2, 0.0), height - h)
    return (round(left), round(top), round(left + w), round(top + h))


def find_region(reader: TfliteReader, image: Image.Image) -> RegionSuggestion:
    """Search the still for the plate and suggest the region for ``camera.plate_region``."""
    best: PlateRead | None = None
    tried = 0
    for box in windows(image.size):
        tried += 1
        read = reader.read_image(image, is_crop=False, region=box)
        if read.grammar_ok and read.corners is not None and (
                best is None or read.confidence > best.confidence):
            best = read
    if best is None or best.corners is None or best.width_px is None:
        raise NoPlateFoundError(
            f"no plate found in {tried} windows of the {image.width}x{image.height} still: "
            "is a car with a clean plate on the arming loop, and the camera in focus?")
    region = region_around(box_of(best.corners), best.width_px, image.size)
    return RegionSuggestion(region, reader.read_image(image, is_crop=False, region=region))
