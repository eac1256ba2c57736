"""Scores the committed reader models with one TFLite runtime and prints JSON.

Not a test module: ``tests/test_reader_models.py`` runs it with the interpreter of the numpy-1
venv (``make`` builds ``.venv-numpy1``), where ``tflite-runtime`` 2.14 can load, because that
runtime cannot create an Interpreter under the project's numpy 2. It only needs numpy,
Pillow, pydantic and the runtime: the same modules a lane has.

    .venv-numpy1/bin/python tests/reader_runtime_probe.py tflite_runtime SEED N [LANE_SEED LANE_N]

With ``LANE_SEED LANE_N`` it also reads that many clean and degraded 1280 x 720 lane camera
frames through the plate region, as a Pi lane does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from firmware.lane.devices.reader import DEFAULT_MODELS, TfliteReader
from firmware.lane.devices.reader.geometry import box_iou
from firmware.lane.devices.reader.preprocess import recogniser_crop
from simulator.plates_render.dataset import sample
from simulator.plates_render.render import LANE_720


def main() -> None:
    runtime, seed, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    reader = TfliteReader(DEFAULT_MODELS, threads=1, runtime=runtime)  # type: ignore[arg-type]
    clean = [sample("heldout", seed, i, degraded=False) for i in range(n)]
    degraded = [sample("heldout", seed, n + i, degraded=True) for i in range(n)]
    frames = [reader.read_image(s.image, is_crop=False) for s in clean]
    lane: dict[str, int] = {}
    if len(sys.argv) > 5:
        lane_seed, lane_n = int(sys.argv[4]), int(sys.argv[5])
        lane_reader = TfliteReader(DEFAULT_MODELS, threads=1, runtime=runtime,  # type: ignore[arg-type]
                                   region=LANE_720.region)
        for kind, bad in (("lane_clean", False), ("lane_degraded", True)):
            scenes = [sample("heldout", lane_seed, i + (lane_n if bad else 0), degraded=bad,
                             view=LANE_720) for i in range(lane_n)]
            lane[kind] = sum(lane_reader.read_image(s.image, is_crop=False).plate == s.text
                             for s in scenes)
    print(json.dumps({
        "runtime": reader.runtime,
        "numpy": np.__version__,
        "clean_crops": sum(reader.read_image(recogniser_crop(s.image, s.corners),
                                             is_crop=True).plate == s.text for s in clean),
        "clean_frames": sum(r.plate == s.text for r, s in zip(frames, clean, strict=True)),
        "degraded_frames": sum(reader.read_image(s.image, is_crop=False).plate == s.text
                               for s in degraded),
        "detection": sum(bool(r.corners is not None and box_iou(r.corners, s.corners) >= 0.5)
                         for r, s in zip(frames, clean, strict=True)),
        **lane,
    }))


if __name__ == "__main__":
    main()
