"""The fire and flood plans fed over the project's own Mosquitto, as a site feeds them: the
guards' patrol reader (``patrol-patrol1``, its own login and ACL) publishes ``PatrolTap``s
and the fire and flood nodes (``sensor-fire1``, ``sensor-flood1``) publish their readings;
the real gateway takes them off the bus on its worker into a real SQLite file
(tests/test_site_plans.py's site: roster with the response teams, the example patrol regime
with plain tags, the contact register texting through the local SMS peer).

The reader and the nodes here are Python stand-ins publishing exactly what the firmware
does; the firmware itself meets the same broker in tests/test_patrol_reader.py and
tests/test_sensor_fire.py."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count
from zoneinfo import ZoneInfo

import pytest

from broker.runner import MosquittoBroker
from gateway.safety.alarms import FLOOD_EVACUATE_DISPLAY
from simulator.site import SimulatedSite
from tests.conftest import TEST_SITE
from tests.helpers import eventually
from tests.sms_peer import SmsEagle
from tests.test_site_plans import (
    DIGITS,
    PHONE,
    PLATE,
    on_worker,
    park,
    plans_of,
    register_of,
    site,
    texts,
)
from wire.contract import topics
from wire.contract.messages import PatrolTap, SensorReading
from wire.mqtt import MqttBus

pytestmark = pytest.mark.integration

__all__ = ["site"]  # the plans site, shared

READER = "patrol1"  # the simulated site's patrol reader (simulator/provisioned.py)
ZONE = ZoneInfo("Asia/Shanghai")
RAMP_EXTINGUISHER, PUMP_ROOM = "04A10000000001", "04A10000000004"  # b1-ramp, b1-pump tags


class Reader:
    """The patrol reader on the bus under its own login: one ``PatrolTap`` per tap."""

    def __init__(self, broker: MosquittoBroker, site: SimulatedSite) -> None:
        self.site = site
        self.seq = count(1)
        self.bus = MqttBus(broker.address(f"patrol-{READER}"), client_id=f"patrol-{READER}")
        self.bus.start()

    def tap(self, tag: str, badge: str = "G001") -> int:
        """Tap ``tag`` now (the reader's local clock); wait until the gateway stored it."""
        seq = next(self.seq)
        local = self.site.clock.now().astimezone(ZONE).replace(tzinfo=None)
        self.bus.publish_and_wait(topics.patrol_tap(TEST_SITE, READER), PatrolTap(
            reader=READER, seq=seq, tag_id=tag, badge=badge, reader_time=local))
        eventually(lambda: bool(rows(self.site, "SELECT 1 FROM patrol_taps WHERE reader = ? "
                                                "AND seq = ?", READER, seq)),
                   what=f"tap {seq} stored by the gateway")
        return seq


@pytest.fixture
def reader(broker: MosquittoBroker, site: SimulatedSite) -> Iterator[Reader]:
    running = Reader(broker, site)
    yield running
    running.bus.stop()


def rows(site: SimulatedSite, sql: str, *args: object) -> list[dict[str, object]]:
    with site.gateway.store.reader() as db:
        return [dict(r) for r in db.query(sql, list(args))]


def send_readings(broker: MosquittoBroker, node: str, *readings: SensorReading) -> None:
    with MqttBus(broker.address(f"sensor-{node}"), client_id=f"sensor-{node}") as bus:
        for reading in readings:
            bus.publish_and_wait(topics.sensor_reading(TEST_SITE, node), reading)


def test_a_tap_at_the_ramp_extinguisher_over_the_broker_is_its_check_for_the_month(
        site: SimulatedSite, reader: Reader) -> None:
    equipment = plans_of(site).equipment
    assert equipment is not None
    reader.tap("04A10000000002")  # another checkpoint (no equipment there): no check
    seq = reader.tap(RAMP_EXTINGUISHER)
    [tap] = rows(site, "SELECT status, person, checkpoint FROM patrol_taps WHERE seq = ?", seq)
    assert (tap["status"], tap["person"], tap["checkpoint"]) == ("accepted", "wang", "b1-ramp")
    eventually(lambda: bool(rows(site, "SELECT 1 FROM equipment_checks")),
               what="the extinguisher's check")
    # the worker takes taps in order: the first tap's (absent) check would be stored by now
    [check] = rows(site, "SELECT item, month, checked_by, via, result FROM equipment_checks")
    assert check == {"item": "ext-01", "month": "2026-05", "checked_by": "staff:wang",
                     "via": "tap", "result": "ok"}
    assert on_worker(site, equipment.summary).count("extinguisher") == (1, 72)


def test_heavy_rain_pumps_checked_by_a_tap_then_the_flood_node_says_leave_now(
        broker: MosquittoBroker, site: SimulatedSite, reader: Reader, eagle: SmsEagle) -> None:
    flood, alerts = plans_of(site).flood, site.gateway.alerts
    register = register_of(site)
    assert flood is not None and alerts is not None
    run_id = on_worker(site, lambda: flood.heavy_rain(actor="supervisor:sam",
                                                      note="暴雨橙色预警 orange rain warning"))
    assert on_worker(site, lambda: flood.check("leaders", actor="guard:gina")) is False
    reader.tap(PUMP_ROOM)  # wang at the pump room: the pumps item is ticked by the tap
    eventually(lambda: getattr(on_worker(site, flood.current), "remaining", None) == 1,
               what="the pumps ticked by the tap")
    readiness = on_worker(site, flood.current)
    assert readiness is not None and readiness.remaining == 1
    pumps = next(i for i in readiness.items if i.item.item == "pumps")
    assert (pumps.via, pumps.checked_by) == ("tap", "staff:wang")
    assert on_worker(site, lambda: flood.check("sandbags", actor="guard:gina")) is True
    assert on_worker(site, lambda: flood.readiness(run_id)).state == "complete"
    checked = rows(site, "SELECT actor FROM audit_log WHERE action = 'flood.check' "
                         "ORDER BY seq")
    assert [c["actor"] for c in checked] == ["guard:gina", "staff:wang", "guard:gina"]

    park(site)
    park(site, "粤B22222")  # nobody agreed for this one: never texted
    on_worker(site, lambda: register.consent(PHONE, plate=PLATE, source="pay_page",
                                             wording_version="v1"))
    send_readings(broker, "flood1", *(
        SensorReading(node="flood1", seq=seq, kind="flood", ts=site.clock.now(),
                      water_level_mm=mm, trouble=False)
        for seq, mm in ((1, 350), (2, 700))))
    alarms = site.gateway.alarms
    assert alarms is not None
    eventually(lambda: alarms.flood_level() == 3, what="level 3 from the node's readings")
    sent = texts(eagle, 2)
    assert [s["to"] for s in sent] == [f"+86{DIGITS}"] * 2
    assert "请尽快将您的车辆驶离" in sent[0]["message"] and "立即撤离" in sent[1]["message"]

    def leave_now(lane: str) -> bool:
        shown = site.lanes[lane].node.controller.display
        return shown is not None and (shown.zh, shown.en) == FLOOD_EVACUATE_DISPLAY

    eventually(lambda: leave_now("in1") and leave_now("out1"), what="leave now on every lane")
    raised = {r["key"] for r in rows(site, "SELECT key FROM alerts WHERE kind = 'flood'")}
    assert "flood:3" in raised


def test_the_fire_panel_over_the_broker_texts_the_owners_a_drill_before_it_texted_nobody(
        broker: MosquittoBroker, site: SimulatedSite, eagle: SmsEagle) -> None:
    register, drills = register_of(site), plans_of(site).drills
    assert drills is not None
    park(site)
    on_worker(site, lambda: register.consent(PHONE, plate=PLATE, source="pay_page",
                                             wording_version="v1"))
    drill_id = on_worker(site, lambda: drills.start(actor="supervisor:sam", note="drill B2"))
    on_worker(site, lambda: drills.end(drill_id, actor="supervisor:sam"))
    assert on_worker(site, register.messages) == []
    send_readings(broker, "fire1", SensorReading(
        node="fire1", seq=1, kind="fire_panel", ts=site.clock.now(), fire=True, trouble=False,
        supervisory=False, zone="b2-east"))
    alarms = site.gateway.alarms
    assert alarms is not None
    eventually(alarms.fire_active, what="the fire latched from the panel's reading")
    [sms] = texts(eagle, 1)
    assert sms["to"] == f"+86{DIGITS}" and "火警" in sms["message"]
    eventually(lambda: site.lanes["out1"].wiring.relay.state, what="the exit barrier up")
    [fire] = rows(site, "SELECT kind, severity FROM alerts WHERE key = 'fire'")
    assert fire == {"kind": "fire", "severity": "critical"}
