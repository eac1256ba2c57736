"""The pass and list desk on real SQLite files: issue, renew, revoke, presence, audit, replicas."""

from __future__ import annotations

import doctest
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import gateway.money.passes
from gateway.money.passes import AccessDesk, PlateConflictError, UnknownPassError
from gateway.records.audit import AuditLog, verify
from gateway.storage.database import open_database
from parkguard.clock import ManualClock
from parkguard.core.access import (
    AccessError,
    Pass,
    billable_span,
    entry_access,
    list_entry_from_json,
    pass_from_json,
)

START = datetime(2026, 5, 10, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
DAY = timedelta(days=1)
A, B, C = "沪A12345", "沪B67890", "京AD12345"


class Site:
    """One gateway database with an access desk and its audit log on it."""

    def __init__(self, path: Path, clock: ManualClock | None = None) -> None:
        self.clock = clock or ManualClock(START)
        self.db = open_database(path)
        self.audit = AuditLog(self.db, clock=self.clock)
        self.desk = AccessDesk(self.db, clock=self.clock, audit=self.audit)

    def monthly(self, plate: str = A, *, days: int = 30) -> Pass:
        now = self.clock.now()
        return self.desk.issue_pass("monthly", [plate], now, now + days * DAY, "李雷",
                                    "office:02", "paid, receipt 8812")

    def family(self, *plates: str, days: int = 30) -> Pass:
        now = self.clock.now()
        return self.desk.issue_pass("family", list(plates or (A, B)), now, now + days * DAY,
                                    "王芳", "office:02", "paid, receipt 8813",
                                    phone="138-1234-5678", vehicle_class="small")

    def actions(self) -> list[str]:
        return [entry.action for entry in self.audit.entries()]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    made = Site(tmp_path / "gateway.db")
    yield made
    made.db.close()


def test_module_examples_run() -> None:
    assert doctest.testmod(gateway.money.passes).failed == 0


def test_the_schema_is_strict_with_integer_utc_times(site: Site) -> None:
    for table in ("passes", "pass_plates", "access_lists", "pass_presence"):
        assert "STRICT" in site.db.table(table).schema.upper()
    pass_ = site.monthly()
    row = next(iter(site.db.table("passes").rows))
    assert row["valid_from_ms"] == int(START.timestamp() * 1000)
    assert pass_.valid_from == START


def test_a_monthly_pass_admits_its_plate_and_nobody_else(site: Site) -> None:
    pass_ = site.monthly("沪a·12345", days=30)
    assert pass_.plates == frozenset({A})
    access = site.desk.entry_access(A)
    assert (access.kind, access.pass_id, access.days_left) == ("pass", pass_.pass_id, 30)
    assert site.desk.entry_access(B).reason == "no_pass"


def test_a_family_pass_lets_one_car_in_and_the_second_pays_as_visitor(site: Site) -> None:
    pass_ = site.family(A, B, C)
    assert site.desk.occupy(pass_.pass_id, "s-1", A) is True
    second = site.desk.entry_access(B)
    assert (second.kind, second.reason, second.pass_id) == ("visitor", "pass_in_use", None)
    assert second.display_zh == "家庭卡已有车在场 按临时车计费"
    assert site.desk.release("s-1") is True
    assert site.desk.entry_access(B).kind == "pass"


def test_release_is_idempotent_and_harmless_for_visitors(site: Site) -> None:
    pass_ = site.monthly()
    site.desk.occupy(pass_.pass_id, "s-1", A)
    assert site.desk.release("s-1") is True
    assert site.desk.release("s-1") is False
    assert site.desk.release("s-visitor") is False
    assert site.desk.inside(pass_.pass_id) == []


def test_occupy_repeated_for_one_session_counts_one_car(site: Site) -> None:
    pass_ = site.family()
    assert site.desk.occupy(pass_.pass_id, "s-1", A)
    assert site.desk.occupy(pass_.pass_id, "s-1", "沪a12345")
    assert site.desk.inside(pass_.pass_id) == ["s-1"]


def test_a_car_let_in_offline_beyond_the_limit_is_recorded_but_billed_as_visitor(
        site: Site) -> None:
    pass_ = site.family()
    assert site.desk.occupy(pass_.pass_id, "s-1", A)
    assert site.desk.occupy(pass_.pass_id, "s-2", B) is False
    assert site.desk.inside(pass_.pass_id) == ["s-1", "s-2"]
    assert site.desk.pass_of_session("s-1") == pass_
    assert site.desk.pass_of_session("s-2") is None


def test_occupy_refuses_unknown_passes_plates_and_sessions_on_another_pass(site: Site) -> None:
    pass_ = site.family()
    other = site.monthly(C)
    with pytest.raises(UnknownPassError, match="pass_id: no pass 'nope'"):
        site.desk.occupy("nope", "s-1", A)
    with pytest.raises(AccessError, match=f"plate: {C} is not on pass"):
        site.desk.occupy(pass_.pass_id, "s-1", C)
    site.desk.occupy(pass_.pass_id, "s-1", A)
    with pytest.raises(AccessError, match="session_id: session s-1 is already on pass"):
        site.desk.occupy(other.pass_id, "s-1", C)


def test_presence_survives_a_restart_of_the_gateway(tmp_path: Path) -> None:
    first = Site(tmp_path / "g.db")
    pass_ = first.family()
    first.desk.occupy(pass_.pass_id, "s-1", A)
    first.db.close()
    again = Site(tmp_path / "g.db", clock=first.clock)  # migrations applied once
    assert again.desk.entry_access(B).reason == "pass_in_use"
    assert again.desk.pass_of_session("s-1") == pass_
    assert again.desk.get_pass(pass_.pass_id).phone == "13812345678"
    assert verify(again.db).ok
    again.db.close()


def test_a_pass_lapsing_while_parked_bills_from_the_lapse(site: Site) -> None:
    pass_ = site.monthly(days=2)
    site.desk.occupy(pass_.pass_id, "s-1", A)
    entered = site.clock.now()
    site.clock.advance(3 * DAY)
    assert site.desk.entry_access(A).reason == "pass_expired"
    covering = site.desk.pass_of_session("s-1")
    assert covering is not None
    assert billable_span(entered, site.clock.now(), covering) == (
        pass_.valid_until, site.clock.now())


def test_a_renewal_while_parked_covers_the_whole_stay(site: Site) -> None:
    pass_ = site.monthly(days=2)
    site.desk.occupy(pass_.pass_id, "s-1", A)
    site.clock.advance(DAY)
    renewed = site.desk.renew(pass_.pass_id, pass_.valid_until + 30 * DAY, "office:02",
                              "paid June")
    site.clock.advance(2 * DAY)
    covering = site.desk.pass_of_session("s-1")
    assert covering == renewed
    assert billable_span(START, site.clock.now(), covering) is None


def test_a_renewal_must_extend_the_pass(site: Site) -> None:
    pass_ = site.monthly()
    with pytest.raises(AccessError, match="valid_until: a renewal must end after"):
        site.desk.renew(pass_.pass_id, pass_.valid_until - DAY, "office:02", "typo")


def test_a_lapsed_pass_can_be_renewed(site: Site) -> None:
    pass_ = site.monthly(days=1)
    site.clock.advance(5 * DAY)
    site.desk.renew(pass_.pass_id, site.clock.now() + 30 * DAY, "office:02", "came back")
    assert site.desk.entry_access(A).pass_id == pass_.pass_id


def test_a_revoked_pass_grants_nothing_and_cannot_be_changed(site: Site) -> None:
    pass_ = site.monthly()
    site.desk.occupy(pass_.pass_id, "s-1", A)
    site.clock.advance(DAY)
    revoked = site.desk.revoke(pass_.pass_id, "manager:01", "refunded")
    assert revoked.revoked_at == site.clock.now()
    assert site.desk.entry_access(A).reason == "pass_revoked"
    assert site.desk.passes_for(A) == []
    assert site.desk.passes_for(A, include_history=True) == [revoked]
    site.clock.advance(DAY)
    assert billable_span(START, site.clock.now(), revoked) == (START + DAY, site.clock.now())
    changes: list[Callable[[], object]] = [
        lambda: site.desk.revoke(pass_.pass_id, "manager:01", "again"),
        lambda: site.desk.renew(pass_.pass_id, START + 90 * DAY, "o", "r"),
        lambda: site.desk.set_plates(pass_.pass_id, [B], "o", "r"),
    ]
    for change in changes:
        with pytest.raises(AccessError, match=r"pass_id: .* was revoked"):
            change()
    site.monthly(A)  # the plate is free for a new pass


def test_a_plate_may_be_on_only_one_live_pass(site: Site) -> None:
    first = site.monthly(A)
    with pytest.raises(PlateConflictError, match=f"plates: {A} is already on live pass "
                                                 f"{first.pass_id}"):
        site.family(B, "沪a12345")
    assert site.db.table("passes").count == 1
    later = first.valid_until
    site.desk.issue_pass("monthly", [A], later, later + 30 * DAY, "李雷", "office:02",
                         "next month, paid ahead")  # windows that do not overlap are fine
    assert [p.valid_from for p in site.desk.passes_for(A)] == [START, later]


def test_set_plates_changes_who_gets_in_and_checks_conflicts(site: Site) -> None:
    pass_ = site.family(A, B)
    site.monthly(C)
    changed = site.desk.set_plates(pass_.pass_id, [A, "粤B12345"], "office:02", "new car")
    assert changed.plates == frozenset({A, "粤B12345"})
    assert site.desk.entry_access(B).reason == "no_pass"
    assert site.desk.entry_access("粤B12345").pass_id == pass_.pass_id
    with pytest.raises(PlateConflictError):
        site.desk.set_plates(pass_.pass_id, [A, C], "office:02", "mistake")
    with pytest.raises(AccessError, match="plates: a family pass has 2 to 5"):
        site.desk.set_plates(pass_.pass_id, [A], "office:02", "sold a car")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"plates": [A, B]}, "plates: a monthly pass has exactly one plate, got 2"),
    ({"plates": ["ABC"]}, "plates: 'ABC' is not a plate"),
    ({"plates": A}, "plates: give a list of plates"),
    ({"actor": " "}, "actor: must be non-empty"),
    ({"reason": ""}, "reason: must be non-empty"),
    ({"holder": ""}, "holder: "),
    ({"valid_until": START}, "valid_until: "),
    ({"valid_from": START - 60 * DAY, "valid_until": START - 30 * DAY},
     r"valid_until: .* is already past"),
    ({"valid_from": datetime(2026, 5, 1)}, "valid_from: expected a timezone-aware"),
    ({"phone": "12"}, "phone: "),
])
def test_bad_passes_are_refused_naming_the_field_and_leave_no_trace(
        site: Site, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"kind": "monthly", "plates": [A], "valid_from": START,
                               "valid_until": START + 30 * DAY, "holder": "李雷",
                               "actor": "office:02", "reason": "paid"}
    with pytest.raises(AccessError, match=message):
        site.desk.issue_pass(**(args | kwargs))  # type: ignore[arg-type]
    assert site.db.table("passes").count == 0
    assert site.actions() == []


def test_lists_take_precedence_and_expired_entries_are_ignored(site: Site) -> None:
    site.monthly(A)
    site.desk.list_plate("whitelist", B, "landlord's car", "manager:01")
    site.desk.list_plate("blacklist", A, "cloned plate reported", "manager:01",
                         until=START + DAY)
    refused = site.desk.entry_access(A)
    assert (refused.kind, refused.note) == ("blacklisted", "cloned plate reported")
    assert site.desk.entry_access(B).kind == "whitelisted"
    site.clock.advance(DAY)
    assert site.desk.entry_access(A).kind == "pass"
    assert site.desk.lists_for(A) == []


def test_unlisting_removes_the_entry_and_a_missing_one_is_refused(site: Site) -> None:
    site.desk.list_plate("blacklist", A, "unpaid fees", "manager:01")
    site.desk.unlist("blacklist", "沪a12345", "manager:01", "fees paid")
    assert site.desk.entry_access(A).kind == "visitor"
    with pytest.raises(AccessError, match=f"plate: {A} is not on the blacklist"):
        site.desk.unlist("blacklist", A, "manager:01", "again")
    with pytest.raises(AccessError, match="reason: "):
        site.desk.list_plate("whitelist", A, "", "manager:01")


def test_every_change_is_audited_with_before_and_after_and_the_phone_masked(
        site: Site) -> None:
    pass_ = site.family()
    site.desk.renew(pass_.pass_id, pass_.valid_until + 30 * DAY, "office:02", "paid June")
    site.desk.set_plates(pass_.pass_id, [A, C], "office:02", "new car")
    site.desk.revoke(pass_.pass_id, "manager:01", "refund")
    site.desk.list_plate("whitelist", B, "staff", "manager:01")
    site.desk.list_plate("whitelist", B, "staff, until June", "manager:01",
                         until=START + 20 * DAY)
    site.desk.unlist("whitelist", B, "manager:01", "left the company")
    site.desk.list_plate("blacklist", C, "fraud", "manager:01")
    site.desk.unlist("blacklist", C, "manager:01", "cleared")
    assert site.actions() == ["pass.issue", "pass.renew", "pass.set_plates", "pass.revoke",
                              "whitelist.add", "whitelist.add", "whitelist.remove",
                              "blacklist.add", "blacklist.remove"]
    entries = list(site.audit.entries())
    issue = entries[0]
    assert (issue.actor, issue.subject, issue.reason) == (
        "office:02", f"pass:{pass_.pass_id}", "paid, receipt 8813")
    assert isinstance(issue.after, dict) and issue.after["phone"] == "138****5678"
    assert all("13812345678" not in str(e.before) + str(e.after) for e in entries)
    assert entries[2].before == {"plates": sorted([A, B])}
    relisted = entries[5]
    assert isinstance(relisted.before, dict) and relisted.before["reason"] == "staff"
    assert verify(site.db).ok


def test_occupy_and_release_are_not_audited(site: Site) -> None:
    pass_ = site.monthly()
    site.desk.occupy(pass_.pass_id, "s-1", A)
    site.desk.release("s-1")
    assert site.actions() == ["pass.issue"]


def test_a_lane_deciding_from_the_snapshot_agrees_with_the_desk(site: Site) -> None:
    family = site.family(A, B)
    expired = site.monthly(C, days=1)
    site.desk.list_plate("blacklist", "粤B12345", "fraud", "manager:01")
    site.desk.list_plate("whitelist", "京A1234警", "police", "manager:01", until=START + DAY)
    site.desk.occupy(family.pass_id, "s-1", A)
    site.clock.advance(2 * DAY)
    snapshot = site.desk.snapshot()
    assert snapshot["occupied"] == [family.pass_id]
    assert [row["session_id"] for row in snapshot["inside"]] == ["s-1"]
    assert "13812345678" not in str(snapshot) and "王芳" not in str(snapshot)
    passes = [pass_from_json(p) for p in snapshot["passes"]]
    lists = [list_entry_from_json(e) for e in snapshot["lists"]]
    assert {p.pass_id for p in passes} == {family.pass_id, expired.pass_id}
    for plate in (A, B, C, "粤B12345", "京A1234警", "沪E00001"):
        lane = entry_access(plate, site.clock.now(), passes=passes, lists=lists,
                            occupied=set(snapshot["occupied"]))
        assert lane == site.desk.entry_access(plate), plate


def test_passes_long_lapsed_leave_the_snapshot_and_read_as_no_pass(site: Site) -> None:
    site.monthly(days=1)
    site.clock.advance(40 * DAY)
    assert site.desk.snapshot()["passes"] == []
    assert site.desk.entry_access(A).reason == "no_pass"
    assert len(site.desk.passes_for(A, include_history=True)) == 1
