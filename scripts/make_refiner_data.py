"""Render the corner refiner's training data to ``.npz`` shards (no TensorFlow needed).

    python scripts/make_refiner_data.py --out var/refiner-data --count 40000 --shards 8

Each sample is a training-split scene seen through a *coarse* quad, half the time the
committed detector's own corners (the error the refiner must undo), half the time the true
corners jittered by up to ``--jitter`` of the plate height (errors the detector may make on
frames it has not seen); stored are the refiner's window (uint8) and the true corners in it.
"""

from __future__ import annotations

import argparse
import multiprocessing
from pathlib import Path

import numpy as np

from firmware.lane.reader.preprocess import corners_from_output, detector_tensor
from firmware.lane.reader.reader import DEFAULT_MODELS
from firmware.lane.reader.refine import WINDOW_SIZE, target_in_window, window
from firmware.lane.reader.runtime import TfliteModel
from simulator.plates_render.dataset import jitter, sample

REFINER_SEED = 4_242_001


def _shard(job: tuple[Path, int, int, int, float]) -> Path:
    out, seed, start, count, amount = job
    detector = TfliteModel(DEFAULT_MODELS / "plate_detector.tflite")
    windows = np.empty((count, WINDOW_SIZE[1], WINDOW_SIZE[0]), dtype=np.uint8)
    targets = np.empty((count, 8), dtype=np.float32)
    for k in range(count):
        scene = sample("train", seed, start + k)
        rng = np.random.default_rng([seed, start + k, 5])
        if k % 2:
            coarse = jitter(scene.corners, rng, amount)
        else:
            found = corners_from_output(detector(detector_tensor(scene.image))[0],
                                        scene.image.size)
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
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    per = args.count // args.shards
    jobs = [(args.out, args.seed, i * per, per, args.jitter) for i in range(args.shards)]
    with multiprocessing.Pool(args.procs) as pool:
        for path in pool.imap_unordered(_shard, jobs):
            print("wrote", path, flush=True)


if __name__ == "__main__":
    main()
