"""Camera and pose variety for the few real photographs the detector and refiner learn from.

Run 6's detector learnt from 218 real photographs, each cut into windows that differed only
in where the plate sat and how bright the picture was; it read 94.6 % of those photographs
and 84.0 % of held-out ones (models/README.md): it learnt the photographs more than plates.
These functions give each window of a real photograph what another camera or another day
would have changed: the plate turned and leaned (:func:`turn`), seen from the other side
(:func:`mirror`, corners renamed so the top-left stays top-left), and the picture blurred,
noisy, JPEG-compressed or differently exposed (:func:`camera`). Corners move with the
picture, so every target stays exact. Pure functions of their inputs and the generator.
"""

from __future__ import annotations

import io
import math
from typing import Final

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from firmware.lane.devices.reader.geometry import Quad, as_quad

#: The plate turned by up to this many degrees in the picture (a camera not level, a car
#: on a ramp); the real photographs lean by a few degrees, the lane's camera by more.
MAX_TURN_DEG: Final = 12.0
#: Horizontal squeeze or stretch (seen from the side) and shear (a lean) at most.
MAX_SQUEEZE: Final = 0.15
MAX_SHEAR: Final = 0.15


def turn(picture: Image.Image, quad: Quad, centre: tuple[float, float],
         rng: np.random.Generator) -> tuple[Image.Image, Quad]:
    """``picture`` turned, squeezed and sheared about ``centre`` (the parts uncovered read
    black, as beyond a frame's edge in training), and ``quad`` moved with it."""
    angle = math.radians(rng.uniform(-MAX_TURN_DEG, MAX_TURN_DEG))
    squeeze = rng.uniform(1 - MAX_SQUEEZE, 1 + MAX_SQUEEZE)
    shear = rng.uniform(-MAX_SHEAR, MAX_SHEAR)
    cos, sin = math.cos(angle), math.sin(angle)
    forward = np.array([[cos, -sin], [sin, cos]]) @ np.array([[squeeze, shear], [0.0, 1.0]])
    back = np.linalg.inv(forward)
    cx, cy = centre
    # PIL maps each output pixel back to the input: src = c + back @ (dst - c)
    offset = np.array([cx, cy]) - back @ np.array([cx, cy])
    data = (back[0, 0], back[0, 1], offset[0], back[1, 0], back[1, 1], offset[1])
    turned = picture.transform(picture.size, Image.Transform.AFFINE, data,
                               resample=Image.Resampling.BILINEAR)
    pts = (np.asarray(quad, dtype=np.float64) - [cx, cy]) @ forward.T + [cx, cy]
    return turned, as_quad([(float(x), float(y)) for x, y in pts])


def mirror(picture: Image.Image, quad: Quad) -> tuple[Image.Image, Quad]:
    """``picture`` mirrored left to right; the corners keep their names (top-left, top-right,
    bottom-right, bottom-left) for the mirrored plate."""
    width = picture.width
    tl, tr, br, bl = ((width - x, y) for x, y in quad)
    return ImageOps.mirror(picture), as_quad([tr, tl, bl, br])


def camera(picture: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A grey picture as another camera might give it: exposure and contrast, then each at
    random: a little defocus, sensor noise, JPEG compression."""
    gain, bias = rng.uniform(0.6, 1.35), rng.uniform(-30, 30)
    gamma = rng.uniform(0.7, 1.4)
    lut = [max(0, min(255, round(255 * (v / 255) ** gamma * gain + bias))) for v in range(256)]
    seen = picture.point(lut)
    if rng.random() < 0.3:
        seen = seen.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.2))))
    if rng.random() < 0.4:
        noisy = np.asarray(seen, dtype=np.float32) + rng.normal(0, rng.uniform(2, 9),
                                                                 (seen.height, seen.width))
        seen = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), mode="L")
    if rng.random() < 0.4:
        buffer = io.BytesIO()
        seen.save(buffer, format="JPEG", quality=int(rng.integers(25, 85)))
        buffer.seek(0)
        with Image.open(buffer) as compressed:
            seen = compressed.convert("L")
    return seen
