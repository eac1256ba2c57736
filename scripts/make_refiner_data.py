"""Render the corner refiner's training data to ``.npz`` shards (no TensorFlow needed).

    python scripts/make_refiner_data.py --out var/refiner-data --count 40000 --shards 8

Each sample is a training-split scene seen through a *coarse* quad, half the time the
committed detector's own corners (the error the refiner must undo), half the time the true
corners jittered by up to ``--jitter`` of the plate height (errors the detector may make on
frames it has not seen); stored are the refiner's window (uint8) and the true corners in it.
``--view lane`` renders the lane camera's 1280 x 720 frames (``LANE_720``), the detector
looking in its plate region as on the lane.
"""

from __future__ import annotations

import argparse
import multiprocessing
from pathlib import Path

import numpy as np

from firmware.lane.devices.reader.reader import DEFAULT_MODELS, TfliteReader
from firmware.lane.devices.reader.refine import WINDOW_SIZE, target_in_window, window
from simulator.plates_render.dataset import jitter, sample
from simulator.plates_render.render import GATE_320, LANE_720, CameraView

VIEWS: dict[str, CameraView] = {"gate": GATE_320, "lane": LANE_720}

REFINER_SEED = 4_242_001


def _shard(job: tuple[Path, int, int, int, float, str]) -> Path:
    out, seed, start, count, amount, view_name = job
    view = VIEWS[view_name]
    detector = TfliteReader(DEFAULT_MODELS, refine=False, region=view.region)
    windows = np.empty((count, WINDOW_SIZE[1], WINDOW_SIZE[0]), dtype=np.uint8)
    targets = np.empty((count, 8), dtype=np.float32)
    for k in range(count):
        scene = sample("train", seed, start + k, view=view)
        rng = np.random.default_rng([seed, start + k, 5])
        if k % 2:
            coarse = jitter(scene.corners, rng, amount)
        else:
            found, _ms = detector.detect(scene.image)  # the detector alone, as on the lane
            coarse = jitter(found, rng, 0.03)
        windows[k] = np.asarray(window(scene.image, coarse))
        targets[k] = target_in_window(scene.corners, coarse)
    path = out / f"refiner-{seed}-{start:07d}.npz"
    np.savez_compressed(path, windows=windows, targets=targets)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("var/refiner-data"))
    parser.add_argument("--count", type=int, default=40000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--seed", type=int, default=REFINER_SEED)
    parser.add_argument("--jitter", type=float, default=0.2,
                        help="largest synthetic corner error, as a fraction of the plate height")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--view", choices=sorted(VIEWS), default="gate",
                        help="gate: 320x240 frames (runs 1-2); lane: 1280x720 (LANE_720)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    per = args.count // args.shards
    jobs = [(args.out, args.seed, i * per, per, args.jitter, args.view)
            for i in range(args.shards)]
    with multiprocessing.Pool(args.procs) as pool:
        for path in pool.imap_unordered(_shard, jobs):
            print("wrote", path, flush=True)


if __name__ == "__main__":
    main()
