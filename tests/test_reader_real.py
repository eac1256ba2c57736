"""The committed reader on real photographs and crops: floors a few points under what
``python -m simulator.bench_real`` measures (models/README.md, "Real plates").

No real image is committed (their licences do not allow it: data/real-plates/README.md), so
this test extracts the held-out files from local snapshots of their repositories, checked
byte for byte against the committed manifest; where the snapshots are not on the machine it
is skipped, saying so. ``PARKGUARD_MIRRORS`` points at another snapshot folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simulator import bench_real
from tests.test_real_plates import real_plates

ROOT = Path(__file__).resolve().parents[1]
MIRRORS = Path(os.environ.get("PARKGUARD_MIRRORS", "/work/.mirror"))
RESERVED = real_plates.DEFAULT_RESERVED

#: Floors: the bench's figures for the committed models, less a few points.
#: (2026-12-07, run 8 = run 6's recogniser with the posed detector, int8: crops 95.7 %,
#: province 97.1 %, EasyPR six 99.0 %, whole photographs 86.6 %, trusted reads wrong 0.4 %;
#: on the held-out set grown to 868 images later that day: 96.5 %, 97.9 %, 99.0 %, 90.4 %,
#: 0.25 %; with the second reading of unsure frames, 2026-12-08: whole photographs 92.9 %)
CROPS_NAMED_FLOOR = 0.92
PROVINCE_FLOOR = 0.94
EASYPR_SIX_FLOOR = 0.96
WHOLE_FLOOR = 0.89
TRUSTED_WRONG_CEILING = 0.01
#: Issue 19's rule: the constrained decoder never turns a right read into a wrong plate.
#: Measured on the decoder alone (each first crop's best path against its decoded read): 0 on
#: the 868 held-out images (run 8, seventh session), so it is held at 0.
DECODER_RIGHT_TO_WRONG = 0
#: The whole way from the first crop's best path to the reported plate, which adds the fusion
#: of a photograph's two crops: 1 on the 868 (the fusion alone turned 3 right first-crop reads
#: wrong and 9 wrong ones right); 0 since unsure frames are read a second time (2026-12-08,
#: the issue's "never"). Never raise it to make a new model pass.
RIGHT_TO_WRONG_CEILING = 0


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    needed = sorted({MIRRORS / s.repository.replace("/", "+") for s in real_plates.SOURCES})
    missing = [str(path) for path in needed if not path.exists()]
    if missing:
        pytest.skip(f"no snapshot of the real-plate sources here ({', '.join(missing)}): "
                    "bring them with the search tool's fetch (data/real-plates/README.md)")
    if not RESERVED.exists():
        pytest.skip(f"the reserved-image list {RESERVED} is not on this machine")
    out = tmp_path_factory.mktemp("real-plates")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "real_plates.py"), "extract",
                    "--mirrors", str(MIRRORS), "--out", str(out), "--reserved", str(RESERVED)],
                   check=True, capture_output=True)
    return bench_real.run(out, baselines=False)


def test_real_crops_labelled_by_file_name(report: dict[str, Any]) -> None:
    ours = report["sets"]["crops_named"]["ours"]
    assert ours["count"] >= 200
    assert ours["exact"] >= CROPS_NAMED_FLOOR, ours
    assert ours["province"] >= PROVINCE_FLOOR, ours


def test_easypr_crops_six_named_characters(report: dict[str, Any]) -> None:
    ours = report["sets"]["easypr_crops_six"]["ours"]
    assert ours["count"] >= 200
    assert ours["exact"] >= EASYPR_SIX_FLOOR, ours


def test_whole_real_photographs(report: dict[str, Any]) -> None:
    ours = report["sets"]["whole_photographs"]["ours"]
    assert ours["count"] >= 100
    assert ours["exact"] >= WHOLE_FLOOR, ours


def test_trusted_reads_are_rarely_wrong_and_no_right_read_is_made_wrong(
        report: dict[str, Any]) -> None:
    assert report["trusted"]["wrong_share"] <= TRUSTED_WRONG_CEILING, report["trusted"]
    assert report["decoder_alone"]["right_to_wrong"] == DECODER_RIGHT_TO_WRONG, \
        report["decoder_alone"]
    assert report["decoder_changes"]["right_to_wrong"] <= RIGHT_TO_WRONG_CEILING, \
        report["decoder_changes"]
