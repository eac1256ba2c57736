"""Refiner windows of every real training photograph, with the detector's real kinds of error.

    python scripts/real_refiner_data.py --out var/refiner-real4 [--windows 40] [--seed 41]

The refiner straightens the plate from the detector's coarse corners, with room around it,
and says where the true corners are. Run 3's windows moved each corner on its own by up to
0.3 of the plate's height; the detector's misses on real photographs are mostly not like
that: a whole edge sits a character in or out (a province panel of a lighter blue left
outside, a frame's border taken for the plate's), or the quad is a little too big or small
(models/README.md, refiner run 4). So half of these windows move each edge as a whole, by up
to :data:`EDGE_SHIFT` of the plate's width or :data:`RIM_SHIFT` of its height, and the other
half as before. A window whose true corners would fall outside it is drawn again: the
refiner's outputs are fractions of the window and cannot say "further out".

Photographs: the ``train`` split with corners (``real_plates.py``'s), scaled as ``scenes``
scales them. The choosing photographs (``real_plates.choosing_photos``) are never trained on:
their windows come first, as the trainer's validation split (its first 1 000 windows).
Held-out files are never read. Half the windows are seen through another camera
(``photo_augment.camera``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Final

import numpy as np
from PIL import Image
from real_plates import (
    LABELS,
    MANIFEST,
    _scaled,
    _scene_rows,
    choosing_photos,
    load_labels,
    local_name,
    quad_of,
)

from firmware.lane.devices.reader.geometry import Quad, as_quad
from firmware.lane.devices.reader.refine import target_in_window, window
from simulator.plates_render import photo_augment
from simulator.plates_render.dataset import jitter

#: An edge moves in or out by up to this share of the plate's width (a province character is
#: about 0.12 of a blue plate's width; the window has 0.12 of room on each side).
EDGE_SHIFT: Final = 0.1
#: The top or bottom edge moves by up to this share of the plate's height.
RIM_SHIFT: Final = 0.3
#: Every true corner inside this share of the window's edge (a sigmoid output cannot reach 0/1).
INSIDE: Final = 0.01
#: Validation windows per choosing photograph (the trainer validates on the first 1 000).
VAL_WINDOWS: Final = 15


def shifted(quad: Quad, rng: np.random.Generator) -> Quad:
    """``quad`` with each edge moved as a whole, then each corner a little on its own."""
    pts = np.asarray(quad, dtype=np.float64)
    tl, tr, br, bl = pts
    across = ((tr - tl) + (br - bl)) / 2  # left to right, one plate width
    down = ((bl - tl) + (br - tr)) / 2  # top to bottom, one plate height
    left, right = rng.uniform(-EDGE_SHIFT, EDGE_SHIFT, 2)
    top, bottom = rng.uniform(-RIM_SHIFT, RIM_SHIFT, 2)
    moved = np.stack([tl + left * across + top * down, tr - right * across + top * down,
                      br - right * across - bottom * down, bl + left * across - bottom * down])
    return jitter(as_quad(moved), rng, 0.05)


def coarse_for(quad: Quad, rng: np.random.Generator) -> tuple[Quad, np.ndarray]:
    """A coarse quad for ``quad`` (edge moves half the time, run 3's corner moves else) whose
    window holds every true corner, and the refiner's target in that window."""
    while True:
        coarse = (shifted(quad, rng) if rng.random() < 0.5
                  else jitter(quad, rng, float(rng.uniform(0.05, 0.3))))
        target = target_in_window(quad, coarse)
        if target.min() >= INSIDE and target.max() <= 1 - INSIDE:
            return coarse, target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("var/real-plates"))
    parser.add_argument("--out", type=Path, default=Path("var/refiner-real4"))
    parser.add_argument("--windows", type=int, default=40, help="windows per photograph")
    parser.add_argument("--seed", type=int, default=41)
    args = parser.parse_args()
    labels = load_labels(LABELS)
    choosing = choosing_photos(MANIFEST, LABELS)
    kept = {r["sha256"] for r in choosing}
    training = [r for r in _scene_rows(MANIFEST, labels) if r["sha256"] not in kept]
    if len(choosing) * VAL_WINDOWS > 1000:
        raise SystemExit("the choosing photographs' windows would spill past the trainer's "
                         "1 000 validation windows into its training: lower VAL_WINDOWS")
    rng = np.random.default_rng(args.seed)
    windows: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    plan = [(r, VAL_WINDOWS, False) for r in choosing] + [(r, args.windows, True)
                                                          for r in training]
    for n, (row, count, augment) in enumerate(plan):
        with Image.open(args.data / local_name(row)) as image:
            picture = image.convert("L")
        picture, quad = _scaled(picture, quad_of(labels[row["sha256"]]["corners"]))
        for _ in range(count):
            coarse, target = coarse_for(quad, rng)
            seen = window(picture, coarse)
            if augment and rng.random() < 0.5:
                seen = photo_augment.camera(seen, rng)
            windows.append(np.asarray(seen))
            targets.append(target)
        if n % 100 == 0:
            print(f"{n} of {len(plan)} photographs, {len(windows)} windows", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    shard = args.out / f"refiner-0real-{args.seed}.npz"
    np.savez_compressed(shard, windows=np.stack(windows), targets=np.stack(targets))
    print(f"wrote {shard}: {len(windows)} windows ({len(choosing) * VAL_WINDOWS} of the "
          f"{len(choosing)} choosing photographs first, for validation only)")


if __name__ == "__main__":
    main()
