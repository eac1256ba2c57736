"""A camera pipeline for the recogniser's training crops (training split only, on request).

The scenes' own camera (``render._camera``: blur, gain, grain) is gentle next to what a real
gate camera does to a plate before the reader sees it. :func:`camera_crop` cuts the
recogniser's 40 × 128 grey crop from a rendered frame the way a real camera would have
delivered it, each step drawn per crop from the generator passed in:

* **low resolution** (two crops in five): the frame scaled so the plate is 60–140 px wide, and
  the crop straightened back up from that (a far or cheap camera);
* **IR night** (about one in seven): grey, the retro-reflective plate bright and low in contrast
  (sometimes the characters darker than the plate, sometimes lighter), the surroundings dark,
  bright parts blooming into their neighbours;
* **motion blur** (a quarter): horizontal, 2–6 px of the (scaled) frame;
* **sensor noise** (six in ten, every IR night frame): Gaussian, σ 2–10 grey levels (6–14 at
  night);
* **JPEG** (four in five): the frame re-encoded at quality 20–90;
* **loose and tight crops** (always): the crop's margin from tight (2 % of the width and 5 %
  of the height *into* the plate, cutting its border) to loose (14 % and up to 40 %, with
  background around), instead of the reader's fixed 4 % / 10 %.

Everything happens to a window of the frame around the plate (all a loose crop reads, and a
little more), in grey, so a 1280 × 720 frame costs no more than a 320 × 240 one.
``scripts/make_reader_data.py --camera-pipeline`` applies it; the held-out and fresh splits
never see it (the bench reads the renderer's frames as they are).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter

from firmware.lane.devices.reader.geometry import Quad, as_quad, box_of, expand, plate_width
from firmware.lane.devices.reader.preprocess import recogniser_crop

Rng = np.random.Generator

#: The crop's margins (fraction of the plate's width, height on each side): tightest, loosest.
MARGIN_X: Final = (-0.02, 0.14)
MARGIN_Y: Final = (-0.05, 0.40)
#: The plate's width in pixels a low-resolution camera gives it.
LOW_RES_WIDTH: Final = (60.0, 140.0)
JPEG_QUALITY: Final = (20, 90)


@dataclass(frozen=True, slots=True)
class Shot:
    """What the camera does to one crop (None: that step is skipped)."""

    margin: tuple[float, float]
    #: the plate's width in pixels after scaling the frame down (never up)
    low_res: float | None
    #: horizontal motion blur, in pixels of the (scaled) frame
    motion: float | None
    #: IR night: (the plate's mean grey, its standard deviation (< 0: the characters turned
    #: darker than the plate), surround gain, bloom sigma in pixels, bloom strength)
    ir_night: tuple[float, float, float, float, float] | None
    #: sensor noise sigma, grey levels
    noise: float | None
    jpeg: int | None
    #: seed of the noise field
    noise_seed: int

    def steps(self) -> tuple[str, ...]:
        """The names of the steps taken (the crop's margin is always one)."""
        named = (("low-res", self.low_res), ("ir-night", self.ir_night),
                 ("motion", self.motion), ("noise", self.noise), ("jpeg", self.jpeg))
        return ("margin", *(name for name, value in named if value is not None))


def draw_shot(rng: Rng) -> Shot:
    """A random shot. Every parameter is drawn whether its step is taken or not, in a fixed
    order, so one step's odds never move another's draws."""
    mx = float(rng.uniform(*MARGIN_X))
    t = (mx - MARGIN_X[0]) / (MARGIN_X[1] - MARGIN_X[0])  # how loose, 0..1
    my = float(np.clip(MARGIN_Y[0] + t * (MARGIN_Y[1] - MARGIN_Y[0]) + rng.uniform(-0.05, 0.05),
                       *MARGIN_Y))
    low_res, low_width = rng.random() < 0.4, float(rng.uniform(*LOW_RES_WIDTH))
    motion, length = rng.random() < 0.25, float(rng.uniform(2.0, 6.0))
    night = rng.random() < 0.15
    ir = (float(rng.uniform(120, 210)),
          float(rng.uniform(20, 45)) * (-1.0 if rng.random() < 0.3 else 1.0),
          float(rng.uniform(0.1, 0.35)), float(rng.uniform(1.5, 4.0)),
          float(rng.uniform(0.2, 0.6)))
    noisy, sigma = rng.random() < 0.6, float(rng.uniform(2.0, 10.0))
    night_sigma = float(rng.uniform(6.0, 14.0))
    jpeg, quality = rng.random() < 0.8, int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    noise_seed = int(rng.integers(2**32))
    return Shot(margin=(mx, my), low_res=low_width if low_res else None,
                motion=length if motion else None, ir_night=ir if night else None,
                noise=night_sigma if night else (sigma if noisy else None),
                jpeg=quality if jpeg else None, noise_seed=noise_seed)


def camera_crop(image: Image.Image, quad: Quad, rng: Rng) -> Image.Image:
    """The recogniser's crop (``REC_SIZE``, grey) of the plate at ``quad`` in ``image``, as a
    random real camera would have delivered the frame (:func:`draw_shot`)."""
    return shoot(image, quad, draw_shot(rng))[0]


def shoot(image: Image.Image, quad: Quad, shot: Shot) -> tuple[Image.Image, Image.Image]:
    """The crop of ``shot``, and the window of the frame it was cut from (to look at)."""
    window, quad = _window(image, quad)
    if shot.low_res is not None and plate_width(quad) > shot.low_res:
        scale = shot.low_res / plate_width(quad)
        size = (max(8, round(window.width * scale)), max(8, round(window.height * scale)))
        sx, sy = size[0] / window.width, size[1] / window.height
        window = window.resize(size, Image.Resampling.BILINEAR)
        quad = as_quad([(x * sx, y * sy) for x, y in quad])
    px: NDArray[np.float32] = np.asarray(window, dtype=np.float32)
    if shot.ir_night is not None:
        px = _ir_night(px, quad, *shot.ir_night)
    if shot.motion is not None:
        px = _motion_blur(px, shot.motion)
    if shot.noise is not None:
        noise = np.random.default_rng(shot.noise_seed).standard_normal(px.shape,
                                                                       dtype=np.float32)
        px = px + np.float32(shot.noise) * noise
    window = Image.fromarray(np.clip(px, 0, 255).round().astype(np.uint8), "L")
    if shot.jpeg is not None:
        buffer = io.BytesIO()
        window.save(buffer, format="JPEG", quality=shot.jpeg)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            window = decoded.convert("L")
    return recogniser_crop(window, quad, margin=shot.margin), window


def _window(image: Image.Image, quad: Quad) -> tuple[Image.Image, Quad]:
    """The part of the frame around the plate a loose crop reads (and 8 px more for the
    blur and bloom), in grey, with the quad in it."""
    x0, y0, x1, y1 = box_of(expand(quad, MARGIN_X[1] + 0.02, MARGIN_Y[1] + 0.05))
    left, top = max(math.floor(x0) - 8, 0), max(math.floor(y0) - 8, 0)
    right = min(math.ceil(x1) + 8, image.width)
    bottom = min(math.ceil(y1) + 8, image.height)
    if right - left < 8 or bottom - top < 8:  # the plate is off the frame: use it all
        left, top, right, bottom = 0, 0, image.width, image.height
    part = image.crop((left, top, right, bottom)).convert("L")
    return part, as_quad([(x - left, y - top) for x, y in quad])


def _ir_night(px: NDArray[np.float32], quad: Quad, level: float, contrast: float,
              surround: float, bloom_sigma: float, bloom: float) -> NDArray[np.float32]:
    """An IR-lit night frame: the retro-reflective plate bright and flat, the rest dark,
    bright parts blooming."""
    mask_image = Image.new("L", (px.shape[1], px.shape[0]), 0)
    ImageDraw.Draw(mask_image).polygon(list(quad), fill=255)
    mask = np.asarray(mask_image.filter(ImageFilter.GaussianBlur(1.0)),
                      dtype=np.float32) / 255.0
    inside = px[mask > 0.5]
    mean = float(inside.mean()) if inside.size else float(px.mean())
    spread = float(inside.std()) if inside.size else 1.0
    plate = level + contrast * (px - mean) / max(spread, 1.0)
    lit = np.clip(mask * plate + (1.0 - mask) * px * surround, 0, 255).astype(np.float32)
    # bloom: light spreads into darker neighbours (a halo round the plate, strokes filled in
    # a little), never brighter than the light it comes from
    light = Image.fromarray(lit.astype(np.uint8), "L")
    glow = np.asarray(light.filter(ImageFilter.GaussianBlur(bloom_sigma)), dtype=np.float32)
    out: NDArray[np.float32] = lit + np.float32(bloom) * np.maximum(glow - lit, 0)
    return out


def _motion_blur(px: NDArray[np.float32], length: float) -> NDArray[np.float32]:
    """A horizontal box blur ``length`` pixels long (the last tap fractional)."""
    taps = math.ceil(length)
    weights = np.ones(taps, dtype=np.float32)
    weights[-1] = length - (taps - 1)
    weights /= weights.sum()
    left = (taps - 1) // 2
    padded = np.pad(px, ((0, 0), (left, taps - 1 - left)), mode="edge")
    out = np.zeros_like(px)
    for k, weight in enumerate(weights):
        out += weight * padded[:, k:k + px.shape[1]]
    return out
