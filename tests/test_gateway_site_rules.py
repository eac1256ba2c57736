"""The gateway's site-wide rules on a running simulated site: lot full, replicas that follow
every entry and exit, conflicts kept for review, and exits during a fire left unbilled."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from gateway.lanes.capacity import CapacitySettings
from parkguard.clock import ManualClock
from simulator.site import SimulatedSite
from tests.conftest import SITE_START, TEST_SITE
from tests.helpers import Recorder, eventually
from wire.contract import topics
from wire.contract.messages import Decision, HelpPressed, Passed, ReplicaDelta, decode

pytestmark = pytest.mark.integration


@pytest.fixture
def small_site(broker: MosquittoBroker, tmp_path: Path,
               test_site: ProvisionResult) -> Iterator[SimulatedSite]:
    """Two spaces, one entry and one exit lane."""
    with SimulatedSite(site=TEST_SITE, broker=broker.address, workdir=tmp_path,
                       clock=ManualClock(SITE_START), entry_lanes=("in1",),
                       exit_lanes=("out1",), capacity=CapacitySettings(total=2),
                       lane_keys=test_site.device("gateway").lane_keys) as running:
        yield running


def drive(site: SimulatedSite, lane: str, plate: str) -> Any:
    passage = site.drive(lane, plate)
    site.settle()
    return passage


def sessions(site: SimulatedSite, plate: str) -> list[dict[str, Any]]:
    with site.gateway.store.reader() as db:
        return list(db.query("SELECT * FROM sessions WHERE plate = ?", [plate]))


def test_a_full_car_park_refuses_visitors_but_admits_pass_holders(
    small_site: SimulatedSite,
) -> None:
    now = small_site.clock.now()
    small_site.gateway.service.call(lambda: small_site.gateway.billing.access.issue_pass(
        "monthly", ["沪A12345"], now - timedelta(days=1), now + timedelta(days=30), "李雷",
        actor="office:01", reason="paid"))
    assert drive(small_site, "in1", "粤B11111").opened
    assert drive(small_site, "in1", "粤B22222").opened
    refused = drive(small_site, "in1", "粤B33333")
    holder = drive(small_site, "in1", "沪A12345")
    assert drive(small_site, "out1", "粤B11111").opened
    still_full = drive(small_site, "in1", "粤B33333")  # the pass car holds the space
    assert drive(small_site, "out1", "沪A12345").opened
    after_a_car_left = drive(small_site, "in1", "粤B33333")

    assert not refused.opened and refused.reason == "lot_full"
    assert holder.opened and holder.reason == "pass_entry"
    assert not still_full.opened and after_a_car_left.opened


def test_each_lane_is_told_of_every_entry_and_exit_in_order(
    site: SimulatedSite, broker: MosquittoBroker,
) -> None:
    deltas = Recorder(broker, topics.lane_replica(TEST_SITE, "out1", "delta"),
                      device="monitor-watch1")
    try:
        drive(site, "in1", "粤B12345")
        site.clock.advance(timedelta(hours=1))
        drive(site, "out1", "粤B12345")
        eventually(lambda: len(deltas.payloads()) >= 3, what="three replica deltas")
    finally:
        deltas.close()
    received = [decode(topics.lane_replica(TEST_SITE, "out1", "delta"), p)
                for p in deltas.payloads()]
    kinds = [d.kind for d in received if isinstance(d, ReplicaDelta)]
    versions = [d.version for d in received if isinstance(d, ReplicaDelta)]
    # in, paid at the exit by its QR (the lanes learn the stay is paid), out
    assert kinds[:3] == ["session_opened", "paid", "session_closed"]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)


def _lane_event(site: SimulatedSite, lane: str) -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "seq": 50_000 + site.gateway.service.events_stored,
            "ts": site.clock.now(), "lane": lane}


def test_a_second_exit_of_the_same_car_is_kept_as_a_conflict_not_merged(
    site: SimulatedSite,
) -> None:
    drive(site, "in1", "粤B12345")
    site.clock.advance(timedelta(hours=1))
    drive(site, "out1", "粤B12345")
    (closed,) = sessions(site, "粤B12345")
    site.clock.advance(timedelta(minutes=5))
    # A lane that decided alone reports the same car leaving again.
    site.replay_journal("out1", Passed(**_lane_event(site, "out1"), direction="exit",
                                       plate="粤B12345", correlation_id=uuid.uuid4().hex,
                                       fee_fen=0))
    (after,) = sessions(site, "粤B12345")
    conflicts = site.gateway.reconciler.open_conflicts()
    assert after == closed  # the closed session is untouched
    assert [(c.kind, c.session_id) for c in conflicts] == [
        ("double_exit", closed["session_id"])]


def test_a_car_let_out_by_a_barrier_held_up_for_fire_is_not_billed(
    site: SimulatedSite,
) -> None:
    drive(site, "in1", "粤B12345")
    site.clock.advance(timedelta(hours=3))
    correlation = uuid.uuid4().hex
    site.replay_journal("out1", Decision(**_lane_event(site, "out1"), direction="exit",
                                         action="open", plate="粤B12345", reason="fire_open",
                                         correlation_id=correlation, decided_by="lane",
                                         wait_ms=0.0))
    site.replay_journal("out1", Passed(**_lane_event(site, "out1"), direction="exit",
                                       plate="粤B12345", correlation_id=correlation,
                                       fee_fen=0))
    (session,) = sessions(site, "粤B12345")
    debts = site.gateway.service.call(lambda: site.gateway.billing.payments.debts_for(
        "粤B12345"))
    assert session["state"] == "closed" and session["fee_fen"] == 0
    assert "fire alarm" in session["review"] and debts == []
    assert json.loads(json.dumps(session))["exit_lane"] == "out1"


HELP_ROSTER = """
[alerts]
timezone = "Asia/Shanghai"
shifts = [{ name = "a", start = 08:00:00 }, { name = "b", start = 16:00:00 },
          { name = "c", start = 00:00:00 }]

[[alerts.people]]
id = "gina"
name = "Gina"
role = "guard"
shift = "a"
"""


def test_the_help_button_alerts_the_guard_on_duty_until_the_car_goes_through(
    broker: MosquittoBroker, tmp_path: Path, test_site: ProvisionResult,
) -> None:
    roster = tmp_path / "safety.toml"
    roster.write_text(HELP_ROSTER, encoding="utf-8")
    with SimulatedSite(site=TEST_SITE, broker=broker.address, workdir=tmp_path,
                       clock=ManualClock(SITE_START), entry_lanes=("in1",),
                       exit_lanes=("out1",), safety_file=roster,
                       lane_keys=test_site.device("gateway").lane_keys) as site:
        alerts = site.gateway.alerts
        assert alerts is not None
        drive(site, "in1", "粤B12345")
        site.replay_journal("out1", HelpPressed(**_lane_event(site, "out1")))
        raised = site.gateway.service.call(lambda: alerts.open_alert("help:out1"))
        assert raised is not None and raised.kind == "help"
        told = site.gateway.service.call(lambda: alerts.events(raised.alert_id))
        assert [e["detail"] for e in told if e["event"] == "escalated"] == ["round 0 step 0: gina"]
        site.clock.advance(timedelta(minutes=30))
        drive(site, "out1", "粤B12345")
        eventually(lambda: site.gateway.service.call(
            lambda: alerts.open_alert("help:out1")) is None, what="the help call resolved")


def test_a_pass_issued_in_the_office_reaches_the_lanes_and_a_pay_page_read_sends_nothing(
    site: SimulatedSite, broker: MosquittoBroker,
) -> None:
    deltas = Recorder(broker, topics.lane_replica(TEST_SITE, "in1", "delta"),
                      device="monitor-watch1")
    try:
        now = site.clock.now()
        site.gateway.service.call(lambda: site.gateway.billing.access.issue_pass(
            "monthly", ["沪A12345"], now, now + timedelta(days=30), "李雷", actor="office:01",
            reason="paid"))
        eventually(lambda: bool(deltas.payloads()), what="the pass delta")
        assert site.gateway.service.bill_for("粤B99999") is None  # a read: no delta
        site.gateway.service.call(lambda: site.gateway.billing.access.list_plate(
            "blacklist", "京A00001", "fled", actor="manager:01"))
        eventually(lambda: len(deltas.payloads()) >= 2, what="the list delta")
    finally:
        deltas.close()
    kinds = [decode(topics.lane_replica(TEST_SITE, "in1", "delta"), p).kind  # type: ignore[union-attr]
             for p in deltas.payloads()]
    assert kinds == ["pass_changed", "list_changed"]
