"""Sensor trust (issue 22, items 2, 4 and 5), against the real parts: the provisioned
Mosquitto with its ACLs, the gateway process (``GatewayApp``, its SQLite file, its bundle as
``parkguard broker init`` wrote it) and the flood node's firmware on the MicroPython unix
port.

- A flood node cannot raise the fire alarm by calling its reading a fire panel's: what a node
  is comes from the site inventory (the gateway's bundle), never from a payload.
- A huge seq does not silence a node, and a replacement node that counts from 0 is heard:
  a jump or a reset is a trouble alert and a resync.
- A restarted gateway holds an active flood: no "clear" and no resolved alert before a
  fresh reading says the water went down.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from broker.provision.bundle import load_bundle, write_bundle
from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from gateway.safety.alarms import AlarmMonitor
from gateway.safety.alerts import AlertDesk
from parkguard.clock import Clock, ManualClock, utc_iso
from parkguard.configfile import BrokerSettings
from simulator.sensor_node import SensorNode
from simulator.site import settings_of
from tests.conftest import TEST_SITE
from tests.helpers import Recorder, eventually
from wire.contract import topics
from wire.contract.messages import AlarmState, Alert
from wire.mqtt import MqttBus

pytestmark = pytest.mark.integration

ROOT = topics.site_root(TEST_SITE)
FLOOD_READINGS = topics.sensor_reading(TEST_SITE, "flood1")
FIRE_READINGS = topics.sensor_reading(TEST_SITE, "fire1")
FLOOD_ALARM = topics.alarm(TEST_SITE, "flood")
FIRE_ALARM = topics.alarm(TEST_SITE, "fire")
#: Within any window of receipt the contract may keep: the gateway's clock starts at now.
SAFETY = """
[alerts]
timezone = "Asia/Shanghai"
shifts = [{ name = "a", start = 00:00:00 }]

[[alerts.people]]
id = "gina"
name = "Gina"
role = "guard"
shift = "a"

[[alerts.people]]
id = "max"
name = "Max"
role = "manager"
"""


@pytest.fixture
def config(broker: MosquittoBroker, tmp_path: Path, test_site: ProvisionResult) -> GatewayConfig:
    """The gateway's config as an installer writes it: ``[broker] bundle`` pointing at the
    bundle ``parkguard broker init`` made from the inventory (only the address is this test
    broker's), so the sensor kinds come from the inventory."""
    made = load_bundle(test_site.device("gateway").config_path)
    address = broker.address("gateway")
    assert address.ca_file is not None
    here = made.model_copy(update={"broker": made.broker.model_copy(
        update={"host": address.host, "port": address.port})})
    bundle = write_bundle(tmp_path / "gateway-bundle", here, ca_pem=address.ca_file.read_bytes())
    assert dict(load_bundle(bundle).sensors) == {"fire1": "fire_panel", "flood1": "flood"}
    safety = tmp_path / "safety.toml"
    safety.write_text(SAFETY, encoding="utf-8")
    return GatewayConfig(site=TEST_SITE, database=tmp_path / "gateway.db",
                         broker=BrokerSettings(bundle=bundle), safety_file=safety)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def gateway(config: GatewayConfig, clock: ManualClock) -> Iterator[GatewayApp]:
    with GatewayApp(config, clock=clock) as app:
        yield app


def desks(app: GatewayApp) -> tuple[AlarmMonitor, AlertDesk]:
    assert app.alarms is not None and app.alerts is not None
    return app.alarms, app.alerts


def open_alert(app: GatewayApp, key: str) -> Alert | None:
    _alarms, desk = desks(app)
    view = app.service.call(lambda: desk.open_alert(key))
    return None if view is None else view.wire(app.clock.now())


def flood_reading(clock: Clock, seq: int, mm: int) -> bytes:
    return json.dumps({"v": 1, "node": "flood1", "seq": seq, "ts": utc_iso(clock.now()),
                       "kind": "flood", "water_level_mm": mm, "pump_running": False,
                       "trouble": False}).encode()


def send(broker: MosquittoBroker, device: str, topic: str, *payloads: bytes) -> None:
    """Publish as ``device`` with its own login (the broker's ACL applies), in order."""
    with MqttBus(broker.address(device), client_id=device) as bus:
        for payload in payloads:
            bus.publish_and_wait(topic, payload)


def alarms_on(watch: Recorder, topic: str) -> list[AlarmState]:
    return [AlarmState.from_json(p) for t, p in list(watch.messages) if t == topic and p]


def alerts_on(watch: Recorder) -> list[Alert]:
    return [Alert.from_json(p) for t, p in list(watch.messages)
            if t.startswith(f"{ROOT}/alert/") and p]


def dead_letters(app: GatewayApp) -> list[dict[str, Any]]:
    return app.service.call(lambda: list(app.store.db.query(
        "SELECT topic, reason FROM dead_letters ORDER BY rowid")))


# --- item 2: the kind comes from the inventory -------------------------------------------------


def test_a_flood_node_reporting_as_a_fire_panel_raises_no_fire(
        broker: MosquittoBroker, gateway: GatewayApp) -> None:
    alarms, _desk = desks(gateway)
    forged = json.dumps({"v": 1, "node": "flood1", "seq": 1, "ts": utc_iso(gateway.clock.now()),
                         "kind": "fire_panel", "fire": True, "trouble": False,
                         "supervisory": False, "zone": "b2-east"}).encode()
    with Recorder(broker, f"{ROOT}/#", device="monitor-watch1") as watch:
        send(broker, "sensor-flood1", FLOOD_READINGS, forged)
        eventually(lambda: open_alert(gateway, "trust:flood1") is not None, timeout=10,
                   what="a trouble alert naming flood1 and the mismatch")
        trust = open_alert(gateway, "trust:flood1")
        assert trust is not None and trust.severity == "warning"
        assert "flood1" in trust.title_en and "fire_panel" in trust.title_en
        assert "flood node" in trust.detail
        assert not gateway.service.call(alarms.fire_active)
        assert not gateway.service.call(alarms.billing_suspended)
        assert open_alert(gateway, "fire") is None
        [letter] = dead_letters(gateway)
        assert letter["topic"] == FLOOD_READINGS
        assert "flood" in letter["reason"] and "fire_panel" in letter["reason"]
        # On the bus: the trust alert came, and no fire alarm from the gateway before it (the
        # gateway would have latched fire while handling the reading, before any alert).
        eventually(lambda: any(a.title_en == trust.title_en for a in alerts_on(watch)),
                   what="the trust alert on the bus")
        assert alarms_on(watch, FIRE_ALARM) == []

        # The fire panel itself, with its own login, still raises the fire at once.
        send(broker, "sensor-fire1", FIRE_READINGS, forged.replace(b'"flood1"', b'"fire1"'))
        eventually(lambda: gateway.service.call(alarms.fire_active), what="the real fire")
        eventually(lambda: any(a.active for a in alarms_on(watch, FIRE_ALARM)),
                   what="the gateway's alarm/fire")


def test_a_node_the_inventory_does_not_list_is_refused(
        broker: MosquittoBroker, config: GatewayConfig, clock: ManualClock) -> None:
    """A gateway whose inventory predates a node trusts no payload for it."""
    stale = GatewayConfig(site=TEST_SITE, database=config.database,
                          broker=settings_of(broker.address("gateway")),
                          safety_file=config.safety_file, sensors={"fire1": "fire_panel"})
    with GatewayApp(stale, clock=clock) as app:
        send(broker, "sensor-flood1", FLOOD_READINGS, flood_reading(clock, 1, 650))
        eventually(lambda: open_alert(app, "unknown:flood1") is not None, timeout=10,
                   what="a trouble alert for a node not in the inventory")
        alarms, _desk = desks(app)
        assert app.service.call(alarms.flood_level) == 0
        [letter] = dead_letters(app)
        assert "not in the site inventory" in letter["reason"]


# --- item 4: a seq never silences a node ---------------------------------------------------------

LEVEL_ADC, FULL_MM = 26, 2000


def flood_node_config() -> dict[str, Any]:
    return {"node": "flood1", "kind": "flood", "flood": {
        "levels_mm": [100, 300, 600], "hysteresis_mm": 30, "debounce_ms": 50,
        "level_adc": {"pin": LEVEL_ADC, "raw_zero": 0, "raw_full": 65535, "full_mm": FULL_MM,
                      "samples": 4}}}


def adc(mm: int) -> int:
    return round(mm * 65535 / FULL_MM)


def test_a_huge_seq_then_a_replacement_node_counting_from_zero_still_raises_the_flood(
        broker: MosquittoBroker, gateway: GatewayApp, tmp_path: Path) -> None:
    alarms, _desk = desks(gateway)
    huge = 2**53 - 1  # the largest a bounded contract still passes; 2**64 is dead-lettered
    send(broker, "sensor-flood1", FLOOD_READINGS, flood_reading(gateway.clock, 5, 10),
         flood_reading(gateway.clock, huge, 10))
    eventually(lambda: open_alert(gateway, "seq:flood1") is not None, timeout=10,
               what="the seq jump as a trouble alert")
    jump = open_alert(gateway, "seq:flood1")
    assert jump is not None and f"from 5 to {huge}" in jump.detail

    # A replacement node, fresh flash: its count starts again at 0. It is heard at once.
    with Recorder(broker, f"{ROOT}/#", device="monitor-watch1") as watch, \
            SensorNode(broker, tmp_path / "flood1", flood_node_config(),
                       {f"adc{LEVEL_ADC}": adc(10)}) as node:
        eventually(lambda: "went back" in (
            (open_alert(gateway, "seq:flood1") or pytest.fail("resolved early")).detail),
            timeout=15, what="the replacement node's boot reading at the gateway")
        node.set(**{f"adc{LEVEL_ADC}": adc(650)})
        eventually(lambda: gateway.service.call(alarms.flood_level) == 3, timeout=10,
                   what="level 3 from the replacement node")
        assert open_alert(gateway, "flood:3") is not None
        assert open_alert(gateway, "seq:flood1") is None  # counting in order again
        eventually(lambda: any(a.active for a in alarms_on(watch, FLOOD_ALARM)),
                   what="the retained alarm/flood the lanes obey")


# --- item 5: a restart holds an active flood -----------------------------------------------------


def test_a_restarted_gateway_holds_an_active_flood_until_a_fresh_reading_clears_it(
        broker: MosquittoBroker, config: GatewayConfig, clock: ManualClock) -> None:
    high = flood_reading(clock, 1, 650)
    with GatewayApp(config, clock=clock) as first:
        alarms, _desk = desks(first)
        send(broker, "sensor-flood1", FLOOD_READINGS, high)
        eventually(lambda: first.service.call(alarms.flood_level) == 3, timeout=10,
                   what="level 3 before the restart")

    with Recorder(broker, f"{ROOT}/#", device="monitor-watch1") as watch:
        eventually(lambda: bool(alarms_on(watch, FLOOD_ALARM)), what="the retained alarm/flood")
        assert [a.active for a in alarms_on(watch, FLOOD_ALARM)] == [True]
        with GatewayApp(config, clock=clock) as again:
            alarms, desk = desks(again)
            assert again.service.call(alarms.flood_level) == 3
            # Time passes with no reading: what cleared the flood before was the first tick.
            for _ in range(3):
                clock.advance(timedelta(minutes=5))
                again.service.call(alarms.tick)
            assert again.service.call(alarms.flood_level) == 3
            assert again.service.call(alarms.entries_closed) == "flood_level_3"
            for level in (1, 2, 3):
                assert open_alert(again, f"flood:{level}") is not None
            # Sentinel: published on the gateway's own connection after the ticks, so
            # anything the ticks published reached the watcher before it.
            sentinel = topics.lane_replica(TEST_SITE, "in1", "sentinel")
            again.bus.publish_and_wait(sentinel, b"after the ticks")
            eventually(lambda: any(t == sentinel for t, _p in list(watch.messages)),
                       what="the sentinel")
            assert [a.active for a in alarms_on(watch, FLOOD_ALARM)] == [True]
            assert not [a for a in alerts_on(watch) if a.state == "resolved"]

            # A QoS 1 resend of the reading before the restart is known as one (no trouble);
            # the fresh reading after it clears the flood once the lower level has held.
            send(broker, "sensor-flood1", FLOOD_READINGS, high, flood_reading(clock, 2, 0))

            def drained() -> bool:
                clock.advance(timedelta(seconds=10))
                again.service.call(alarms.tick)
                return again.service.call(alarms.flood_level) == 0

            eventually(drained, timeout=10, what="the fresh reading clearing the flood")
            assert open_alert(again, "seq:flood1") is None
            eventually(lambda: [a.active for a in alarms_on(watch, FLOOD_ALARM)][-1] is False,
                       what="alarm/flood inactive after the fresh reading")
            assert again.service.call(lambda: desk.open_alert("flood:3")) is None
