"""The lane's plate region: what the detector looks at in a 1280 × 720 lane frame, crops from
plates much bigger than the recogniser's input, and the config that names the region."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from pydantic import ValidationError

from firmware.lane.config import MIN_REGION, CameraSettings
from firmware.lane.devices.reader.geometry import (
    Quad,
    box_of,
    perspective_coeffs,
    plate_width,
    straighten,
)
from firmware.lane.devices.reader.preprocess import DET_SIZE, RegionOutsideFrameError, detector_view
from firmware.lane.devices.reader.reader import ZOOM_BELOW, ZOOM_PLATE_WIDTHS, zoom_view
from firmware.lane.devices.reader.region import REGION_PLATE_WIDTHS, region_around, windows
from parkguard.clock import ManualClock
from simulator.camera import camera_and_reader
from simulator.plates_render.dataset import sample
from simulator.plates_render.render import LANE_720


def test_a_4_by_3_frame_without_a_region_is_its_own_view_as_in_training() -> None:
    assert detector_view((320, 240)) == (0, 0, 320, 240)
    assert detector_view((1280, 960)) == (0, 0, 1280, 960)


def test_a_16_by_9_frame_without_a_region_is_viewed_whole_with_black_above_and_below() -> None:
    assert detector_view((1280, 720)) == (0, -120, 1280, 840)


@given(left=st.integers(0, 1000), top=st.integers(0, 600), width=st.integers(128, 1280),
       height=st.integers(96, 720))
def test_the_view_is_the_region_grown_to_4_by_3_about_its_centre(
        left: int, top: int, width: int, height: int) -> None:
    region = (left, top, left + width, top + height)
    x0, y0, x1, y1 = detector_view((2000, 2000), region)
    assert abs((x1 - x0) * 3 - (y1 - y0) * 4) <= 7  # 4:3 up to rounding
    assert x0 <= left and y0 <= top and x1 >= left + width and y1 >= top + height
    assert abs((x0 + x1) - (2 * left + width)) <= 1 and abs((y0 + y1) - (2 * top + height)) <= 1
    assert min(x1 - x0 - width, y1 - y0 - height) <= 1  # only the short side grows


def test_a_region_off_the_frame_names_itself_and_the_frame_size() -> None:
    with pytest.raises(RegionOutsideFrameError, match=r"\(900, 400, 1500, 850\).*640x480"):
        detector_view((640, 480), (900, 400, 1500, 850))
    with pytest.raises(RegionOutsideFrameError, match="empty"):
        detector_view((640, 480), (300, 200, 300, 260))


def stripes(width: int, height: int) -> Image.Image:
    """Vertical black and white stripes one pixel wide: all detail, mean grey 127.5."""
    row = (np.arange(width) % 2 * 255).astype(np.uint8)
    return Image.fromarray(np.repeat(row[None, :], height, axis=0), "L")


def test_a_plate_far_wider_than_the_crop_is_averaged_down_not_aliased() -> None:
    image = stripes(1200, 400)
    quad: Quad = ((100.0, 50.0), (1060.0, 50.0), (1060.0, 350.0), (100.0, 350.0))
    crop = np.asarray(straighten(image, quad, (128, 40)), dtype=np.float32)
    warped = np.asarray(image.transform((128, 40), Image.Transform.QUAD,
                                        (100, 50, 100, 350, 1060, 350, 1060, 50),
                                        Image.Resampling.BILINEAR), dtype=np.float32)
    assert warped.std() > 40  # what one sample per pixel makes of 7.5 stripes per pixel
    assert crop.std() < 12 and abs(crop.mean() - 127.5) < 10


def test_a_plate_less_than_twice_the_crop_is_warped_as_the_models_were_trained() -> None:
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (240, 320), np.uint8))
    quad: Quad = ((40.0, 60.0), (250.0, 70.0), (245.0, 140.0), (42.0, 128.0))  # 207 px: 1.6x
    direct = straighten(image, quad, (128, 40))
    coeffs = perspective_coeffs(quad, ((0.0, 0.0), (128.0, 0.0), (128.0, 40.0), (0.0, 40.0)))
    expected = image.transform((128, 40), Image.Transform.PERSPECTIVE, coeffs,
                               Image.Resampling.BILINEAR)
    assert direct.tobytes() == expected.tobytes()


def test_a_grey_crop_of_a_colour_frame_is_what_greying_the_whole_frame_first_gives() -> None:
    """Only the part the warp reads is turned grey; the pixels must not change for it."""
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (720, 1280, 3), np.uint8))
    for quad in (((500.0, 400.0), (700.0, 405.0), (698.0, 460.0), (502.0, 455.0)),  # 1.6x
                 ((300.0, 300.0), (900.0, 310.0), (905.0, 480.0), (298.0, 470.0)),  # 4.7x
                 ((1200.0, 650.0), (1400.0, 650.0), (1400.0, 700.0), (1200.0, 700.0))):  # off
        grey_first = straighten(image.convert("L"), quad, (128, 40), margin=(0.04, 0.1))
        assert straighten(image, quad, (128, 40), margin=(0.04, 0.1),
                          mode="L").tobytes() == grey_first.tobytes(), quad


def test_the_search_windows_are_4_by_3_cover_the_frame_and_stay_on_it() -> None:
    boxes = list(windows((1280, 720)))
    assert all(abs((r - x) * 3 - (b - y) * 4) <= 4 for x, y, r, b in boxes)
    assert all(0 <= x < r <= 1280 and 0 <= y < b <= 720 for x, y, r, b in boxes)
    for fraction_width in {r - x for x, _, r, _ in boxes}:
        same = [b for b in boxes if b[2] - b[0] == fraction_width]
        assert min(b[0] for b in same) == 0 and max(b[2] for b in same) == 1280
        assert min(b[1] for b in same) == 0 and max(b[3] for b in same) == 720
    assert 30 <= len(boxes) <= 80  # a commissioning tool: a few seconds on a Pi


def test_the_suggested_region_is_centred_on_the_plate_and_three_plates_wide() -> None:
    region = region_around((600.0, 420.0, 800.0, 480.0), 200.0, (1280, 720))
    assert region == (400, 225, 1000, 675)
    assert (region[2] - region[0]) == round(200 * REGION_PLATE_WIDTHS)


def test_a_suggested_region_near_the_edge_is_moved_onto_the_frame() -> None:
    assert region_around((1100.0, 620.0, 1260.0, 700.0), 160.0, (1280, 720)) == (
        800, 360, 1280, 720)


def test_the_pi_camera_needs_a_plate_region_and_the_error_says_how_to_find_it() -> None:
    with pytest.raises(ValidationError, match=r"plate_region is required.*--find-region"):
        CameraSettings(type="picamera")
    assert CameraSettings(type="picamera", plate_region=(360, 240, 920, 660)).plate_region == (
        360, 240, 920, 660)


def test_a_plate_region_past_the_pi_cameras_frame_or_too_small_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"reaches past the Pi camera's 1280x720"):
        CameraSettings(type="picamera", plate_region=(900, 240, 1400, 660))
    with pytest.raises(ValidationError, match="at least 128x96"):
        CameraSettings(type="tflite", plate_region=(10, 10, 100, 60))
    with pytest.raises(ValidationError, match="plate_region"):
        CameraSettings(type="tflite", plate_region=(-5, 0, 300, 200))


def test_a_simulated_lane_with_its_own_plate_region_reads_the_car_shown_to_it() -> None:
    """``parkguard lane`` and the simulator render a lane's frames for *its* plate region (not
    the default lane view's), so the real reader finds the plate where the lane looks."""
    camera, reader = camera_and_reader("tflite", ManualClock(datetime(2026, 1, 1, tzinfo=UTC)),
                                       seed=5, region=(80, 40, 640, 460))
    reads = []
    for plate in ("粤B12345", "京A88K21", "沪C5Z718"):
        camera.show(plate)
        reads.append(reader.read(camera.capture()).plate)
    assert reads == ["粤B12345", "京A88K21", "沪C5Z718"]


def test_the_smallest_region_the_lane_config_accepts_is_the_detectors_input() -> None:
    """The config keeps its own copy (it does not import the reader); the two must agree, or a
    region the lane accepts would be upscaled before the detector sees it."""
    assert MIN_REGION == DET_SIZE


@given(x=st.floats(0, 2000), y=st.floats(0, 1500), width=st.floats(20, 400),
       tilt=st.floats(-0.2, 0.2))
def test_the_second_look_is_a_4_by_3_view_three_plate_widths_wide_about_the_plate(
        x: float, y: float, width: float, tilt: float) -> None:
    height = width / 3.14
    quad: Quad = ((x, y), (x + width, y + width * tilt), (x + width, y + width * tilt + height),
                  (x, y + height))
    x0, y0, x1, y1 = zoom_view(quad)
    assert abs((x1 - x0) * 3 - (y1 - y0) * 4) <= 7
    assert x1 - x0 >= ZOOM_PLATE_WIDTHS * plate_width(quad) - 1
    left, top, right, bottom = box_of(quad)
    assert x0 <= left and x1 >= right and y0 <= top and y1 >= bottom  # the whole plate in view
    share = plate_width(quad) / (x1 - x0)
    assert share >= ZOOM_BELOW  # zoomed enough that it would not look a third time


def test_a_plate_small_in_a_frame_with_no_region_is_read_by_a_second_look() -> None:
    """1280 x 720 lane frames with no region: a plate of 120-250 px is a tenth to a fifth of
    the detector's view, where the first look only finds roughly where it is; the second
    look, zoomed onto it, reads it. Wider plates are read from the first look."""
    from firmware.lane.devices.reader import TfliteReader

    reader = TfliteReader()
    scenes = [sample("train", 424_242, i, degraded=False, view=LANE_720) for i in range(12)]
    looks = []
    original = reader._look

    def counting(image: Image.Image, view: tuple[int, int, int, int]) -> Quad:
        looks.append(view)
        return original(image, view)

    reader._look = counting  # type: ignore[method-assign]
    right = sum(reader.read_image(s.image, is_crop=False).plate == s.text for s in scenes)
    small = sum(plate_width(s.corners) < 0.18 * 1280 for s in scenes)
    assert small >= 4
    assert len(looks) >= len(scenes) + small  # every small plate got a second look
    assert right >= 11, f"{right} of {len(scenes)}"
