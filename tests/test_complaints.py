"""Complaints answered in time, on a running site (real Mosquitto, gateway, lanes on mock
pins, real SQLite; the clock is stepped): an answer-by time per incident kind, call-backs,
one escalation alert when the time runs out, and the day's tally in the report."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from gateway.records import reports
from gateway.safety.complaints import ComplaintError
from simulator.site import SimulatedSite
from tests.ops_roster import rostered_site

pytestmark = pytest.mark.integration

ZONE = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def rostered(broker: MosquittoBroker, tmp_path: Path,
             test_site: ProvisionResult) -> Iterator[SimulatedSite]:
    with rostered_site(broker, tmp_path, test_site) as running:
        yield running


def test_a_complaint_not_called_back_in_time_alerts_once_and_a_call_back_ends_it(
    rostered: SimulatedSite,
) -> None:
    site = rostered
    gateway, call, clock = site.gateway, site.gateway.service.call, site.clock
    alerts = gateway.alerts
    assert alerts is not None
    complaint = call(lambda: gateway.incidents.open(
        "complaint", description="guard was rude at out1", reported_by="guard:gina",
        contact_phone="13812345678"))
    dispute = call(lambda: gateway.incidents.open(
        "fee_dispute", description="charged for 3 h, stayed 2", reported_by="guard:gina"))
    accident = call(lambda: gateway.incidents.open(
        "accident", description="scrape at pillar 14", reported_by="guard:gina"))
    key = f"overdue:{complaint.incident_id}"

    clock.advance(timedelta(hours=2))
    assert call(lambda: gateway.complaints.check_overdue(clock.now())) == []
    call(lambda: gateway.complaints.callback(
        dispute.incident_id, by="supervisor:sam", outcome="explained the tariff, refunded"))
    with pytest.raises(ComplaintError, match="no answer-by time"):
        call(lambda: gateway.complaints.callback(accident.incident_id, by="supervisor:sam",
                                                 outcome="called the owner"))

    clock.advance(timedelta(hours=23))  # 25 h after: the complaint's 24 h have run out
    assert call(lambda: gateway.complaints.check_overdue(clock.now())) == [
        complaint.incident_id]
    call(lambda: gateway.complaints.check_overdue(clock.now()))  # no storm
    alert = call(lambda: alerts.open_alert(key))
    assert alert is not None and alert.kind == "complaint_overdue"
    told = call(lambda: alerts.events(alert.alert_id))
    assert [e["detail"] for e in told if e["event"] == "escalated"] == [
        "round 0 step 0: gina, sam"]

    done = call(lambda: gateway.complaints.callback(
        complaint.incident_id, by="supervisor:sam", outcome="apologised, guard spoken to",
        reached=True))
    assert done.answered_by == "supervisor:sam" and len(done.callbacks) == 1
    assert call(lambda: alerts.open_alert(key)) is None

    with gateway.store.reader() as db:
        audited = [r["action"] for r in db.query(
            "SELECT action FROM audit_log WHERE subject = ? ORDER BY seq",
            [f"incident:{complaint.incident_id}"])]
        opened_day = reports.daily_summary(db, (clock.now() - timedelta(hours=25))
                                           .astimezone(ZONE).date(), ZONE)
        due_day = reports.daily_summary(db, clock.now().astimezone(ZONE).date(), ZONE)
    assert audited == ["incident.open", "incident.callback"]
    assert opened_day.complaints is not None and due_day.complaints is not None
    assert opened_day.complaints.opened == {"accident": 1, "complaint": 1, "fee_dispute": 1}
    assert opened_day.complaints.answered_in_time == 0  # both are due the next day
    tally = due_day.complaints
    assert (tally.answered_in_time, tally.answered_late, tally.overdue) == (1, 1, 0)


def test_closing_an_overdue_complaint_resolves_its_alert(rostered: SimulatedSite) -> None:
    site = rostered
    gateway, call, clock = site.gateway, site.gateway.service.call, site.clock
    alerts = gateway.alerts
    assert alerts is not None
    complaint = call(lambda: gateway.incidents.open(
        "complaint", description="barrier hit my car", reported_by="guard:gina"))
    clock.advance(timedelta(hours=25))
    call(lambda: gateway.complaints.check_overdue(clock.now()))
    assert call(lambda: alerts.open_alert(f"overdue:{complaint.incident_id}")) is not None
    call(lambda: gateway.incidents.close(complaint.incident_id, outcome="insurer paid",
                                         actor="supervisor:sam"))
    call(lambda: gateway.complaints.check_overdue(clock.now()))
    assert call(lambda: alerts.open_alert(f"overdue:{complaint.incident_id}")) is None
