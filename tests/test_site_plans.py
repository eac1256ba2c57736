"""Issue 25 (part): the owner contact register, fire drills and the flood plan, end to end on
the simulated site (real Mosquitto, the real gateway on a real SQLite file, lanes on mock
pins) with texts going through Apprise's ``smseagle://`` plugin to the local SMS peer the
one-time-code tests use. A manual clock: retention and acknowledgement times are stepped."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from gateway.app import GatewayApp
from gateway.contacts import ContactError, ContactRegister, ContactSettings
from gateway.lanes.capacity import CapacitySettings
from gateway.plans.assembly import FireResponse, SitePlans
from gateway.plans.drills import DRILL_DISPLAY, DRILL_OVER_DISPLAY, DrillError
from gateway.plans.settings import FireSettings
from gateway.records.audit import verify
from gateway.safety.alarms import FLOOD_EVACUATE_DISPLAY
from parkguard.clock import ManualClock
from simulator.site import SimulatedSite
from tests.conftest import SITE_START, TEST_SITE
from tests.helpers import eventually
from tests.sms_peer import SmsEagle
from wire.contract.messages import PatrolTap, SensorReading

pytestmark = pytest.mark.integration

PLATE = "粤B12345"
PHONE = "139 1234 5678"
DIGITS = "13912345678"
EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"

SAFETY = """
[alerts]
timezone = "Asia/Shanghai"
shifts = [{ name = "a", start = 08:00:00 }, { name = "b", start = 16:00:00 },
          { name = "c", start = 00:00:00 }]

[[alerts.people]]
id = "gina"
name = "Gina"
role = "guard"
shift = "a"
[[alerts.people]]
id = "evan"
name = "Evan"
shift = "a"
teams = ["evacuation"]
[[alerts.people]]
id = "fay"
name = "Fay"
shift = "a"
teams = ["fire_fighting", "flood"]
[[alerts.people]]
id = "cora"
name = "Cora"
shift = "a"
teams = ["cordon"]
[[alerts.people]]
id = "boss"
name = "Boss"
role = "manager"

[alarms]
flood_clear_after_s = 60

[[plans.equipment.items]]
id = "ext-01"
kind = "extinguisher"
place = "B1 入口坡道 ramp"
checkpoint = "b1-ramp"

[[plans.flood.checklist]]
item = "leaders"
zh = "各组组长到岗报到"
en = "Team leaders report in"
[[plans.flood.checklist]]
item = "pumps"
zh = "排水泵试运行正常"
en = "Pumps tested"
checkpoint = "b1-pump"
[[plans.flood.checklist]]
item = "sandbags"
zh = "沙袋 20 袋到位"
en = "20 sandbags in place"
"""


def plans_site(broker: MosquittoBroker, tmp_path: Path, test_site: ProvisionResult,
               eagle: SmsEagle, *, open_barriers: bool = False,
               entry_lanes: tuple[str, ...] = ("in1",), capacity: CapacitySettings | None = None,
               more_safety: str = "") -> SimulatedSite:
    """The site fixture's lanes and gateway, with a safety file (roster with the response
    teams, the flood checklist), the patrol regime, the sensor inventory and [contacts]."""
    safety = tmp_path / "safety.toml"
    extra = "\n[plans.drills]\nopen_barriers = true\n" if open_barriers else ""
    safety.write_text(SAFETY + extra + more_safety, encoding="utf-8")
    patrols = tmp_path / "patrols.toml"  # the example regime with plain (UID-only) tags
    text = (EXAMPLES / "patrols.toml").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^key = .*$", "", text).replace("allow_plain_tags = false",
                                                       "allow_plain_tags = true")
    patrols.write_text(text, encoding="utf-8")
    unstarted = SimulatedSite(site=TEST_SITE, broker=broker.address, workdir=tmp_path,
                              clock=ManualClock(SITE_START), entry_lanes=entry_lanes,
                              exit_lanes=("out1",), safety_file=safety,
                              lane_keys=test_site.device("gateway").lane_keys,
                              capacity=capacity)
    unstarted.gateway.store.close()
    config = unstarted.gateway_config.model_copy(update={
        "sensors": dict(test_site.device("gateway").sensors), "patrol_file": patrols,
        "contacts": ContactSettings(key_file=tmp_path / "contacts.key", retention_days=30,
                                    sms_url=SecretStr(eagle.url), signature="测试停车场")})
    unstarted.gateway_config = config
    unstarted.gateway = GatewayApp(config, clock=unstarted.clock, allow_simulated=True)
    return unstarted


@pytest.fixture
def site(broker: MosquittoBroker, tmp_path: Path, test_site: ProvisionResult,
         eagle: SmsEagle) -> Iterator[SimulatedSite]:
    with plans_site(broker, tmp_path, test_site, eagle) as running:
        yield running


def plans_of(site: SimulatedSite) -> SitePlans:
    return site.gateway.site_plans


def register_of(site: SimulatedSite) -> ContactRegister:
    register = plans_of(site).contacts
    assert register is not None
    return register


def park(site: SimulatedSite, plate: str = PLATE) -> None:
    assert site.drive("in1", plate).opened
    site.settle()


def on_worker(site: SimulatedSite, work):  # type: ignore[no-untyped-def]
    return site.gateway.service.call(work)


def texts(eagle: SmsEagle, count: int) -> list[dict[str, str]]:
    with eagle._lock:
        assert eagle._lock.wait_for(lambda: len(eagle.messages) >= count, 30), eagle.messages
        return [m["params"] for m in eagle.messages]


def test_a_consenting_owner_is_kept_encrypted_shown_masked_revealed_with_a_reason_and_texted(
        site: SimulatedSite, eagle: SmsEagle, tmp_path: Path) -> None:
    register = register_of(site)
    park(site)
    contact_id = on_worker(site, lambda: register.consent(
        PHONE, plate=PLATE, source="pay_page", wording_version="v1"))
    with site.gateway.store.reader() as db:
        row = dict(next(db.query("SELECT * FROM contacts")))
        stored = json.dumps([dict(r) for r in db.query("SELECT * FROM contacts")]
                            + [dict(r) for r in db.query("SELECT * FROM audit_log")],
                            ensure_ascii=False)
    assert DIGITS not in stored and "1234 5678" not in stored  # only ciphertext and masks
    assert row["phone_masked"] == "139****5678" and row["wording_version"] == "v1"
    assert row["consent_at"].startswith("2026-05-06T02:00")
    [view] = on_worker(site, register.contacts)
    assert (view.phone_masked, view.inside) == ("139****5678", True)
    with pytest.raises(ContactError, match="reason"):
        on_worker(site, lambda: register.reveal(contact_id, actor="supervisor:sam", reason=""))
    assert on_worker(site, lambda: register.reveal(
        contact_id, actor="supervisor:sam", reason="owner's car alarm sounding")) == DIGITS
    # A guard tells the owner the car is leaking: through the SMS peer, to the real number.
    assert on_worker(site, lambda: register.tell_owner(
        PLATE, "leaking", actor="guard:gina", note="B2-031")) == 1
    [sms] = texts(eagle, 1)
    assert sms["to"] == f"+86{DIGITS}" and "漏油" in sms["message"] and PLATE in sms["message"]
    assert sms["message"].startswith("【测试停车场】")
    eventually(lambda: on_worker(site, register.messages)[0]["status"] == "sent",
               what="the text recorded as sent")
    assert on_worker(site, register.messages)[0]["target"] == "139****5678"
    with pytest.raises(ContactError, match="not inside"):
        on_worker(site, lambda: register.tell_owner("粤B99999", "lights_on", actor="guard:gina"))
    # The car leaves; 30 days later the number is gone by itself.
    assert site.drive("out1", PLATE).opened
    site.settle()
    site.clock.advance(timedelta(days=29))
    assert on_worker(site, lambda: register.purge()) == 0
    site.clock.advance(timedelta(days=1, minutes=5))
    assert on_worker(site, lambda: register.purge()) == 1
    with site.gateway.store.reader() as db:
        gone = dict(next(db.query("SELECT * FROM contacts")))
        actions = [r["action"] for r in db.query("SELECT action FROM audit_log")]
    assert (gone["state"], gone["phone_token"], gone["phone_index"]) == ("deleted", "", "")
    assert gone["deleted_by"] == "gateway" and "retention" in gone["delete_reason"]
    assert {"contact.consent", "contact.reveal", "contact.message",
            "contact.delete"} <= set(actions)
    assert verify(site.gateway.store.db).ok


def test_a_driver_asks_and_the_number_is_deleted_and_nobody_without_consent_is_texted(
        site: SimulatedSite, eagle: SmsEagle) -> None:
    register = register_of(site)
    park(site)
    with pytest.raises(ContactError, match="nobody agreed"):
        on_worker(site, lambda: register.tell_owner(PLATE, "window_open", actor="guard:gina"))
    with pytest.raises(ContactError, match="wording"):
        on_worker(site, lambda: register.consent(PHONE, plate=PLATE, source="pay_page",
                                                 wording_version="v0"))
    on_worker(site, lambda: register.consent(PHONE, plate=PLATE, source="kiosk",
                                             wording_version="v1"))
    assert on_worker(site, lambda: register.delete_phone(
        DIGITS, actor="supervisor:sam", reason="driver asked at the booth")) == 1
    assert on_worker(site, register.contacts) == []
    with pytest.raises(ContactError, match="nobody agreed"):
        on_worker(site, lambda: register.tell_owner(PLATE, "window_open", actor="guard:gina"))
    assert eagle.messages == []


def test_a_drill_is_a_drill_end_to_end_each_team_has_its_task_and_the_report_times_acks(
        site: SimulatedSite, eagle: SmsEagle) -> None:
    plans = plans_of(site)
    drills, alerts, alarms = plans.drills, site.gateway.alerts, site.gateway.alarms
    assert drills is not None and alerts is not None and alarms is not None
    in1 = site.lanes["in1"].node.controller
    with pytest.raises(DrillError, match="note"):
        on_worker(site, lambda: drills.start(actor="supervisor:sam", note=""))
    drill_id = on_worker(site, lambda: drills.start(actor="supervisor:sam",
                                                    note="surprise drill, B2 east"))
    eventually(lambda: in1.display is not None and (in1.display.zh, in1.display.en)
               == DRILL_DISPLAY, what="the drill on the lane display")
    # A drill is not a fire: no alarm, barriers down, billing on.
    assert not alarms.fire_active() and not alarms.billing_suspended()
    assert not site.lanes["in1"].wiring.relay.state
    active = {v.key: v for v in on_worker(site, alerts.active)}
    assert set(active) == {f"drill:{drill_id}", f"drill:{drill_id}:fire_fighting",
                           f"drill:{drill_id}:evacuation", f"drill:{drill_id}:cordon"}
    assert all("演习 DRILL" in v.title_zh and v.kind == "drill" for v in active.values())
    evac = active[f"drill:{drill_id}:evacuation"]
    assert "疏散引导组" in evac.title_zh and "guide cars and people out" in evac.title_en
    reached = [e["detail"] for e in on_worker(site, lambda: alerts.events(evac.alert_id))
               if e["event"] == "escalated"]
    assert reached == ["round 0 step 0: gina, evan"]
    site.clock.advance(timedelta(seconds=95))
    on_worker(site, lambda: alerts.ack(evac.alert_id, "staff:evan", "link"))
    site.clock.advance(timedelta(seconds=40))
    on_worker(site, lambda: alerts.ack(active[f"drill:{drill_id}:cordon"].alert_id,
                                       "staff:cora", "mqtt"))
    report = on_worker(site, lambda: drills.end(drill_id, actor="supervisor:sam"))
    assert report.evacuation_ack_s == 95
    by_team = {a.team: a for a in report.acks}
    assert by_team["evacuation"].acked_by == "staff:evan"
    assert by_team["cordon"].seconds == 135
    assert set(report.unanswered) == {"全员 Everyone on duty", "灭火组 Fire-fighting team"}
    assert on_worker(site, alerts.active) == []
    eventually(lambda: in1.display is not None and (in1.display.zh, in1.display.en)
               == DRILL_OVER_DISPLAY, what="the drill's end on the lane display")
    with site.gateway.store.reader() as db:
        reasons = [r["reason"] for r in db.query(
            "SELECT reason FROM audit_log WHERE action = 'lane.display'")]
    assert f"fire drill {drill_id}" in reasons and f"fire drill {drill_id} over" in reasons


def test_a_drill_set_to_open_barriers_holds_them_and_a_scheduled_drill_starts_by_itself(
        broker: MosquittoBroker, tmp_path: Path, test_site: ProvisionResult,
        eagle: SmsEagle) -> None:
    with plans_site(broker, tmp_path, test_site, eagle, open_barriers=True) as site:
        drills = plans_of(site).drills
        assert drills is not None
        at = site.clock.now() + timedelta(minutes=30)
        drill_id = on_worker(site, lambda: drills.schedule(at, actor="supervisor:sam",
                                                           note="monthly drill"))
        assert on_worker(site, lambda: drills.tick(site.clock.now())) == []
        site.clock.advance(timedelta(minutes=30))
        assert on_worker(site, lambda: drills.tick(site.clock.now())) == [drill_id]
        eventually(lambda: site.lanes["out1"].wiring.relay.state, what="barrier held open")
        on_worker(site, lambda: drills.end(drill_id, actor="supervisor:sam"))
        eventually(lambda: not site.lanes["out1"].wiring.relay.state, what="barrier closed")


def test_heavy_rain_checklist_by_page_and_patrol_tap_then_level_3_on_every_lane(
        site: SimulatedSite, eagle: SmsEagle) -> None:
    flood, alerts = plans_of(site).flood, site.gateway.alerts
    register, patrols, alarms = register_of(site), site.gateway.patrols, site.gateway.alarms
    assert flood is not None and alerts is not None and patrols is not None
    assert alarms is not None
    run_id = on_worker(site, lambda: flood.heavy_rain(actor="supervisor:sam",
                                                      note="暴雨橙色预警 orange rain warning"))
    [alert] = on_worker(site, alerts.active)
    assert alert.kind == "heavy_rain" and alert.team == "flood"
    assert on_worker(site, lambda: flood.check("leaders", actor="guard:gina")) is False
    # The guard taps the checkpoint at the pump room: the pumps item is checked by the tap.
    tap = PatrolTap(reader="pr1", seq=1, tag_id="04A10000000004", badge="G001",
                    reader_time=datetime(2026, 5, 6, 10, 5))
    on_worker(site, lambda: patrols.ingest(tap, site.clock.now()))
    readiness = on_worker(site, flood.current)
    assert readiness is not None and readiness.remaining == 1
    pumps = next(i for i in readiness.items if i.item.item == "pumps")
    assert (pumps.via, pumps.checked_by) == ("tap", "staff:wang")
    assert on_worker(site, lambda: flood.check("sandbags", actor="guard:gina")) is True
    assert on_worker(site, flood.current) is None
    assert on_worker(site, lambda: flood.readiness(run_id)).state == "complete"
    assert on_worker(site, alerts.active) == []
    # The water rises: owners who agreed are told to move their cars, then every lane says
    # leave now.
    park(site)
    park(site, "粤B22222")
    on_worker(site, lambda: register.consent(PHONE, plate=PLATE, source="pay_page",
                                             wording_version="v1"))
    node = next(n for n, k in site.gateway_config.sensors.items() if k == "flood")
    for seq, mm in enumerate((350, 700), start=1):
        reading = SensorReading(node=node, seq=seq, kind="flood", ts=site.clock.now(),
                                water_level_mm=mm, trouble=False)
        on_worker(site, lambda reading=reading: alarms.on_reading(reading))
    assert alarms.flood_level() == 3
    sent = texts(eagle, 2)
    assert [s["to"] for s in sent] == [f"+86{DIGITS}"] * 2
    assert "请尽快将您的车辆驶离" in sent[0]["message"] and "立即撤离" in sent[1]["message"]
    def shows_leave_now(lane: str) -> bool:
        shown = site.lanes[lane].node.controller.display
        return shown is not None and (shown.zh, shown.en) == FLOOD_EVACUATE_DISPLAY

    eventually(lambda: shows_leave_now("in1"), what="leave now on in1")
    eventually(lambda: shows_leave_now("out1"), what="leave now on out1")


def test_the_equipment_register_is_checked_monthly_by_taps_and_alerts_what_is_left(
        site: SimulatedSite) -> None:
    equipment, alerts, patrols = (plans_of(site).equipment, site.gateway.alerts,
                                  site.gateway.patrols)
    assert equipment is not None and alerts is not None and patrols is not None
    summary = on_worker(site, equipment.summary)
    assert summary.month == "2026-05"
    assert summary.count("extinguisher") == (0, 72) and summary.count("hydrant") == (0, 36)
    # A guard taps the tag at the extinguisher by the ramp: its check for May.
    tap = PatrolTap(reader="pr1", seq=7, tag_id="04A10000000001", badge="G001",
                    reader_time=datetime(2026, 5, 6, 10, 1))
    on_worker(site, lambda: patrols.ingest(tap, site.clock.now()))
    with pytest.raises(ValueError, match="note"):
        on_worker(site, lambda: equipment.check("hyd-07", actor="guard:gina", result="fault"))
    on_worker(site, lambda: equipment.check("hyd-07", actor="guard:gina", result="fault",
                                            note="hose reel missing"))
    summary = on_worker(site, equipment.summary)
    ext = next(i for i in summary.items if i.item.id == "ext-01")
    assert (ext.via, ext.checked_by, ext.result) == ("tap", "staff:wang", "ok")
    assert summary.count("extinguisher") == (1, 72) and summary.faults == ("hyd-07",)
    assert on_worker(site, lambda: alerts.open_alert("equipment-fault:hyd-07")) is not None
    # Before the 25th nothing is due; from the 25th what is left is an alert to facilities.
    on_worker(site, lambda: equipment.tick(site.clock.now()))
    assert on_worker(site, lambda: alerts.open_alert("equipment:2026-05")) is None
    site.clock.advance(timedelta(days=19))  # 25 May, 10:00 in Shanghai
    on_worker(site, lambda: equipment.tick(site.clock.now()))
    due = on_worker(site, lambda: alerts.open_alert("equipment:2026-05"))
    assert due is not None and due.team == "facilities"
    assert "extinguishers 1/72, hydrants 1/36" in due.detail
    # June starts afresh.
    site.clock.advance(timedelta(days=7))
    assert on_worker(site, equipment.summary).count("extinguisher") == (0, 72)


def test_a_real_fire_tells_the_consenting_owners_inside_and_a_drill_tells_nobody(
        site: SimulatedSite, eagle: SmsEagle) -> None:
    register, alarms, drills = register_of(site), site.gateway.alarms, plans_of(site).drills
    assert alarms is not None and drills is not None
    park(site)
    on_worker(site, lambda: register.consent(PHONE, plate=PLATE, source="pay_page",
                                             wording_version="v1"))
    drill_id = on_worker(site, lambda: drills.start(actor="supervisor:sam", note="drill"))
    on_worker(site, lambda: drills.end(drill_id, actor="supervisor:sam"))
    assert on_worker(site, register.messages) == []
    panel = next(n for n, k in site.gateway_config.sensors.items() if k == "fire_panel")
    reading = SensorReading(node=panel, seq=1, kind="fire_panel", ts=site.clock.now(),
                            fire=True, trouble=False, supervisory=False, zone="b2-east")
    on_worker(site, lambda: alarms.on_reading(reading))
    [sms] = texts(eagle, 1)
    assert sms["to"] == f"+86{DIGITS}" and "火警" in sms["message"]


def fire_at(site: SimulatedSite, zone: str, *, fire: bool = True, seq: int = 1) -> None:
    alarms = site.gateway.alarms
    assert alarms is not None
    panel = next(n for n, k in site.gateway_config.sensors.items() if k == "fire_panel")
    reading = SensorReading(node=panel, seq=seq, kind="fire_panel", ts=site.clock.now(),
                            fire=fire, trouble=False, supervisory=False, zone=zone)
    on_worker(site, lambda: alarms.on_reading(reading))


def test_a_real_fire_alerts_each_team_with_its_task_beside_a_drill_and_its_reset_ends_them(
        site: SimulatedSite) -> None:
    alerts, alarms, drills = site.gateway.alerts, site.gateway.alarms, plans_of(site).drills
    assert alerts is not None and alarms is not None and drills is not None
    drill_id = on_worker(site, lambda: drills.start(actor="supervisor:sam",
                                                    note="drill when the fire starts"))
    fire_at(site, "b2-east")
    active = {v.key: v for v in on_worker(site, alerts.active)}
    teams = {"fire_fighting", "evacuation", "cordon"}
    assert {f"fire:{t}" for t in teams} <= set(active)
    for team in teams:
        view = active[f"fire:{team}"]
        assert (view.kind, view.severity, view.team) == ("fire", "critical", team)
        assert view.title_zh.startswith("【火警 FIRE】") and "演习" not in view.title_zh
        assert "b2-east" in view.detail
    evac = active["fire:evacuation"]
    assert "疏散引导组" in evac.title_zh and "guide cars and people out" in evac.title_en
    assert "灭火组" in active["fire:fire_fighting"].title_zh
    assert "警戒组" in active["fire:cordon"].title_zh
    reached = [e["detail"] for e in on_worker(site, lambda: alerts.events(evac.alert_id))
               if e["event"] == "escalated"]
    assert reached == ["round 0 step 0: gina, evan"]
    # The drill keeps its own alerts, marked as a drill; the fire's are apart from them.
    drill_alerts = [v for k, v in active.items() if k.startswith(f"drill:{drill_id}")]
    assert len(drill_alerts) == 4
    assert all(v.kind == "drill" and "演习 DRILL" in v.title_zh for v in drill_alerts)
    site.clock.advance(timedelta(seconds=30))
    acked = on_worker(site, lambda: alerts.ack(evac.alert_id, "staff:evan", "link"))
    assert acked.acked_by == "staff:evan"
    # Ending the drill leaves the fire's team alerts alone.
    on_worker(site, lambda: drills.end(drill_id, actor="supervisor:sam"))
    assert {f"fire:{t}" for t in teams} <= {v.key for v in on_worker(site, alerts.active)}
    # The panel is normal again and the manager resets: each team's alert is resolved by her.
    fire_at(site, "b2-east", fire=False, seq=2)
    on_worker(site, lambda: alarms.reset_fire("staff:boss", "false alarm, smoke from a car"))
    assert on_worker(site, alerts.active) == []
    for team in teams:
        with site.gateway.store.reader() as db:
            row = dict(next(db.query(
                "SELECT * FROM alerts WHERE key = ? ORDER BY id DESC LIMIT 1", [f"fire:{team}"])))
        assert row["state"] == "resolved" and row["resolved_by"] == "staff:boss"
        assert "false alarm" in row["resolve_reason"]


FIRE_ZONES = """
[plans.fire]
zones = { "b2-east" = ["B2"] }
"""
LEVELS = CapacitySettings(total=200, levels={"B1": 100, "B2": 100}, lanes={"in2": "B2"},
                          default_level="B1")


def test_a_fire_in_a_zone_asks_the_owners_of_cars_on_its_level_to_move_them_and_others_to_keep_out(
        broker: MosquittoBroker, tmp_path: Path, test_site: ProvisionResult,
        eagle: SmsEagle) -> None:
    other_phone, other_digits = "138 0000 1111", "13800001111"
    with plans_site(broker, tmp_path, test_site, eagle, entry_lanes=("in1", "in2"),
                    capacity=LEVELS, more_safety=FIRE_ZONES) as site:
        register, alerts = register_of(site), site.gateway.alerts
        assert alerts is not None
        assert site.drive("in2", PLATE).opened  # down the ramp to B2, where the fire is
        assert site.drive("in1", "粤B22222").opened  # B1
        assert site.drive("in2", "粤B33333").opened  # B2, nobody on the register
        site.settle()
        on_worker(site, lambda: register.consent(PHONE, plate=PLATE, source="pay_page",
                                                 wording_version="v1"))
        on_worker(site, lambda: register.consent(other_phone, plate="粤B22222",
                                                 source="kiosk", wording_version="v1"))
        fire_at(site, "b2-east")
        by_phone = {m["to"]: m["message"] for m in texts(eagle, 2)}
        assert set(by_phone) == {f"+86{DIGITS}", f"+86{other_digits}"}
        move, keep_out = by_phone[f"+86{DIGITS}"], by_phone[f"+86{other_digits}"]
        assert move.startswith("【测试停车场】") and "挪离" in move and "B2" in move
        assert "请勿进入" not in move
        assert "请勿进入" in keep_out and "挪离" not in keep_out
        kinds = {m["contact_id"]: m["kind"] for m in on_worker(site, register.messages)}
        assert sorted(kinds.values()) == ["fire", "fire:move"]
        # The evacuation team knows which cars near the fire no owner can be texted about.
        evac = on_worker(site, lambda: alerts.open_alert("fire:evacuation"))
        assert evac is not None
        assert "cars on B2 near the fire: 2" in evac.detail
        assert "粤B33333" in evac.detail and PLATE not in evac.detail
        assert "粤B22222" not in evac.detail


def test_a_fire_zone_naming_a_level_the_car_park_does_not_have_is_refused_at_start(
        site: SimulatedSite) -> None:
    alerts = site.gateway.alerts
    assert alerts is not None
    zones = FireSettings.model_validate({"zones": {"b3": ["B3"]}})
    with pytest.raises(ValueError, match="B3 not in"):
        FireResponse(site.gateway.store.db, alerts=alerts, teams=(), evacuation_team="x",
                     settings=zones, capacity=LEVELS, contacts=None)
    with pytest.raises(ValueError, match="no \\[capacity\\]"):
        FireResponse(site.gateway.store.db, alerts=alerts, teams=(), evacuation_team="x",
                     settings=zones, capacity=None, contacts=None)
