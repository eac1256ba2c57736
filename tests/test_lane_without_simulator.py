"""A real lane needs nothing from ``simulator/``: the simulator is a bench and CI tool, and
a Pi lane installs only the ``lane`` extra. Checked in the source (every module of the lane's
firmware, imports inside functions included) and by running ``parkguard lane`` for a
``picamera`` lane in a fresh interpreter."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import firmware

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "lane-in1.toml"

#: Runs ``parkguard lane -c CONFIG --mock-pins`` up to the point where the lane node would
#: start (the Pi camera and the node replaced: no picamera2 here, nothing to run), then
#: prints which simulator modules the command imported.
_CHILD = """
import json, sys
import firmware.lane.node as node
import firmware.lane.devices.picamera as picamera

class Started(Exception):
    pass

class Node:
    def __init__(self, *args, **kwargs):
        raise Started(type(kwargs["reader"]).__name__)

node.LaneNode = Node
picamera.PiCamera = lambda **kwargs: object()
from cli.main import main
try:
    main(["lane", "-c", sys.argv[1], "--mock-pins"], standalone_mode=False)
except Started as started:
    print(json.dumps({"reader": str(started),
                      "simulator": sorted(m for m in sys.modules
                                          if m.split(".")[0] == "simulator")}))
"""


def _lane_config(tmp_path: Path, camera_type: str | None) -> Path:
    """The example lane with its ``[camera]`` (the last section) for ``camera_type``; None:
    no ``[camera]`` at all."""
    text = EXAMPLE.read_text(encoding="utf-8")
    assert "\n[camera]\n" in text
    path = tmp_path / f"lane-{camera_type}.toml"
    camera = "" if camera_type is None else f'[camera]\ntype = "{camera_type}"\n'
    if camera_type == "picamera":  # a commissioned Pi lane names its plate region
        camera += "plate_region = [360, 240, 920, 660]\n"
    path.write_text(text[:text.index("\n[camera]\n") + 1] + camera, encoding="utf-8")
    return path


def _run_lane(config: Path) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", _CHILD, str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_parkguard_lane_with_the_pi_camera_imports_nothing_from_the_simulator(
        tmp_path: Path) -> None:
    started = _run_lane(_lane_config(tmp_path, "picamera"))
    assert started == {"reader": "TfliteReader", "simulator": []}


def test_a_bench_lane_takes_its_camera_from_the_simulator(tmp_path: Path) -> None:
    """The same check sees the simulator when it is used (so the test above can fail)."""
    started = _run_lane(_lane_config(tmp_path, "simulated"))
    assert started["reader"] == "GroundTruthReader"
    assert "simulator.camera" in started["simulator"]  # type: ignore[operator]


def test_a_lane_without_a_camera_section_stops_at_start_naming_the_field(
        tmp_path: Path) -> None:
    """No default camera: a Pi whose config lacks ``[camera]`` must not quietly run a
    simulated camera that never sees a plate."""
    done = subprocess.run(
        [sys.executable, "-c", "from cli.main import run; run()", "lane", "-c",
         str(_lane_config(tmp_path, None)), "--mock-pins"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0
    assert "camera" in done.stderr, done.stderr
    assert "required" in done.stderr.lower(), done.stderr


def _firmware_modules() -> list[str]:
    return sorted(info.name for info in pkgutil.walk_packages(firmware.__path__, "firmware.")
                  if not info.name.startswith("firmware.sensor"))


@pytest.mark.parametrize("module", _firmware_modules())
def test_no_lane_module_imports_the_simulator_even_inside_a_function(module: str) -> None:
    path = ROOT / Path(*module.split("."))
    source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    imported = [name for node in ast.walk(ast.parse(source.read_text(encoding="utf-8")))
                for name in ([a.name for a in node.names] if isinstance(node, ast.Import)
                             else [node.module or ""] if isinstance(node, ast.ImportFrom)
                             else [])]
    assert [n for n in imported if n.split(".")[0] == "simulator"] == [], module
