"""The sensor firmware's topics come from the wire contract: ``pgsensor/topics.py`` is
generated (``firmware/sensor/gen_topics.py``), fails here when stale, gives the contract's
strings on MicroPython, and no firmware module spells a topic by hand."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from simulator.sensor_node import FIRMWARE, SIM, micropython_binary
from wire.contract import topics


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pg_gen_topics", FIRMWARE / "gen_topics.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _generator()


def test_the_generated_module_is_what_the_contract_gives_now() -> None:
    assert gen.OUT.read_text("utf-8") == gen.render(), (
        "firmware/sensor/pgsensor/topics.py is stale: run "
        ".venv/bin/python firmware/sensor/gen_topics.py (make firmware does)")
    assert gen.main(["--check"]) == 0


def test_a_stale_module_is_caught(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stale = tmp_path / "topics.py"
    stale.write_text(gen.render().replace("/reading", "/readings"), encoding="utf-8")
    monkeypatch.setattr(gen, "OUT", stale)
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0 and gen.main(["--check"]) == 0  # written again


def test_on_micropython_the_generated_builders_give_the_contracts_topics() -> None:
    calls = {
        "sensor_reading": ("mall-b2", "fire1"),
        "sensor_state": ("mall-b2", "flood2"),
        "patrol_tap": ("mall-b2", "reader1"),
        "alarm": ("mall-b2", "flood"),
        "all_alarms": ("mall-b2",),
    }
    assert {name for name, _params in gen.BUILDERS} == set(calls)
    script = "from pgsensor import topics\n" + "".join(
        f"print(topics.{name}(*{args!r}))\n" for name, args in calls.items()) + (
        "print(repr(topics.ALARM_KINDS))\n")
    env = dict(os.environ, MICROPYPATH=f"{SIM}:{FIRMWARE}")
    done = subprocess.run([str(micropython_binary()), "-c", script], env=env,
                          capture_output=True, text=True, timeout=30, check=True)
    expected = [getattr(topics, name)(*args) for name, args in calls.items()]
    assert done.stdout.splitlines() == [*expected, repr(tuple(topics.ALARM_KINDS))]


def test_no_firmware_module_spells_a_topic_by_hand() -> None:
    spelled = re.compile(r"""["'][^"'\n]*(parkguard/v1|/sensor/|/alarm|/patrol/|/tap\b|"""
                         r"""/reading\b|/state\b)""")
    offenders = []
    for path in sorted(FIRMWARE.rglob("*.py")):
        if path.name == "topics.py" or path.name == "gen_topics.py":
            continue
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if spelled.search(code):
                offenders.append(f"{path.relative_to(FIRMWARE)}:{number}: {line.strip()}")
    assert offenders == []
