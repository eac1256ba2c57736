"""The corner refiner: its window geometry (pure) and the committed model on held-out frames."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from firmware.lane.devices.reader import TfliteReader
from firmware.lane.devices.reader.geometry import Quad
from firmware.lane.devices.reader.preprocess import corners_from_output, detector_tensor
from firmware.lane.devices.reader.reader import RETRY_BELOW, PlateRead
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


class CountingModel:
    """A model wrapped to count its calls (how many crops the recogniser read)."""

    def __init__(self, model: Any) -> None:
        self.model, self.calls = model, 0

    def __call__(self, tensor: Any) -> Any:
        self.calls += 1
        return self.model(tensor)


def edge_in(quad: Quad, share: float) -> Quad:
    """``quad`` with its left edge moved in by ``share`` of the plate's width: the detector's
    commonest miss on real photographs (a province character left outside)."""
    tl, tr, br, bl = (np.asarray(p, dtype=float) for p in quad)
    moved = (tl + (tr - tl) * share, tr, br, bl + (br - bl) * share)
    return tuple((float(x), float(y)) for x, y in moved)  # type: ignore[return-value]


def test_a_sure_read_is_read_once_and_an_unsure_one_again_at_other_corners() -> None:
    reader = TfliteReader()
    counted = CountingModel(reader.recogniser)
    reader.recogniser = counted  # type: ignore[assignment]
    sure = [s for s in (sample("heldout", CI_SEED, i, degraded=False) for i in range(20))
            if reader.read_image(s.image, is_crop=False).confidence >= RETRY_BELOW][:5]
    assert len(sure) == 5
    for scene in sure:
        counted.calls = 0
        read = reader.read_image(scene.image, is_crop=False)
        assert read.plate == scene.text and counted.calls == len(reader.margins)
    mended = 0
    for scene in sure:
        bad = edge_in(scene.corners, 0.15)
        first = reader._read_at(scene.image, bad, 0.0)

        def detect(image: Any, region: Any = None, bad: Quad = bad) -> tuple[Quad, float]:
            return bad, 0.0

        reader.detect = detect  # type: ignore[method-assign]
        counted.calls = 0
        read = reader.read_image(scene.image, is_crop=False)
        if first.confidence >= RETRY_BELOW:
            assert counted.calls == len(reader.margins)  # sure even so: not read again
            continue
        assert counted.calls == 3 * len(reader.margins)
        assert read.confidence >= first.confidence
        mended += read.plate == scene.text != first.plate
    print(f"\nreads mended by reading again: {mended} of {len(sure)}")
    assert mended >= 1


def scripted(reader: TfliteReader, reads: list[tuple[str | None, float]]) -> list[Quad]:
    """Make ``reader`` read ``reads`` in turn, one per set of corners (the first at the
    detector's); returns the corners it was asked to read at."""
    asked: list[Quad] = []
    queue = list(reads)
    square: Quad = ((10.0, 10.0), (150.0, 10.0), (150.0, 55.0), (10.0, 55.0))

    def detect(image: Any, region: Any = None) -> tuple[Quad, float]:
        return square, 0.0

    def read_at(image: Any, corners: Quad, detect_ms: float) -> PlateRead:
        asked.append(corners)
        plate, confidence = queue.pop(0)
        return PlateRead(plate, confidence, (), plate or "", corners, detect_ms, 1.0, (), True)

    reader.detect = detect  # type: ignore[method-assign]
    reader._read_at = read_at  # type: ignore[method-assign]
    return asked


@pytest.mark.parametrize(("reads", "kept"), [
    # a plate read first gives way only to one RETRY_MARGIN surer
    ([("粤B12345", 0.6), ("粤B12346", 0.8), ("粤B12347", 0.85)], "粤B12345"),
    ([("粤B12345", 0.6), ("粤B12346", 0.8), ("粤B12347", 0.95)], "粤B12347"),
    # once replaced, a surer read replaces it again without the margin
    ([("粤B12345", 0.5), ("粤B12346", 0.85), ("粤B12347", 0.9)], "粤B12347"),
    # a first read that is no plate gives way to any plate
    ([(None, 0.0), ("粤B12346", 0.3), (None, 0.0)], "粤B12346"),
    ([("粤B1", 0.7), ("粤B12346", 0.2), ("粤B12347", 0.1)], "粤B12346"),
])
def test_the_second_reading_keeps_the_first_plate_unless_another_is_surer_by_the_margin(
        reads: list[tuple[str | None, float]], kept: str) -> None:
    reader = TfliteReader()
    asked = scripted(reader, reads)
    read = reader.read_image(Image.new("L", (320, 240)), is_crop=False)
    assert read.plate == kept
    assert len(asked) == 3 and asked[1] != asked[2]  # refined again; and from grown corners
    assert read.total_ms >= 3.0  # every reading's time counted (1 ms of recognising each)
