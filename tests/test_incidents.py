"""Incidents carry the evidence to answer a complaint, and every step is in the audit log."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from gateway.records.audit import AuditLog, read_entries, verify
from gateway.safety.incidents import IncidentDesk, IncidentError, UnknownIncidentError
from gateway.storage.store import GatewayStore
from parkguard.clock import ManualClock, utc_iso
from simulator.site import SimulatedSite

T = TypeVar("T")
VISITOR = "粤B12345"


def on_worker(site: SimulatedSite, work: Callable[[IncidentDesk], T]) -> T:
    """Run a desk action on the gateway's worker, as the dashboard will."""
    app = site.gateway

    def run() -> T:
        return work(IncidentDesk(app.store.db, clock=site.clock, audit=app.audit))

    return app.service.call(run)


@pytest.mark.integration
def test_a_fee_dispute_on_a_real_exit_carries_the_quote_the_reads_and_the_match(
    site: SimulatedSite,
) -> None:
    site.drive("in1", VISITOR)
    site.settle()
    site.clock.advance(timedelta(minutes=150))
    leaving = site.drive("out1", "粤B1234S")  # a dirty read, fuzzily matched
    site.settle()
    with site.gateway.store.reader() as db:
        session_id = db.execute("SELECT session_id FROM sessions").fetchone()[0]

    opened = on_worker(site, lambda desk: desk.open(
        "fee_dispute", lane="out1", session_id=session_id, reported_by="guard:0042",
        description="driver says 2.5 h cannot cost ¥11", contact_phone="13812345678"))

    evidence = opened.evidence
    bill = evidence["exit_decision"]["bill"]
    assert bill["fee_fen"] == leaving.fee_fen == 1100
    lines = bill["quote"]["lines"]
    assert lines and sum(line["fen"] for line in lines) >= bill["quote"]["total_fen"]
    assert all(line["label_zh"] and line["label_en"] for line in lines)
    assert evidence["exit_decision"]["match"]["plate"] == VISITOR
    assert evidence["exit_decision"]["match"]["score"] > 0
    assert [r["plate"] for r in evidence["entry_reads"]][:1] == [VISITOR]
    assert [r["plate"] for r in evidence["exit_reads"]][:1] == ["粤B1234S"]
    # paid by the exit lane's QR (the pay page, then the provider's callback)
    assert [(p["method"], p["amount_fen"]) for p in evidence["payments"]] == [("prepay", 1100)]
    reads = [*evidence["entry_reads"], *evidence["exit_reads"]]
    assert evidence["snapshots"] == [ref for r in reads for ref in r["snapshots"]]
    assert {ref["url"] for ref in evidence["snapshots"]} == {
        f"/evidence/{r['event_id']}/{image}.jpg" for r in reads for image in ("plate", "car")}
    assert evidence["session"]["plate"] == VISITOR
    assert opened.contact_phone_masked == "138****5678" and opened.state == "open"

    payment_id = evidence["payments"][0]["payment_id"]
    refund = site.gateway.service.call(lambda: site.gateway.billing.payments.refund(
        payment_id, 300, actor="manager:01", reason="first 30 minutes are free"))
    on_worker(site, lambda desk: desk.add_note(opened.incident_id, "quote checked with driver",
                                               author="manager:01"))
    closed = on_worker(site, lambda desk: desk.close(
        opened.incident_id, outcome="refunded ¥3", actor="manager:01",
        refund_id=refund.refund_id))

    assert (closed.state, closed.refund_id, closed.outcome) == ("closed", refund.refund_id,
                                                                  "refunded ¥3")
    assert [note.text for note in closed.notes] == ["quote checked with driver"]
    assert closed.evidence == opened.evidence  # the file keeps what was shown at the time
    actions = [e.action for e in site.gateway.audit.entries()
               if e.subject == f"incident:{opened.incident_id}"]
    assert actions == ["incident.open", "incident.note", "incident.close"]


# --- without a broker: the desk on a real SQLite file ---------------------------------------

START = datetime(2026, 5, 6, 2, 0, tzinfo=UTC)


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[IncidentDesk]:
    store = GatewayStore.open(tmp_path / "gateway.db")
    clock = ManualClock(START)
    yield IncidentDesk(store.db, clock=clock, audit=AuditLog(store.db, clock=clock))
    store.close()


def test_an_accident_at_a_lane_attaches_what_the_lane_just_read(desk: IncidentDesk) -> None:
    for minutes, plate in ((-10, "粤A00001"), (-2, "粤A00002"), (-1, "粤A00003")):
        desk.db.table("events").insert({
            "event_id": f"e{plate}", "lane": "in1", "seq": 10 + minutes, "type": "plate_read",
            "ts": utc_iso(START + timedelta(minutes=minutes)), "received_at": utc_iso(START),
            "payload": json.dumps({"plate": plate, "confidence": 0.9, "reader": "sim",
                                   "snapshot": f"snap/{plate}.jpg"}),
        })
    incident = desk.open("accident", lane="in1", reported_by="guard:0042",
                         description="car touched the barrier arm")

    assert [r["plate"] for r in incident.evidence["lane_reads"]] == ["粤A00003", "粤A00002"]
    assert [ref["url"] for ref in incident.evidence["lane_reads"][0]["snapshots"]] == [
        "/evidence/e粤A00003/plate.jpg", "/evidence/e粤A00003/car.jpg"]
    assert len(incident.evidence["snapshots"]) == 4  # both reads' plate crop and whole view
    assert incident.contact_phone_masked == "" and incident.kind_label == "事故 accident"


def test_the_phone_is_stored_shown_masked_and_revealed_only_with_an_audit_entry(
    desk: IncidentDesk,
) -> None:
    incident = desk.open("damage", reported_by="guard:0042", description="scratched door",
                         contact_phone="13812345678")
    opened = next(read_entries(desk.db, last=1))
    assert "13812345678" not in json.dumps(opened.after, ensure_ascii=False)

    assert desk.contact_phone(incident.incident_id, actor="manager:01",
                              reason="call the owner back") == "13812345678"
    assert next(read_entries(desk.db, last=1)).action == "incident.contact_reveal"
    assert verify(desk.db).ok


def test_listing_filters_by_state_and_kind(desk: IncidentDesk) -> None:
    first = desk.open("damage", reported_by="guard:1", description="dent")
    desk.open("other", reported_by="guard:2", description="lost keys")
    desk.close(first.incident_id, outcome="owner informed", actor="manager:01")

    assert [i.kind for i in desk.incidents(state="open")] == ["other"]
    assert [i.state for i in desk.incidents(kind="damage")] == ["closed"]
    assert len(desk.incidents()) == 2


def test_bad_requests_are_refused_and_write_nothing(desk: IncidentDesk) -> None:
    with pytest.raises(IncidentError, match="kind"):
        desk.open("fire", reported_by="guard:1", description="x")  # type: ignore[arg-type]
    with pytest.raises(IncidentError, match="no session"):
        desk.open("fee_dispute", session_id="s-nope", reported_by="guard:1", description="x")
    with pytest.raises(IncidentError, match="description"):
        desk.open("damage", reported_by="guard:1", description="  ")
    with pytest.raises(UnknownIncidentError):
        desk.incident("inc-missing")
    assert desk.incidents() == []

    incident = desk.open("damage", reported_by="guard:1", description="dent")
    with pytest.raises(IncidentError, match="no refunds row"):
        desk.close(incident.incident_id, outcome="refunded", actor="m:1", refund_id="r-x")
    desk.close(incident.incident_id, outcome="no fault found", actor="m:1")
    with pytest.raises(IncidentError, match="closed"):
        desk.add_note(incident.incident_id, "late note", author="m:1")
    assert [e.action for e in read_entries(desk.db)] == ["incident.open", "incident.close"]
