"""The shift handover log on a running site (real Mosquitto, gateway, lanes on mock pins,
real SQLite): open items gathered, keys and cash typed in, accepted only by another login,
both audited, unaccepted items carried over, and the day's handovers in the daily report."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from gateway.records import reports
from gateway.safety.handover import HandoverError
from simulator.site import SimulatedSite
from tests.ops_roster import rostered_site
from wire.contract.messages import Fault

pytestmark = pytest.mark.integration


@pytest.fixture
def rostered(broker: MosquittoBroker, tmp_path: Path,
             test_site: ProvisionResult) -> Iterator[SimulatedSite]:
    with rostered_site(broker, tmp_path, test_site) as running:
        yield running


def test_the_outgoing_guard_hands_over_what_is_open_and_the_incoming_guard_accepts(
    rostered: SimulatedSite,
) -> None:
    site = rostered
    gateway = site.gateway
    call = gateway.service.call
    incident = call(lambda: gateway.incidents.open(
        "accident", description="scrape at B2 pillar 14", reported_by="guard:gina",
        lane="out1"))
    call(lambda: gateway.holds.hold("粤B12345", reason="scraped a pillar", actor="guard:gina",
                                    incident_id=incident.incident_id))
    site.replay_journal("out1", Fault(
        event_id=uuid.uuid4().hex, seq=70_000, ts=site.clock.now(), lane="out1",
        code="display_failed", detail="no answer on RS-485"))
    site.settle()

    handover = call(lambda: gateway.handover.start(
        "guard:gina", keys=["booth key", "barrier cabinet key"],
        cash=[("booth float", 20_000)], note="out1 display dark"))
    kinds = [item.kind for item in handover.items]
    assert handover.state == "waiting" and handover.from_shift == "a"
    assert kinds.count("incident") == 1 and kinds.count("hold") == 1
    # the accident's own alert; no car came to the exit (no hold alert)
    assert kinds.count("fault") == 1 and kinds.count("alarm") == 1
    assert any("事故" in item.text for item in handover.items if item.kind == "alarm")
    assert kinds.count("key") == 2 and handover.cash_fen == 20_000

    with pytest.raises(HandoverError, match="own handover"):
        call(lambda: gateway.handover.accept(handover.handover_id, "staff:gina"))
    site.clock.advance(timedelta(hours=6))  # 16:00: shift b takes over
    accepted = call(lambda: gateway.handover.accept(handover.handover_id, "guard:bo"))
    assert (accepted.state, accepted.accepted_by, accepted.to_shift) == (
        "accepted", "guard:bo", "b")
    assert call(gateway.handover.waiting) is None

    with gateway.store.reader() as db:
        audited = [(r["action"], r["actor"]) for r in db.query(
            "SELECT action, actor FROM audit_log WHERE subject = ? ORDER BY seq",
            [f"handover:{handover.handover_id}"])]
        day = reports.daily_summary(db, site.clock.now().astimezone(
            ZoneInfo("Asia/Shanghai")).date(), ZoneInfo("Asia/Shanghai"))
    assert audited == [("handover.start", "guard:gina"), ("handover.accept", "guard:bo")]
    (row,) = day.handovers
    assert (row.outgoing, row.accepted_by, row.state, row.cash_fen) == (
        "guard:gina", "guard:bo", "accepted", 20_000)
    assert row.items["key"] == 2


def test_an_unaccepted_handover_carries_its_items_into_the_next(
    rostered: SimulatedSite,
) -> None:
    gateway = rostered.gateway
    call = gateway.service.call
    first = call(lambda: gateway.handover.start("guard:gina", keys=["booth key"],
                                                cash=[("float", 5_000)]))
    rostered.clock.advance(timedelta(hours=8))
    second = call(lambda: gateway.handover.start("guard:bo", keys=["store room key"]))
    assert call(lambda: gateway.handover.handover(first.handover_id)).state == "superseded"
    assert second.carried_from == first.handover_id
    assert sorted(i.text for i in second.items if i.kind == "key") == [
        "booth key", "store room key"]
    assert second.cash_fen == 5_000
    assert call(gateway.handover.waiting) == second


def test_typed_items_are_bounded(rostered: SimulatedSite) -> None:
    gateway = rostered.gateway
    with pytest.raises(HandoverError, match="cash"):
        gateway.service.call(lambda: gateway.handover.start("guard:gina",
                                                            cash=[("x", -1)]))
    with pytest.raises(HandoverError, match="key"):
        gateway.service.call(lambda: gateway.handover.start("guard:gina", keys=["k" * 201]))
