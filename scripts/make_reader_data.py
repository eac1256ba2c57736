"""Render the reader's training data to ``.npz`` shards (no TensorFlow needed).

    python scripts/make_reader_data.py --out var/reader-data --count 24000 --shards 2

Each shard holds recogniser crops (from corners jittered like a detector's error), their
labels as class indices, detector frames and corner targets. Reproducible from ``--seed``.

Closer to real plates, both off by default (so a command without them writes the same data
as before): ``--ga36`` draws 40 % of the plates' letters and digits in the GA 36 plate faces,
``--camera-pipeline`` cuts the crops through a real camera's troubles (JPEG, noise, motion
blur, IR night, low resolution, loose and tight crops); docs/reader.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
from pathlib import Path

import numpy as np

from firmware.lane.devices.reader.alphabet import ALPHABET, encode
from simulator.plates_render.dataset import TRAIN_SEED, arrays
from simulator.plates_render.render import GA36_SHARE, GATE_320, LANE_720, CameraView

VIEWS: dict[str, CameraView] = {"gate": GATE_320, "lane": LANE_720}
Job = tuple[Path, int, int, int, float, bool, str, float, bool]


def _shard(job: Job) -> Path:
    out, seed, start, count, jitter, degraded_only, view, ga36_share, camera = job
    data = arrays("train", seed, start, count, corner_jitter=jitter,
                  degraded=True if degraded_only else None, view=VIEWS[view],
                  ga36_share=ga36_share, camera_pipeline=camera)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
    parser.add_argument("--ga36", action="store_true",
                        help=f"draw {GA36_SHARE * 100:.0f} %% of the plates' letters and digits "
                             "in the GA 36 plate faces, their Chinese characters heavier and "
                             "squeezed (default: the training fonts only, as before)")
    parser.add_argument("--camera-pipeline", action="store_true",
                        help="cut the recogniser crops through a real camera's troubles: JPEG "
                             "q20-90, sensor noise, motion blur, IR night, low resolution, "
                             "loose and tight crops (default off: the crops as before)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    per = args.count // args.shards
    share = GA36_SHARE if args.ga36 else 0.0
    jobs: list[Job] = [(args.out, args.seed, i * per, per, args.jitter, args.degraded_only,
                        args.view, share, args.camera_pipeline) for i in range(args.shards)]
    with multiprocessing.Pool(min(args.shards, 2)) as pool:
        for path in pool.imap_unordered(_shard, jobs):
            print("wrote", path)


if __name__ == "__main__":
    main()
