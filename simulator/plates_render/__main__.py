"""Write a rendered data set to disk: frames (PNG), straightened crops and ``labels.jsonl``.

    python -m simulator.plates_render --split heldout --count 200 --out var/plates/heldout
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from simulator.plates_render.dataset import HELDOUT_SEED, TRAIN_SEED, crop_image, sample


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=["train", "heldout"], default="heldout")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--seed", type=int, default=None,
                        help="default: the split's own seed (train and held-out never share)")
    parser.add_argument("--degraded", choices=["mixed", "clean", "all"], default="mixed")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else (
        TRAIN_SEED if args.split == "train" else HELDOUT_SEED)
    degraded = {"mixed": None, "clean": False, "all": True}[args.degraded]
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "labels.jsonl").open("w", encoding="utf-8") as labels:
        for i in range(args.count):
            scene = sample(args.split, seed, i, degraded=degraded)
            frame, crop = f"{i:06d}.png", f"{i:06d}-crop.png"
            scene.image.save(args.out / frame)
            crop_image(scene).save(args.out / crop)
            labels.write(json.dumps({
                "frame": frame, "crop": crop, "text": scene.text, "series": scene.series.value,
                "corners": [list(p) for p in scene.corners],
                "degradations": list(scene.degradations)}, ensure_ascii=False) + "\n")
    print(f"wrote {args.count} samples to {args.out}")


if __name__ == "__main__":
    main()
