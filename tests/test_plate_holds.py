"""Holding a plate at the exit, end to end: real Mosquitto, the real gateway and lanes on mock
pins, real SQLite. The exit refuses a held car with its own reason and display, the guard on
duty is alerted once, the hold is lifted only with a reason (both audited, the alert
resolved), and an exit lane cut off from the broker holds the car too, from its replica."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from gateway.safety.holds import HELD_DISPLAY, HoldError
from parkguard.core.access import ListEntry, entry_access, exit_hold, list_entry_to_json
from simulator.site import SimulatedSite
from tests.conftest import SITE_START
from tests.helpers import eventually
from tests.ops_roster import rostered_site
from tests.test_lane_offline_day import drive_offline
from wire.contract.messages import ReplicaListEntry

pytestmark = pytest.mark.integration

PLATE = "粤B12345"


@pytest.fixture
def rostered(broker: MosquittoBroker, tmp_path: Path,
             test_site: ProvisionResult) -> Iterator[SimulatedSite]:
    with rostered_site(broker, tmp_path, test_site) as running:
        yield running


def audit_actions(site: SimulatedSite, subject: str) -> list[tuple[str, str, str]]:
    with site.gateway.store.reader() as db:
        return [(r["action"], r["actor"], r["reason"]) for r in db.query(
            "SELECT action, actor, reason FROM audit_log WHERE subject = ? ORDER BY seq",
            [subject])]


def test_a_held_car_is_refused_at_the_exit_the_guard_is_called_and_a_lift_lets_it_go(
    rostered: SimulatedSite,
) -> None:
    site = rostered
    gateway = site.gateway
    alerts = gateway.alerts
    assert alerts is not None
    assert site.drive("in1", PLATE).opened
    site.settle()
    gateway.service.call(lambda: gateway.holds.hold(
        PLATE, reason="scraped a pillar, driver to wait", actor="guard:gina"))
    site.clock.advance(timedelta(minutes=40))

    refused = site.drive("out1", PLATE)
    site.settle()
    shown = site.lanes["out1"].node.controller.last_verdict
    assert not refused.opened and refused.reason == "plate_held"
    assert shown is not None and shown.display == HELD_DISPLAY
    alert = gateway.service.call(lambda: alerts.open_alert(f"hold:{PLATE}"))
    assert alert is not None and alert.kind == "hold"
    told = gateway.service.call(lambda: alerts.events(alert.alert_id))
    assert [e["detail"] for e in told if e["event"] == "escalated"] == ["round 0 step 0: gina"]

    again = site.drive("out1", PLATE)  # the driver tries again: still one alert
    site.settle()
    assert again.reason == "plate_held"
    assert gateway.service.call(lambda: alerts.open_alert(f"hold:{PLATE}")) == \
        gateway.service.call(lambda: alerts.view(alert.alert_id))

    with pytest.raises(HoldError, match="reason"):
        gateway.service.call(lambda: gateway.holds.lift(PLATE, reason=" ", actor="guard:gina"))
    gateway.service.call(lambda: gateway.holds.lift(
        PLATE, reason="photos taken, owners agreed", actor="supervisor:sue"))
    assert gateway.service.call(lambda: alerts.open_alert(f"hold:{PLATE}")) is None
    assert site.drive("out1", PLATE).opened  # pays by QR and leaves
    assert audit_actions(site, f"plate:{PLATE}") == [
        ("plate.hold", "guard:gina", "scraped a pillar, driver to wait"),
        ("plate.hold_lift", "supervisor:sue", "photos taken, owners agreed"),
    ]


def test_an_exit_cut_off_from_the_broker_holds_the_car_from_its_replica(
    rostered: SimulatedSite, broker: MosquittoBroker,
) -> None:
    site = rostered
    gateway = site.gateway
    alerts = gateway.alerts
    assert alerts is not None
    assert site.drive("in1", PLATE).opened
    site.settle()
    gateway.service.call(lambda: gateway.holds.hold(PLATE, reason="hit and run reported",
                                                    actor="guard:gina"))
    replica = site.lanes["out1"].node.replica
    eventually(lambda: any(e.list_name == "hold" for e in replica._lists),
               what="the hold in the exit lane's replica")
    broker.stop()
    lane = site.lanes["out1"]
    eventually(lambda: not lane.node.bus.connected.is_set(), what="the lane sees the broker gone")
    site.clock.advance(timedelta(hours=1))
    action, reason, _fee = drive_offline(site, "out1", PLATE)
    assert (action, reason) == ("refuse", "offline_plate_held")

    broker.start()  # the journaled decision reaches the gateway: the guard is called
    eventually(lambda: lane.node.journal.unsent_count() == 0, timeout=30,
               what="the lane's journal replayed")
    site.settle(timeout=30)
    alert = gateway.service.call(lambda: alerts.open_alert(f"hold:{PLATE}"))
    assert alert is not None and "offline" in alert.detail


def test_a_hold_keeps_a_car_at_the_exit_only_and_lapses_with_its_until() -> None:
    now = SITE_START
    lists = [ListEntry("hold", "粤B12345", "accident", until=now + timedelta(hours=1)),
             ListEntry("blacklist", "粤B67890", "fled")]
    assert exit_hold("粤b12345", now, lists) == lists[0]  # any spelling of the plate
    assert exit_hold("粤B67890", now, lists) is None  # the blacklist is for entries
    assert exit_hold("粤B12345", now + timedelta(hours=2), lists) is None
    entry = entry_access("粤B12345", now, passes=[], lists=lists, occupied=set())
    assert entry.kind == "visitor"  # entries ignore holds
    wire = ReplicaListEntry.model_validate(list_entry_to_json(lists[0]))
    assert wire.list_name == "hold"
