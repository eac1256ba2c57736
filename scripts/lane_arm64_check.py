"""``make lane-arm64-check``: the lane installed on Debian Bookworm arm64 as
``hardware/lane-install.md`` says, run under qemu-user on this x86_64 machine.

    python scripts/lane_arm64_check.py check     # the whole check, a report at the end
    python scripts/lane_arm64_check.py count     # callgrind: instructions of one lane frame
    python scripts/lane_arm64_check.py count --arm64 --cpu pi4   # in the root, a Pi 4's CPU
    python scripts/lane_arm64_check.py estimate N   # Pi latency estimate from a count

Why: CI and every developer run x86_64, where the lane's numpy is 2; a Pi runs apt's numpy 1
with picamera2 built against it. Only installing on arm64, from the doc's own commands, shows
whether pip keeps apt's numpy and whether the TFLite runtime's aarch64 wheel loads the models.

How: ``debootstrap`` makes the root in ``var/arm64-root`` once (reused while its marker file
is there); arm64 programs run through ``qemu-aarch64-static``, by binfmt_misc when the kernel
lets us register it, else by ``proot -q``. Every command in the root runs in a private mount
namespace (``unshare``), so /proc is never left mounted inside the work tree. The
install commands are read from the doc's marked ``sh`` block, with ``sudo`` dropped and
``python3-picamera2`` left out (Raspberry Pi's own apt repository cannot be reached from
here). Frames are rendered on the host (the simulator is not installed on a lane) and read in
the root with ``parkguard read`` and the committed models, with qemu modelling a Pi 4's and a
Pi 5's CPU (:data:`PI_CPUS`), and on the host for comparison.

Too slow for CI (packages downloaded, everything emulated): ``tests/test_lane_install.py``
checks the parts that can go wrong without it (the doc's commands, the numpy pin, the
instruction count's arithmetic).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parents[1]
INSTALL_DOC: Final = REPO / "hardware" / "lane-install.md"
ROOT: Final = REPO / "var" / "arm64-root"
OUT: Final = REPO / "var" / "arm64-check"
#: written once debootstrap has finished: a root without it is half made and is made again
BOOTSTRAPPED: Final = ".parkguard-bootstrapped"
MARKER: Final = "<!-- lane-install:commands"
MIRROR: Final = "http://deb.debian.org/debian"
SUITE: Final = "bookworm"
#: apt packages of the doc that cannot be had here, and why
UNREACHABLE: Final = {
    "python3-picamera2": "in Raspberry Pi's own apt repository, which this machine cannot "
                         "reach (the lane imports it only for camera.type = \"picamera\")",
}
VENV: Final = "/opt/parkguard/.venv"
SRC: Final = "/opt/parkguard/src"
FRAMES: Final = "/opt/parkguard/frames"
#: what the report lists from the venv, with where each was imported from
DISTRIBUTIONS: Final = ("parkguard", "numpy", "ai-edge-litert", "tflite-runtime", "gpiozero",
                        "pillow", "av", "pyserial", "evdev", "pydantic", "paho-mqtt",
                        "cryptography", "click")
#: the selftest's answers as tests/test_lane_selftest.py gives them: Enter/yes for the four
#: outputs, then ``trigger`` for each input (extra lines are never read)
SELFTEST_ANSWERS: Final = ["", "y", "", "y", "", "y", "y"] + ["trigger"] * 8
FRAME_COUNT: Final = 8
FRAME_SEED: Final = 20_231_207


class CheckError(RuntimeError):
    """A step that failed: the report says which and why."""


# -- the doc's commands ----------------------------------------------------------------------

def install_commands(doc: str) -> list[str]:
    """The shell commands of the doc's marked block, one a line, as an installer types them."""
    at = doc.find(MARKER)
    if at < 0:
        raise ValueError(f"no {MARKER!r} block in the install doc")
    block = re.search(r"```sh\n(.*?)```", doc[at:], re.S)
    if block is None:
        raise ValueError(f"the {MARKER!r} marker is not followed by a ```sh block")
    joined = re.sub(r"\\\n\s*", "", block.group(1))  # a line ending in a backslash goes on
    lines = [line.strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def for_root(commands: Sequence[str]) -> tuple[list[str], list[str]]:
    """The commands as root runs them in the arm64 root (no ``sudo``; apt without prompts;
    unreachable packages left out), and a note for each change that is more than ``sudo``."""
    out: list[str] = []
    notes: list[str] = []
    for command in commands:
        words = shlex.split(command)
        if "apt" in words[:2] or "apt-get" in words[:2]:
            kept = [w for w in words if w not in UNREACHABLE and w != "sudo"]
            notes += [f"{w} left out: {UNREACHABLE[w]}" for w in words if w in UNREACHABLE]
            kept[0] = "apt-get"
            out.append(shlex.join(kept))
            continue
        text = re.sub(r"(^|\|\s*)sudo\s+", r"\1", command)
        out.append(text)
    return out, notes


def numpy_pin(commands: Sequence[str]) -> str | None:
    """The constraints file the doc's pip install reads, when it writes one from apt's numpy."""
    writes = [c for c in commands if "import numpy" in c and "numpy==" in c and "tee" in c]
    pips = [c for c in commands if re.search(r"(^|[\s/])pip install\s", c)]
    pips = [c for c in pips if "--constraint" in shlex.split(c)]
    if not writes or not pips:
        return None
    target = shlex.split(writes[0].split("|")[-1])[-1]
    words = shlex.split(pips[0])
    constraint = words[words.index("--constraint") + 1]
    return target if target == constraint else None


# -- instruction counts and the Pi estimate ----------------------------------------------------

def callgrind_total(text: str) -> int:
    """The instruction total of a callgrind output file (its ``summary:`` or ``totals:``)."""
    for key in ("summary:", "totals:"):
        for line in text.splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    raise ValueError("no summary/totals line: not a callgrind output file")


def per_frame(base: int, more: int, extra_frames: int) -> int:
    """Instructions of one frame: the run that read ``extra_frames`` more frames after the
    same start-up and first frame, less the run that did not, shared out."""
    if extra_frames < 1 or more <= base:
        raise ValueError(f"need more frames in the second run (base {base}, more {more})")
    return round((more - base) / extra_frames)


@dataclass(frozen=True)
class Core:
    """A Pi's CPU as the estimate uses it: clock and an IPC range, each with its source."""

    name: str
    ghz: float
    ipc: tuple[float, float]
    source: str


#: The Pis' CPUs. Clocks: Raspberry Pi's product briefs (Pi 4 Model B: Cortex-A72, 1.5 GHz,
#: 1.8 GHz on boards made since 2022; Pi 5: Cortex-A76, 2.4 GHz). IPC: an assumed range,
#: capped well under the decode width in Arm's Software Optimization Guides (A72: 3
#: instructions a cycle; A76: 4); the frame's mix is ~2/3 XNNPACK GEMM kernels (high IPC) and
#: ~1/3 JPEG decode, Pillow and Python (low). Never measured on a Pi.
CORES: Final = (
    Core("Pi 4 (Cortex-A72 1.5 GHz)", 1.5, (1.0, 2.0), "Pi 4 Model B product brief"),
    Core("Pi 4 (Cortex-A72 1.8 GHz)", 1.8, (1.0, 2.0), "Pi 4 Model B product brief, 2022-"),
    Core("Pi 5 (Cortex-A76 2.4 GHz)", 2.4, (1.5, 3.0), "Pi 5 product brief"),
)


def estimate_table(instructions: int) -> str:
    """The estimate as a markdown table: one row per core."""
    rows = ["| Pi (CPU, clock) | IPC assumed | estimate per lane frame |", "|---|---|---|"]
    for core in CORES:
        fast, slow = latency_ms(instructions, core)
        rows.append(f"| {core.name} | {core.ipc[0]:g}–{core.ipc[1]:g} | "
                    f"{fast:.0f}–{slow:.0f} ms |")
    return "\n".join(rows)


def latency_ms(instructions: int, core: Core) -> tuple[float, float]:
    """(fastest, slowest) milliseconds: instructions ÷ (clock × IPC), IPC high to low."""
    hz = core.ghz * 1e9
    return (instructions / (hz * core.ipc[1]) * 1e3, instructions / (hz * core.ipc[0]) * 1e3)


# -- running things in the root --------------------------------------------------------------

@dataclass
class Log:
    """Steps with their time, to the terminal and to ``var/arm64-check/log.txt``."""

    path: Path
    start: float = field(default_factory=time.monotonic)

    def step(self, text: str) -> None:
        line = f"[{time.monotonic() - self.start:7.1f} s] {text}"
        print(line, flush=True)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(line + "\n")

    def run(self, argv: Sequence[str], *, check: bool = True,
            stream: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``argv``; its output goes to the log (as it comes, with ``stream``: the install
        takes minutes under qemu) and is returned."""
        with self.path.open("a", encoding="utf-8") as file:
            file.write("$ " + shlex.join(argv) + "\n")
            file.flush()
            if stream:
                done = subprocess.run(list(argv), stdout=file, stderr=subprocess.STDOUT,  # noqa: S603 - our own commands
                                      text=True, check=False)
            else:
                done = subprocess.run(list(argv), capture_output=True, text=True,  # noqa: S603
                                      check=False)
                file.write(done.stdout + done.stderr)
            file.write(f"(exit {done.returncode})\n")
        if stream:
            text = self.path.read_text(encoding="utf-8")
            out = text[text.rindex("$ " + shlex.join(argv)):]
            done = subprocess.CompletedProcess(done.args, done.returncode, out, "")
        if check and done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise CheckError(f"{shlex.join(argv)[:200]} exited {done.returncode}:\n{tail}")
        return done


def binfmt_ready() -> bool:
    """arm64 binaries run by themselves: qemu's binfmt_misc entry is there or can be made."""
    base = Path("/proc/sys/fs/binfmt_misc")
    entry = base / "qemu-aarch64"
    if entry.exists():
        return entry.read_text(encoding="utf-8").startswith("enabled")
    if not (base / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(base)],  # noqa: S603, S607
                       capture_output=True, check=False)
    conf = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")  # from qemu-user-static
    if not (base / "register").exists() or not conf.exists():
        return False
    try:
        (base / "register").write_text(conf.read_text(encoding="utf-8").strip() + "\n",
                                       encoding="utf-8")
    except OSError:
        return False
    return entry.exists()


@dataclass(frozen=True)
class PiCpu:
    """The CPU a Pi's reader sees: qemu's model of the core (its feature bits, which pick
    XNNPACK's kernels: no int8 dot product on the A72) and the core's ids in /proc/cpuinfo
    (which XNNPACK's cpuinfo needs to start at all under qemu, see :meth:`Root.argv`)."""

    qemu: str
    part: str
    variant: str
    revision: int
    features: str

    def cpuinfo(self) -> str:
        return "".join(f"processor\t: {i}\nFeatures\t: {self.features}\nCPU implementer\t: "
                       f"0x41\nCPU architecture: 8\nCPU variant\t: {self.variant}\nCPU part"
                       f"\t: {self.part}\nCPU revision\t: {self.revision}\n\n"
                       for i in range(4))


#: Pi 4: BCM2711, 4 x Cortex-A72 (MIDR part 0xd08); Pi 5: BCM2712, 4 x Cortex-A76 (0xd0b)
PI_CPUS: Final = {
    "pi4": PiCpu("cortex-a72", "0xd08", "0x0", 3,
                 "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"),
    "pi5": PiCpu("cortex-a76", "0xd0b", "0x4", 1,
                 "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                 "asimdrdm lrcpc dcpop asimddp"),
}


@dataclass(frozen=True)
class Root:
    """The arm64 root and how its programs are run (``binfmt`` or ``proot``), on a Pi's CPU
    (``cpu``, a key of :data:`PI_CPUS`) or qemu's default one."""

    path: Path
    emulation: str
    cpu: str | None = None

    def _fake_cpu(self) -> tuple[Path, Path]:
        """/proc/cpuinfo and /sys/devices/system/cpu of the Pi, as files in the root."""
        base = self.path / "root" / f"cpu-{self.cpu}"
        (base / "cpu").mkdir(parents=True, exist_ok=True)
        (base / "cpu" / "possible").write_text("0-3\n", encoding="utf-8")
        (base / "cpu" / "present").write_text("0-3\n", encoding="utf-8")
        (base / "cpuinfo").write_text(PI_CPUS[str(self.cpu)].cpuinfo(), encoding="utf-8")
        (self.path / "sys/devices/system/cpu").mkdir(parents=True, exist_ok=True)
        return base / "cpuinfo", base / "cpu"

    def argv(self, script: str) -> list[str]:
        qemu_cpu = [f"QEMU_CPU={PI_CPUS[self.cpu].qemu}"] if self.cpu else []
        env = ["/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root",
               "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive", "PIP_NO_INPUT=1",
               "PIP_DISABLE_PIP_VERSION_CHECK=1", *qemu_cpu, "/bin/bash", "-euo", "pipefail",
               "-c", script]
        fake = self._fake_cpu() if self.cpu else None
        if self.emulation == "proot":
            qemu = "qemu-aarch64-static" + (f" -cpu {PI_CPUS[self.cpu].qemu}"
                                            if self.cpu else "")
            binds = (["-b", f"{fake[0]}:/proc/cpuinfo", "-b", f"{fake[1]}:/sys/devices/system/cpu"]
                     if fake else [])
            return ["proot", "-q", qemu, "-0", "-r", str(self.path), "-b", "/dev",
                    "-b", "/proc", *binds, "-w", "/", *env]
        # /proc's cpuinfo and /sys would show the host's x86 CPUs: XNNPACK's cpuinfo, reading
        # them as arm64 ones, crashes creating an Interpreter (seen here). So /sys is never
        # mounted; with ``cpu`` a Pi's cpuinfo and CPU lists are put in their place (XNNPACK
        # then runs as on that Pi), without it LiteRT runs without XNNPACK (its own kernels)
        mounts = f"mount -t proc proc {self.path}/proc && "
        if fake:
            mounts += (f"mount --bind {fake[0]} {self.path}/proc/cpuinfo && "
                       f"mount --bind {fake[1]} {self.path}/sys/devices/system/cpu && ")
        mounts += (f"mount -t devpts devpts {self.path}/dev/pts -o newinstance,ptmxmode=0666 "
                   f"&& exec chroot {self.path} " + shlex.join(env))
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", mounts]


def bootstrap(log: Log) -> Root:
    """The root: made with debootstrap unless a finished one is there."""
    for tool in ("debootstrap", "qemu-aarch64-static", "unshare"):
        if shutil.which(tool) is None:
            raise CheckError(f"{tool} is missing: apt-get install debootstrap "
                             "qemu-user-static (make lane-arm64-check does)")
    forced = os.environ.get("LANE_ARM64_EMULATION")
    if forced == "proot" or (forced is None and not binfmt_ready()):
        if shutil.which("proot") is None:
            raise CheckError("binfmt_misc cannot be registered here and proot is missing: "
                             "apt-get install proot")
        emulation = "proot"
    else:
        emulation = "binfmt"
    log.step(f"arm64 programs run by qemu-aarch64-static through {emulation}")
    root = Root(ROOT, emulation)
    if (ROOT / BOOTSTRAPPED).exists():
        log.step(f"reusing {ROOT.relative_to(REPO)} (delete it to make it again)")
        return root
    if ROOT.exists():
        shutil.rmtree(ROOT)
    log.step(f"debootstrap {SUITE} arm64 into {ROOT.relative_to(REPO)} (a minute or more)")
    common = ["--arch=arm64", "--variant=minbase", "--include=ca-certificates"]
    if emulation == "binfmt":
        log.run(["debootstrap", *common, SUITE, str(ROOT), MIRROR])
    else:
        log.run(["debootstrap", "--foreign", *common, SUITE, str(ROOT), MIRROR])
        log.run(root.argv("/debootstrap/debootstrap --second-stage"))
    (ROOT / BOOTSTRAPPED).write_text(f"{SUITE} arm64 {time.strftime('%F %T')}\n",
                                     encoding="utf-8")
    return root


def copy_source(root: Root, log: Log) -> None:
    """The work tree's files (tracked and new, not ignored) to /opt/parkguard/src."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",  # noqa: S607
                            "--exclude-standard"], cwd=REPO, capture_output=True,
                           check=True).stdout.split(b"\0")
    target = root.path / SRC.lstrip("/")
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    count = 0
    for raw in names:
        name = raw.decode()
        source = REPO / name
        if name and source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
            count += 1
    log.step(f"copied {count} files of the work tree to {SRC}")


# -- frames ------------------------------------------------------------------------------------

def render_frames(directory: Path, count: int = FRAME_COUNT) -> tuple[tuple[int, ...],
                                                                        dict[str, str]]:
    """Lane camera frames (1280 x 720 JPEG, as picamera2 gives them) with their plates; every
    other one degraded. Needs the simulator, so it runs on the host."""
    from simulator.plates_render.dataset import sample
    from simulator.plates_render.render import LANE_720

    directory.mkdir(parents=True, exist_ok=True)
    truth: dict[str, str] = {}
    for i in range(count):
        scene = sample("heldout", FRAME_SEED, i, degraded=bool(i % 2), view=LANE_720)
        name = f"lane-{i:02d}.jpg"
        scene.image.save(directory / name, format="JPEG", quality=90)
        truth[name] = scene.text
    x0, y0, x1, y1 = LANE_720.region or (0, 0, 1280, 720)
    return (x0, y0, x1, y1), truth


def read_command(parkguard: str, models: str, region: Sequence[int],
                 frames: Sequence[str]) -> list[str]:
    """``parkguard read`` as the installer runs it on a commissioning still."""
    return [parkguard, "read", "--json", "--frame", "--models", models,
            "--region", ",".join(map(str, region)), *frames]


def worker(frames: Sequence[Path], models: Path, region: Sequence[int], extra: int) -> None:
    """Start the reader, read the first frame, then ``extra`` more (the instruction count's
    two runs differ only in ``extra``)."""
    from datetime import UTC, datetime

    from firmware.lane.devices.camera import Frame
    from firmware.lane.devices.reader import TfliteReader

    x0, y0, x1, y1 = region
    reader = TfliteReader(models, threads=1, region=(x0, y0, x1, y1))
    images = [Frame(taken=datetime.now(UTC), image=path.read_bytes())
              for path in frames[:extra + 1]]
    for frame in images:
        reader.read(frame)


# -- the check -------------------------------------------------------------------------------

VERSIONS_SCRIPT: Final = """
import importlib, importlib.metadata as md, json, platform, sys
out = {"python": sys.version.split()[0], "machine": platform.machine(), "dists": {}}
for name in DISTRIBUTIONS:
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        continue
    out["dists"][name] = {"version": dist.version, "where": str(dist.locate_file(""))}
import numpy
out["numpy_file"] = numpy.__file__
from firmware.lane.devices.reader.runtime import interpreter_class
out["runtime"] = interpreter_class()[0]
print(json.dumps(out))
""".replace("DISTRIBUTIONS", repr(DISTRIBUTIONS))


def selftest_config(region: Sequence[int]) -> str:
    """A Pi lane's config as lane-install.md step 2 says (picamera, its plate region)."""
    return ('site = "arm64-check"\nlane = "in1"\ndirection = "entry"\n[pins]\nfire_input = 23\n'
            f'[camera]\ntype = "picamera"\nplate_region = {list(region)}\n')


def check() -> int:
    """The whole check; prints and writes the report. 0 when every step passed."""
    OUT.mkdir(parents=True, exist_ok=True)
    log = Log(OUT / "log.txt")
    log.path.write_text("", encoding="utf-8")
    report: dict[str, Any] = {"steps": {}, "notes": []}

    def passed(step: str, ok: bool, detail: str = "") -> None:
        report["steps"][step] = {"ok": ok, "detail": detail}
        log.step(f"{'PASS' if ok else 'FAIL'} {step}{': ' + detail if detail else ''}")

    try:
        root = bootstrap(log)
        report["emulation"] = root.emulation
        shutil.copy2("/etc/resolv.conf", root.path / "etc" / "resolv.conf")
        # the host's own trust anchors (public certificates), so pip in the root reaches PyPI
        # over this machine's network as the host's pip does
        local_cas = root.path / "usr/local/share/ca-certificates"
        local_cas.mkdir(parents=True, exist_ok=True)
        for cert in Path("/usr/local/share/ca-certificates").glob("*.crt"):
            shutil.copy2(cert, local_cas / cert.name)
        copy_source(root, log)
        commands, notes = for_root(install_commands(INSTALL_DOC.read_text(encoding="utf-8")))
        report["notes"] += notes
        report["commands"] = commands
        log.step("install as hardware/lane-install.md step 2 says (apt, venv, pinned pip)")
        install = "\n".join([f"rm -rf {VENV}", "update-ca-certificates >/dev/null",
                             "apt-get update -q", *commands])
        done = log.run(root.argv(install), check=False, stream=True)
        out_lines = done.stdout.strip().splitlines()
        last = out_lines[-2] if len(out_lines) > 1 else ""  # the doc's numpy line
        passed("install", done.returncode == 0,
               last if done.returncode == 0 else (done.stdout + done.stderr)[-600:])
        if done.returncode != 0:
            raise CheckError("the install commands failed")
        apt_numpy = log.run(root.argv("dpkg-query -W -f '${Version}' python3-numpy")).stdout
        found = json.loads(log.run(root.argv(
            f"cd / && {VENV}/bin/python - <<'EOF'\n{VERSIONS_SCRIPT}\nEOF")).stdout)
        report["versions"] = found
        report["apt_numpy"] = apt_numpy
        numpy_ok = (found["numpy_file"].startswith("/usr/lib/python3/dist-packages/")
                    and found["dists"]["numpy"]["version"] in apt_numpy)
        passed("numpy is apt's", numpy_ok,
               f"{found['dists']['numpy']['version']} from {found['numpy_file']}")
        pip_check = log.run(root.argv(f"{VENV}/bin/pip check"), check=False)
        passed("pip check", pip_check.returncode == 0, pip_check.stdout.strip()[-300:])

        region, truth = render_frames(root.path / FRAMES.lstrip("/"))
        (root.path / "etc" / "parkguard").mkdir(parents=True, exist_ok=True)
        (root.path / "etc/parkguard/lane.toml").write_text(selftest_config(region),
                                                           encoding="utf-8")
        (root.path / "etc/parkguard/answers.txt").write_text(
            "\n".join(SELFTEST_ANSWERS) + "\n", encoding="utf-8")
        log.step("parkguard lane selftest --mock-pins (gpiozero's MockFactory)")
        selftest = log.run(root.argv(
            f"cd / && {VENV}/bin/parkguard lane selftest -c /etc/parkguard/lane.toml "
            "--mock-pins --script /etc/parkguard/answers.txt --wait 10"), check=False)
        passed("lane selftest --mock-pins", selftest.returncode == 0,
               " ".join(line.split()[0] + ":" + line.split()[-1]
                        for line in selftest.stdout.splitlines()
                        if line.startswith(("PASS", "FAIL"))) or selftest.stderr[-300:])

        names = sorted(truth)
        host = log.run(read_command(str(Path(sys.executable).parent / "parkguard"),
                                    str(REPO / "models"), region,
                                    [str(root.path / FRAMES.lstrip("/") / n) for n in names]))
        host_plates = [r["plate"] for r in json.loads(host.stdout)["reads"]]
        report["reads"] = {"truth": truth, "x86_64": host_plates}
        for cpu in PI_CPUS:
            log.step(f"parkguard read on a {cpu} CPU: {len(truth)} rendered lane frames")
            arm = log.run(Root(root.path, root.emulation, cpu).argv(
                "cd / && " + shlex.join(read_command(f"{VENV}/bin/parkguard", f"{SRC}/models",
                                                     region, [f"{FRAMES}/{n}" for n in names]))),
                check=False)
            if arm.returncode not in (0, 1):
                passed(f"read frames ({cpu})", False, arm.stderr[-600:])
                continue
            doc = json.loads(arm.stdout)
            plates = [r["plate"] for r in doc["reads"]]
            right = sum(p == truth[n] for p, n in zip(plates, names, strict=True))
            same = sum(a == h for a, h in zip(plates, host_plates, strict=True))
            kernels = "XNNPACK" if "XNNPACK delegate" in arm.stderr else "no XNNPACK"
            report["reads"][cpu] = plates
            passed(f"read frames ({cpu}, {PI_CPUS[cpu].qemu})", right >= len(names) - 2,
                   f"{right}/{len(names)} right ({doc['runtime']}, {kernels}), "
                   f"{same}/{len(names)} the same plate as on x86_64")
    except CheckError as error:
        report["error"] = str(error)
        log.step(f"stopped: {error}")
    text = render_report(report)
    (OUT / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2),
                                     encoding="utf-8")
    (OUT / "report.txt").write_text(text, encoding="utf-8")
    print(text)
    ok = "error" not in report and all(s["ok"] for s in report["steps"].values())
    return 0 if ok and report["steps"] else 1


def render_report(report: dict[str, Any]) -> str:
    lines = ["", "lane on Debian Bookworm arm64 (qemu-user; "
             f"{report.get('emulation', '?')}), installed as hardware/lane-install.md says"]
    for step, result in report["steps"].items():
        lines.append(f"  {'PASS' if result['ok'] else 'FAIL'}  {step}  {result['detail']}")
    if "error" in report:
        lines.append(f"  stopped: {report['error']}")
    versions = report.get("versions")
    if versions:
        lines.append(f"  python {versions['python']} on {versions['machine']}; "
                     f"apt python3-numpy {report.get('apt_numpy', '?')}; "
                     f"TFLite runtime: {versions['runtime']}")
        for name, dist in versions["dists"].items():
            origin = "apt" if dist["where"].startswith("/usr/lib/python3/") else "venv"
            lines.append(f"    {name} {dist['version']} ({origin})")
    lines += [f"  note: {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


# -- the instruction count ---------------------------------------------------------------------

def count(arm64: bool, extra: int, cpu: str | None = None) -> int:
    """Callgrind instruction totals of the worker with 0 and ``extra`` more frames, and the
    difference per frame. On the host, or (``arm64``) in the root with its own valgrind, on
    a Pi's CPU (``cpu``: XNNPACK's kernels for it) or qemu's default (no XNNPACK)."""
    if shutil.which("valgrind") is None and not arm64:
        raise CheckError("valgrind is missing: apt-get install valgrind")
    OUT.mkdir(parents=True, exist_ok=True)
    log = Log(OUT / (f"count-arm64-{cpu or 'qemu'}.txt" if arm64 else "count-x86_64.txt"))
    frames_dir = ROOT / FRAMES.lstrip("/") if arm64 else OUT / "frames"
    region, _ = render_frames(frames_dir, max(extra + 1, 2))
    names = [f"lane-{i:02d}.jpg" for i in range(extra + 1)]
    totals = []
    for more in (0, extra):
        if arm64:
            root = Root(ROOT, "binfmt" if binfmt_ready() else "proot", cpu)
            out_file = f"/root/callgrind.{cpu or 'qemu'}.{more}"  # inside the root
            frames = " ".join(f"{FRAMES}/{n}" for n in names)
            log.step(f"callgrind in the arm64 root, first frame + {more}")
            log.run(root.argv(
                "command -v valgrind >/dev/null || apt-get install -y -q valgrind\n"
                f"cd {SRC} && valgrind --tool=callgrind --callgrind-out-file={out_file} "
                f"{VENV}/bin/python scripts/lane_arm64_check.py worker --extra {more} "
                f"--region {','.join(map(str, region))} --models {SRC}/models {frames}"))
            text = (ROOT / out_file.lstrip("/")).read_text(encoding="utf-8")
        else:
            out_file = str(OUT / f"callgrind.x86_64.{more}")  # for callgrind_annotate
            log.step(f"callgrind on x86_64, first frame + {more}")
            log.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}",
                     sys.executable, str(Path(__file__).resolve()), "worker",
                     "--extra", str(more), "--region", ",".join(map(str, region)),
                     "--models", str(REPO / "models"), *[str(frames_dir / n) for n in names]])
            text = Path(out_file).read_text(encoding="utf-8")
        totals.append(callgrind_total(text))
        log.step(f"  {totals[-1]:,} instructions")
    one = per_frame(totals[0], totals[1], extra)
    machine = f"aarch64 (qemu, {cpu or 'its default CPU'})" if arm64 else "x86_64"
    log.step(f"{machine}: one lane frame = {one:,} instructions "
             f"(start-up + first frame {totals[0]:,})")
    print(json.dumps({"machine": machine, "per_frame": one, "startup_and_first": totals[0],
                      "extra_frames": extra}))
    print(f"estimate from {one:,} instructions (never measured on a Pi):")
    print(estimate_table(one))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="the whole arm64 check with a report")
    counting = sub.add_parser("count", help="callgrind instructions of one lane frame")
    counting.add_argument("--arm64", action="store_true", help="in the arm64 root (slow)")
    counting.add_argument("--extra", type=int, default=3, help="frames in the second run")
    counting.add_argument("--cpu", choices=sorted(PI_CPUS), default=None,
                          help="with --arm64: the Pi whose CPU qemu models")
    estimating = sub.add_parser("estimate", help="Pi latency estimate from a count")
    estimating.add_argument("instructions", type=int)
    work = sub.add_parser("worker", help="(internal) what callgrind runs")
    work.add_argument("--extra", type=int, required=True)
    work.add_argument("--region", required=True)
    work.add_argument("--models", type=Path, required=True)
    work.add_argument("frames", nargs="+", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            return check()
        if args.command == "count":
            return count(args.arm64, args.extra, args.cpu)
        if args.command == "estimate":
            print(estimate_table(args.instructions))
            return 0
        worker(args.frames, args.models, [int(v) for v in args.region.split(",")],
               args.extra)
        return 0
    except CheckError as error:
        print(f"lane-arm64-check: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
