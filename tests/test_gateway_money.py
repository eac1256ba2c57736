"""Money at the gate, end to end through the real broker: passes, lists, merchant coupons,
prepayment with grace, payment codes journaled offline, debts at the next entry."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import pytest

from gateway.money.billing import Billing
from gateway.money.merchants import CouponGrant
from gateway.money.payments import BadSignatureError
from parkguard.core.ledger import trial_balance
from simulator.site import SimulatedSite
from wire.contract.messages import Passed, PaymentCode

pytestmark = pytest.mark.integration

T = TypeVar("T")
VISITOR = "粤B12345"


def office(site: SimulatedSite, work: Callable[[Billing], T]) -> T:
    """An office action, run on the gateway's worker as the dashboard will run it."""
    billing = site.gateway.billing
    return site.gateway.service.call(lambda: work(billing))


def sessions(site: SimulatedSite, plate: str) -> list[dict[str, Any]]:
    with site.gateway.store.reader() as db:
        return list(db.query("SELECT * FROM sessions WHERE plate = ? ORDER BY entry_at",
                             [plate]))


def exit_bill(site: SimulatedSite, plate: str) -> dict[str, Any]:
    with site.gateway.store.reader() as db:
        row = db.execute(
            "SELECT bill FROM decisions WHERE direction = 'exit' AND plate = ? "
            "ORDER BY answered_at DESC LIMIT 1", [plate]).fetchone()
    return dict(json.loads(row[0]))


def drive(site: SimulatedSite, lane: str, plate: str) -> Any:
    passage = site.drive(lane, plate)
    site.settle()
    return passage


def event_fields(site: SimulatedSite, lane: str) -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "seq": 10_000 + len(uuid.uuid4().hex),
            "ts": site.clock.now(), "lane": lane}


def test_a_monthly_pass_car_comes_and_goes_free(site: SimulatedSite) -> None:
    now = site.clock.now()
    office(site, lambda b: b.access.issue_pass(
        "monthly", ["沪A12345"], now - timedelta(days=1), now + timedelta(days=30), "李雷",
        actor="office:01", reason="paid May"))
    entering = drive(site, "in1", "沪A12345")
    site.clock.advance(timedelta(hours=5))
    leaving = drive(site, "out1", "沪A12345")

    assert entering.opened and entering.reason == "pass_entry"
    assert leaving.opened and (leaving.reason, leaving.fee_fen) == ("pass", 0)
    (session,) = sessions(site, "沪A12345")
    assert (session["access"], session["state"], session["fee_fen"]) == ("pass", "closed", 0)


def test_the_second_car_of_a_family_pass_pays_as_a_visitor(site: SimulatedSite) -> None:
    now = site.clock.now()
    office(site, lambda b: b.access.issue_pass(
        "family", ["沪A12345", "沪B67890"], now - timedelta(days=1), now + timedelta(days=30),
        "王芳", actor="office:01", reason="paid May"))
    assert drive(site, "in1", "沪A12345").reason == "pass_entry"
    second = drive(site, "in1", "沪B67890")
    site.clock.advance(timedelta(minutes=90))
    assert drive(site, "out1", "沪A12345").fee_fen == 0
    visitor_exit = drive(site, "out1", "沪B67890")

    assert second.opened and second.reason == "pass_in_use"
    assert (visitor_exit.reason, visitor_exit.fee_fen) == ("payment_due", 700)
    assert visitor_exit.settled == "paid_online"  # the lane's QR: the pay page, then open
    assert sessions(site, "沪B67890")[0]["access"] == "visitor"


def test_a_blacklisted_car_is_refused_and_a_whitelisted_one_leaves_free(
    site: SimulatedSite,
) -> None:
    office(site, lambda b: b.access.list_plate("blacklist", "京A00001", "fled without paying",
                                               actor="manager:01"))
    office(site, lambda b: b.access.list_plate("whitelist", "京A00002", "fire inspector",
                                               actor="manager:01"))
    refused = drive(site, "in1", "京A00001")
    assert drive(site, "in1", "京A00002").opened
    site.clock.advance(timedelta(hours=3))
    leaving = drive(site, "out1", "京A00002")

    assert not refused.opened and refused.reason == "blacklisted"
    assert sessions(site, "京A00001") == []
    assert (leaving.reason, leaving.fee_fen) == ("whitelisted", 0)


def test_a_merchant_coupon_takes_its_discount_off_and_the_merchant_pays_exactly_that(
    site: SimulatedSite,
) -> None:
    drive(site, "in1", VISITOR)
    office(site, lambda b: b.merchants.open_account("M001", name="星巴克", actor="manager:01",
                                                    reason="new tenant"))
    office(site, lambda b: b.merchants.top_up("M001", 10_000, actor="cashier:01",
                                              reason="receipt 1"))
    coupon = office(site, lambda b: b.merchants.issue_coupon(
        "M001", VISITOR, CouponGrant.free_minutes(60, cap_fen=2_000),
        expires_at=site.clock.now() + timedelta(hours=6), actor="M001:till", reason="spend"))
    site.clock.advance(timedelta(minutes=150))  # ¥5 first hour + 3 × ¥2 = ¥11; 1 h free → ¥7
    leaving = drive(site, "out1", VISITOR)

    assert (leaving.reason, leaving.fee_fen, leaving.settled) == ("payment_due", 700,
                                                                  "paid_online")
    assert exit_bill(site, VISITOR)["coupons"] == [[coupon.coupon_id, 400]]
    balance = office(site, lambda b: b.merchants.balance("M001"))
    assert balance.prepaid_fen == 10_000 - 400 and balance.held_fen == 0
    entries = office(site, lambda b: list(b.payments.books.entries()))
    assert all(fen == 0 for fen in [sum(trial_balance(entries).values())])


def test_a_driver_who_prepays_leaves_free_within_the_grace_and_pays_only_the_extra_after(
    site: SimulatedSite,
) -> None:
    drive(site, "in1", VISITOR)
    drive(site, "in1", "粤B54321")
    site.clock.advance(timedelta(minutes=50))  # first hour: ¥5
    for plate in (VISITOR, "粤B54321"):
        bill = site.gateway.service.bill_for(plate)
        assert bill is not None and (bill.due_fen, bill.reason) == (500, "payment_due")
        pending = site.gateway.service.prepay(plate)
        assert pending is not None and pending.amount_fen == 500
        body, headers = site.wallet.pay(pending.provider_ref)
        for _ in range(2):  # the provider sends its notice twice: one payment
            site.gateway.service.payment_callback(body, headers)
        with pytest.raises(BadSignatureError):
            site.gateway.service.payment_callback(body.replace(b"500", b"50"), headers)
    assert site.gateway.service.prepay(VISITOR) is None  # nothing more to pay for now
    assert site.gateway.service.bill_for("粤B99999") is None

    site.clock.advance(timedelta(minutes=14))  # inside 15 min of grace, past the first hour
    in_grace = drive(site, "out1", VISITOR)
    site.clock.advance(timedelta(minutes=16))  # 80 min in, 30 after paying
    overstayed = drive(site, "out1", "粤B54321")

    assert (in_grace.reason, in_grace.fee_fen) == ("prepaid", 0)
    assert (overstayed.reason, overstayed.fee_fen) == ("payment_due", 200)  # the extra only
    money = office(site, lambda b: b.payments.revenue_report(
        site.clock.now() - timedelta(days=1), site.clock.now() + timedelta(days=1)))
    # the extra ¥2 was paid by the exit lane's QR (the pay page again): nothing else booked
    assert dict(money.fees_by_method) == {"prepay": 1200}


def test_an_offline_exit_with_a_declined_payment_code_becomes_a_debt_shown_at_next_entry(
    site: SimulatedSite,
) -> None:
    drive(site, "in1", VISITOR)
    site.clock.advance(timedelta(minutes=90))
    site.wallet.declined["283456789012345678"] = "insufficient_funds"
    # The exit lane decided alone and journaled the code and the passage; it replays both.
    code = PaymentCode(**event_fields(site, "out1"), code="283456789012345678", plate=VISITOR,
                       fee_fen=700)
    passed = Passed(**event_fields(site, "out1"), direction="exit", plate=VISITOR,
                    correlation_id=uuid.uuid4().hex, fee_fen=0)
    for message in (code, passed, code):  # the journal is replayed twice: charged once
        site.replay_journal("out1", message)

    (session,) = sessions(site, VISITOR)
    assert session["state"] == "closed" and session["fee_fen"] == 700
    debts = office(site, lambda b: b.payments.debts_for(VISITOR))
    assert [(d.amount_fen, d.reason) for d in debts] == [
        (700, "payment code declined: insufficient_funds")]

    site.clock.advance(timedelta(days=2))
    back = drive(site, "in1", VISITOR)
    assert back.opened and back.reason == "visitor_entry"
    with site.gateway.store.reader() as db:
        shown = db.execute("SELECT bill FROM decisions WHERE direction = 'entry' "
                           "ORDER BY answered_at DESC LIMIT 1").fetchone()[0]
    assert json.loads(shown)["owed_fen"] == 700
    site.clock.advance(timedelta(minutes=10))  # inside the free time: only the old ¥7
    leaving = drive(site, "out1", VISITOR)
    # Nothing is due for this stay, so the car goes; the old debt is shown, never booked as
    # paid by the exit (money is booked only where it is taken): it stays on the plate.
    assert (leaving.reason, leaving.fee_fen, leaving.settled) == ("free", 0, "decision")
    assert [d.amount_fen for d in office(site, lambda b: b.payments.debts_for(VISITOR))] == [700]


def test_an_accepted_payment_code_journaled_offline_pays_the_stay(site: SimulatedSite) -> None:
    drive(site, "in1", VISITOR)
    site.clock.advance(timedelta(minutes=90))
    code = PaymentCode(**event_fields(site, "out1"), code="134567890123456789", plate=VISITOR,
                       fee_fen=700)
    passed = Passed(**event_fields(site, "out1"), direction="exit", plate=VISITOR,
                    correlation_id=uuid.uuid4().hex, fee_fen=0)
    for message in (code, passed):
        site.replay_journal("out1", message)

    assert office(site, lambda b: b.payments.debts_for(VISITOR)) == []
    (session,) = sessions(site, VISITOR)
    paid = office(site, lambda b: b.payments.money_for(session["session_id"]))
    assert paid.paid_fen == 700 and session["review"] == "left while the gateway was unreachable"


def test_a_fee_override_is_what_the_exit_charges(site: SimulatedSite) -> None:
    drive(site, "in1", VISITOR)
    site.clock.advance(timedelta(hours=2))
    (session,) = sessions(site, VISITOR)
    office(site, lambda b: b.payments.override_fee(
        session["session_id"], 200, actor="supervisor:02", reason="barrier fault held the car",
        quoted_fen=900))
    leaving = drive(site, "out1", VISITOR)

    assert leaving.fee_fen == 200
    actions = [e.action for e in site.gateway.audit.entries()]
    assert "fee.override" in actions

