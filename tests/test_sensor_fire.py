"""Fire-panel interface node on the real MicroPython unix port against the real Mosquitto."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from broker.runner import MosquittoBroker
from simulator.sensor_node import (
    LOOP_ACTIVE,
    LOOP_NORMAL,
    LOOP_OPEN,
    LOOP_SHORT,
    SensorNode,
    fire_panel_config,
    fire_panel_inputs,
    loop_key,
)
from tests.helpers import Recorder, eventually
from wire.contract import topics
from wire.contract.messages import AlarmState, SensorReading, SensorState, decode

pytestmark = pytest.mark.integration

SITE = "test"
READINGS = topics.sensor_reading(SITE, "fire1")
FIRE_ALARM = topics.alarm(SITE, "fire")
#: What the node prints once the broker has acknowledged its latched fire alarm.
ALARM_ACKED = "alarm fire acknowledged by the broker"


def readings(rec: Recorder) -> list[SensorReading]:
    out = []
    for topic, payload in list(rec.messages):
        if topic == READINGS:
            value = decode(topic, payload)
            assert isinstance(value, SensorReading)
            out.append(value)
    return out


def alarms(rec: Recorder) -> list[AlarmState]:
    out = []
    for topic, payload in list(rec.messages):
        if topic == FIRE_ALARM:
            value = decode(topic, payload)
            assert isinstance(value, AlarmState)
            out.append(value)
    return out


@pytest.fixture
def fire_node(broker: MosquittoBroker, tmp_path: Path) -> SensorNode:
    return SensorNode(broker, tmp_path / "fire1", fire_panel_config(), fire_panel_inputs())


def test_fire_contact_latches_the_retained_site_alarm(
    broker: MosquittoBroker, fire_node: SensorNode
) -> None:
    with Recorder(broker, f"parkguard/v1/{SITE}/#", device="monitor-watch1") as rec, fire_node:
        eventually(lambda: len(readings(rec)) == 1, timeout=10, what="the boot reading")
        first = readings(rec)[0]
        assert (first.fire, first.trouble, first.supervisory) == (False, False, False)
        state = decode(*next(m for m in rec.messages if m[0].endswith("/fire1/state")))
        assert isinstance(state, SensorState) and state.online and state.firmware
        assert alarms(rec) == []

        started = time.monotonic()
        fire_node.set(**{loop_key("b2-east"): LOOP_ACTIVE})
        eventually(lambda: bool(alarms(rec)), timeout=30, what="the fire alarm")
        latency_ms = (time.monotonic() - started) * 1000
        alarm = alarms(rec)[0]
        assert alarm.active and alarm.source == "fire1" and alarm.zone == "b2-east"
        assert alarm.since is not None
        eventually(lambda: any(r.fire for r in readings(rec)), what="the fire reading")
        fire_reading = next(r for r in readings(rec) if r.fire)
        assert fire_reading.zone == "b2-east" and fire_reading.seq == first.seq + 1
        print(f"zone contact to retained fire alarm at a subscriber: {latency_ms:.0f} ms "
              "(30 ms debounce, 5 ms loop)")
        assert latency_ms < 1000

        # The panel's common fire contact too: a reading, but the alarm stays one alarm. Once
        # the broker has acknowledged the first alarm, a node that latched it again would send
        # it in the same loop pass as the reading and before it, on the one connection the
        # recorder hears in order: the reading is the sentinel.
        eventually(lambda: ALARM_ACKED in fire_node.console(), what="the alarm acknowledged")
        fire_node.set(**{loop_key("fire"): LOOP_ACTIVE})
        eventually(lambda: len(readings(rec)) == 3, what="the second fire reading")
        assert len(alarms(rec)) == 1

    # A lane that connects later (here a watcher) still gets the alarm: it is retained.
    with Recorder(broker, FIRE_ALARM, device="monitor-watch2") as late:
        eventually(lambda: bool(late.messages), what="the retained alarm for a late subscriber")
        value = decode(*late.messages[0])
        assert isinstance(value, AlarmState) and value.active and value.kind == "fire"


def test_a_supervised_loop_open_or_shorted_is_trouble_not_fire(
    broker: MosquittoBroker, fire_node: SensorNode
) -> None:
    with Recorder(broker, f"parkguard/v1/{SITE}/#", device="monitor-watch1") as rec, fire_node:
        eventually(lambda: len(readings(rec)) == 1, timeout=10, what="the boot reading")

        fire_node.set(**{loop_key("b2-west"): LOOP_OPEN})  # a cut wire on a zone loop
        eventually(lambda: len(readings(rec)) == 2, what="the trouble reading")
        cut = readings(rec)[1]
        assert (cut.fire, cut.trouble, cut.supervisory, cut.zone) == (False, True, False,
                                                                     "b2-west")

        fire_node.set(**{loop_key("fire"): LOOP_SHORT})  # a shorted fire loop
        eventually(lambda: len(readings(rec)) == 3, what="the short reading")
        assert readings(rec)[2].trouble and not readings(rec)[2].fire

        fire_node.set(**{loop_key("supervisory"): LOOP_ACTIVE})
        eventually(lambda: len(readings(rec)) == 4, what="the supervisory reading")
        assert readings(rec)[3].supervisory and not readings(rec)[3].fire

        fire_node.set(**fire_panel_inputs())  # repaired, supervisory restored
        eventually(lambda: len(readings(rec)) == 7, what="three readings back to normal")
        last = readings(rec)[-1]
        assert (last.fire, last.trouble, last.supervisory) == (False, False, False)
        assert [r.seq for r in readings(rec)] == list(range(7))
    assert alarms(rec) == []


def test_a_contact_that_bounces_shorter_than_the_debounce_is_ignored(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    config = fire_panel_config()
    config["fire_panel"]["debounce_ms"] = 250  # margin for a loaded CI machine
    fire_node = SensorNode(broker, tmp_path / "fire1", config, fire_panel_inputs())
    with Recorder(broker, f"parkguard/v1/{SITE}/#", device="monitor-watch1") as rec, fire_node:
        eventually(lambda: len(readings(rec)) == 1, timeout=10, what="the boot reading")
        for _ in range(5):  # 10 ms blips, well under the debounce
            fire_node.set(**{loop_key("trouble"): LOOP_ACTIVE})
            time.sleep(0.01)
            fire_node.set(**{loop_key("trouble"): LOOP_NORMAL})
            time.sleep(0.04)
        # The sentinel: a supervisory contact that holds. The node samples in order and sends
        # its readings in seq order, so a reading from a blip would come before this one.
        fire_node.set(**{loop_key("supervisory"): LOOP_ACTIVE})
        eventually(lambda: any(r.supervisory for r in readings(rec)),
                   what="the supervisory reading")
        got = readings(rec)
        assert len(got) == 2, got
        assert (got[1].seq, got[1].supervisory, got[1].trouble) == (1, True, False)
        assert alarms(rec) == []
