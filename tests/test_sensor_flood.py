"""Flood / water-level node on the real MicroPython unix port against the real Mosquitto."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from broker.runner import MosquittoBroker
from simulator.sensor_node import SensorNode
from tests.helpers import Recorder, eventually, node_ms, wait_node_ms
from wire.contract import topics
from wire.contract.messages import SensorReading, decode

pytestmark = pytest.mark.integration

SITE = "test"
READINGS = topics.sensor_reading(SITE, "flood1")
LEVELS_MM = (100, 300, 600)
FULL_MM = 2000
LEVEL_ADC = 26
FLOATS = (2, 3, 4)  # float switches at 100, 300 and 600 mm, closed (0) when floating
PUMP, BUZZER, LED = 5, 15, 14
DEBOUNCE_MS = 150
SAMPLES = 4  # analog readings the node averages


def flood_config(*, analog: bool, floats: bool) -> dict[str, Any]:
    flood: dict[str, Any] = {
        "levels_mm": list(LEVELS_MM),
        "hysteresis_mm": 30,
        "debounce_ms": DEBOUNCE_MS,
        "pump": {"pin": PUMP, "active_low": True},
        "buzzer": {"pin": BUZZER},
        "led": {"pin": LED},
    }
    if analog:
        flood["level_adc"] = {"pin": LEVEL_ADC, "raw_zero": 0, "raw_full": 65535,
                              "full_mm": FULL_MM, "samples": SAMPLES}
    if floats:
        flood["floats"] = [{"pin": pin, "height_mm": mm} for pin, mm in zip(FLOATS, LEVELS_MM,
                                                                            strict=True)]
    return {"node": "flood1", "kind": "flood", "flood": flood}


def raw(mm: float) -> int:
    return round(mm * 65535 / FULL_MM)


def readings(rec: Recorder) -> list[SensorReading]:
    out = []
    for topic, payload in list(rec.messages):
        value = decode(topic, payload)
        assert isinstance(value, SensorReading)
        out.append(value)
    return out


def level_of(mm: int | None) -> int:
    assert mm is not None, "a flood reading always carries water_level_mm"
    return sum(mm >= t for t in LEVELS_MM)


def test_a_rippling_level_gives_exactly_one_reading_per_level_crossing(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    dry = {f"adc{LEVEL_ADC}": raw(10), f"pin{PUMP}": 1}
    node = SensorNode(broker, tmp_path / "flood1", flood_config(analog=True, floats=False), dry)
    with Recorder(broker, READINGS, device="monitor-watch1") as rec, node:
        eventually(lambda: len(readings(rec)) == 1, timeout=10, what="the boot reading")
        assert level_of(readings(rec)[0].water_level_mm) == 0
        assert readings(rec)[0].pump_running is False

        for threshold in LEVELS_MM:
            # Waves: ±15 mm around the threshold every 10 ms for 0.6 s, then above it.
            for i in range(60):
                node.set(**{f"adc{LEVEL_ADC}": raw(threshold + (15 if i % 2 else -15))})
                time.sleep(0.01)
            node.set(**{f"adc{LEVEL_ADC}": raw(threshold + 40)})
            eventually(lambda t=threshold: level_of(readings(rec)[-1].water_level_mm)  # type: ignore[misc]
                       == LEVELS_MM.index(t) + 1, what=f"level above {threshold} mm")
        eventually(lambda: node.outputs().get(f"pin{BUZZER}") == 1, what="the buzzer on")
        assert node.outputs().get(f"pin{LED}") is not None

        # The pump starts, with contact bounce: one reading. It is also the sentinel for the
        # waves: the node samples in order and sends readings in seq order, so a reading the
        # waves caused would come before the pump's.
        for i in range(6):
            node.set(**{f"pin{PUMP}": i % 2})
            time.sleep(0.02)
        node.set(**{f"pin{PUMP}": 0})
        eventually(lambda: any(r.pump_running for r in readings(rec)), what="the pump reading")
        got = readings(rec)
        assert [level_of(r.water_level_mm) for r in got[:4]] == [0, 1, 2, 3], got
        assert [r.pump_running for r in got[:5]] == [False] * 4 + [True], got
        assert [r.seq for r in got[:5]] == [0, 1, 2, 3, 4]

        # Water drains below level 3 but within the hysteresis: still level 3, no reading.
        # On the node's own clock: enough loop passes to fill its average with the new level,
        # then the debounce; then the pump stops, the sentinel: a reading the drain caused, or
        # a bounce of the pump, would come before the pump's stop.
        node.set(**{f"adc{LEVEL_ADC}": raw(LEVELS_MM[2] - 20)})
        for _ in range(SAMPLES):
            node_ms(node.dir)
        wait_node_ms(node.dir, DEBOUNCE_MS)
        node.set(**{f"pin{PUMP}": 1})
        eventually(lambda: readings(rec)[-1].pump_running is False, what="the pump stopping")
        got = readings(rec)
        assert len(got) == 6, got
        assert (got[5].seq, got[5].pump_running) == (5, False)
        assert got[5].water_level_mm is not None and got[5].water_level_mm >= LEVELS_MM[2] - 30
        node.set(**{f"adc{LEVEL_ADC}": raw(LEVELS_MM[2] - 60)})
        eventually(lambda: len(readings(rec)) == 7, what="back to level 2")
        assert level_of(readings(rec)[-1].water_level_mm) == 2
        eventually(lambda: node.outputs().get(f"pin{BUZZER}") is not None)


def test_bouncing_float_switches_give_exactly_one_reading_per_level(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    dry = {f"pin{p}": 1 for p in (*FLOATS, PUMP)}
    node = SensorNode(broker, tmp_path / "flood1", flood_config(analog=False, floats=True), dry)
    with Recorder(broker, READINGS, device="monitor-watch1") as rec, node:
        eventually(lambda: len(readings(rec)) == 1, timeout=10, what="the boot reading")
        assert readings(rec)[0].water_level_mm == 0

        for pin, height in zip(FLOATS, LEVELS_MM, strict=True):
            for i in range(12):  # the float bobs on the waves for 0.24 s
                node.set(**{f"pin{pin}": i % 2})
                time.sleep(0.02)
            node.set(**{f"pin{pin}": 0})
            eventually(lambda h=height: readings(rec)[-1].water_level_mm == h,  # type: ignore[misc]
                       what=f"the float at {height} mm")
        eventually(lambda: node.outputs().get(f"pin{BUZZER}") == 1, what="the buzzer on")

        # A stuck float: the top one is up while the middle one is down. Its trouble reading
        # is also the sentinel for the bobbing: a reading a bob caused would come before it.
        node.set(**{f"pin{FLOATS[1]}": 1})
        eventually(lambda: any(r.trouble for r in readings(rec)), what="a stuck-float trouble")
        got = readings(rec)
        assert [r.water_level_mm for r in got[:4]] == [0, *LEVELS_MM]
        assert [bool(r.trouble) for r in got] == [False] * 4 + [True], got
