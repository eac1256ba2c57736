"""Reproducible data sets: sample ``i`` of a split is a pure function of ``(split, seed, i)``.

* ``train`` — training fonts and backgrounds, half the frames degraded.
* ``heldout`` — other fonts (WenQuanYi Micro Hei Mono face, Liberation Narrow/Sans, DejaVu
  Mono), other background generators, other seeds; ``clean`` and ``degraded`` variants.
* ``fresh`` — the held-out split with Latin faces no decision has looked at (Inconsolata,
  Anonymous Pro Bold, Roboto Condensed Bold, Noto Sans Mono Bold).

Training data can be made closer to real plates on request, both off by default so every
existing command draws the same data: ``ga36_share`` draws that share of the training plates'
letters and digits in the GA 36 plate faces (:mod:`.ga36`), and ``camera_pipeline`` cuts the
recogniser's crops through a real camera's troubles (:mod:`.pipeline`). Neither is allowed
on the held-out or fresh splits.

Every split renders in the legacy 320 × 240 view (:data:`~.render.GATE_320`) unless a
``view`` is passed: :data:`~.render.LANE_720` draws the same plates at the lane camera's
1280 × 720 (other frames, the same text and series, since the plate is drawn first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from firmware.lane.devices.reader.geometry import Quad, as_quad
from firmware.lane.devices.reader.preprocess import (
    DET_SIZE,
    REC_SIZE,
    corners_to_target,
    detector_tensor,
    detector_view,
    recogniser_crop,
)
from simulator.plates_render.pipeline import camera_crop
from simulator.plates_render.render import GATE_320, CameraView, Scene, Split, render_scene
from simulator.plates_render.texts import random_plate

#: Default seeds: training and held-out never share one.
TRAIN_SEED: Final = 20261130
HELDOUT_SEED: Final = 77_000_001
#: The camera pipeline's generator for sample ``i`` is ``[seed, i, PIPELINE_STREAM]`` (0–2:
#: the splits' scenes and the corner jitter, 3: later frames of a car, 5: the refiner's data).
PIPELINE_STREAM: Final = 6


def sample(split: Split, seed: int, index: int, *, degraded: bool | None = None,
           view: CameraView = GATE_320, ga36_share: float = 0.0) -> Scene:
    """Scene ``index`` of a split in ``view``; ``degraded`` None: every other frame degraded.
    ``ga36_share`` (training only): see ``render_plate``; the scene is the same but for the
    face of the plates it picks."""
    rng = np.random.default_rng([seed, index, {"train": 0, "heldout": 1, "fresh": 2}[split]])
    series, text = random_plate(rng)
    bad = bool(index % 2) if degraded is None else degraded
    return render_scene(text, series, rng, split=split, degraded=bad, view=view,
                        ga36_share=ga36_share)


def jitter(quad: Quad, rng: np.random.Generator, amount: float) -> Quad:
    """The corners moved by up to ``amount`` of the plate height (a detector's error)."""
    pts = np.asarray(quad, dtype=np.float64)
    height = float(np.linalg.norm(pts[3] - pts[0]))
    moved = pts + rng.uniform(-amount, amount, pts.shape) * height
    return ((moved[0, 0], moved[0, 1]), (moved[1, 0], moved[1, 1]),
            (moved[2, 0], moved[2, 1]), (moved[3, 0], moved[3, 1]))


@dataclass(frozen=True, slots=True)
class Arrays:
    """A batch as arrays: recogniser crops, labels, detector frames and corner targets."""

    crops: NDArray[np.uint8]  # (n, H, W) grey
    texts: list[str]
    frames: NDArray[np.uint8]  # (n, H, W) grey, detector size
    corners: NDArray[np.float32]  # (n, 8) fractions of the frame
    degraded: NDArray[np.bool_]


def arrays(split: Split, seed: int, start: int, count: int, *, degraded: bool | None = None,
           corner_jitter: float = 0.0, view: CameraView = GATE_320, ga36_share: float = 0.0,
           camera_pipeline: bool = False) -> Arrays:
    """``count`` samples from ``start`` as arrays (crops from the true corners, jittered).
    Detector frames are what the detector sees: the view's plate region grown to 4:3
    (``detector_view``; the whole frame for ``GATE_320``), corners as fractions of it.

    Training only: ``ga36_share`` of the plates in the GA 36 faces (``render_plate``), and
    ``camera_pipeline`` cuts each crop through :func:`~.pipeline.camera_crop` (its own
    generator per sample; detector frames and corners are unchanged)."""
    if camera_pipeline and split != "train":
        raise ValueError(f"the camera pipeline is for the training split only, not {split!r}")
    crops = np.empty((count, REC_SIZE[1], REC_SIZE[0]), dtype=np.uint8)
    frames = np.empty((count, DET_SIZE[1], DET_SIZE[0]), dtype=np.uint8)
    corners = np.empty((count, 8), dtype=np.float32)
    bad = np.empty(count, dtype=bool)
    texts = []
    for k in range(count):
        scene = sample(split, seed, start + k, degraded=degraded, view=view,
                       ga36_share=ga36_share)
        rng = np.random.default_rng([seed, start + k, 2])
        quad = jitter(scene.corners, rng, corner_jitter) if corner_jitter else scene.corners
        if camera_pipeline:
            shot_rng = np.random.default_rng([seed, start + k, PIPELINE_STREAM])
            crops[k] = np.asarray(camera_crop(scene.image, quad, shot_rng))
        else:
            crops[k] = np.asarray(recogniser_crop(scene.image, quad))
        left, top, right, bottom = detector_view(scene.image.size, view.region)
        seen = scene.image if view.region is None else scene.image.crop((left, top, right,
                                                                         bottom))
        frames[k] = (detector_tensor(seen)[0, :, :, 0] * 255).round().astype(np.uint8)
        corners[k] = corners_to_target(as_quad([(x - left, y - top) for x, y in scene.corners]),
                                       seen.size)
        bad[k] = bool(scene.degradations)
        texts.append(scene.text)
    return Arrays(crops, texts, frames, corners, bad)


def crop_image(scene: Scene) -> Image.Image:
    """The true-corner crop of a scene (what the baseline and the recogniser bench read)."""
    return recogniser_crop(scene.image, scene.corners)


def frames_of_one_car(split: Split, seed: int, index: int, count: int, *,
                      degraded: bool = True, view: CameraView = GATE_320) -> list[Scene]:
    """``count`` frames of one car as it arrives: the first is ``sample(split, seed, index)``,
    the others show the same painted plate under the same conditions (night stays night),
    placed and exposed afresh (see ``render_scene(same_car_as=...)``), all in ``view``."""
    first = sample(split, seed, index, degraded=degraded, view=view)
    scenes = [first]
    for k in range(1, count):
        rng = np.random.default_rng([seed, index, 3, k])
        scenes.append(render_scene(first.text, first.series, rng, split=split,
                                   same_car_as=first, view=view))
    return scenes
