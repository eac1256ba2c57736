"""Fire with the gateway stopped: the real fire-node firmware (MicroPython unix port) and
simulated lanes, on the real locked-down Mosquitto, and no gateway at all.

The fire contact on the node → the node's own retained ``alarm/fire`` → every lane raises its
barrier and holds it. The panel going back to normal changes nothing (the node never clears
the alarm itself); only an inactive ``alarm/fire`` — what the gateway publishes after an
authorised reset — lowers the barriers, through the safety-loop interlock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broker.runner import MosquittoBroker
from parkguard.clock import ManualClock
from simulator.sensor_node import (
    LOOP_ACTIVE,
    LOOP_NORMAL,
    SensorNode,
    fire_panel_config,
    fire_panel_inputs,
    loop_key,
)
from simulator.site import SimulatedLanes
from tests.conftest import SITE_START, TEST_SITE
from tests.helpers import Recorder, eventually
from wire.contract import topics
from wire.contract.messages import AlarmState, SensorReading, decode
from wire.mqtt import MqttBus

pytestmark = pytest.mark.integration

ENTRIES = ("in1", "in2")
EXITS = ("out1", "out2")
FIRE = topics.alarm(TEST_SITE, "fire")
READINGS = topics.sensor_reading(TEST_SITE, "fire1")
#: What the node prints once the broker has acknowledged its latched fire alarm.
ALARM_ACKED = "alarm fire acknowledged by the broker"


@pytest.fixture
def lanes(broker: MosquittoBroker, tmp_path: Path) -> Iterator[SimulatedLanes]:
    with SimulatedLanes(site=TEST_SITE, broker=broker.address, clock=ManualClock(SITE_START),
                        entry_lanes=ENTRIES, exit_lanes=EXITS,
                        workdir=tmp_path / "lanes") as running:
        yield running


def relays(lanes: SimulatedLanes) -> dict[str, bool]:
    return {name: bool(lane.wiring.relay.state) for name, lane in lanes.lanes.items()}


def fire_alarms(rec: Recorder) -> list[AlarmState]:
    out = []
    for topic, payload in list(rec.messages):
        if topic == FIRE and payload:
            value = decode(topic, payload)
            assert isinstance(value, AlarmState)
            out.append(value)
    return out


def readings(rec: Recorder) -> list[SensorReading]:
    out = []
    for topic, payload in list(rec.messages):
        if topic == READINGS:
            value = decode(topic, payload)
            assert isinstance(value, SensorReading)
            out.append(value)
    return out


def wait_lanes_idle(lanes: SimulatedLanes) -> None:
    """Every lane's worker has done all that its events and the clock made due."""
    for lane in lanes.lanes.values():
        lane.node.controller.wait_idle()


def test_with_the_gateway_stopped_a_fire_contact_raises_every_barrier_until_reset(
    broker: MosquittoBroker, tmp_path: Path, lanes: SimulatedLanes
) -> None:
    clock = lanes.clock
    assert isinstance(clock, ManualClock)
    node = SensorNode(broker, tmp_path / "fire1", fire_panel_config(), fire_panel_inputs())
    with Recorder(broker, f"parkguard/v1/{TEST_SITE}/#", device="monitor-watch1") as rec, node:
        eventually(lambda: bool(readings(rec)), timeout=10, what="the fire node's boot reading")
        eventually(lambda: all(lanes.lanes[x].node.bus.connected.is_set() for x in lanes.lanes),
                   what="every lane on the broker")
        assert not any(relays(lanes).values())
        assert fire_alarms(rec) == []

        started = time.perf_counter()
        node.set(**{loop_key("b2-east"): LOOP_ACTIVE})
        eventually(lambda: all(relays(lanes).values()), timeout=30, what="every barrier up")
        print(f"\nfire contact -> {len(lanes.lanes)} barriers up, no gateway: "
              f"{(time.perf_counter() - started) * 1000:.0f} ms (30 ms debounce, 5 ms loop)")
        # The lanes may hear the retained alarm before the monitor does: wait for its copy too.
        eventually(lambda: len(fire_alarms(rec)) == 1, what="the monitor's copy of the alarm")
        [alarm] = fire_alarms(rec)
        assert alarm.active and alarm.source == "fire1" and alarm.zone == "b2-east"
        for lane in lanes.lanes.values():
            eventually(lambda n=lane.node: n.controller.state().mode == "fire_open",  # type: ignore[misc]
                       what="fire_open mode")
            assert lane.node.hardware.barrier.lower() is False  # nothing can lower it

        # Hours pass, the panel goes back to normal: the barriers stay up (no gateway, no reset).
        # The lanes have run whatever the two hours made due once their workers are idle. The
        # node's alarm is acknowledged, so an alarm it cleared or repeated would leave in the
        # same loop pass as the back-to-normal reading and before it: that reading is the
        # sentinel on the recorder's one, ordered connection.
        eventually(lambda: ALARM_ACKED in node.console(), what="the alarm acknowledged")
        clock.advance(timedelta(hours=2))
        node.set(**{loop_key("b2-east"): LOOP_NORMAL})
        eventually(lambda: len(readings(rec)) >= 3, what="the back-to-normal reading")
        wait_lanes_idle(lanes)
        assert all(relays(lanes).values())
        assert len(fire_alarms(rec)) == 1, "the node cleared or repeated the alarm by itself"

        # A car stands under the boom of out2 when the reset comes.
        lanes.lanes["out2"].wiring.safety.drive_high()
        reset = AlarmState(kind="fire", active=False, source="gateway",
                           ts=datetime.now(UTC))
        with MqttBus(broker.address("gateway"), client_id="gateway-reset") as gateway_bus:
            gateway_bus.publish_and_wait(FIRE, reset, retain=True)
        eventually(lambda: relays(lanes) == {"in1": False, "in2": False, "out1": False,
                                             "out2": True},
                   what="every barrier down but the one with a car under it")
        for _ in range(3):
            clock.advance(timedelta(minutes=10))
            wait_lanes_idle(lanes)
            assert relays(lanes)["out2"], "barrier lowered onto a vehicle"
        lanes.lanes["out2"].wiring.safety.drive_low()
        eventually(lambda: not any(relays(lanes).values()), what="out2 down once clear")

        # The node heard the reset with its panel normal: it does not re-assert the alarm.
        # The sentinel: a trouble contact afterwards. The reset reached the node's socket
        # before the lanes could act on it, and the loop pass that sends the trouble reading
        # reads the socket first, so a re-asserted alarm would leave before that reading.
        node.set(**{loop_key("trouble"): LOOP_ACTIVE})
        eventually(lambda: any(r.trouble for r in readings(rec)), what="the trouble reading")
        assert [a.active for a in fire_alarms(rec)] == [True, False]
        assert node.running
