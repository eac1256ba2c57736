"""The corner refiner: its window geometry (pure) and the committed model on held-out frames."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.lane.devices.reader import TfliteReader
from firmware.lane.devices.reader.geometry import Quad
from firmware.lane.devices.reader.preprocess import corners_from_output, detector_tensor
from firmware.lane.devices.reader.refine import WINDOW_SIZE, corners_from_window, target_in_window
from simulator.plates_render.dataset import HELDOUT_SEED, jitter, sample

CI_SEED = HELDOUT_SEED + 900  # not the bench's frames, nor the other CI sample's


def plate_quad(cx: float, cy: float, width: float, tilt: float) -> Quad:
    h = width * 140 / 440
    return ((cx - width / 2, cy - h / 2 + tilt), (cx + width / 2, cy - h / 2 - tilt),
            (cx + width / 2, cy + h / 2 - tilt), (cx - width / 2, cy + h / 2 + tilt))


@settings(max_examples=200, deadline=None)
@given(cx=st.floats(60, 260), cy=st.floats(30, 210), width=st.floats(60, 180),
       tilt=st.floats(-8, 8), seed=st.integers(0, 2**32 - 1))
def test_corners_survive_the_trip_into_the_window_and_back(
    cx: float, cy: float, width: float, tilt: float, seed: int,
) -> None:
    true = plate_quad(cx, cy, width, tilt)
    coarse = jitter(true, np.random.default_rng(seed), 0.2)
    target = target_in_window(true, coarse)
    assert np.all((target > 0) & (target < 1)), "the true corners must lie inside the window"
    back = corners_from_window(target, coarse)
    assert np.allclose(back, true, atol=1e-6)


def test_the_committed_refiner_reads_the_window_refine_py_makes() -> None:
    reader = TfliteReader()
    assert reader.refiner is not None, "models/reader.json names no refiner"
    assert reader.refiner.input_shape == (1, WINDOW_SIZE[1], WINDOW_SIZE[0], 1)


def test_the_refiner_brings_the_detectors_corners_closer_on_held_out_frames() -> None:
    reader = TfliteReader()
    coarse_err, refined_err = [], []
    for i in range(60):
        scene = sample("heldout", CI_SEED, i)
        coarse = corners_from_output(reader.detector(detector_tensor(scene.image))[0],
                                     scene.image.size)
        refined, _ms = reader.detect(scene.image)
        coarse_err.append(np.linalg.norm(np.subtract(coarse, scene.corners), axis=1).mean())
        refined_err.append(np.linalg.norm(np.subtract(refined, scene.corners), axis=1).mean())
    print(f"\nmean corner error: detector {np.mean(coarse_err):.2f} px, "
          f"refined {np.mean(refined_err):.2f} px")
    assert np.mean(refined_err) < 0.7 * np.mean(coarse_err)
