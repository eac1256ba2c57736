"""``parkguard read``: plates from image files, as an installer or an operator runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from cli.read import read
from firmware.lane.devices.reader.geometry import plate_width
from firmware.lane.devices.reader.preprocess import recogniser_crop
from firmware.lane.devices.reader.reader import MIN_PLATE_WIDTH_PX
from simulator.plates_render.dataset import frames_of_one_car, sample
from simulator.plates_render.render import LANE_720, Scene

SEED = 424_242  # training-split frames (not the bench's held-out ones)


def scene_of_width(wide: bool) -> Scene:
    """A clean frame whose plate is clearly wider than the placement minimum, or clearly
    narrower (the tests check the committed models read it)."""
    for i in range(200):
        scene = sample("train", SEED, i, degraded=False)
        width = plate_width(scene.corners)
        if width >= MIN_PLATE_WIDTH_PX + 10 if wide else width < MIN_PLATE_WIDTH_PX - 20:
            return scene
    raise AssertionError("no such frame in 200")


def saved(scene: Scene, path: Path) -> Path:
    scene.image.save(path)
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(read, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_a_frame_prints_plate_confidence_time_and_plate_width(tmp_path: Path) -> None:
    scene = scene_of_width(wide=True)
    code, out, err = invoke(str(saved(scene, tmp_path / "gate.png")))
    assert code == 0, out + err
    name, plate, confidence, ms, wide = out.strip().split("\t")
    assert name.endswith("gate.png") and plate == scene.text
    assert 0 < float(confidence) <= 1 and ms.endswith(" ms")
    assert wide.endswith(" px wide")
    assert abs(int(wide.split()[0]) - plate_width(scene.corners)) <= 4  # detected, not true
    assert err == ""


def test_a_plate_too_small_for_the_camera_placement_gets_a_note(tmp_path: Path) -> None:
    scene = scene_of_width(wide=False)
    code, _, err = invoke(str(saved(scene, tmp_path / "far.png")))
    assert "far.png" in err and f"wants {MIN_PLATE_WIDTH_PX} px or more" in err
    assert "move the camera closer" in err
    assert code in (0, 1)  # small plates are often still read; the note is about placement


def test_json_has_the_corners_the_width_and_the_stage_times(tmp_path: Path) -> None:
    scene = scene_of_width(wide=True)
    crop = tmp_path / "crop.png"
    recogniser_crop(scene.image, scene.corners).convert("RGB").resize((256, 80)).save(crop)
    code, out, _ = invoke("--json", str(saved(scene, tmp_path / "gate.png")), str(crop))
    assert code == 0
    doc = json.loads(out)
    frame, cropped = doc["reads"]
    assert frame["plate"] == scene.text and len(frame["corners"]) == 4
    assert abs(frame["plate_width_px"] - plate_width(scene.corners)) <= 4
    assert set(frame["ms"]) == {"detect", "recognise", "total"}
    assert cropped["corners"] is None and cropped["plate_width_px"] is None
    assert cropped["ms"]["detect"] == 0
    assert doc["runtime"] in ("ai_edge_litert", "tflite_runtime")


@pytest.mark.parametrize("size", [(94, 24), (136, 36), (240, 64)])
def test_a_tight_low_resolution_plate_crop_is_read_as_a_crop(tmp_path: Path,
                                                            size: tuple[int, int]) -> None:
    """Plate crops as other systems and data sets cut them: the plate's own edges, 94 x 24
    (LPRNet's size) and up, in colour; read whole, no detector, no placement note."""
    right = 0
    for i in range(6):
        scene = sample("train", SEED, i, degraded=False)
        path = tmp_path / f"crop{i}.png"
        recogniser_crop(scene.image, scene.corners, (0.0, 0.0)).convert("RGB").resize(
            size, Image.Resampling.BILINEAR).save(path)
        code, out, err = invoke("--json", str(path))
        read = json.loads(out)["reads"][0]
        assert read["corners"] is None and read["ms"]["detect"] == 0 and err == ""
        right += read["plate"] == scene.text and code == 0
    assert right >= 5, f"{right} of 6 {size} crops read"


def test_fuse_reads_frames_of_one_car_as_one_plate(tmp_path: Path) -> None:
    frames = frames_of_one_car("train", SEED, 3, 3, degraded=False)
    paths = [str(saved(f, tmp_path / f"f{k}.png")) for k, f in enumerate(frames)]
    code, out, _ = invoke("--fuse", *paths)
    fused = out.strip().splitlines()[-1].split("\t")
    assert fused[0] == "fused" and fused[1] == frames[0].text
    assert fused[3] == "6/6 crop reads of 3 frames"  # two crops of each frame
    assert code == 0


def test_a_frame_without_a_plate_exits_1_and_says_no_valid_plate(tmp_path: Path) -> None:
    blank = tmp_path / "empty-lane.png"
    Image.new("RGB", (320, 240), (90, 90, 90)).save(blank)
    code, out, err = invoke("--json", str(blank))
    assert code == 1
    only = json.loads(out)["reads"][0]
    assert not only["grammar_ok"] and only["confidence"] < 0.98  # below the lane's trust
    assert err == ""  # no placement note for a plate that is not there


@pytest.mark.parametrize("content", [b"", b"not a picture at all"])
def test_a_file_that_is_not_an_image_exits_2_naming_it(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_bytes(content)
    code, out, err = invoke(str(bad))
    assert code == 2 and "notes.txt: not an image" in out + err


def lane_still(index: int = 0) -> Scene:
    """A commissioning still: the Pi camera's 1280 x 720 frame of a car on the arming loop."""
    return sample("train", SEED, index, degraded=False, view=LANE_720)


def test_find_region_reads_a_lane_still_and_prints_the_region_for_the_config(
        tmp_path: Path) -> None:
    scene = lane_still()
    code, out, err = invoke("--find-region", str(saved(scene, tmp_path / "car.jpg")))
    assert code == 0, out + err
    first, second = out.strip().splitlines()
    assert first.split("\t")[1] == scene.text
    label, numbers, hint = second.split("\t")
    left, top, right, bottom = (int(v) for v in numbers.split(", "))
    assert label == "plate region" and hint.startswith("(lane.toml: [camera] plate_region = [")
    assert abs((right - left) * 3 - (bottom - top) * 4) <= 4  # 4:3, as the detector wants
    assert all(left <= x <= right and top <= y <= bottom for x, y in scene.corners)
    assert "not 4:3" not in err


def test_the_suggested_region_reads_other_cars_of_the_same_lane(tmp_path: Path) -> None:
    """What commissioning checks: the region found on one car serves the next ones."""
    code, out, _ = invoke("--json", "--find-region", str(saved(lane_still(), tmp_path / "a.jpg")))
    assert code == 0
    region = json.loads(out)["reads"][0]["region"]
    others = [lane_still(i) for i in (1, 2, 3)]
    paths = [str(saved(s, tmp_path / f"car{i}.png")) for i, s in enumerate(others)]
    _, out, err = invoke("--json", "--region", ",".join(map(str, region)), *paths)
    reads = json.loads(out)["reads"]
    assert sum(r["plate"] == s.text for r, s in zip(reads, others, strict=True)) >= 2, reads
    assert all(r["region"] == region for r in reads)
    assert "not 4:3" not in err


def test_a_16_by_9_frame_read_without_a_region_gets_a_note_saying_how_to_set_one(
        tmp_path: Path) -> None:
    _, _, err = invoke(str(saved(lane_still(), tmp_path / "car.png")))
    assert "car.png is 1280x720, not 4:3" in err and "--find-region" in err


@pytest.mark.parametrize(("region", "message"), [
    ("360,240,920", "want LEFT,TOP,RIGHT,BOTTOM"),
    ("a,b,c,d", "want LEFT,TOP,RIGHT,BOTTOM"),
    ("920,240,360,660", "RIGHT must exceed LEFT"),
    ("360,240,480,660", "at least 128x96 px"),
])
def test_a_malformed_region_is_refused_naming_the_option(region: str, message: str,
                                                         tmp_path: Path) -> None:
    code, out, err = invoke("--region", region, str(saved(lane_still(), tmp_path / "c.png")))
    assert code == 2 and "--region" in out + err and message in out + err


def test_a_region_off_the_frame_exits_2_naming_the_frame_size(tmp_path: Path) -> None:
    small = sample("train", SEED, 0, degraded=False)  # 320 x 240
    code, out, err = invoke("--region", "360,240,920,660", str(saved(small, tmp_path / "s.png")))
    assert code == 2 and "s.png" in out + err and "320x240" in out + err


def test_find_region_on_an_empty_lane_says_no_plate_was_found(tmp_path: Path) -> None:
    blank = tmp_path / "empty.png"
    Image.new("RGB", (1280, 720), (90, 90, 90)).save(blank)
    code, _, err = invoke("--find-region", str(blank))
    assert code == 1 and "no plate found" in err and "arming loop" in err
