"""Home Assistant MQTT discovery (issue 26): the gateway's retained configs, read as Home
Assistant reads them, against the real Mosquitto with the provisioned ACLs.

A watcher logs in as Home Assistant does (a monitor of the site) and subscribes to the
discovery prefix: every config is there, retained, valid JSON, with a device, a unique id
and availability. Then each config's ``state_topic`` and ``value_template`` are applied to
the real messages on that topic, in order, as Home Assistant would (``this.state`` is the
state the last message left): a real lane on mock pins lets a car in, a fire panel and a
flood node speak with the contract's own messages. The templates are plain Jinja, rendered
here with jinja2.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import jinja2
import pytest
from pydantic import SecretStr

from broker.provision.acl import grants
from broker.provision.generate import ProvisionResult
from broker.provision.inventory import GatewaySpec
from broker.runner import MosquittoBroker
from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from gateway.lanes.capacity import CapacitySettings
from gateway.runtime.discovery import HomeAssistantSettings, discovery_configs
from parkguard.clock import ManualClock
from simulator.provisioned import simulated_inventory
from simulator.site import SimulatedLanes, settings_of
from tests.conftest import SITE_START, TEST_SITE
from tests.helpers import Recorder, eventually
from wire.contract import topics
from wire.contract.messages import AlarmState, SensorReading, SensorState
from wire.mqtt import MqttBus

WAIT_S = 30.0
PLATE = "粤B12345"
PREFIX = "homeassistant"
NODE = "parkguard_test"
#: What each entity shows after the run below: a car came in at in1; then the fire panel
#: reports fire (the lanes raise their barriers for it) and no trouble; the flood node 120 mm.
EXPECTED = {
    "gateway": "ON", "fire_alarm": "ON", "occupied": "1", "free": "99",
    "lane_in1_barrier": "ON", "lane_out1_barrier": "ON", "lane_in1_online": "ON",
    "lane_out1_online": "ON", "lane_in1_plate": PLATE,
    "sensor_fire1_fire": "ON", "sensor_fire1_trouble": "OFF", "sensor_flood1_water": "120",
}
TEMPLATES = jinja2.Environment(autoescape=False)  # noqa: S701 - plain text, as in Home Assistant


def render(template: str, payload: bytes, previous: str | None) -> str:
    """One message through a value template, as Home Assistant's MQTT entity does."""
    return TEMPLATES.from_string(template).render(
        value_json=json.loads(payload), this={"state": previous}).strip()


def fold(template: str, payloads: list[bytes]) -> str | None:
    """The state after every message on the topic, in order."""
    state: str | None = None
    for payload in payloads:
        state = render(template, payload, state)
    return state


class Site:
    """The gateway with discovery on, lanes in1 and out1, and the sensors' own logins."""

    def __init__(self, broker: MosquittoBroker, test_site: ProvisionResult, workdir: Path):
        keys = test_site.device("gateway").lane_keys
        self.clock = ManualClock(SITE_START)
        self.gateway = GatewayApp(GatewayConfig(
            site=TEST_SITE, database=workdir / "gateway.db",
            broker=settings_of(broker.address("gateway")),
            lane_keys={lane: SecretStr(keys[lane].hex()) for lane in ("in1", "out1")},
            sensors={"fire1": "fire_panel", "flood1": "flood"},
            capacity=CapacitySettings(total=100),
            homeassistant=HomeAssistantSettings(enabled=True)), clock=self.clock)
        self.lanes = SimulatedLanes(site=TEST_SITE, broker=broker.address, clock=self.clock,
                                    entry_lanes=("in1",), exit_lanes=("out1",),
                                    workdir=workdir)


@pytest.fixture
def running(broker: MosquittoBroker, test_site: ProvisionResult,
            tmp_path: Path) -> Iterator[Site]:
    site = Site(broker, test_site, tmp_path)
    with site.gateway, site.lanes:
        yield site


def speak_as_sensors(broker: MosquittoBroker) -> None:
    """What the fire panel and the flood node publish, from their own logins."""
    at = SITE_START
    with MqttBus(broker.address("sensor-fire1"), client_id="sensor-fire1") as fire:
        fire.publish_and_wait(topics.sensor_state(TEST_SITE, "fire1"), SensorState(
            node="fire1", online=True, heartbeat_s=30, ts=at), retain=True)
        fire.publish_and_wait(topics.sensor_reading(TEST_SITE, "fire1"), SensorReading(
            node="fire1", seq=1, ts=at, kind="fire_panel", fire=True, trouble=False,
            supervisory=False))
        fire.publish_and_wait(topics.alarm(TEST_SITE, "fire"), AlarmState(
            kind="fire", active=True, source="fire1", ts=at), retain=True)
    with MqttBus(broker.address("sensor-flood1"), client_id="sensor-flood1") as flood:
        flood.publish_and_wait(topics.sensor_state(TEST_SITE, "flood1"), SensorState(
            node="flood1", online=True, heartbeat_s=30, ts=at), retain=True)
        flood.publish_and_wait(topics.sensor_reading(TEST_SITE, "flood1"), SensorReading(
            node="flood1", seq=1, ts=at, kind="flood", water_level_mm=120))


@pytest.mark.integration
def test_home_assistant_finds_every_entity_and_its_state_from_real_messages(
    running: Site, broker: MosquittoBroker,
) -> None:
    site_tree = f"{topics.site_root(TEST_SITE)}/#"
    with Recorder(broker, site_tree, device="monitor-watch2") as heard:
        running.lanes.drive("in1", PLATE)
        eventually(lambda: _barrier_heard(heard, "in1", "closed"), timeout=WAIT_S,
                   what="the barrier down behind the car")
        speak_as_sensors(broker)
        eventually(lambda: any(b'"water_level_mm":120' in p.replace(b" ", b"")
                               for p in heard.payloads()), timeout=WAIT_S, what="the flood")
        eventually(lambda: any(b'"occupied":1' in p.replace(b" ", b"")
                               for p in heard.payloads()), timeout=WAIT_S, what="capacity")
        expected_configs = len(discovery_configs(
            TEST_SITE, lanes=["in1", "out1"], sensors={"fire1": "fire_panel", "flood1": "flood"},
            capacity_lane="in1"))
        with Recorder(broker, f"{PREFIX}/+/{NODE}/+/config", device="monitor-watch1") as ha:
            eventually(lambda: len(ha.messages) == expected_configs, timeout=WAIT_S,
                       what="every discovery config, retained")
            configs = {topic: json.loads(payload) for topic, payload in ha.messages}
        for lane in ("in1", "out1"):
            eventually(partial(_barrier_heard, heard, lane, "open"), timeout=WAIT_S,
                       what=f"{lane}'s barrier up for the fire")
        messages = list(heard.messages)

    by_topic: dict[str, list[bytes]] = {}
    for topic, payload in messages:
        by_topic.setdefault(topic, []).append(payload)
    states: dict[str, str | None] = {}
    for topic, config in configs.items():
        object_id = topic.split("/")[3]
        assert topic == f"{PREFIX}/{topic.split('/')[1]}/{NODE}/{object_id}/config"
        assert config["unique_id"] == f"{NODE}_{object_id}"
        assert config["device"]["identifiers"] and config["device"]["manufacturer"]
        states[object_id] = fold(config["value_template"], by_topic.get(config["state_topic"], []))
        for source in config.get("availability", []):
            assert fold(source["value_template"], by_topic[source["topic"]]) == "online", source
    assert {key: states[key] for key in EXPECTED} == EXPECTED
    assert states["lane_in1_barrier"] == "ON"
    assert fold(configs[f"{PREFIX}/binary_sensor/{NODE}/lane_in1_barrier/config"]
                ["value_template"], _until_closed(by_topic[topics.lane_state(TEST_SITE, "in1")])
                ) == "OFF"  # before the fire: down behind the car
    assert states["flood_alarm"] is None  # nothing said yet: Home Assistant shows unknown


def _barrier_heard(recorder: Recorder, lane: str, position: str) -> bool:
    """The lane's last retained state says its barrier is at ``position``."""
    state = topics.lane_state(TEST_SITE, lane)
    last = [payload for topic, payload in recorder.messages if topic == state][-1:]
    return bool(last) and json.loads(last[0])["barrier"] == position


def _until_closed(states: list[bytes]) -> list[bytes]:
    """A lane's states up to the first with its barrier down."""
    index = next(i for i, p in enumerate(states) if json.loads(p)["barrier"] == "closed")
    return states[:index + 1]


def test_the_templates_read_the_contracts_own_messages() -> None:
    """The ones the run above does not reach: a flood alarm, a barrier in motion, a lane
    that is gone, a plate the reader could not read."""
    entities = {e.object_id: e.config for e in discovery_configs(
        "mall-b2", lanes=["in1"], sensors={}, capacity_lane=None)}
    flood = AlarmState(kind="flood", active=True, source="gateway", ts=SITE_START).to_json()
    assert render(entities["flood_alarm"]["value_template"], flood, None) == "ON"
    barrier = entities["lane_in1_barrier"]["value_template"]
    lane = {"v": 1, "lane": "in1", "online": False, "direction": "entry", "mode": "normal",
            "queue": 0, "firmware": "", "ts": "2026-05-06T02:00:00.000Z"}
    for position, shown in (("opening", "ON"), ("open", "ON"), ("closed", "OFF"),
                            ("unknown", "None")):
        assert render(barrier, json.dumps({**lane, "barrier": position}).encode(), None) == shown
    gone = json.dumps({**lane, "barrier": "closed"}).encode()
    availability = entities["lane_in1_barrier"]["availability"][0]["value_template"]
    assert render(availability, gone, None) == "offline"
    unread = json.dumps({"type": "plate_read", "plate": None}).encode()
    assert render(entities["lane_in1_plate"]["value_template"], unread, PLATE) == ""
    passed = json.dumps({"type": "passed"}).encode()
    assert render(entities["lane_in1_plate"]["value_template"], passed, PLATE) == PLATE
    assert "occupied" not in entities  # no capacity kept: no occupancy to show


def test_the_acl_lets_the_gateway_write_its_own_site_and_monitors_read_it() -> None:
    inventory = simulated_inventory("mall-b2", entry_lanes=["in1"], exit_lanes=[])
    devices = {device.kind: device for device in inventory.devices()}
    wanted = "homeassistant/+/parkguard_mall_b2/#"
    assert ("write", wanted) in {(g.access, g.topic) for g in grants(devices["gateway"],
                                                                     inventory)}
    assert ("read", wanted) in {(g.access, g.topic) for g in grants(devices["monitor"],
                                                                    inventory)}
    assert not any(g.topic.startswith("homeassistant")
                   for g in grants(devices["lane"], inventory))
    other = inventory.model_copy(update={"gateway": GatewaySpec(discovery_prefix="ha")})
    assert ("write", "ha/+/parkguard_mall_b2/#") in {
        (g.access, g.topic) for g in grants(devices["gateway"], other)}
