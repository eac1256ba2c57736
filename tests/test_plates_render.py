"""The synthetic plate renderer: valid labels, right shapes, reproducible from a seed; the
legacy 320 × 240 view unchanged, the lane camera's 1280 × 720 view with the plate in its
region."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import Image

from firmware.lane.devices.reader.alphabet import ALPHABET
from firmware.lane.devices.reader.geometry import box_iou, plate_width, straighten
from firmware.lane.devices.reader.preprocess import DET_SIZE, REC_SIZE, detector_view
from parkguard.clock import ManualClock
from parkguard.core.plates import PlateSeries, parse_plate
from simulator.frames import truth_of
from simulator.plates_render import RenderingCamera
from simulator.plates_render.dataset import (
    HELDOUT_SEED,
    TRAIN_SEED,
    arrays,
    frames_of_one_car,
    sample,
)
from simulator.plates_render.render import (
    CJK_FONTS,
    GATE_320,
    LANE_720,
    LATIN_FONTS,
    SCENE_SIZE,
    Split,
    _font,
    _glyph,
    lane_view,
    render_plate,
    render_scene,
)
from simulator.plates_render.texts import GENERATORS, random_plate


@pytest.mark.parametrize("series", list(PlateSeries))
def test_every_series_generates_plates_the_grammar_accepts(series: PlateSeries) -> None:
    rng = np.random.default_rng(3)
    for _ in range(60):
        _, text = random_plate(rng, series)
        assert parse_plate(text).series is series, text
        assert set(text) <= set(ALPHABET)


def test_every_series_of_the_reference_has_a_generator() -> None:
    assert set(GENERATORS) == set(PlateSeries)


@pytest.mark.parametrize("series", list(PlateSeries))
def test_plates_are_drawn_at_their_size(series: PlateSeries) -> None:
    rng = np.random.default_rng(5)
    _, text = random_plate(rng, series)
    plate = render_plate(text, series, rng)
    assert plate.size == ((480, 140) if len(text) == 8 else (440, 140))
    assert plate.mode == "RGB"


def test_plate_colours_follow_the_series() -> None:
    rng = np.random.default_rng(1)
    police = np.asarray(render_plate("浙A1234警", PlateSeries.POLICE, rng))
    hk = np.asarray(render_plate("粤Z1234港", PlateSeries.HONG_KONG_MACAU, rng))
    nev = np.asarray(render_plate("沪AD12345", PlateSeries.NEW_ENERGY_SMALL, rng))
    assert police[10:20, 100:110].mean() > 200      # white background
    assert hk[10:20, 100:110].mean() < 60           # black background
    top, bottom = nev[8:12, 200:210, 1].mean(), nev[128:132, 200:210, 0].mean()
    assert top > bottom                             # the green gradient darkens downwards
    red = police[60:80, 380:420]                    # the red 警
    assert ((red[..., 0] > 150) & (red[..., 1] < 80)).any()


def test_scenes_are_reproducible_from_the_seed() -> None:
    a = sample("heldout", 11, 4)
    b = sample("heldout", 11, 4)
    c = sample("heldout", 12, 4)
    assert a.text == b.text and a.corners == b.corners
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))


def test_scene_corners_lie_in_the_frame_and_degradations_are_named() -> None:
    rng = np.random.default_rng(9)
    scene = render_scene("京A12345", PlateSeries.ORDINARY, rng, degraded=True)
    assert scene.image.size == SCENE_SIZE
    assert 1 <= len(scene.degradations) <= 3
    for x, y in scene.corners:
        assert 0 <= x <= SCENE_SIZE[0] and 0 <= y <= SCENE_SIZE[1]
    assert box_iou(scene.corners, scene.corners) == pytest.approx(1.0)


def test_training_and_heldout_differ() -> None:
    train, held = sample("train", 5, 0), sample("heldout", 5, 0)
    assert train.text != held.text


def test_arrays_have_model_shapes_and_valid_labels() -> None:
    data = arrays("train", 1, 0, 6, corner_jitter=0.05)
    assert data.crops.shape == (6, REC_SIZE[1], REC_SIZE[0])
    assert data.frames.shape == (6, DET_SIZE[1], DET_SIZE[0])
    assert data.corners.shape == (6, 8) and (0 <= data.corners).all() and (data.corners <= 1).all()
    assert data.degraded.tolist() == [False, True] * 3
    for text in data.texts:
        parse_plate(text)


def test_lane_arrays_give_the_detector_its_view_of_the_plate_region() -> None:
    """Training data at the lane camera's size: detector frames are the plate region as the
    lane's detector sees it, with the corners as fractions of that view."""
    data = arrays("train", 1, 0, 2, view=LANE_720)
    assert data.frames.shape == (2, DET_SIZE[1], DET_SIZE[0])
    left, top, right, bottom = detector_view(LANE_720.size, LANE_720.region)
    scene = sample("train", 1, 0, view=LANE_720)
    xs = [(x - left) / (right - left) for x, _ in scene.corners]
    ys = [(y - top) / (bottom - top) for _, y in scene.corners]
    assert np.allclose(data.corners[0], [v for pair in zip(xs, ys, strict=True) for v in pair],
                       atol=1e-5)
    assert (0.1 < data.corners).all() and (data.corners < 0.9).all()  # well inside the view


def test_straighten_returns_the_plate_upright() -> None:
    scene = sample("train", 2, 0, degraded=False)
    crop = straighten(scene.image, scene.corners, (220, 70))
    assert crop.size == (220, 70)


@pytest.mark.parametrize("held_out", ["heldout", "fresh"])
def test_training_never_draws_with_a_heldout_face(held_out: Split) -> None:
    """Every face resolves, and no training face is a held-out one (file or family + style)."""
    for fonts in (CJK_FONTS, LATIN_FONTS):
        train, held = set(fonts["train"]), set(fonts[held_out])
        assert not train & held
        names = {split: {_font(name, index).getname() for name, index in fonts[split]}
                 for split in ("train", held_out)}
        assert not names["train"] & names[held_out], names


def test_every_face_draws_every_character_it_is_used_for() -> None:
    for split in ("train", "heldout", "fresh"):
        for name, index in CJK_FONTS[split]:
            for char in "京粤警学挂领使港澳应急":
                assert _glyph(char, name, index, 0).size[1] > 40, (name, char)
        for name, index in LATIN_FONTS[split]:
            for char in "0123456789ABDHJKLMNPQRSTUVWXYZ":
                assert _glyph(char, name, index, 0).size[1] > 40, (name, char)


def test_frames_of_one_car_keep_its_plate_and_its_trouble() -> None:
    """Night stays night and the dirt stays on the plate from frame to frame; only the
    placement and the camera's noise change (fusing frames must not be easier than a car)."""
    for index in range(6):
        frames = frames_of_one_car("heldout", 31, index, 3, degraded=True)
        first = frames[0]
        assert first.degradations
        for later in frames[1:]:
            assert later.text == first.text and later.series is first.series
            assert later.degradations == first.degradations
            assert later.plate is first.plate
            assert later.corners != first.corners
        assert first.image.tobytes() == sample("heldout", 31, index, degraded=True).image.tobytes()


# Camera views ----------------------------------------------------------------------------

#: sha256 of ``sample(split, seed, index, degraded=...).image.tobytes()`` as the renderer drew
#: them before camera views existed, at the seeds the data sets and the bench use.
LEGACY_FRAMES: list[tuple[Split, int, int, bool, str]] = [
    ("train", TRAIN_SEED, 0, False,
     "1bced71834589d7ce02a4ec97be00e28d073b56e05112f1921dde1d88414c94b"),
    ("train", TRAIN_SEED, 1, True,
     "7999b16945ccc261ef57696293c7c695e44e51856adf51b28b1e736603f7d117"),
    ("heldout", HELDOUT_SEED, 0, False,
     "a643d3654bafaef209550d629e94395a831ef1a7fcb06a748de9c991463916cc"),
    ("heldout", HELDOUT_SEED, 3, True,
     "a62820e2273eed7045406023ecc936bc732d2bbcee659d082fdcacaa9dc53932"),
    ("fresh", HELDOUT_SEED + 2, 1, False,
     "ce0ad8cbaf2a5b6888998f7a4e3bf224ac1d07d1cad1a682ed01bbd19fe361a7"),
    ("fresh", HELDOUT_SEED + 2, 4, True,
     "4a7bc6006f6a3f9815fba48f4fa8c6ff8f0d876ca420333db66516a3875748aa"),
]
#: the three frames of held-out car 2 of the bench's multi-frame rows, concatenated
LEGACY_CAR = "2f142ec2fb02c35505ace5ae18ea9a9fb8f82ae05c701e7dc88fa3daaad79329"


def _sha(*images: Image.Image) -> str:
    return hashlib.sha256(b"".join(image.tobytes() for image in images)).hexdigest()


@pytest.mark.parametrize(("split", "seed", "index", "degraded", "digest"), LEGACY_FRAMES)
def test_the_legacy_views_frames_are_unchanged(split: Split, seed: int, index: int,
                                               degraded: bool, digest: str) -> None:
    """GATE_320 draws the same rng values in the same order and the same pixels as the
    renderer always did.

    If this fails, the held-out (or training) set has changed: every bench figure, the model
    card's numbers and the trained models' data no longer match the renderer. Do not update
    the hashes to make it pass; find the change to the draws or the arithmetic for the
    legacy view and undo it (a new look belongs in a new ``CameraView``). Only a deliberate,
    re-benched change of the data sets (or a numpy/Pillow/font upgrade that changes pixels,
    to be checked against the bench) may re-pin them.
    """
    scene = sample(split, seed, index, degraded=degraded)
    assert scene.view == GATE_320 and scene.image.size == SCENE_SIZE == GATE_320.size
    assert _sha(scene.image) == digest


def test_the_legacy_views_frames_of_one_car_are_unchanged() -> None:
    """See test_the_legacy_views_frames_are_unchanged: a failure means the bench's
    multi-frame (fusion) rows are drawn from another set of frames."""
    frames = frames_of_one_car("heldout", HELDOUT_SEED + 1, 2, 3, degraded=True)
    assert _sha(*(frame.image for frame in frames)) == LEGACY_CAR


def test_the_lane_view_has_a_4_by_3_region_and_the_legacy_view_scales_by_one() -> None:
    assert LANE_720.region is not None
    x0, y0, x1, y1 = LANE_720.region
    assert (x1 - x0) * 3 == (y1 - y0) * 4
    assert GATE_320.effect_scale == 1.0 and GATE_320.background_scale == (1.0, 1.0)
    assert GATE_320.area_scale == 1.0


def test_lane_scenes_are_full_size_with_the_plate_inside_the_region() -> None:
    """At the lane camera's size, every plate is 120-300 px wide and all its corners lie in
    the plate region an installer would set, clean and degraded, in every split."""
    assert LANE_720.region is not None
    x0, y0, x1, y1 = LANE_720.region
    low, high = LANE_720.plate_width
    splits: tuple[Split, ...] = ("train", "heldout", "fresh")
    for index in range(30):
        scene = sample(splits[index % 3], 41, index, view=LANE_720)  # odd indices degraded
        assert scene.image.size == (1280, 720) and scene.view == LANE_720
        assert bool(scene.degradations) == bool(index % 2)
        # the yaw tilts the top and bottom edges, lengthening them by under 0.5 %
        assert low <= plate_width(scene.corners) <= high * 1.005, index
        for x, y in scene.corners:
            assert x0 <= x <= x1 and y0 <= y <= y1, (index, scene.corners)


@pytest.mark.parametrize("region", [(100, 60, 580, 420), (700, 300, 1100, 600),
                                    (400, 200, 1000, 640)])
def test_a_lane_with_another_plate_region_gets_its_plates_inside_that_region(
        region: tuple[int, int, int, int]) -> None:
    """A lane configured with another region (``parkguard lane`` with the rendering camera)
    is shown plates inside it, as large against it as LANE_720's against its own."""
    view = lane_view(region)
    assert view.size == LANE_720.size and view.region == region
    x0, y0, x1, y1 = region
    share = min(x1 - x0, (y1 - y0) * 4 / 3)
    assert LANE_720.region is not None
    assert view.plate_width[1] / share == pytest.approx(
        LANE_720.plate_width[1] / (LANE_720.region[2] - LANE_720.region[0]))
    for index in range(12):
        scene = sample("heldout", 43, index, view=view)
        for x, y in scene.corners:
            assert x0 <= x <= x1 and y0 <= y <= y1, (index, scene.corners)


def test_the_lane_view_of_lane_720s_own_region_is_lane_720() -> None:
    assert LANE_720.region is not None and lane_view(LANE_720.region) is LANE_720


def test_a_later_frame_of_a_lane_car_keeps_its_view() -> None:
    frames = frames_of_one_car("heldout", 8, 1, 3, degraded=True, view=LANE_720)
    for later in frames[1:]:
        assert later.view == LANE_720 and later.image.size == LANE_720.size
        assert later.plate is frames[0].plate and later.corners != frames[0].corners
    with pytest.raises(ValueError, match="keeps its view"):  # the default view is GATE_320
        render_scene(frames[0].text, frames[0].series, np.random.default_rng(1),
                     same_car_as=frames[0])


def test_the_rendering_camera_captures_at_the_views_size() -> None:
    camera = RenderingCamera(clock=ManualClock(datetime(2026, 1, 1, tzinfo=UTC)), seed=3,
                             degraded_every=2, view=LANE_720)
    camera.show("粤B12345")
    for _ in range(2):  # the first capture degraded, the second a later frame of that car
        frame = camera.capture()
        assert frame.image is not None and truth_of(frame) == "粤B12345"
        with Image.open(io.BytesIO(frame.image)) as image:
            assert image.format == "JPEG" and image.size == (1280, 720)
