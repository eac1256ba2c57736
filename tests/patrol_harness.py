"""Run the handheld patrol reader firmware on the MicroPython unix port against a test broker.

A :class:`PatrolReaderNode` is one simulated Pico W with a PN532: the firmware of
``firmware/sensor`` runs unchanged under ``micropython`` (entry ``patrol_main.py``) in its
own directory (its flash), ``sim/machine.py`` plays the pins and the battery ADC, and
``sim/nfcsim.py`` plays the PN532: :meth:`PatrolReaderNode.present` puts a tag in the field
through ``sim_nfc.json`` (see that module's header) and waits until the reader took it.

The shared test site (``tests/conftest.py``) has no patrol reader, so
:func:`provision_patrol_site` provisions a small locked-down site of its own with one:
the same ``provision_site`` an installer runs, so the patrol ACLs are exercised too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from broker.provision.generate import ProvisionResult, provision_site
from broker.provision.inventory import (
    BrokerSpec,
    LaneSpec,
    MonitorSpec,
    PatrolReaderSpec,
    SiteInventory,
)
from simulator.sensor_node import FIRMWARE, SIM, SensorNode
from tests.helpers import eventually

PATROL_SITE = "test"
READER = "reader1"
#: Guard badge tags (UID -> badge id) configured on the reader.
BADGES = {"04B0D6E2A15A80": "G017", "04B0D6E2A15A81": "G018"}
BADGE_UID = "04B0D6E2A15A80"
#: Output pins of the reader (the wiring in hardware/patrol-reader.md).
GREEN, RED, BUZZER = 14, 15, 13
BATTERY_ADC = 26


def provision_patrol_site(out_dir: Path) -> ProvisionResult:
    """A locked-down site with one patrol reader and a read-only watcher."""
    inventory = SiteInventory(
        site=PATROL_SITE,
        broker=BrokerSpec(address="localhost"),
        lanes=(LaneSpec(id="in1", direction="entry"),),
        patrol_readers=(PatrolReaderSpec(id=READER, location="B2 guard booth"),),
        monitors=(MonitorSpec(id="watch1", name="patrol test watcher"),
                  MonitorSpec(id="watch2", name="patrol test watcher")),
    )
    return provision_site(inventory, out_dir)


def patrol_config(**patrol: Any) -> dict[str, Any]:
    """config.json of the simulated reader (the harness adds site and broker)."""
    section: dict[str, Any] = {
        "badges": dict(BADGES),
        "repeat_ms": 1500,
        "ack_wait_ms": 600,
        "nfc": {"bus": "sim"},
        "outputs": {"green": {"pin": GREEN}, "red": {"pin": RED}, "buzzer": {"pin": BUZZER}},
        "battery": {"adc": BATTERY_ADC, "ratio": 2.0, "vref_mv": 3300, "samples": 4,
                    "every_s": 1, "low_pct": 15},
    }
    section.update(patrol)
    return {"node": READER, "kind": "patrol", "patrol": section}


def adc_for_mv(mv: int, ratio: float = 2.0, vref_mv: int = 3300) -> int:
    """The 16-bit ADC reading the battery divider gives for a cell voltage."""
    return round(mv / ratio / vref_mv * 65535)


class PatrolReaderNode(SensorNode):
    """The patrol reader under ``micropython``: a :class:`SensorNode` with the patrol user,
    the patrol entry point and a PN532 in the field."""

    def _write_config(self) -> None:
        address = self.broker.address(f"patrol-{self.node}")
        assert address.ca_file is not None
        shutil.copyfile(address.ca_file, self.dir / "ca.crt")
        cfg = {"site": PATROL_SITE, "loop_ms": 5, "watchdog_ms": 8000, **self.config}
        cfg["broker"] = {
            "host": address.host, "port": address.port, "user": address.username,
            "password": address.password, "tls": True, "ca": "ca.crt",
            "server_hostname": "localhost", "keepalive_s": 10, "timeout_s": 2,
            "backoff_min_ms": 100, "backoff_max_ms": 800, **self.config.get("broker", {}),
        }
        (self.dir / "config.json").write_text(json.dumps(cfg, indent=1), encoding="utf-8")

    def start(self) -> PatrolReaderNode:
        env = dict(os.environ, MICROPYPATH=f"{SIM}:{FIRMWARE}:.frozen")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), str(FIRMWARE / "patrol_main.py")],
                cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        return self

    def __enter__(self) -> PatrolReaderNode:
        return self.start()

    # -- the PN532 ------------------------------------------------------------------------

    def present(self, uid: str, sun: str | None = None, *, url: str | None = None,
                hold_ms: int = 0, fail: bool = False, wait: bool = True) -> float:
        """Put a tag in the field; return the (monotonic) time it was presented. Waits until
        the reader has taken it."""
        spec: dict[str, Any] = {"uid": uid, "hold_ms": hold_ms}
        if sun is not None:
            spec["sun"] = sun
        if url is not None:
            spec["url"] = url
        if fail:
            spec["fail"] = True
        control = self.dir / "sim_nfc.json"
        assert not control.exists(), "the previous tag was never taken"
        tmp = self.dir / "sim_nfc.json.tmp"
        tmp.write_text(json.dumps(spec), encoding="utf-8")
        presented = time.monotonic()
        os.replace(tmp, control)
        if wait:
            eventually(lambda: not control.exists(), timeout=30, what=f"the reader to take {uid}")
        return presented

    # -- what the reader shows ------------------------------------------------------------

    def output_edges(self) -> list[tuple[int, int, int]]:
        """Every output change so far: (ticks_ms, pin, level)."""
        path = self.dir / "sim_out.log"
        if not path.exists():
            return []
        out = []
        for line in path.read_text("utf-8").splitlines():
            ticks, key, level = line.split()
            out.append((int(ticks), int(key[3:]), int(level)))
        return out

    def pulses(self, pin: int, since: int = 0) -> list[int]:
        """Lengths (ms) of the completed on-pulses of ``pin`` in ``output_edges()[since:]``."""
        lengths = []
        started: int | None = None
        for ticks, p, level in self.output_edges()[since:]:
            if p != pin:
                continue
            if level:
                started = ticks
            elif started is not None:
                lengths.append(ticks - started)
                started = None
        return lengths

    def feedback(self, since: int) -> dict[str, list[int]]:
        """The pulses of each output after edge ``since``: {"green": [...], ...}."""
        return {name: self.pulses(pin, since) for name, pin in
                (("green", GREEN), ("red", RED), ("buzzer", BUZZER))}

    def quiet(self) -> bool:
        """Every output is off (the last pattern has finished)."""
        levels = {pin: level for _t, pin, level in self.output_edges()}  # the last of each
        return not any(levels.values())

    def state(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.dir / "patrol_state.json").read_text("utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return data
