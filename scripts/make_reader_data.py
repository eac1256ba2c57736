"""Render the reader's training data to ``.npz`` shards (no TensorFlow needed).

    python scripts/make_reader_data.py --out var/reader-data --count 24000 --shards 2

Each shard holds recogniser crops (from corners jittered like a detector's error), their
labels as class indices, detector frames and corner targets. Reproducible from ``--seed``.
"""

from __future__ import annotations

import argparse
import multiprocessing
from pathlib import Path

import numpy as np

from firmware.lane.reader.alphabet import ALPHABET, encode
from simulator.plates_render.dataset import TRAIN_SEED, arrays
from simulator.plates_render.render import GATE_320, LANE_720, CameraView

VIEWS: dict[str, CameraView] = {"gate": GATE_320, "lane": LANE_720}


def _shard(job: tuple[Path, int, int, int, float, bool, str]) -> Path:
    out, seed, start, count, jitter, degraded_only, view = job
    data = arrays("train", seed, start, count, corner_jitter=jitter,
                  degraded=True if degraded_only else None, view=VIEWS[view])
    labels = np.zeros((count, 8), dtype=np.int32)
    lengths = np.zeros(count, dtype=np.int32)
    for k, text in enumerate(data.texts):
        codes = encode(text)
        labels[k, : len(codes)] = codes
        lengths[k] = len(codes)
    path = out / f"train-{seed}-{start:07d}.npz"
    np.savez_compressed(path, crops=data.crops, labels=labels, lengths=lengths,
                        frames=data.frames, corners=data.corners, alphabet=np.array(ALPHABET))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("var/reader-data"))
    parser.add_argument("--count", type=int, default=24000)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--seed", type=int, default=TRAIN_SEED)
    parser.add_argument("--jitter", type=float, default=0.06,
                        help="corner error of the crops, as a fraction of the plate height")
    parser.add_argument("--degraded-only", action="store_true",
                        help="every frame degraded (default: every other one)")
    parser.add_argument("--view", choices=sorted(VIEWS), default="gate",
                        help="gate: 320x240 frames (runs 1-5); lane: the lane camera's "
                             "1280x720 (LANE_720), detector frames from its plate region")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    per = args.count // args.shards
    jobs = [(args.out, args.seed, i * per, per, args.jitter, args.degraded_only, args.view)
            for i in range(args.shards)]
    with multiprocessing.Pool(min(args.shards, 2)) as pool:
        for path in pool.imap_unordered(_shard, jobs):
            print("wrote", path)


if __name__ == "__main__":
    main()
