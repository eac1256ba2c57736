"""The sample frames shipped in ``docs/examples/frames/`` for ``parkguard read``, rendered by
our own plate renderer (synthetic plates, not photographs of real cars).

    python -m simulator.sample_frames            # write them (and frames.json)
    python -m simulator.sample_frames --check    # exit 1 if the shipped ones drifted

Each frame is drawn from a fixed seed, so the files can be made again; ``--check`` renders
them afresh and compares pixels (a JPEG round trip and a font update move a few levels, a
different scene moves far more) and the labels in ``frames.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
from PIL import Image

from parkguard.core.plates import parse_plate
from simulator.plates_render.render import GATE_320, LANE_720, CameraView, render_scene

OUT: Final = Path(__file__).resolve().parent.parent / "docs" / "examples" / "frames"
QUALITY: Final = 85
#: Mean absolute difference (0-255) above which a shipped frame no longer is the render.
DRIFT: Final = 4.0


@dataclass(frozen=True)
class Sample:
    file: str
    plate: str
    seed: int
    degraded: bool = False
    view: CameraView = GATE_320
    note: str = ""


SAMPLES: Final = (
    Sample("gate-blue.jpg", "粤B6A3K8", 11, note="ordinary blue plate, 320x240 gate view"),
    Sample("gate-green.jpg", "粤BD12345", 12, note="new-energy green plate (8 characters)"),
    Sample("gate-yellow.jpg", "粤B2345学", 13, note="a yellow learner's plate"),
    Sample("gate-night.jpg", "沪AF0236", 14, degraded=True,
           note="degraded: night, blur, dirt or rain"),
    Sample("lane-720.jpg", "京N8P8F8", 15, view=LANE_720,
           note="the lane camera's 1280x720: read with --region 360,240,920,660"),
)


def render(sample: Sample) -> bytes:
    """The sample's frame as JPEG bytes."""
    parsed = parse_plate(sample.plate)
    rng = np.random.default_rng([sample.seed, 24])
    scene = render_scene(parsed.text, parsed.series, rng, split="heldout",
                         degraded=sample.degraded, view=sample.view)
    buffer = io.BytesIO()
    scene.image.save(buffer, format="JPEG", quality=QUALITY)
    return buffer.getvalue()


def labels() -> list[dict[str, object]]:
    return [{"file": s.file, "plate": parse_plate(s.plate).text, "note": s.note,
             "region": list(s.view.region) if s.view.region else None} for s in SAMPLES]


def write(out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for sample in SAMPLES:
        (out / sample.file).write_bytes(render(sample))
    (out / "frames.json").write_text(json.dumps(labels(), ensure_ascii=False, indent=2) + "\n",
                                     encoding="utf-8")


def drift(shipped: bytes, fresh: bytes) -> float:
    """Mean absolute pixel difference of two JPEGs (inf if their sizes differ)."""
    a = np.asarray(Image.open(io.BytesIO(shipped)).convert("RGB"), dtype=np.float32)
    b = np.asarray(Image.open(io.BytesIO(fresh)).convert("RGB"), dtype=np.float32)
    return float("inf") if a.shape != b.shape else float(np.abs(a - b).mean())


def check(out: Path = OUT) -> list[str]:
    """What differs between the shipped frames and a fresh render (empty: nothing)."""
    problems = []
    index = out / "frames.json"
    if not index.exists() or json.loads(index.read_text(encoding="utf-8")) != labels():
        problems.append(f"{index}: not the labels of SAMPLES")
    for sample in SAMPLES:
        path = out / sample.file
        if not path.exists():
            problems.append(f"{path}: missing")
            continue
        moved = drift(path.read_bytes(), render(sample))
        if moved > DRIFT:
            problems.append(f"{path}: {moved:.1f} levels from a fresh render")
    return problems


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for line in problems:
            print(line, file=sys.stderr)
        sys.exit(1 if problems else 0)
    write()
    print(f"wrote {len(SAMPLES)} frames to {OUT}")


if __name__ == "__main__":
    main()
