"""The real photographs' augmentation moves the plate's corners exactly with the picture.

A wrong corner after a turn or a mirror would teach the detector and refiner to miss the
plate; these draw a white plate on black, change the picture, and look where the moved
corners say the plate is.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from firmware.lane.devices.reader.geometry import Quad, as_quad
from simulator.plates_render import photo_augment

QUAD: Quad = as_quad([(120.0, 100.0), (260.0, 110.0), (255.0, 150.0), (118.0, 140.0)])


def _picture() -> Image.Image:
    picture = Image.new("L", (400, 300), 0)
    ImageDraw.Draw(picture).polygon(list(QUAD), fill=255)
    return picture


def _inside_and_outside(picture: Image.Image, quad: Quad) -> tuple[float, float]:
    """Mean brightness inside the quad (shrunk a little) and in a ring just outside it."""
    pts = np.asarray(quad)
    centre = pts.mean(axis=0)
    inner = Image.new("L", picture.size, 0)
    ImageDraw.Draw(inner).polygon([tuple(centre + (p - centre) * 0.85) for p in pts], fill=1)
    outer = Image.new("L", picture.size, 0)
    ImageDraw.Draw(outer).polygon([tuple(centre + (p - centre) * 1.3) for p in pts], fill=1)
    ImageDraw.Draw(outer).polygon([tuple(centre + (p - centre) * 1.1) for p in pts], fill=0)
    values = np.asarray(picture, dtype=np.float64)
    inside = values[np.asarray(inner, dtype=bool)].mean()
    ring = values[np.asarray(outer, dtype=bool)].mean()
    return float(inside), float(ring)


def test_turned_corners_follow_the_plate() -> None:
    for seed in range(20):
        rng = np.random.default_rng(seed)
        turned, quad = photo_augment.turn(_picture(), QUAD, (190.0, 125.0), rng)
        inside, ring = _inside_and_outside(turned, quad)
        assert inside > 250 and ring < 5, (seed, inside, ring)


def test_mirror_keeps_corner_names() -> None:
    mirrored, quad = photo_augment.mirror(_picture(), QUAD)
    inside, ring = _inside_and_outside(mirrored, quad)
    assert inside > 250 and ring < 5
    (tl, tr, br, bl) = quad
    assert tl[0] < tr[0] and bl[0] < br[0], "top-left is still left of top-right"
    assert tl[1] < bl[1] and tr[1] < br[1], "top is still above bottom"
    assert tl == (400 - 260.0, 110.0)


def test_camera_keeps_size_and_mode() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        seen = photo_augment.camera(_picture(), rng)
        assert seen.mode == "L" and seen.size == (400, 300)
