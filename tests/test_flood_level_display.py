"""Issue 25 (flood plan): level 3 ("leave now", 水浸 请立即驶离) is held by every lane from the
retained ``alarm/flood`` (its ``level``), not shown once: between cars, over each car's
words, on a lane that was off when it came and across a restart, and gone when the level
drops. End to end on the real Mosquitto (the provisioned site's ACLs), the real gateway on a
real SQLite file with its alarm monitor, the water level published by the flood node's own
broker user, and lane nodes on mock pins; a manual clock. Also: the wire field stays readable
by lanes that predate it, and "leaders report in" is one item per flood-team leader."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory
from pydantic import ConfigDict, Field, StrictBool, ValidationError

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from firmware.lane.devices.display import TEXTS, RecordingDisplay
from gateway.plans.settings import ChecklistItem, FloodPlanSettings
from parkguard.clock import ManualClock
from parkguard.errors import ContractError
from simulator.site import SimulatedSite, build_lane
from tests.conftest import SITE_START, TEST_SITE
from tests.helpers import Recorder, eventually
from wire.contract import topics
from wire.contract.messages import AlarmState, SensorReading, UtcTime, WireMessage
from wire.mqtt import MqttBus

LEAVE_NOW = ("水浸 请立即驶离", "FLOOD – LEAVE NOW")
PLATE = "粤B12345"

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
id = "lee"
name = "李班长"
role = "squad_leader"
shift = "a"
teams = ["flood"]
[[alerts.people]]
id = "fay"
name = "Fay"
shift = "a"
teams = ["flood"]
[[alerts.people]]
id = "boss"
name = "Boss"
role = "manager"
teams = ["flood"]

[alarms]
flood_clear_after_s = 60
"""


class Water:
    """The flood node, on its own broker user: each call is one reading, the next seq,
    returning once the gateway has acted on it (its saved count for the node says so)."""

    def __init__(self, broker: MosquittoBroker, site: SimulatedSite) -> None:
        self._site = site
        self._clock = site.clock
        self._seq = 0
        self._bus = MqttBus(broker.address("sensor-flood1"), client_id="sensor-flood1")
        self._bus.start()
        eventually(self._bus.connected.is_set, what="the flood node on the broker")

    def __call__(self, mm: int) -> None:
        self._seq += 1
        reading = SensorReading(node="flood1", seq=self._seq, kind="flood",
                                ts=self._clock.now(), water_level_mm=mm, trouble=False)
        self._bus.publish_and_wait(topics.sensor_reading(TEST_SITE, "flood1"), reading)
        eventually(lambda: self._acted_on() == self._seq, what=f"the gateway took {mm} mm")

    def _acted_on(self) -> int | None:
        with self._site.gateway.store.reader() as db:
            row = db.execute("SELECT state FROM sensor_nodes WHERE node = 'flood1'").fetchone()
        return None if row is None else json.loads(row[0])["track"]["last"]

    def close(self) -> None:
        self._bus.stop()


@pytest.fixture
def site(broker: MosquittoBroker, tmp_path: Path,
         test_site: ProvisionResult) -> Iterator[SimulatedSite]:
    safety = tmp_path / "safety.toml"
    safety.write_text(SAFETY, encoding="utf-8")
    with SimulatedSite(site=TEST_SITE, broker=broker.address, workdir=tmp_path,
                       clock=ManualClock(SITE_START), entry_lanes=("in1",),
                       exit_lanes=("out1",), safety_file=safety,
                       sensors=dict(test_site.device("gateway").sensors),
                       lane_keys=test_site.device("gateway").lane_keys) as running:
        yield running


@pytest.fixture
def water(broker: MosquittoBroker, site: SimulatedSite) -> Iterator[Water]:
    node = Water(broker, site)
    yield node
    node.close()


def screen(site: SimulatedSite, lane: str) -> RecordingDisplay:
    shown = site.lanes[lane].node.controller.screen
    assert isinstance(shown, RecordingDisplay)
    return shown


def shows(site: SimulatedSite, lane: str, text: tuple[str, str]) -> None:
    display = screen(site, lane)
    eventually(lambda: display.current == text, what=f"{text} on {lane}")


def level(site: SimulatedSite) -> int:
    alarms = site.gateway.alarms
    assert alarms is not None
    return site.gateway.service.call(alarms.flood_level)


def rise_to_3(site: SimulatedSite, water: Water) -> None:
    water(700)
    eventually(lambda: level(site) == 3, what="the gateway at flood level 3")


def drop_to_0(site: SimulatedSite, water: Water) -> None:
    """The water goes down, and stays down longer than ``flood_clear_after_s``."""
    water(0)
    site.clock.advance(timedelta(seconds=61))
    water(0)
    eventually(lambda: level(site) == 0, what="the gateway back at flood level 0")


def restart(site: SimulatedSite, lane: str, broker: MosquittoBroker, tmp_path: Path,
            test_site: ProvisionResult, *, running: bool) -> None:
    """A new lane process on the same journal (the old one stopped first if ``running``)."""
    if running:
        site.lanes[lane].node.stop()
    site.lanes[lane] = build_lane(
        site=TEST_SITE, lane=lane, direction="exit" if lane.startswith("out") else "entry",
        address=broker.address(f"lane-{lane}"), clock=site.clock, factory=MockFactory(),
        command_key=test_site.device("gateway").lane_keys[lane],
        journal=tmp_path / f"lane-{lane}.db")
    site.lanes[lane].driver.payer = site.payer if lane.startswith("out") else None
    site.lanes[lane].node.start()
    eventually(site.lanes[lane].node.bus.connected.is_set, what=f"{lane} on the broker")


@pytest.mark.integration
def test_level_3_is_held_on_every_lane_between_cars_and_over_each_cars_words_then_cleared(
        site: SimulatedSite, water: Water, broker: MosquittoBroker) -> None:
    assert site.drive("in1", PLATE).opened
    site.settle()
    with Recorder(broker, topics.alarm(TEST_SITE, "flood"), device="monitor-watch1") as told:
        rise_to_3(site, water)
        for lane in ("in1", "out1"):
            shows(site, lane, LEAVE_NOW)
            assert site.lanes[lane].node.controller.alarms.flood_level == 3
        # One retained message says it: what a lane starting later finds.
        eventually(lambda: len(told.payloads()) >= 1, what="the alarm/flood message")
        said = json.loads(told.payloads()[-1])
        assert (said["active"], said["level"]) == (True, 3)

    # A car at the entry is refused and sees the evacuation text, not "no entry".
    entry = site.drive("in1", "粤B99999")
    assert not entry.opened and entry.reason == "flood_entries_closed"
    assert screen(site, "in1").current == LEAVE_NOW
    # A car at the exit still gets out: it sees leave now with its own words (the amount and
    # the pay code while it pays, then goodbye), and the lane goes back to leave now alone.
    shown_before = len(screen(site, "out1").shown)
    leaving = site.drive("out1", PLATE)
    assert leaving.opened
    site.settle()
    during = screen(site, "out1").shown[shown_before:]
    assert any(zh.startswith("水浸 请立即驶离 ") and PLATE in zh for zh, _en in during), during
    eventually(lambda: screen(site, "out1").current == LEAVE_NOW,
               what="leave now again on out1 after the car")
    # Hours of nothing: still there (held, not a one-off).
    site.clock.advance(timedelta(hours=2))
    for lane in ("in1", "out1"):
        site.lanes[lane].node.controller.wait_idle()
        assert screen(site, lane).current == LEAVE_NOW

    # Down to level 2: leave now goes, the entries stay closed.
    water(400)
    site.clock.advance(timedelta(seconds=61))
    water(400)
    eventually(lambda: level(site) == 2, what="the gateway at flood level 2")
    for lane in ("in1", "out1"):
        shows(site, lane, TEXTS["idle"])
        controller = site.lanes[lane].node.controller
        assert controller.flood_alarm and controller.alarms.flood_level == 2
    refused = site.drive("in1", "粤B99999")
    assert not refused.opened and screen(site, "in1").current == TEXTS["flood_entry"]

    drop_to_0(site, water)
    for lane in ("in1", "out1"):
        controller = site.lanes[lane].node.controller
        eventually(lambda: not controller.flood_alarm,  # noqa: B023 - waited for here
                   what=f"the flood over on {lane}")
    assert screen(site, "out1").current == TEXTS["idle"]
    assert site.drive("in1", "粤B99999").opened  # entries open again


@pytest.mark.integration
def test_a_lane_off_at_level_3_shows_it_when_started_keeps_it_across_a_restart_then_clears(
        site: SimulatedSite, water: Water, broker: MosquittoBroker, tmp_path: Path,
        test_site: ProvisionResult) -> None:
    site.lanes["out1"].node.stop()  # powered off while the water rises
    rise_to_3(site, water)
    eventually(lambda: screen(site, "in1").current == LEAVE_NOW, what="leave now on in1")
    restart(site, "out1", broker, tmp_path, test_site, running=False)
    eventually(lambda: screen(site, "out1").current == LEAVE_NOW,
               what="leave now on out1 from the retained alarm")
    restart(site, "out1", broker, tmp_path, test_site, running=True)  # a reboot: still there
    eventually(lambda: screen(site, "out1").current == LEAVE_NOW,
               what="leave now on out1 after a restart")
    # The water goes down while out1 is off: it comes up with the 3 in its journal (the
    # broker may be away) and takes the level the broker keeps as soon as it hears it.
    site.lanes["out1"].node.stop()
    drop_to_0(site, water)
    eventually(lambda: screen(site, "in1").current == TEXTS["idle"], what="idle on in1")
    restart(site, "out1", broker, tmp_path, test_site, running=False)
    eventually(lambda: site.lanes["out1"].node.controller.alarms.flood_level == 0,
               what="out1 told the level dropped")
    eventually(lambda: screen(site, "out1").current == TEXTS["idle"], what="idle on out1")
    assert not site.lanes["out1"].node.controller.flood_alarm


@pytest.mark.integration
def test_leaders_report_in_one_item_each_from_the_roster(site: SimulatedSite) -> None:
    flood = site.gateway.site_plans.flood
    assert flood is not None
    items = [c.item for c in flood.checklist]
    # Lee (squad leader) and Boss (manager) lead the flood team; Fay is on it, not a leader.
    assert items[:2] == ["leaders-lee", "leaders-boss"] and "leaders" not in items
    assert flood.checklist[0].zh == "组长 李班长 到岗报到"
    service = site.gateway.service
    service.call(lambda: flood.heavy_rain(actor="supervisor:sam", note="暴雨红色预警 red rain"))
    assert service.call(lambda: flood.check("leaders-lee", actor="staff:lee")) is False
    run = service.call(flood.current)
    assert run is not None
    done = {s.item.item for s in run.items if s.checked_at}
    assert done == {"leaders-lee"} and run.remaining == len(items) - 1


def test_no_leader_on_the_roster_keeps_one_item() -> None:
    settings = FloodPlanSettings()
    assert settings.items_with_leaders([]) == settings.checklist
    named = settings.items_with_leaders([("wu", "Wu <b>"), ("li", "")])
    assert [c.item for c in named][:2] == ["leaders-wu", "leaders-li"]
    assert named[0].en == "Leader Wu b reports in" and named[1].en == "Leader li reports in"
    by_hand = FloodPlanSettings(checklist=(
        ChecklistItem(item="leaders", zh="组长到岗", en="Leaders in"),
        ChecklistItem(item="leaders-wu", zh="吴组长到岗", en="Wu in")))
    assert [c.item for c in by_hand.items_with_leaders([("wu", "Wu")])] == ["leaders-wu"]


# The wire field --------------------------------------------------------------------------


class AlarmStateBefore(WireMessage):
    """``AlarmState`` as firmware before the ``level`` field knows it (unknown keys refused)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    active: StrictBool
    source: str = Field(max_length=64)
    zone: str | None = None
    since: UtcTime | None = None
    ts: UtcTime


def test_a_message_without_a_level_is_what_older_lanes_read_and_level_3_is_bounded() -> None:
    for kind, active in (("fire", True), ("flood", True), ("flood", False)):
        state = AlarmState(kind=kind, active=active, source="gateway",  # type: ignore[arg-type]
                           ts=SITE_START)
        assert b"level" not in state.to_json()
        assert AlarmStateBefore.from_json(state.to_json()).active is active
        assert state.flood_level() == (2 if kind == "flood" and active else 0)
    three = AlarmState(kind="flood", active=True, level=3, source="gateway", ts=SITE_START)
    assert AlarmState.from_json(three.to_json()).flood_level() == 3
    with pytest.raises(ContractError):  # an older lane refuses it and keeps its last state
        AlarmStateBefore.from_json(three.to_json())
    for bad in ({"kind": "flood", "active": True, "level": 4},
                {"kind": "flood", "active": False, "level": 3},
                {"kind": "flood", "active": True, "level": 1},
                {"kind": "fire", "active": True, "level": 3},
                {"kind": "flood", "active": True, "level": "3"}):
        with pytest.raises(ValidationError):
            AlarmState.model_validate({**bad, "source": "gateway", "ts": SITE_START})
