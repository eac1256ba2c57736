"""The MicroPython sensor firmware type-checks clean against the rp2 stubs
(``firmware/sensor/typecheck.py``), and that check does catch a typing error."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from simulator.sensor_node import FIRMWARE

SCRIPT = FIRMWARE / "typecheck.py"


def _run(script: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          check=False, timeout=300)


def test_the_firmware_type_checks_against_the_micropython_rp2_stubs() -> None:
    proc = _run(SCRIPT)
    assert proc.returncode == 0, (
        f"firmware/sensor/typecheck.py exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    assert "Success: no issues found" in proc.stdout, proc.stdout + proc.stderr


def test_the_check_fails_on_a_firmware_typing_error(tmp_path: Path) -> None:
    copy = tmp_path / "sensor"
    shutil.copytree(FIRMWARE, copy, ignore=shutil.ignore_patterns("build", "__pycache__"))
    inputs = copy / "pgsensor" / "inputs.py"
    # Tick values are opaque in the stubs: arithmetic on them instead of ticks_diff is an error.
    inputs.write_text(inputs.read_text() + "\n\ndef _late(start):\n"
                      "    return time.ticks_ms() - 5000 > start\n")
    proc = _run(copy / "typecheck.py")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "pgsensor/inputs.py" in proc.stdout and "[operator]" in proc.stdout, proc.stdout
