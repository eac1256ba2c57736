"""Alarms: fire latch and authorised reset, flood levels through a ripple, pump failure,
supervision; on a manual clock, real SQLite and, for the retained topics, a real Mosquitto."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
import sqlite_utils

from broker.runner import MosquittoBroker
from gateway.records.audit import AuditLog, verify
from gateway.safety.alarms import (
    FIRE_DISPLAY,
    FLOOD_ENTRY_DISPLAY,
    AlarmChange,
    AlarmError,
    AlarmMonitor,
    SensorKind,
    UntrustedReading,
)
from gateway.safety.alerts import AlertDesk
from gateway.storage.database import open_database
from parkguard.clock import ManualClock
from tests.conftest import TEST_SITE
from tests.helpers import Recorder, eventually
from tests.test_alerts import KEY, START, RecordingNotifier, roster
from wire.contract import topics
from wire.contract.messages import AlarmState, Alert, SensorReading, SensorState, decode
from wire.mqtt import MqttBus


@dataclass
class Published:
    messages: list[tuple[str, Any, bool]] = field(default_factory=list)

    def publish(self, topic: str, payload: Any, *, qos: int = 1, retain: bool = False) -> None:
        self.messages.append((topic, payload, retain))

    def alarms(self, kind: str) -> list[AlarmState]:
        return [p for t, p, _r in self.messages if t == topics.alarm(TEST_SITE, kind)]


@dataclass
class Rig:
    monitor: AlarmMonitor
    desk: AlertDesk
    clock: ManualClock
    notes: RecordingNotifier
    out: Published
    audit: AuditLog
    db: sqlite_utils.Database
    changes: list[AlarmChange]
    seq: dict[str, int] = field(default_factory=dict)

    def reading(self, node: str, **fields: Any) -> None:
        self.seq[node] = self.seq.get(node, 0) + 1
        kind: Literal["flood", "fire_panel"] = (
            "flood" if "water_level_mm" in fields else "fire_panel")
        self.monitor.on_reading(SensorReading(node=node, seq=self.seq[node], kind=kind,
                                              ts=self.clock.now(), **fields))

    def panel(self, node: str = "fire1", *, fire: bool = False, trouble: bool = False,
              supervisory: bool = False, zone: str | None = None) -> None:
        self.reading(node, fire=fire, trouble=trouble, supervisory=supervisory, zone=zone)

    def water(self, mm: int, *, pump: bool | None = None, node: str = "flood1") -> None:
        self.reading(node, water_level_mm=mm, pump_running=pump, trouble=False)

    def later(self, seconds: float) -> None:
        self.clock.advance(timedelta(seconds=seconds))
        self.monitor.tick()
        self.desk.tick()

    def keys(self) -> list[str]:
        return [v.key for v in self.desk.active()]


PHONES = ["13800000001", "13900000002"]
#: The site inventory's sensor nodes, as the gateway's bundle carries them.
SENSORS: dict[str, SensorKind] = {"fire1": "fire_panel", "flood1": "flood", "flood2": "flood"}


def make_rig(db: sqlite_utils.Database, clock: ManualClock, publisher: Any) -> Rig:
    settings = roster(owner_message_url="json://sms.test/send?to={phone}")
    audit = AuditLog(db, clock=clock)
    notes = RecordingNotifier(clock)
    desk = AlertDesk(db, site=TEST_SITE, clock=clock, audit=audit, settings=settings,
                     notifier=notes, ack_key=KEY, publisher=publisher)
    monitor = AlarmMonitor(site=TEST_SITE, clock=clock, desk=desk, audit=audit,
                           sensors=SENSORS, publisher=publisher, phones_inside=lambda: PHONES)
    changes: list[AlarmChange] = []
    monitor.add_listener(changes.append)
    return Rig(monitor, desk, clock, notes, publisher, audit, db, changes)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    db = open_database(tmp_path / "gateway.db")
    yield make_rig(db, ManualClock(START), Published())
    db.close()


# --- fire ----------------------------------------------------------------------------------


def test_fire_latches_suspends_billing_alerts_everyone_and_needs_an_authorised_reset(
        rig: Rig) -> None:
    rig.panel()
    assert not rig.monitor.billing_suspended()
    rig.panel(fire=True, zone="b2-east")
    assert rig.monitor.billing_suspended()
    assert rig.monitor.lane_display("exit") == FIRE_DISPLAY == ("火警 请立即离场",
                                                                "FIRE – LEAVE NOW")
    assert rig.monitor.entries_closed() == "fire"
    [alarm] = rig.out.alarms("fire")
    assert (alarm.active, alarm.zone, alarm.source) == (True, "b2-east", "gateway")
    assert rig.changes == [AlarmChange("fire", True, zone="b2-east")]
    fire = rig.desk.open_alert("fire")
    assert fire is not None and fire.all_at_once
    assert sorted(rig.notes.targets()) == ["boss", "cap-a", "guard-a", "lead-a", "tech-a"]
    rig.panel(fire=True, zone="b2-east")  # the panel keeps reporting: still one alert
    assert [v.key for v in rig.desk.active()] == ["fire"]

    with pytest.raises(AlarmError, match="still reports fire"):
        rig.monitor.reset_fire("staff:cap-a", "checked B2 east, no fire")
    rig.panel(fire=False)  # the panel is back to normal: the alarm holds anyway
    assert rig.monitor.billing_suspended()
    with pytest.raises(AlarmError, match="not authorised"):
        rig.monitor.reset_fire("staff:guard-a", "looks fine")
    rig.monitor.reset_fire("staff:cap-a", "detector B2-7 dusty; panel reset by Wang")
    assert not rig.monitor.billing_suspended() and rig.monitor.lane_display() is None
    assert rig.out.alarms("fire")[-1].active is False
    assert rig.desk.open_alert("fire") is None
    assert rig.changes[-1] == AlarmChange("fire", False)
    actions = [(e.action, e.actor) for e in rig.audit.entries()]
    assert actions == [("alarm.fire_reset", "staff:cap-a"), ("alert.resolve", "staff:cap-a")]
    assert verify(rig.db).ok
    with pytest.raises(AlarmError, match="no fire alarm"):
        rig.monitor.reset_fire("staff:cap-a", "again")


def test_the_fire_nodes_own_retained_alarm_latches_and_a_stray_clear_is_undone(rig: Rig) -> None:
    node_alarm = AlarmState(kind="fire", active=True, source="fire1", zone="b2-west",
                            since=START, ts=START)
    rig.monitor.on_alarm(node_alarm)
    assert rig.monitor.fire_active() and rig.desk.open_alert("fire") is not None
    with pytest.raises(AlarmError, match="no fire panel has reported"):
        rig.monitor.reset_fire("staff:boss", "panel unknown")
    rig.monitor.on_alarm(node_alarm.model_copy(update={"active": False}))
    assert rig.out.alarms("fire")[-1].active is True  # held until an authorised reset
    rig.monitor.on_alarm(AlarmState(kind="fire", active=False, source="gateway", ts=START))
    assert rig.monitor.fire_active()  # our own echo changes nothing


def test_a_restarted_monitor_remembers_an_unreset_fire(rig: Rig) -> None:
    rig.panel(fire=True)
    again = AlarmMonitor(site=TEST_SITE, clock=rig.clock, desk=rig.desk, audit=rig.audit,
                         sensors=SENSORS)
    assert again.billing_suspended()


def test_supervisory_and_loop_trouble_are_their_own_alerts_and_clear_themselves(
        rig: Rig) -> None:
    rig.panel(supervisory=True)
    rig.panel(supervisory=True, trouble=True)  # a loop went open or short
    assert rig.keys() == ["supervisory:fire1", "trouble:fire1"]
    assert not rig.monitor.fire_active()
    rig.panel()
    assert rig.keys() == []


# --- flood ---------------------------------------------------------------------------------


def test_flood_ripple_gives_one_alert_per_level_and_level_2_closes_entries(rig: Rig) -> None:
    for mm in (40, 99, 101, 95, 104, 80, 120, 150):  # ripple around 100 (hysteresis 30)
        rig.water(mm)
    assert rig.keys() == ["flood:1"] and rig.monitor.entries_closed() is None
    assert rig.notes.targets() == ["guard-a", "tech-a"]  # the guard and facilities
    for mm in (290, 301, 285, 310, 295, 330):  # ripple around 300
        rig.water(mm)
    assert rig.keys() == ["flood:2", "flood:1"]  # the most severe first
    assert rig.monitor.entries_closed() == "flood_level_2"
    assert rig.monitor.lane_display("entry") == FLOOD_ENTRY_DISPLAY
    assert rig.monitor.lane_display("exit") is None
    assert rig.out.alarms("flood")[-1].active is True
    owners = [url for _at, url, _t, body in rig.notes.sent if url.startswith("json://sms")]
    assert owners == [f"json://sms.test/send?to={p}" for p in PHONES]
    rig.water(620)
    assert rig.monitor.lane_display("exit") is not None
    flood3 = rig.desk.open_alert("flood:3")
    assert flood3 is not None and flood3.all_at_once
    for mm in (590, 610, 600, 640):
        rig.water(mm)
    alerts = [r["key"] for r in rig.db.query("SELECT key FROM alerts WHERE key LIKE 'flood:%'")]
    assert alerts == ["flood:1", "flood:2", "flood:3"]
    owner_rows = rig.db.execute(
        "SELECT count(*) FROM alert_notifications WHERE channel = 'owner'").fetchone()[0]
    assert owner_rows == 2  # stored masked, sent once
    # The water goes down: a lower level counts once it has held for a minute.
    rig.water(200)
    assert rig.monitor.flood_level() == 3
    rig.later(30)
    rig.water(190)
    assert rig.monitor.flood_level() == 3
    rig.later(31)
    assert rig.monitor.flood_level() == 1
    assert rig.keys() == ["flood:1"]
    assert rig.monitor.entries_closed() is None and rig.out.alarms("flood")[-1].active is False
    assert [c.level for c in rig.changes if c.kind == "flood"] == [1, 2, 3, 1]


def test_pump_idle_above_level_1_and_water_rising_while_it_runs_are_pump_failures(
        rig: Rig) -> None:
    rig.water(120, pump=False)
    rig.later(59)
    assert "pump:flood1" not in rig.keys()
    rig.later(2)
    assert "pump:flood1" in rig.keys()
    assert "idle" in (rig.desk.open_alert("pump:flood1") or pytest.fail()).detail
    rig.water(118, pump=True)  # the pump starts and the water falls
    assert "pump:flood1" not in rig.keys()
    rig.water(140, pump=True)
    rig.water(170, pump=True)  # 52 mm above its low while pumping
    pump = rig.desk.open_alert("pump:flood1")
    assert pump is not None and "rose from 118 to 170" in pump.detail


# --- supervision -------------------------------------------------------------------------


def test_a_node_missing_two_heartbeats_is_a_trouble_alert_that_resolves_on_return(
        rig: Rig) -> None:
    rig.monitor.on_state(SensorState(node="flood1", online=True, heartbeat_s=30, ts=START))
    rig.later(60)
    assert rig.keys() == []
    rig.later(1)
    assert rig.keys() == ["missing:flood1"]
    missing = rig.desk.open_alert("missing:flood1")
    assert missing is not None and missing.kind == "trouble"
    rig.later(600)
    assert len(rig.desk.events(missing.alert_id)) > 1  # it escalates, but stays one alert
    rig.monitor.on_state(SensorState(node="flood1", online=True, heartbeat_s=30,
                                     ts=rig.clock.now()))
    assert rig.keys() == []
    rig.monitor.on_state(SensorState(node="flood1", online=False, heartbeat_s=30,
                                     ts=rig.clock.now()))  # the Last Will
    assert rig.keys() == ["missing:flood1"]
    rig.water(10)
    assert rig.keys() == []


def test_out_of_range_stuck_and_float_faults_are_trouble(rig: Rig) -> None:
    rig.water(5000)
    assert rig.keys() == ["range:flood1"] and rig.monitor.flood_level() == 0
    rig.water(50)
    assert rig.keys() == []
    rig.reading("flood1", water_level_mm=60, trouble=True)
    assert rig.keys() == ["trouble:flood1"]
    for _ in range(7):
        rig.later(3600)
        rig.reading("flood1", water_level_mm=60, trouble=False)
    assert rig.keys() == ["stuck:flood1"]
    rig.water(61)
    assert rig.keys() == []


def test_a_repeated_reading_only_proves_the_node_is_alive(rig: Rig) -> None:
    rig.panel(fire=True)
    rig.panel(fire=False)
    resend = SensorReading(node="fire1", seq=1, kind="fire_panel", ts=START, fire=True,
                           trouble=False, supervisory=False)
    rig.monitor.on_reading(resend)  # a QoS 1 resend of seq 1 after a reconnect
    assert rig.monitor.panel_reports_fire() is False
    assert rig.keys() == ["fire"]  # the latched fire; no trouble for a resend


def test_a_seq_that_leaps_or_goes_back_is_trouble_and_the_readings_still_count(
        rig: Rig) -> None:
    rig.water(10)
    # Whatever bound the contract keeps, the monitor must not be silenced by a big seq:
    # model_construct skips the contract, as a looser one once let 2**64 through.
    rig.monitor.on_reading(SensorReading.model_construct(
        node="flood1", seq=2**64, kind="flood", ts=START, water_level_mm=10, trouble=False))
    leap = rig.desk.open_alert("seq:flood1")
    assert leap is not None and leap.kind == "trouble" and "jumped from 1 to" in leap.detail
    # A replacement node counts from 0: its level-3 reading is acted on, not ignored.
    rig.seq["flood1"] = -1
    rig.water(650)
    assert rig.monitor.flood_level() == 3 and "flood:3" in rig.keys()
    reset = rig.desk.open_alert("seq:flood1")
    assert reset is not None and "went back from 18446744073709551616 to 0" in reset.detail
    rig.water(660)  # counting in order again: the trouble resolves itself
    assert rig.desk.open_alert("seq:flood1") is None
    # The same seq with another reading is a reset too, never a silent drop.
    rig.seq["flood1"] -= 1
    rig.water(20)
    assert rig.desk.open_alert("seq:flood1") is not None


def test_the_inventory_not_the_payload_says_what_a_node_is(rig: Rig) -> None:
    forged = SensorReading(node="flood1", seq=1, kind="fire_panel", ts=START, fire=True,
                           trouble=False, supervisory=False)
    with pytest.raises(UntrustedReading, match="flood node"):
        rig.monitor.on_reading(forged)
    assert not rig.monitor.fire_active() and rig.out.alarms("fire") == []
    trust = rig.desk.open_alert("trust:flood1")
    assert trust is not None and "fire_panel" in trust.title_en
    with pytest.raises(UntrustedReading, match="not in the site inventory"):
        rig.water(650, node="flood9")
    with pytest.raises(UntrustedReading, match="not in the site inventory"):
        rig.monitor.on_state(SensorState(node="flood9", online=True, heartbeat_s=30, ts=START))
    assert rig.monitor.flood_level() == 0
    assert rig.keys() == ["trust:flood1", "unknown:flood9"]
    rig.water(20)  # flood1 reports as what it is again
    assert rig.keys() == ["unknown:flood9"]


def test_a_restarted_monitor_keeps_each_nodes_level_and_count(rig: Rig) -> None:
    rig.water(650)
    rig.panel(fire=False)
    again = AlarmMonitor(site=TEST_SITE, clock=rig.clock, desk=rig.desk, audit=rig.audit,
                         sensors=SENSORS, publisher=rig.out)
    rig.clock.advance(timedelta(minutes=30))
    again.tick()
    assert again.flood_level() == 3 and again.panel_reports_fire() is False
    assert [a.active for a in rig.out.alarms("flood")] == [True]
    resend = SensorReading(node="flood1", seq=1, kind="flood", ts=START, water_level_mm=650,
                           pump_running=None, trouble=False)
    again.on_reading(resend)  # known from before the restart: not a reset
    assert rig.desk.open_alert("seq:flood1") is None
    again.on_reading(resend.model_copy(update={"seq": 2, "water_level_mm": 0,
                                               "ts": rig.clock.now()}))
    rig.clock.advance(timedelta(seconds=61))
    again.tick()
    assert again.flood_level() == 0 and rig.out.alarms("flood")[-1].active is False


def test_open_flood_alerts_hold_the_level_when_no_node_state_was_kept(rig: Rig) -> None:
    """A file from before node states were kept: the open alerts hold the level until a
    fresh flood reading."""
    rig.water(650)
    rig.db.execute("DELETE FROM sensor_nodes")
    again = AlarmMonitor(site=TEST_SITE, clock=rig.clock, desk=rig.desk, audit=rig.audit,
                         sensors=SENSORS, publisher=rig.out)
    rig.clock.advance(timedelta(minutes=30))
    again.tick()
    assert again.flood_level() == 3 and rig.desk.open_alert("flood:3") is not None
    assert [a.active for a in rig.out.alarms("flood")] == [True]


# --- on a real broker ------------------------------------------------------------------------


def test_fire_node_alarm_to_gateway_alarm_and_alert_on_the_real_broker(
        broker: MosquittoBroker, tmp_path: Path) -> None:
    db = open_database(tmp_path / "gateway.db")
    clock = ManualClock(START)
    inbox: list[tuple[str, bytes]] = []
    with MqttBus(broker.address("gateway"), client_id="gateway-alarms") as gateway, \
            Recorder(broker, f"{topics.site_root(TEST_SITE)}/#", device="monitor-watch1") as watch:
        rig = make_rig(db, clock, gateway)
        # The readings' filter first: subscribing does not wait for the broker's SUBACK, and a
        # reading (not retained) sent before the broker has the subscription is not kept for
        # it. The broker takes one client's packets in order, so once the alarm (retained,
        # subscribed second) is here, the readings' filter is in force too.
        gateway.subscribe(topics.all_sensor(TEST_SITE, "reading"),
                          lambda t, p: inbox.append((t, p)))
        gateway.subscribe(topics.all_alarms(TEST_SITE), lambda t, p: inbox.append((t, p)))
        with MqttBus(broker.address("sensor-fire1"), client_id="sensor-fire1") as node:
            node.publish_and_wait(topics.alarm(TEST_SITE, "fire"), AlarmState(
                kind="fire", active=True, source="fire1", zone="b2-east", since=START,
                ts=START), retain=True)
            eventually(lambda: bool(inbox), what="the node's retained alarm at the gateway")
            node.publish_and_wait(topics.sensor_reading(TEST_SITE, "fire1"), SensorReading(
                node="fire1", seq=1, ts=START, kind="fire_panel", fire=True, trouble=False,
                supervisory=False, zone="b2-east"))
        eventually(lambda: len(inbox) >= 2, what="the node's alarm and reading at the gateway")
        for topic, payload in inbox:
            rig.monitor.handle(decode(topic, payload))
        assert rig.monitor.billing_suspended()

        def retained_alert() -> list[Alert]:
            return [Alert.from_json(p) for t, p in watch.messages
                    if t.startswith(f"{topics.site_root(TEST_SITE)}/alert/") and p]

        eventually(lambda: bool(retained_alert()), what="the fire alert on the bus")
        assert retained_alert()[0].severity == "critical"
        eventually(lambda: any(a.source == "gateway" for a in
                               [AlarmState.from_json(p) for t, p in watch.messages
                                if t == topics.alarm(TEST_SITE, "fire")]),
                   what="the gateway's own retained alarm/fire")
        rig.monitor.on_reading(SensorReading(node="fire1", seq=2, ts=START, kind="fire_panel",
                                             fire=False, trouble=False, supervisory=False))
        rig.monitor.reset_fire("staff:boss", "fire brigade confirmed: burnt-out fan motor")
    # A lane connecting now finds the fire over, from the retained message alone.
    seen: list[bytes] = []
    with MqttBus(broker.address("lane-in1"), client_id="lane-in1") as lane:
        lane.subscribe(topics.alarm(TEST_SITE, "fire"), lambda _t, p: seen.append(p))
        eventually(lambda: bool(seen), what="the retained fire alarm at a lane")
    assert AlarmState.from_json(seen[-1]).active is False
    db.close()
