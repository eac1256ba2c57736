"""Quadrilaterals and perspective: straightening a plate from its four corners.

Corners are always ``(top-left, top-right, bottom-right, bottom-left)`` in pixels of the
image they belong to. Only numpy and Pillow: this runs on the lane.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from PIL import Image

Point = tuple[float, float]
Quad = tuple[Point, Point, Point, Point]


def as_quad(points: Sequence[Sequence[float]] | NDArray[np.floating]) -> Quad:
    """Four ``(x, y)`` pairs as a :data:`Quad` of floats."""
    pts = [(float(p[0]), float(p[1])) for p in points]
    if len(pts) != 4:
        raise ValueError(f"a quad has 4 corners, got {len(pts)}")
    return (pts[0], pts[1], pts[2], pts[3])


def perspective_coeffs(src: Quad, dst: Quad) -> tuple[float, ...]:
    """The 8 coefficients Pillow's ``Image.transform(PERSPECTIVE)`` wants to map points of
    ``dst`` (the output image) onto points of ``src`` (the input image)."""
    rows = []
    rhs = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs.extend([u, v])
    solution = np.linalg.solve(np.asarray(rows, dtype=np.float64), np.asarray(rhs))
    return tuple(float(c) for c in solution)


def apply_perspective(coeffs: Sequence[float], point: Point) -> Point:
    """Where ``coeffs`` (as :func:`perspective_coeffs` makes them) send ``point``."""
    a, b, c, d, e, f, g, h = coeffs
    x, y = point
    w = g * x + h * y + 1.0
    return ((a * x + b * y + c) / w, (d * x + e * y + f) / w)


def expand(quad: Quad, margin_x: float, margin_y: float) -> Quad:
    """The quad grown by a fraction of its width (``margin_x``) and height on each side."""
    pts = np.asarray(quad, dtype=np.float64)
    top, bottom = pts[[0, 1]].mean(0), pts[[3, 2]].mean(0)
    left, right = pts[[0, 3]].mean(0), pts[[1, 2]].mean(0)
    across = (right - left) * margin_x
    down = (bottom - top) * margin_y
    grown = pts + np.array([-across - down, across - down, across + down, -across + down])
    return as_quad(grown)


def straighten(image: Image.Image, quad: Quad, size: tuple[int, int], *,
               margin: tuple[float, float] = (0.0, 0.0), mode: str | None = None) -> Image.Image:
    """The plate inside ``quad`` warped flat into an image of ``size`` (width, height), in
    ``mode`` if given (only the part of the frame the warp reads is converted: a whole
    1280 × 720 frame took ~0.7 ms to turn grey, a sixth of a lane read).

    A perspective warp samples the source at one point per output pixel, so a plate two or
    more times wider than ``size`` (a close camera at 1280 × 720) would come out aliased,
    strokes broken into stairs. Such a plate is first box-averaged down by the whole factor
    (after :func:`_near` has cut out the part the warp reads); the warp then shrinks it by
    less than 2, as it always did for the 320 × 240 frames the models were trained on (those
    crops are unchanged)."""
    width, height = size
    src = expand(quad, *margin)
    image, src, factor = _near(image, src, width)
    if mode is not None and image.mode != mode:
        image = image.convert(mode)
    if factor >= 2:
        image = image.reduce(factor)
        src = as_quad([(x / factor, y / factor) for x, y in src])
    dst: Quad = ((0.0, 0.0), (float(width), 0.0), (float(width), float(height)),
                 (0.0, float(height)))
    coeffs = perspective_coeffs(src, dst)
    return image.transform(size, Image.Transform.PERSPECTIVE, coeffs,
                           Image.Resampling.BILINEAR)


def _near(image: Image.Image, src: Quad, width: int) -> tuple[Image.Image, Quad, int]:
    """The part of ``image`` around ``src`` (all the warp reads; the whole image when the
    quad is off it), the quad in it, and the whole factor that brings a quad two or more
    times ``width`` wide below twice (1 for a narrower one)."""
    factor = max(int(plate_width(src) / width), 1)
    pad = max(factor, 2)
    x0, y0, x1, y1 = box_of(src)
    left = max(math.floor(x0) - pad, 0)
    top = max(math.floor(y0) - pad, 0)
    right = min(math.ceil(x1) + pad, image.width)
    bottom = min(math.ceil(y1) + pad, image.height)
    if right - left < pad or bottom - top < pad:
        return image, src, 1
    part = image.crop((left, top, right, bottom))
    return part, as_quad([(x - left, y - top) for x, y in src]), factor


def box_of(quad: Quad) -> tuple[float, float, float, float]:
    """The axis-aligned box ``(x0, y0, x1, y1)`` around a quad."""
    xs = [p[0] for p in quad]
    ys = [p[1] for p in quad]
    return min(xs), min(ys), max(xs), max(ys)


def plate_width(quad: Quad) -> float:
    """The plate's width in pixels: the mean length of its top and bottom edges."""
    tl, tr, br, bl = quad
    return (math.dist(tl, tr) + math.dist(bl, br)) / 2


def box_iou(a: Quad, b: Quad) -> float:
    """Intersection over union of the boxes around two quads (detection recall uses 0.5)."""
    ax0, ay0, ax1, ay1 = box_of(a)
    bx0, by0, bx1, by1 = box_of(b)
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union if union > 0 else 0.0
