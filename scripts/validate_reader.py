"""Score reader model directories on the *training* split, for choosing between runs.

    python scripts/validate_reader.py models var/run5 [--count 400] [--view lane]

The held-out bench (``simulator.bench_reader``) is for reporting, not for choosing: a model
picked by its bench score makes the bench score optimistic. This scores whole frames and
true-corner crops rendered with the training faces and backgrounds from a seed no training
run draws from (424 242), clean and degraded; how many reads reach the lane's trust level
and how many of those are wrong; and the degraded frames by kind of trouble and plate width.
Each directory is read on the same frames in the same run. ``--view lane`` renders the lane
camera's 1280 x 720 frames (``LANE_720``) and reads them through its plate region.
``--real`` also reads the *train* split of the real photographs and crops
(``scripts/real_plates.py extract``; ``simulator.bench_real`` reads the held-out split): the
recogniser trained on these files, so its figures there are optimistic, but a choice that
is not about the recogniser's weights (fusion, decoding, thresholds, the detector) can be
made on them without looking at the held-out files.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Final

import numpy as np
from PIL import Image
from real_plates import (
    VAL_PHOTOS,
    VALIDATION_FILES,
    choosing_photos,
    load_labels,
    local_name,
    quad_of,
)

from firmware.lane.devices.reader import TfliteReader, fuse
from firmware.lane.devices.reader.geometry import plate_width
from firmware.lane.devices.reader.preprocess import recogniser_crop
from simulator import bench_real
from simulator.bench_reader import LANE_WIDTHS, WIDTHS, breakdown, plate_accuracy
from simulator.plates_render.dataset import sample
from simulator.plates_render.render import GATE_320, LANE_720

VALIDATION_SEED = 424_242
#: the lane's camera.trust_confidence (0.98) and two lower levels: a wrongly trusted read
#: bills the wrong car, so the count of wrong reads at or above each level matters most
TRUST_LEVELS = (0.98, 0.9, 0.8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--count", type=int, default=400, help="clean and degraded frames each")
    parser.add_argument("--view", choices=("gate", "lane"), default="gate",
                        help="gate: 320x240 frames; lane: 1280x720 through the plate region")
    parser.add_argument("--real", type=Path, default=None, metavar="DIR",
                        help="also read the train split of the real images extracted to DIR "
                             "(var/real-plates)")
    parser.add_argument("--choose", type=Path, default=None, metavar="DIR",
                        help="only score run 9's choosing photographs extracted to DIR "
                             "(var/real-plates) whole: exact reads, plates found, corner error")
    parser.add_argument("--val-crops", type=Path, default=None, metavar="NPZ",
                        help="only read the first 500 crops of a real_plates.py shards file "
                             "(var/reader-data-real/train-real-19.npz: its validation files)")
    args = parser.parse_args()
    if args.val_crops is not None:
        validation_crops(args.models, args.val_crops)
        return
    if args.choose is not None:
        choose(args.models, args.choose)
        return
    view = LANE_720 if args.view == "lane" else GATE_320
    scenes = {bad: [sample("train", VALIDATION_SEED, i, degraded=bad, view=view)
                    for i in range(args.count)] for bad in (False, True)}
    for models in args.models:
        reader = TfliteReader(models, threads=1, region=view.region)
        print(f"== {models}")
        if args.real is not None:
            print(bench_real.table(bench_real.run(args.real, models=models, baselines=False,
                                                  split="train")))
        for bad, frames in scenes.items():
            truths = [s.text for s in frames]
            reads = [reader.read_image(s.image, is_crop=False) for s in frames]
            whole = [r.plate for r in reads]
            crops = [fuse([reader.recognise(recogniser_crop(s.image, s.corners))[0]]).plate
                     for s in frames]
            kind = "degraded" if bad else "clean"
            print(f"{kind:>9}: whole frame {plate_accuracy(whole, truths):.1%}, "
                  f"crops {plate_accuracy(crops, truths):.1%}")
            for level in TRUST_LEVELS:
                trusted = [r.plate == s.text for r, s in zip(reads, frames, strict=True)
                           if r.confidence >= level]
                print(f"    confidence >= {level}: {len(trusted) / len(frames):.1%} of frames, "
                      f"{len(trusted) - sum(trusted)} of them wrong")
            if bad:
                widths = LANE_WIDTHS if view is LANE_720 else WIDTHS
                for key, group in breakdown(frames, whole, widths).items():
                    print(f"    {key:<24} {group['plate_e2e']:6.1%} of {group['frames']}")


def validation_crops(model_dirs: list[Path], shard: Path) -> None:
    """Each model directory's recogniser (the lane's default precision) on the validation
    crops at the head of a real-crop shard: exact plates and province characters."""
    with np.load(shard) as data:
        crops = data["crops"][:VALIDATION_FILES]
        labels, lengths, alphabet = data["labels"], data["lengths"], str(data["alphabet"])
    truths = ["".join(alphabet[c - 1] for c in labels[k, : lengths[k]])
              for k in range(len(crops))]
    for models in model_dirs:
        reader = TfliteReader(models, threads=1)
        reads = [fuse([reader.recognise(Image.fromarray(crop))[0]]).plate or ""
                 for crop in crops]
        exact = sum(r == t for r, t in zip(reads, truths, strict=True))
        province = sum(r[:1] == t[:1] for r, t in zip(reads, truths, strict=True))
        print(f"{models}: {len(crops)} validation crops, exact {exact} ({exact / len(crops):.1%}),"
              f" province {province} ({province / len(crops):.1%})")


#: A detected plate is "found" when its corners are on average within this share of the
#: labelled plate's width of the labelled corners.
FOUND_WITHIN: Final = 0.25


def choose(model_dirs: list[Path], data: Path) -> None:
    """Each model directory on the choosing photographs (``real_plates.choosing_photos``:
    training split, never cut into a shard): whole-photograph exact reads, plates found and
    the mean corner error in plate widths, overall and on run 8's validation photographs."""
    rows = choosing_photos()
    labels = load_labels()
    pictures = []
    for row in rows:
        with Image.open(data / local_name(row)) as image:
            pictures.append((image.convert("L"), labels[row["sha256"]]["label"],
                             quad_of(labels[row["sha256"]]["corners"])))
    print(f"choosing set: {len(rows)} photographs ({VAL_PHOTOS} of them run 8's validation)")
    for models in model_dirs:
        reader = TfliteReader(models, threads=1)
        exact, found, errors = [], [], []
        for picture, label, truth in pictures:
            read = reader.read_image(picture, is_crop=False)
            corners = read.corners if read.corners is not None else truth  # never None whole
            error = float(np.linalg.norm(np.asarray(corners) - np.asarray(truth), axis=1)
                          .mean() / plate_width(truth))
            exact.append(read.plate == label)
            found.append(error <= FOUND_WITHIN)
            errors.append(error)
        for name, part in (("all", slice(None)), ("run 8's", slice(0, VAL_PHOTOS)),
                           ("later groups", slice(VAL_PHOTOS, None))):
            print(f"{models}  {name:>12}: exact {sum(exact[part])} / found "
                  f"{sum(found[part])} of {len(exact[part])}, mean corner error "
                  f"{np.mean(errors[part]):.2f} plate widths")


if __name__ == "__main__":
    main()
