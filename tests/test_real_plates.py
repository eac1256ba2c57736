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
