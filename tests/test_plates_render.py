"""The synthetic plate renderer: valid labels, right shapes, reproducible from a seed."""

from __future__ import annotations

import numpy as np
import pytest

from firmware.lane.reader.alphabet import ALPHABET
from firmware.lane.reader.geometry import box_iou, straighten
from firmware.lane.reader.preprocess import DET_SIZE, REC_SIZE
from parkguard.core.plates import PlateSeries, parse_plate
from simulator.plates_render.dataset import arrays, frames_of_one_car, sample
from simulator.plates_render.render import (
    CJK_FONTS,
    LATIN_FONTS,
    SCENE_SIZE,
    Split,
    _font,
    _glyph,
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
