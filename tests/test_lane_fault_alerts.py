"""Lane faults and lanes gone quiet become alerts for the squad leader and maintenance, end
to end: real Mosquitto, the real gateway and lanes on mock pins, real SQLite, a manual clock
(the stale check is stepped, never waited for)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from gateway.safety.alerts import AlertDesk
from simulator.site import SimulatedSite
from tests.helpers import eventually
from tests.ops_roster import rostered_site
from tests.test_lane_heartbeat import silence
from wire.contract.messages import Fault, FaultCleared

pytestmark = pytest.mark.integration


@pytest.fixture
def rostered(broker: MosquittoBroker, tmp_path: Path,
             test_site: ProvisionResult) -> Iterator[SimulatedSite]:
    with rostered_site(broker, tmp_path, test_site) as running:
        yield running


def _event(site: SimulatedSite, lane: str) -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "seq": 60_000 + site.gateway.service.events_stored,
            "ts": site.clock.now(), "lane": lane}


def _desk(site: SimulatedSite) -> AlertDesk:
    assert site.gateway.alerts is not None
    return site.gateway.alerts


def _told(site: SimulatedSite, alert_id: str) -> list[str]:
    events = site.gateway.service.call(lambda: _desk(site).events(alert_id))
    return [e["detail"] for e in events if e["event"] == "escalated"]


def test_a_camera_fault_alerts_the_squad_leader_and_maintenance_once_and_clears(
    rostered: SimulatedSite,
) -> None:
    site, desk = rostered, _desk(rostered)
    site.replay_journal("out1", Fault(**_event(site, "out1"), code="camera_offline",
                                      detail="rtsp: no frames for 10 s"))
    site.settle()
    alert = site.gateway.service.call(lambda: desk.open_alert("fault:out1:camera_offline"))
    assert alert is not None and alert.kind == "lane_fault"
    assert _told(site, alert.alert_id) == ["round 0 step 0: gina, mo, sam"]

    site.replay_journal("out1", Fault(**_event(site, "out1"), code="camera_offline",
                                      detail="rtsp: still no frames"))  # no storm
    site.replay_journal("out1", Fault(**_event(site, "out1"), code="read_failed",
                                      detail="no plate"))  # a car, not a device: no alert
    site.settle()
    assert [a.key for a in site.gateway.service.call(desk.active)] == [
        "fault:out1:camera_offline"]
    assert _told(site, alert.alert_id) == ["round 0 step 0: gina, mo, sam"]

    site.gateway.service.call(lambda: desk.ack(alert.alert_id, "staff:mo", "dashboard"))
    site.replay_journal("out1", FaultCleared(**_event(site, "out1"), code="camera_offline",
                                             detail="streaming again"))
    site.settle()
    assert site.gateway.service.call(lambda: desk.view(alert.alert_id)).state == "resolved"


def test_a_barrier_fault_ends_when_the_next_car_goes_through(rostered: SimulatedSite) -> None:
    site, desk = rostered, _desk(rostered)
    site.replay_journal("in1", Fault(**_event(site, "in1"), code="barrier_limit_timeout",
                                     detail="up switch not reached in 6 s"))
    site.settle()
    assert site.gateway.service.call(
        lambda: desk.open_alert("fault:in1:barrier_limit_timeout")) is not None
    assert site.drive("in1", "粤B12345").opened
    site.settle()
    eventually(lambda: site.gateway.service.call(
        lambda: desk.open_alert("fault:in1:barrier_limit_timeout")) is None,
        what="the barrier fault resolved by a car through")


def test_a_silent_lane_is_offline_once_and_back_when_heard(rostered: SimulatedSite) -> None:
    site, desk = rostered, _desk(rostered)
    faults = site.gateway.faults
    assert faults is not None
    assert site.drive("in1", "粤B12345").opened
    site.settle()
    silence(site, "in1")  # lanes beat every 10 s: only a hung one goes silent
    site.clock.advance(timedelta(minutes=3))
    site.gateway.service.call(lambda: faults.tick(site.clock.now()))
    site.gateway.service.call(lambda: faults.tick(site.clock.now()))  # still one alert
    offline = site.gateway.service.call(lambda: desk.open_alert("offline:in1"))
    assert offline is not None and offline.kind == "lane_offline"
    assert _told(site, offline.alert_id) == ["round 0 step 0: gina, mo, sam"]
    site.lanes["in1"].node.controller.status.publish()  # in1 says its state again
    eventually(lambda: site.gateway.service.call(
        lambda: desk.open_alert("offline:in1")) is None, what="in1 heard again")


def test_a_lane_that_goes_offline_alerts_by_its_state(rostered: SimulatedSite) -> None:
    site, desk = rostered, _desk(rostered)
    site.lanes["out1"].node.stop()
    eventually(lambda: site.gateway.service.call(
        lambda: desk.open_alert("offline:out1")) is not None, what="out1 offline alert")
