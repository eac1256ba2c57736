"""Type-check the sensor firmware against the MicroPython rp2 (Pico W) stubs with mypy.

    .venv/bin/python firmware/sensor/typecheck.py [extra mypy arguments]

The firmware is MicroPython, so the repository's own mypy run (CPython typeshed) excludes it.
This script checks it against what it actually runs on: the ``micropython-stdlib-stubs``
typeshed (MicroPython's ``time``, ``socket``, ``ssl``, ...) and the ``micropython-rp2-stubs``
modules (``machine``, ``network``, ``rp2``, ...). Both are in the dev extra. The two packages
are assembled from their wheels' RECORD files into a temporary directory (no network, nothing
written into the repository), mypy runs over ``pgsensor/``, ``main.py`` and ``patrol_main.py``
(not ``sim/``: the unix-port test shim), and the exit status is mypy's: 0 clean, 1 errors
(printed), 2 when mypy or the stubs are missing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path, PurePosixPath

HERE = Path(__file__).resolve().parent
TARGETS = ("pgsensor", "main.py", "patrol_main.py")
RP2_STUBS = "micropython-rp2-stubs"
STDLIB_STUBS = "micropython-stdlib-stubs"
HINT = "run make test (it installs the dev extra into .venv) or pip install -e '.[dev]'"


class SetupError(Exception):
    pass


def _stub_files(dist_name: str) -> list[tuple[PurePosixPath, Path]]:
    """(path in the wheel, installed file) for every .pyi (and typeshed's VERSIONS) that the
    distribution's RECORD lists."""
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        raise SetupError(f"{dist_name} is not installed in {sys.executable}: {HINT}") from None
    out = []
    for entry in dist.files or ():
        rel = PurePosixPath(str(entry))
        if (rel.suffix != ".pyi" and rel.name != "VERSIONS") or ".." in rel.parts \
                or rel.is_absolute():
            continue
        source = Path(str(dist.locate_file(entry)))
        if not source.is_file():
            raise SetupError(f"{dist_name}: {rel} is in its RECORD but not installed: {HINT}")
        out.append((rel, source))
    if not out:
        raise SetupError(f"{dist_name}: no .pyi files in its RECORD: {HINT}")
    return out


def assemble(root: Path) -> tuple[Path, Path]:
    """Copy the stubs under ``root``: (typeshed dir, extra stub dir for mypy_path)."""
    typeshed = root / "typeshed"
    stubs = root / "stubs"
    for dist_name in (STDLIB_STUBS, RP2_STUBS):
        for rel, source in _stub_files(dist_name):
            if dist_name == STDLIB_STUBS and rel.parts[0] in ("stdlib", "stubs"):
                target = typeshed.joinpath(*rel.parts)  # stdlib/ and stubs/mypy-extensions
            else:
                target = stubs.joinpath(*rel.parts)  # _mpy_shed, machine, network, rp2, ...
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    if not (typeshed / "stdlib" / "VERSIONS").is_file():
        raise SetupError(f"{STDLIB_STUBS}: no stdlib/VERSIONS, not a typeshed: {HINT}")
    return typeshed, stubs


def write_config(path: Path, typeshed: Path, stubs: Path, cache: Path) -> None:
    # The stubs themselves do not type-check cleanly (overrides, redefinitions): their errors
    # are silenced module by module. Typeshed errors are never reported by mypy.
    stub_modules = sorted({p.name.removesuffix(".pyi") for p in stubs.iterdir()})
    patterns = ",".join(f"{name},{name}.*" for name in stub_modules)
    path.write_text(
        "[mypy]\n"
        "python_version = 3.11\n"
        f"custom_typeshed_dir = {typeshed}\n"
        f"mypy_path = {stubs}\n"
        "no_site_packages = True\n"
        f"cache_dir = {cache}\n"
        "explicit_package_bases = True\n"
        "check_untyped_defs = True\n"
        "strict_equality = True\n"
        "warn_redundant_casts = True\n"
        "warn_unused_ignores = True\n"
        "show_error_codes = True\n"
        f"\n[mypy-{patterns}]\n"
        "ignore_errors = True\n",
        encoding="utf-8",
    )


def run(extra: list[str]) -> int:
    try:
        import mypy  # noqa: F401 - only: is it there
    except ImportError:
        print(f"typecheck: mypy is not installed in {sys.executable}: {HINT}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="pg-mpstubs-") as tmp:
        root = Path(tmp)
        try:
            typeshed, stubs = assemble(root)
        except SetupError as exc:
            print(f"typecheck: {exc}", file=sys.stderr)
            return 2
        config = root / "mypy.ini"
        write_config(config, typeshed, stubs, root / "cache")
        proc = subprocess.run(  # noqa: S603 - fixed argv: this interpreter's mypy
            [sys.executable, "-m", "mypy", "--config-file", str(config), *extra, *TARGETS],
            cwd=HERE, capture_output=True, text=True, check=False,
        )
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    return proc.returncode


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
