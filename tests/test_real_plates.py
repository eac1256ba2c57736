"""The real-plate data script: reserved images refused, the manifest checked, splits fixed by
content, labels read from file names (``scripts/real_plates.py``)."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("real_plates", ROOT / "scripts" /
                                                  "real_plates.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["real_plates"] = module
    spec.loader.exec_module(module)
    return module


real_plates = _script()


def _jpeg(shade: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 12), (shade, shade, 200)).save(out, "JPEG")
    return out.getvalue()


def _mirror(tmp_path: Path, files: dict[str, bytes]) -> tuple[Path, str]:
    """A snapshot laid out as the search tool's fetch leaves it: ``owner+name/repo``."""
    work = tmp_path / "work"
    work.mkdir()
    for name, blob in files.items():
        path = work / "plates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)

    def git(*args: str, cwd: Path = work) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              cwd=cwd, check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "plates")
    commit = git("rev-parse", "HEAD").strip()
    mirrors = tmp_path / "mirrors"
    mirrors.mkdir()
    git("clone", "-q", "--bare", str(work), str(mirrors / "someone+plates" / "repo"),
        cwd=tmp_path)
    return mirrors, commit


def _source(commit: str) -> object:
    return real_plates.Source("test", "someone/plates", commit, "plates", "test licence",
                              "photo", "plate", 0.5)


def _args(tmp_path: Path, mirrors: Path, reserved: Path, *, write: bool) -> list[str]:
    parser_args = ["extract", "--mirrors", str(mirrors), "--out", str(tmp_path / "out"),
                   "--manifest", str(tmp_path / "manifest.csv"), "--reserved", str(reserved)]
    return parser_args + (["--write-manifest"] if write else [])


def test_a_reserved_image_is_refused_and_nothing_is_written(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    kept, held = _jpeg(10), _jpeg(90)
    mirrors, commit = _mirror(tmp_path, {"京A12345.jpg": kept, "沪B54321.jpg": held})
    reserved = tmp_path / "reserved.sha256"
    reserved.write_text(hashlib.sha256(held).hexdigest() + "\n")
    monkeypatch.setattr(real_plates, "SOURCES", (_source(commit),))
    with pytest.raises(SystemExit) as ended:
        real_plates.main(_args(tmp_path, mirrors, reserved, write=True))
    assert "reserved for acceptance" in str(ended.value.code)
    assert "沪B54321.jpg" in str(ended.value.code)
    assert not (tmp_path / "manifest.csv").exists()


def test_extract_writes_a_manifest_then_checks_files_against_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirrors, commit = _mirror(tmp_path, {"京A12345.jpg": _jpeg(10), "沪B54321.jpg": _jpeg(90)})
    reserved = tmp_path / "reserved.sha256"
    reserved.write_text("# none\n")
    monkeypatch.setattr(real_plates, "SOURCES", (_source(commit),))
    real_plates.main(_args(tmp_path, mirrors, reserved, write=True))
    with (tmp_path / "manifest.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["label"] for r in rows) == ["京A12345", "沪B54321"]
    for row in rows:
        blob = (tmp_path / "out" / real_plates.local_name(row)).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == row["sha256"]
        assert row["split"] == real_plates.split_of(row["sha256"], 0.5)
        assert row["commit"] == commit and row["repository"] == "someone/plates"
    # a checked run accepts the same files ...
    real_plates.main(_args(tmp_path, mirrors, reserved, write=False))
    # ... and refuses a manifest that names other content
    text = (tmp_path / "manifest.csv").read_text(encoding="utf-8")
    (tmp_path / "manifest.csv").write_text(text.replace(rows[0]["sha256"], "0" * 64),
                                           encoding="utf-8")
    with pytest.raises(SystemExit) as ended:
        real_plates.main(_args(tmp_path, mirrors, reserved, write=False))
    assert "is not in" in str(ended.value.code)


def test_a_missing_reserved_list_stops_before_any_image_is_read(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as ended:
        real_plates.main(["extract", "--mirrors", str(tmp_path), "--reserved",
                          str(tmp_path / "absent.sha256"), "--out", str(tmp_path / "out")])
    assert "reserved list" in str(ended.value.code)


def test_labels_come_from_file_names_as_each_source_names_them() -> None:
    assert real_plates.label_of("a/b/川A019W2.jpg", "plate") == "川A019W2"
    assert real_plates.label_of("x/A01_N84E28_0.jpg", "six") == "?N84E28"
    assert real_plates.label_of("x/plate_17.jpg", "six") == ""
    assert real_plates.label_of("x/002dbcac.png", "none") == ""


def test_a_ccpd_name_gives_the_plate_and_the_corners_in_labels_order() -> None:
    # the CCPD README's own example: plate 皖AY339S; corners start at the bottom right
    name = ("x/025-95_113-154&383_386&473-386&473_177&454_154&383_363&402-"
            "0_0_22_27_27_33_16-37-15.jpg")
    assert real_plates.label_of(name, "ccpd") == "皖AY339S"
    corners = [float(v) for v in real_plates.ccpd_corners(name).split()]
    assert corners == [154, 383, 363, 402, 386, 473, 177, 454]  # TL, TR, BR, BL
    green = ("d/004504310344827586-86_270-291&474_390&516-390&513_293&516_291&483_387&474-"
             "0_0_3_25_25_25_30_30-228-16.jpg")
    assert real_plates.label_of(green, "ccpd") == "皖AD11166"
    # an index meaning "no character", another kind of name, a name that is not CCPD's
    assert real_plates.label_of(name.replace("0_0_22", "0_24_22"), "ccpd") == ""
    assert real_plates.label_of("x/00000001-000.jpg", "ccpd") == ""
    assert real_plates.ccpd_corners("x/京A12345.jpg") == ""


def test_a_source_takes_only_files_its_pattern_names_and_leaves_out_copies(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    same = _jpeg(10)
    mirrors, commit = _mirror(tmp_path, {"京A12345.jpg": same, "copy/京A12345.jpg": same,
                                         "recut/京A12345.jpg": _jpeg(40),
                                         "np/沪B54321.jpg": _jpeg(90),
                                         "苏E11111.jpg": _jpeg(150)})
    reserved = tmp_path / "reserved.sha256"
    reserved.write_text("# none\n")
    sources = (real_plates.Source("first", "someone/plates", commit, "plates", "l", "photo",
                                  "plate", 0.5, pattern=r"^苏"),
               real_plates.Source("second", "someone/plates", commit, "plates", "l", "photo",
                                  "plate", 0.5, pattern=r"^(?!np/)", dedupe=True))
    monkeypatch.setattr(real_plates, "SOURCES", sources)
    real_plates.main(_args(tmp_path, mirrors, reserved, write=True))
    with (tmp_path / "manifest.csv").open(encoding="utf-8") as handle:
        rows = [(r["source"], r["path"]) for r in csv.DictReader(handle)]
    # the first source takes only 苏…; the second leaves out np/, the copy of 京A12345 (same
    # bytes), its re-cut (other bytes, the same plate named) and the 苏 file already taken
    assert rows == [("first", "plates/苏E11111.jpg"), ("second", "plates/copy/京A12345.jpg")]


def test_the_split_depends_on_content_only_and_holds_out_about_the_share() -> None:
    digests = [hashlib.sha256(str(k).encode()).hexdigest() for k in range(2000)]
    held = sum(real_plates.split_of(d, 0.25) == "heldout" for d in digests)
    assert 400 < held < 600
    assert real_plates.split_of(digests[0], 0.25) == real_plates.split_of(digests[0], 0.25)


def test_the_committed_manifest_holds_no_reserved_image() -> None:
    reserved_path = real_plates.DEFAULT_RESERVED
    if not reserved_path.exists():
        pytest.skip(f"{reserved_path} is not on this machine")
    reserved = real_plates.reserved_hashes(reserved_path)
    rows = real_plates.load_manifest()
    assert rows and not {r["sha256"] for r in rows} & reserved
    assert {r["split"] for r in rows} == {"train", "heldout"}
