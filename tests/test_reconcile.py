"""Offline decisions that do not add up become conflicts for review, resolved with an audit."""

from __future__ import annotations

import doctest
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import gateway.lanes.reconcile
from gateway.lanes.reconcile import (
    ConflictResolvedError,
    ReconcileError,
    Reconciler,
    UnknownConflictError,
    judge_entry,
    judge_exit,
)
from gateway.records.audit import AuditLog, verify
from gateway.storage.store import GatewayStore
from parkguard.clock import ManualClock, utc_iso
from wire.contract.messages import Direction, Passed

START = datetime(2026, 5, 6, 2, 0, tzinfo=UTC)
PLATE = "粤B12345"


def passed(lane: str, direction: Direction, event_id: str, *, plate: str | None = PLATE,
           at: datetime = START) -> Passed:
    return Passed(event_id=event_id, seq=1, ts=at, lane=lane, direction=direction, plate=plate,
                  correlation_id=f"corr-{event_id}", session_id=None, fee_fen=0)


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(gateway.lanes.reconcile).failed == 0


# --- pure rules ------------------------------------------------------------------------------

OPEN = {"session_id": "s-1", "state": "open", "entry_lane": "in1",
        "entry_at": "2026-05-06T01:00:00.000Z", "entry_event_id": "in1-ev-1"}
CLOSED = {**OPEN, "state": "closed", "exit_lane": "out1", "exit_at": "2026-05-06T01:30:00.000Z",
          "exit_event_id": "out1-ev-1"}


@pytest.mark.parametrize(("session", "event_id", "kind"), [
    (None, "out2-ev-1", "exit_without_entry"),
    (OPEN, "out2-ev-1", None),
    (CLOSED, "out2-ev-1", "double_exit"),
    (CLOSED, "out1-ev-1", None),  # the very exit that closed it, replayed
])
def test_judge_exit(session: dict[str, Any] | None, event_id: str, kind: str | None) -> None:
    finding = judge_exit(lane="out2", plate=PLATE, event_id=event_id, session=session)
    assert (finding and finding.kind) == kind


@pytest.mark.parametrize(("inside", "decided_by", "event_id", "kind"), [
    (None, "lane", "in2-ev-1", None),
    (OPEN, "lane", "in2-ev-1", "entry_while_inside"),
    (OPEN, "gateway", "in2-ev-1", None),  # the gateway answers already_inside instead
    (OPEN, "lane", "in1-ev-1", None),  # the session this passage opened itself
    (CLOSED, "lane", "in2-ev-1", None),
])
def test_judge_entry(inside: dict[str, Any] | None, decided_by: Any, event_id: str,
                     kind: str | None) -> None:
    finding = judge_entry(lane="in2", plate=PLATE, event_id=event_id, decided_by=decided_by,
                          inside=inside)
    assert (finding and finding.kind) == kind


def test_a_finding_names_the_lanes_and_the_session_for_the_person_reviewing_it() -> None:
    finding = judge_exit(lane="out2", plate=PLATE, event_id="out2-ev-1", session=CLOSED)
    assert finding is not None and finding.session_id == "s-1"
    assert "out2" in finding.detail and "out1" in finding.detail and PLATE in finding.detail


# --- the table -------------------------------------------------------------------------------


@dataclass
class Desk:
    store: GatewayStore
    clock: ManualClock
    audit: AuditLog
    reconciler: Reconciler

    def session(self, session_id: str, *, state: str = "open", exit_at: datetime | None = None,
                plate: str = PLATE) -> dict[str, Any]:
        row = {"session_id": session_id, "plate": plate, "state": state, "entry_lane": "in1",
               "entry_at": utc_iso(START - timedelta(hours=1)),
               "entry_event_id": f"in1-{session_id}", "fee_fen": 0, "access": "visitor"}
        if state == "closed":
            row |= {"exit_lane": "out1", "exit_at": utc_iso(exit_at or START),
                    "exit_event_id": f"out1-{session_id}"}
        self.store.db.table("sessions").insert(row)
        found = self.store.session(session_id)
        assert found is not None
        return found


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    store = GatewayStore.open(tmp_path / "gateway.db")
    clock = ManualClock(START + timedelta(minutes=5))
    audit = AuditLog(store.db, clock=clock)
    yield Desk(store, clock, audit, Reconciler(store.db, clock=clock, audit=audit))
    store.close()


def test_an_exit_with_no_session_and_no_recent_visit_is_an_exit_without_entry(
    desk: Desk
) -> None:
    desk.session("s-old", state="closed", exit_at=START - timedelta(days=2))
    conflict = desk.reconciler.check_exit(passed("out2", "exit", "out2-ev-9"), None, "lane")
    assert conflict is not None
    assert (conflict.kind, conflict.lane, conflict.plate, conflict.state) == (
        "exit_without_entry", "out2", PLATE, "open")
    assert conflict.decided_by == "lane"


def test_a_second_exit_of_a_plate_that_just_left_is_a_double_exit(desk: Desk) -> None:
    desk.session("s-1", state="closed", exit_at=START - timedelta(minutes=20))
    conflict = desk.reconciler.check_exit(passed("out2", "exit", "out2-ev-9"), None, "lane")
    assert conflict is not None
    assert (conflict.kind, conflict.session_id) == ("double_exit", "s-1")


def test_an_exit_closing_its_open_session_is_no_conflict(desk: Desk) -> None:
    session = desk.session("s-1")
    assert desk.reconciler.check_exit(passed("out1", "exit", "out1-ev-9"), session,
                                      "lane") is None
    assert desk.reconciler.open_conflicts() == []


def test_an_offline_entry_of_a_plate_already_inside_is_flagged(desk: Desk) -> None:
    inside = desk.session("s-1")
    conflict = desk.reconciler.check_entry(passed("in2", "entry", "in2-ev-4"), inside, "lane")
    assert conflict is not None
    assert (conflict.kind, conflict.session_id) == ("entry_while_inside", "s-1")
    assert desk.reconciler.check_entry(passed("in2", "entry", "in2-ev-5"), None, "lane") is None


def test_a_replayed_event_finds_its_conflict_instead_of_making_another(desk: Desk) -> None:
    event = passed("out2", "exit", "out2-ev-9", plate=None)
    first = desk.reconciler.check_exit(event, None, "lane")
    again = desk.reconciler.check_exit(event, None, "lane")
    assert first is not None and again is not None
    assert first.id == again.id
    assert len(desk.reconciler.open_conflicts()) == 1
    assert first.plate == ""


def test_resolving_a_conflict_closes_it_and_writes_a_verifiable_audit_entry(desk: Desk) -> None:
    conflict = desk.reconciler.check_exit(passed("out2", "exit", "out2-ev-9"), None, "lane")
    assert conflict is not None
    desk.clock.advance(timedelta(hours=1))
    resolved = desk.reconciler.resolve(conflict.id, "guard:wang",
                                       "CCTV: tailgated in behind 粤B1, fee taken in cash")
    assert (resolved.state, resolved.resolved_by) == ("resolved", "guard:wang")
    assert resolved.resolved_at == utc_iso(desk.clock.now())
    assert desk.reconciler.open_conflicts() == []
    (entry,) = [e for e in desk.audit.entries() if e.action == "conflict.resolve"]
    assert (entry.actor, entry.subject) == ("guard:wang", f"conflict:{conflict.id}")
    assert verify(desk.store.db).ok


def test_a_conflict_is_resolved_once(desk: Desk) -> None:
    conflict = desk.reconciler.check_exit(passed("out2", "exit", "out2-ev-9"), None, "lane")
    assert conflict is not None
    desk.reconciler.resolve(conflict.id, "guard:wang", "checked CCTV")
    with pytest.raises(ConflictResolvedError, match="guard:wang"):
        desk.reconciler.resolve(conflict.id, "guard:li", "checked again")


@pytest.mark.parametrize(("actor", "reason", "says"), [
    ("", "checked", "actor"), ("guard:wang", "  ", "reason"),
])
def test_a_resolution_needs_who_and_why(desk: Desk, actor: str, reason: str, says: str) -> None:
    conflict = desk.reconciler.check_exit(passed("out2", "exit", "out2-ev-9"), None, "lane")
    assert conflict is not None
    with pytest.raises(ReconcileError, match=says):
        desk.reconciler.resolve(conflict.id, actor, reason)
    assert desk.reconciler.get(conflict.id).state == "open"


def test_resolving_an_unknown_conflict_says_so(desk: Desk) -> None:
    with pytest.raises(UnknownConflictError):
        desk.reconciler.resolve(404, "guard:wang", "checked")


def test_the_conflicts_table_is_strict(desk: Desk) -> None:
    sql = desk.store.db.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'conflicts'").fetchone()[0]
    assert sql.rstrip().endswith("STRICT")
