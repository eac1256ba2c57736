"""Fire-panel interface node on the real MicroPython unix port against the real Mosquitto."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from broker.runner import MosquittoBroker
from simulator.sensor_node import (
    FIRMWARE,
    LOOP_ACTIVE,
    LOOP_NORMAL,
    LOOP_OPEN,
    LOOP_SHORT,
    SIM,
    SensorNode,
    fire_panel_config,
    fire_panel_inputs,
    loop_key,
    micropython_binary,
    pulse,
)
from tests.helpers import Recorder, eventually, wait_node_ms
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


# --- the fast path: wake lines and the confirmation window ---------------------------------
#
# Waveforms (simulator.sensor_node.pulse) run on the node's own clock, so a 12 ms glitch lasts
# 12 ms of the node's time however slowly this process writes the control file.

#: The node's `machine.Pin.IRQ_FALLING`: the comparator output falls as the loop goes active.
IRQ_FALLING = 4


def _woken(node: SensorNode, pin: str) -> bool:
    return any(key == pin and flags & IRQ_FALLING for _t, key, flags in node.irq_log())


def test_a_glitch_shorter_than_the_confirmation_window_wakes_the_node_but_never_alarms(
    broker: MosquittoBroker, fire_node: SensorNode
) -> None:
    window = fire_node.config["fire_panel"]["debounce_ms"]
    with Recorder(broker, f"parkguard/v1/{SITE}/#", device="monitor-watch1") as rec, fire_node:
        eventually(lambda: len(readings(rec)) == 1, timeout=10, what="the boot reading")
        for _ in range(3):
            fire_node.set(**{loop_key("b2-east"): pulse(LOOP_ACTIVE, window // 3, LOOP_NORMAL)})
            eventually(lambda: _woken(fire_node, "pin7"), what="the wake line's interrupt")
            wait_node_ms(fire_node.dir, 3 * window)  # the glitch, and a window after it
            (fire_node.dir / "sim_irq.log").unlink()
        # The sentinel: a supervisory contact that holds. Readings leave in seq order, so a
        # reading (or the alarm, which leaves first) from a glitch would come before this one.
        fire_node.set(**{loop_key("supervisory"): LOOP_ACTIVE})
        eventually(lambda: any(r.supervisory for r in readings(rec)),
                   what="the supervisory reading")
        got = readings(rec)
        assert [(r.seq, r.fire, r.supervisory) for r in got] == [(0, False, False),
                                                                 (1, False, True)]
        assert alarms(rec) == []


def test_a_contact_between_two_scans_is_caught_at_its_edge(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    """A full scan only every 4 s: a 100 ms zone contact (more than the 30 ms window) is
    confirmed because its wake line interrupts the wait, not because a scan happened on it."""
    node = SensorNode(broker, tmp_path / "fire1", fire_panel_config(loop_ms=4000),
                      fire_panel_inputs())
    with Recorder(broker, f"parkguard/v1/{SITE}/#", device="monitor-watch1") as rec, node:
        eventually(lambda: len(readings(rec)) == 1, timeout=10, what="the boot reading")
        node.set(**{loop_key("b2-east"): pulse(LOOP_ACTIVE, 100, LOOP_NORMAL)})
        eventually(lambda: bool(alarms(rec)), timeout=30, what="the fire alarm")
        assert alarms(rec)[0].zone == "b2-east"
        assert _woken(node, "pin7")
        eventually(lambda: len(readings(rec)) == 3, timeout=30,
                   what="the fire reading and the back-to-normal one")
        assert [(r.fire, r.zone) for r in readings(rec)[1:]] == [(True, "b2-east"),
                                                                 (False, "b2-east")]


CONFIRM_SCRIPT = """
import time
from pgsensor.inputs import Confirmed
c = Confirmed(20, 3)
out = []
def feed(samples):
    return [c.update(v, time.ticks_add(0, t * 1000)) for v, t in samples]
# boot: 'normal' confirmed once three samples span 20 ms
out.append(feed([("normal", 0), ("normal", 10), ("normal", 19), ("normal", 20)]))
# a 15 ms glitch, sampled every millisecond: never confirmed
out.append(feed([("active", 100 + t) for t in range(16)] + [("normal", 116)]))
# one disagreeing sample starts the run again
out.append(feed([("active", 200), ("active", 210), ("normal", 215), ("active", 216),
                 ("active", 230), ("active", 236)]))
# a late sampler (every 15 ms): confirmed once the span reaches the window
out.append(feed([("normal", 300), ("normal", 315), ("normal", 330)]))
# two samples spanning the window are not enough: three are needed, and then the missing
# one is due at once (ripe), not after another pass
c2 = Confirmed(20, 3)
out.append([c2.ripe(0), c2.update("active", 0), c2.ripe(10000), c2.update("active", 30000),
            c2.ripe(30000), c2.update("active", 30001), c2.ripe(30002)])
print(repr(out), c.value)
"""


def test_the_confirmation_rule_on_micropython() -> None:
    """``inputs.Confirmed`` on the unix port with synthetic sample times (no broker)."""
    env = dict(os.environ, MICROPYPATH=f"{SIM}:{FIRMWARE}")
    done = subprocess.run([str(micropython_binary()), "-c", CONFIRM_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=30, check=True)
    out, value = done.stdout.strip().rsplit(" ", 1)
    assert out == repr([
        [False, False, False, True],
        [False] * 17,
        [False, False, False, False, False, True],
        [False, False, True],
        [False, False, False, False, True, True, False],
    ])
    assert value == "normal"
