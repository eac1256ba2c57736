"""The lane's install doc, the ``lane`` extra and ``scripts/lane_arm64_check.py`` agree.

``make lane-arm64-check`` installs the lane on Debian Bookworm arm64 under qemu from the doc's
own commands: minutes and downloads, so not in ``make test``. What can go wrong without it is
checked here: the doc's command block (the arm64 check runs exactly that), the numpy pin that
keeps pip from putting numpy 2 in front of apt's numpy 1, the selftest answers the check
feeds, and the arithmetic of the instruction count and the Pi estimate.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner
from packaging.requirements import Requirement

from firmware.lane.selftest import selftest

ROOT = Path(__file__).resolve().parents[1]
#: Raspberry Pi OS / Debian Bookworm's python3-numpy, which its picamera2 is built against
BOOKWORM_NUMPY = "1.24.2"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lane_arm64_check",
                                                  ROOT / "scripts" / "lane_arm64_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["lane_arm64_check"] = module
    spec.loader.exec_module(module)
    return module


check = _script()
DOC = (ROOT / "hardware" / "lane-install.md").read_text(encoding="utf-8")


def _lane_extra() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [Requirement(r) for r in project["optional-dependencies"]["lane"]]
    return {r.name: r for r in requirements}


def test_the_lane_extra_admits_the_numpy_apt_installs_on_bookworm() -> None:
    """With ``numpy>=1.26`` a Pi's pip would pull numpy 2 beside apt's picamera2 (or, pinned,
    refuse to install at all)."""
    numpy = _lane_extra()["numpy"]
    assert numpy.specifier.contains(BOOKWORM_NUMPY), numpy
    assert f"`python3-numpy` {BOOKWORM_NUMPY}" in DOC
    assert f'"numpy>={".".join(BOOKWORM_NUMPY.split(".")[:2])}"' in (
        ROOT / "pyproject.toml").read_text(encoding="utf-8")


def test_the_doc_pins_the_venv_to_apt_numpy_and_installs_the_lane_extra() -> None:
    commands = check.install_commands(DOC)
    assert check.numpy_pin(commands) == "/opt/parkguard/constraints.txt"
    apt = next(c for c in commands if c.startswith("sudo apt install"))
    assert {"python3-numpy", "python3-venv", "python3-picamera2"} <= set(apt.split())
    assert any("venv --system-site-packages /opt/parkguard/.venv" in c for c in commands)
    pip = next(c for c in commands if "/bin/pip install " in c)
    assert "/opt/parkguard/src[lane]" in pip
    for name in ("gpiozero", "ai-edge-litert", "pillow", "numpy"):
        assert name in _lane_extra()
    assert "gpiozero 2" in DOC and "ai-edge-litert" in DOC


def test_the_root_runs_the_doc_without_sudo_and_without_raspberry_pis_repository() -> None:
    commands, notes = check.for_root([
        "sudo apt install -y --no-install-recommends python3-numpy python3-picamera2",
        "python3 -c 'import numpy' | sudo tee /opt/c.txt",
        "sudo /opt/v/bin/pip install --constraint /opt/c.txt '/opt/src[lane]'",
    ])
    assert commands == [
        "apt-get install -y --no-install-recommends python3-numpy",
        "python3 -c 'import numpy' | tee /opt/c.txt",
        "/opt/v/bin/pip install --constraint /opt/c.txt '/opt/src[lane]'",
    ]
    assert len(notes) == 1 and notes[0].startswith("python3-picamera2 left out")


def test_a_pin_written_to_one_file_and_read_from_another_is_no_pin() -> None:
    write = "python3 -c 'import numpy; print(f\"numpy=={numpy.__version__}\")' | tee /a.txt"
    assert check.numpy_pin([write, "pip install --constraint /a.txt x"]) == "/a.txt"
    assert check.numpy_pin([write, "pip install --constraint /b.txt x"]) is None
    assert check.numpy_pin(["pip install x"]) is None


def test_a_doc_without_the_marked_block_is_refused() -> None:
    with pytest.raises(ValueError, match="lane-install:commands"):
        check.install_commands("# install\n```sh\npip install x\n```\n")


def test_the_selftest_answers_of_the_check_pass_a_picamera_lane_on_mock_pins(
        tmp_path: Path) -> None:
    """The same config and answers the arm64 check gives ``parkguard lane selftest``: a
    selftest with more or fewer prompts shows here first."""
    config = tmp_path / "lane.toml"
    config.write_text(check.selftest_config((360, 240, 920, 660)), encoding="utf-8")
    answers = tmp_path / "answers.txt"
    answers.write_text("\n".join(check.SELFTEST_ANSWERS) + "\n", encoding="utf-8")
    result = CliRunner().invoke(selftest, ["-c", str(config), "--mock-pins", "--script",
                                           str(answers), "--wait", "5"])
    assert result.exit_code == 0, result.output
    assert "all checks passed" in result.output


def test_instructions_per_frame_come_from_two_callgrind_totals() -> None:
    out = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 1000\n"
    assert check.callgrind_total(out) == 1000
    assert check.callgrind_total("events: Ir\ntotals: 77\n") == 77
    with pytest.raises(ValueError):
        check.callgrind_total("events: Ir\n")
    assert check.per_frame(1000, 4000, 3) == 1000
    with pytest.raises(ValueError):
        check.per_frame(1000, 900, 3)


def test_the_pi_estimate_is_instructions_over_clock_times_ipc() -> None:
    core = check.Core("test", ghz=2.0, ipc=(0.5, 2.0), source="-")
    fastest, slowest = check.latency_ms(4_000_000_000, core)
    assert fastest == pytest.approx(1000.0)  # 4e9 / (2e9 × 2.0) s
    assert slowest == pytest.approx(4000.0)  # 4e9 / (2e9 × 0.5) s


def test_the_estimate_table_has_a_row_for_each_pi_with_its_range() -> None:
    table = check.estimate_table(240_000_000).splitlines()
    assert len(table) == 2 + len(check.CORES)
    assert table[2] == "| Pi 4 (Cortex-A72 1.5 GHz) | 1–2 | 80–160 ms |"
    assert table[-1] == "| Pi 5 (Cortex-A76 2.4 GHz) | 1.5–3 | 33–67 ms |"


def test_each_pi_cpu_is_a_qemu_model_with_the_cores_ids(tmp_path: Path) -> None:
    """XNNPACK picks its kernels from the feature bits (qemu's model) and needs the core's
    ids in /proc/cpuinfo: the Pi 4's A72 without the int8 dot product, the Pi 5's A76 with."""
    pi4, pi5 = check.PI_CPUS["pi4"], check.PI_CPUS["pi5"]
    assert (pi4.qemu, pi4.part, pi5.qemu, pi5.part) == ("cortex-a72", "0xd08", "cortex-a76",
                                                        "0xd0b")
    assert "asimddp" not in pi4.features.split() and "asimddp" in pi5.features.split()
    text = pi4.cpuinfo()
    assert text.count("processor\t:") == 4 and text.count("CPU part\t: 0xd08") == 4
    root = check.Root(tmp_path, "binfmt", "pi4")
    argv = " ".join(root.argv("true"))
    assert "QEMU_CPU=cortex-a72" in argv and f"{tmp_path}/proc/cpuinfo" in argv
    assert (tmp_path / "root/cpu-pi4/cpu/possible").read_text(encoding="utf-8") == "0-3\n"
    assert "mount -t sysfs" not in " ".join(check.Root(tmp_path, "binfmt").argv("true"))


def test_the_arm64_check_is_a_make_target_that_make_test_does_not_run() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^lane-arm64-check:", makefile, re.M)
    test_rule = re.search(r"^test:(.*)$", makefile, re.M)
    assert test_rule is not None and "lane-arm64-check" not in test_rule.group(1)
    assert "scripts/lane_arm64_check.py check" in makefile


def _closure(names: list[str]) -> set[str]:
    """The distributions ``names`` pull in (markers with extras left out), as installed here."""
    from importlib.metadata import PackageNotFoundError, requires

    seen: set[str] = set()
    todo = [Requirement(n).name.lower() for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            needs = requires(name) or []
        except PackageNotFoundError:
            continue
        todo += [need.name.lower() for need in map(Requirement, needs)
                 if need.marker is None or need.marker.evaluate({"extra": ""})]
    return {n.replace("_", "-") for n in seen}


def _not_on_a_lane() -> list[str]:
    """Top-level modules installed here by the gateway and sim extras and not by the lane's."""
    from importlib.metadata import packages_distributions

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    lane = _closure(project["dependencies"] + extras["lane"])
    other = _closure([r for r in extras["gateway"] + extras["sim"] if "parkguard" not in r])
    missing = other - lane
    return sorted(module for module, dists in packages_distributions().items()
                  if module.isidentifier()
                  and {d.lower().replace("_", "-") for d in dists} <= missing)


_LANE_ONLY = """
import sys, importlib.abc
BLOCKED = set(sys.argv[1].split(","))
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Blocker())
from cli.main import main
main(sys.argv[2:])
"""


@pytest.mark.parametrize("args", [["--help"], ["lane", "selftest", "--help"], ["read", "--help"],
                                  ["plate", "check", "京A12345"]])
def test_the_parkguard_command_runs_with_the_lane_extra_alone(args: list[str]) -> None:
    """A Pi installed as lane-install.md says has no gateway packages: the arm64 check found
    ``parkguard`` failing there at import (cli.audit's sqlite-utils)."""
    import subprocess

    blocked = _not_on_a_lane()
    assert {"sqlite_utils", "fastapi"} <= set(blocked)
    done = subprocess.run([sys.executable, "-c", _LANE_ONLY, ",".join(blocked), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def test_a_gateway_command_on_a_lane_names_the_extra_it_needs() -> None:
    import subprocess

    done = subprocess.run([sys.executable, "-c", _LANE_ONLY, "sqlite_utils", "audit", "verify",
                           "x.db"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 1
    assert "needs the gateway extra" in done.stderr and "sqlite_utils" in done.stderr


#: lane-extra packages with no wheel on PyPI: the doc installs apt's build so pip keeps it
#: instead of compiling one on the Pi
APT_INSTEAD_OF_SDIST = {"evdev": "python3-evdev"}


def test_a_lane_package_without_a_wheel_comes_from_apt() -> None:
    apt = next(c for c in check.install_commands(DOC) if c.startswith("sudo apt install"))
    for name, package in APT_INSTEAD_OF_SDIST.items():
        if name in _lane_extra():
            assert package in apt.split(), f"{name}: add {package} to the doc's apt line"
