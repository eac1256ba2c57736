"""Drivers' payments on real SQLite files: grace, callbacks, codes, debts, refunds, overrides."""

from __future__ import annotations

import doctest
import json
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gateway.money.books
import gateway.money.payments
from gateway.money.books import Books
from gateway.money.merchants import CouponGrant, MerchantAccounts
from gateway.money.payments import (
    AmountMismatchError,
    BadSignatureError,
    IdempotencyConflictError,
    PaymentDesk,
    PaymentProvider,
    RefundRefusedError,
    SimulatedProvider,
    UnknownOrderError,
)
from gateway.records.audit import AuditLog, verify
from gateway.storage.database import open_database
from gateway.storage.migrations import ledger
from parkguard.clock import ManualClock
from parkguard.core.ledger import Account, trial_balance

START = datetime(2026, 5, 10, 2, 0, tzinfo=UTC)
PLATE = "沪A12345"
WECHAT = "134567890123456789"
ALIPAY = "281234567890123456"
SECRET = b"sim-secret-for-tests"


def signed(signature: str) -> dict[str, str]:
    """Headers carrying a simulated notice's signature."""
    return {"X-Signature": signature}


class Site:
    """One gateway database with a payment desk, its audit log and a simulated provider."""

    def __init__(self, path: Path, *, grace_minutes: int = 15) -> None:
        self.clock = ManualClock(START)
        self.db = open_database(path)
        self.audit = AuditLog(self.db, clock=self.clock)
        self.provider = SimulatedProvider(SECRET, self.clock)
        self.desk = PaymentDesk(self.db, clock=self.clock, audit=self.audit,
                                provider=self.provider, grace_minutes=grace_minutes)

    def prepay(self, session_id: str, fen: int, plate: str = PLATE) -> str:
        pending = self.desk.start_prepayment(session_id, plate, fen)
        body, headers = self.provider.pay(pending.provider_ref)
        return self.desk.handle_callback(body, headers).payment_id

    def minutes(self, n: float) -> None:
        self.clock.advance(timedelta(minutes=n))

    def actions(self) -> list[str]:
        return [entry.action for entry in self.audit.entries()]

    def balanced(self) -> bool:
        return sum(trial_balance(self.desk.entries()).values()) == 0


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    made = Site(tmp_path / "gateway.db")
    yield made
    made.db.close()


def test_module_examples_run() -> None:
    assert doctest.testmod(gateway.money.payments).failed == 0
    assert doctest.testmod(gateway.money.books).failed == 0


def test_the_simulated_provider_is_a_payment_provider() -> None:
    assert isinstance(SimulatedProvider(SECRET, ManualClock(START)), PaymentProvider)


def test_prepay_then_leave_within_grace_owes_nothing(site: Site) -> None:
    site.minutes(90)
    pending = site.desk.start_prepayment("s1", "沪a·12345", 1_000)
    assert pending.pay_url.endswith(pending.provider_ref) and pending.plate == PLATE
    assert site.desk.due("s1", fee_now_fen=1_000).due_fen == 1_000  # not paid yet
    body, headers = site.provider.pay(pending.provider_ref)
    payment = site.desk.handle_callback(body, headers)
    assert (payment.state, payment.method, payment.amount_fen) == ("paid", "prepay", 1_000)
    site.minutes(15)  # the meter moved on, but the window is inclusive
    due = site.desk.due("s1", fee_now_fen=1_200)
    assert (due.due_fen, due.within_grace, due.paid_fen) == (0, True, 1_000)
    assert due.grace_until == START + timedelta(minutes=105)


def test_overstaying_the_grace_charges_only_the_extra(site: Site) -> None:
    site.prepay("s1", 1_000)
    site.minutes(40)
    due = site.desk.due("s1", fee_now_fen=1_400)
    assert (due.due_fen, due.within_grace) == (400, False)
    site.desk.record_exit_payment("s1", PLATE, 400, "cash")
    money = site.desk.money_for("s1")
    assert (money.paid_fen, money.last_paid_at) == (1_400, START + timedelta(minutes=40))
    assert site.desk.due("s1", fee_now_fen=1_400).due_fen == 0


def test_the_same_callback_twice_records_one_payment(site: Site) -> None:
    pending = site.desk.start_prepayment("s1", PLATE, 800)
    body, headers = site.provider.pay(pending.provider_ref)
    first = site.desk.handle_callback(body, headers)
    again = site.desk.handle_callback(body, headers)
    assert first == again
    assert site.desk.money_for("s1").paid_fen == 800
    assert site.db.execute("SELECT count(*) FROM ledger_entries WHERE kind = 'payment'"
                           ).fetchone()[0] == 1


def test_a_forged_or_altered_callback_is_refused_and_nothing_recorded(site: Site) -> None:
    pending = site.desk.start_prepayment("s1", PLATE, 800)
    body, headers = site.provider.pay(pending.provider_ref)
    cheaper = body.replace(b'"amount_fen":800', b'"amount_fen":1')
    with pytest.raises(BadSignatureError):
        site.desk.handle_callback(cheaper, headers)
    forger = SimulatedProvider(b"not-the-secret", site.clock)
    with pytest.raises(BadSignatureError):
        site.desk.handle_callback(body, signed(forger.sign(body)))
    for junk in ("", "签名", headers["X-Signature"][:-1]):
        with pytest.raises(BadSignatureError):
            site.desk.handle_callback(body, signed(junk))
    with pytest.raises(BadSignatureError):
        site.desk.handle_callback(body, {})
    assert site.desk.payment(pending.payment_id).state == "pending"
    assert site.desk.money_for("s1").paid_fen == 0
    assert list(site.desk.entries()) == []


def test_a_signed_callback_for_an_unknown_order_or_wrong_amount_is_refused(
        site: Site) -> None:
    pending = site.desk.start_prepayment("s1", PLATE, 800)
    stranger = json.dumps({"order_id": "nope", "provider_ref": pending.provider_ref,
                           "amount_fen": 800, "paid_at": "2026-05-10T02:00:00.000Z"}).encode()
    with pytest.raises(UnknownOrderError, match="nope"):
        site.desk.handle_callback(stranger, signed(site.provider.sign(stranger)))
    wrong = json.dumps({"order_id": pending.payment_id, "provider_ref": pending.provider_ref,
                        "amount_fen": 80, "paid_at": "2026-05-10T02:00:00.000Z"}).encode()
    with pytest.raises(AmountMismatchError, match="800 fen"):
        site.desk.handle_callback(wrong, signed(site.provider.sign(wrong)))
    assert site.desk.payment(pending.payment_id).state == "pending"
    assert list(site.desk.entries()) == []


def test_a_provider_clock_running_fast_cannot_lengthen_the_grace(site: Site) -> None:
    pending = site.desk.start_prepayment("s1", PLATE, 500)
    future = json.dumps({"order_id": pending.payment_id, "provider_ref": pending.provider_ref,
                         "amount_fen": 500, "paid_at": "2026-05-10T05:00:00+00:00"}).encode()
    payment = site.desk.handle_callback(future, signed(site.provider.sign(future)))
    assert payment.paid_at == "2026-05-10T02:00:00.000Z"


def test_a_good_payment_code_is_charged_once_even_when_the_journal_replays_it(
        site: Site) -> None:
    captured = site.clock.now()
    first = site.desk.pay_with_code("s1", PLATE, WECHAT, 600, captured_at=captured,
                                    event_id="in1:42")
    site.minutes(30)  # the lane comes back online and replays its journal
    again = site.desk.pay_with_code("s1", PLATE, WECHAT, 600, captured_at=captured,
                                    event_id="in1:42")
    assert first == again and first.state == "paid" and first.provider_ref
    assert site.provider.calls.count("charge_code") == 1
    assert site.desk.money_for("s1").paid_fen == 600
    row = site.db.execute("SELECT wallet, code_tail FROM payments").fetchone()
    assert tuple(row) == ("wechat", "6789")  # the code itself is never stored
    with pytest.raises(IdempotencyConflictError):
        site.desk.pay_with_code("s2", PLATE, WECHAT, 600, captured_at=captured,
                                event_id="in1:42")


def test_a_declined_code_becomes_a_debt_shown_at_the_next_entry(site: Site) -> None:
    site.provider.declined[ALIPAY] = "insufficient_funds"
    failed = site.desk.pay_with_code("s1", PLATE, ALIPAY, 900, captured_at=site.clock.now(),
                                     event_id="out1:7")
    assert (failed.state, failed.failure, failed.entry_id) == ("failed", "insufficient_funds",
                                                               None)
    debts = site.desk.debts_for("沪a 12345")
    assert [(d.amount_fen, d.session_id) for d in debts] == [(900, "s1")]
    assert "insufficient_funds" in debts[0].reason
    assert site.desk.due("s1", fee_now_fen=900).due_fen == 0  # owed, not asked for twice
    assert site.desk.money_for("s1").open_debt_fen == 900
    # the replay of the same event neither charges nor books the debt again
    site.desk.pay_with_code("s1", PLATE, ALIPAY, 900, captured_at=site.clock.now(),
                            event_id="out1:7")
    assert len(site.desk.debts_for(PLATE)) == 1
    assert site.desk.books.balance(Account.parking_debtors()) == 900
    assert site.actions() == ["debt.record"]


def test_a_reused_or_malformed_code_is_a_debt_too(site: Site) -> None:
    site.desk.pay_with_code("s1", PLATE, WECHAT, 300, captured_at=site.clock.now(),
                            event_id="e1")
    reused = site.desk.pay_with_code("s2", PLATE, WECHAT, 300, captured_at=site.clock.now(),
                                     event_id="e2")
    garbled = site.desk.pay_with_code("s3", PLATE, "99", 300, captured_at=site.clock.now(),
                                      event_id="e3")
    assert (reused.failure, garbled.failure) == ("code_reused", "invalid_code")
    assert sum(d.amount_fen for d in site.desk.debts_for(PLATE)) == 600


def test_settling_debts_pays_them_all_and_clears_the_debtors_account(site: Site) -> None:
    site.desk.record_debt("s1", PLATE, 500, "left while the barrier was held open")
    site.desk.record_debt("s2", PLATE, 700, "code failed", idempotency_key="s2")
    site.desk.record_debt("s2", PLATE, 700, "code failed", idempotency_key="s2")  # replay
    assert site.desk.debts_for("沪B67890") == []
    payment = site.desk.settle_debts(PLATE, "cash", "cashier:03")
    assert payment is not None and (payment.amount_fen, payment.purpose) == (1_200, "debts")
    assert site.desk.debts_for(PLATE) == []
    assert site.desk.settle_debts(PLATE, "cash", "cashier:03") is None
    assert site.desk.books.balance(Account.parking_debtors()) == 0
    assert site.desk.books.balance(Account.parking_revenue()) == -1_200
    assert site.desk.books.balance(Account.clearing()) == 1_200
    assert site.actions() == ["debt.record", "debt.record", "debt.settle"]
    settled = site.db.execute("SELECT count(*) FROM debts WHERE settled_by = ?",
                              [payment.payment_id]).fetchone()[0]
    assert settled == 2


def test_an_exit_payment_with_a_key_is_taken_once(site: Site) -> None:
    first = site.desk.record_exit_payment("s1", PLATE, 500, "exit", idempotency_key="out1:9",
                                          provider_ref="term-77")
    again = site.desk.record_exit_payment("s1", PLATE, 500, "exit", idempotency_key="out1:9",
                                          provider_ref="term-77")
    assert first == again and site.desk.money_for("s1").paid_fen == 500
    with pytest.raises(ValueError, match="'exit' or 'cash'"):
        site.desk.record_exit_payment("s1", PLATE, 500, "prepay")  # type: ignore[arg-type]


def test_a_refund_is_audited_and_never_exceeds_what_was_paid(site: Site) -> None:
    payment_id = site.prepay("s1", 1_000)
    refund = site.desk.refund(payment_id, 300, actor="manager:li", reason="barrier fault")
    assert (refund.via, refund.amount_fen) == ("provider", 300)
    assert site.desk.payment(payment_id).state == "partly_refunded"
    with pytest.raises(RefundRefusedError) as refused:
        site.desk.refund(payment_id, 701, actor="manager:li", reason="too much")
    assert refused.value.reason == "exceeds_paid"
    site.desk.refund(payment_id, 700, actor="manager:li", reason="complaint upheld")
    assert site.desk.payment(payment_id).state == "refunded"
    assert site.provider.refunded_fen(site.desk.payment(payment_id).provider_ref or "") == 1_000
    with pytest.raises(RefundRefusedError) as again:
        site.desk.refund(payment_id, 1, actor="manager:li", reason="again")
    assert again.value.reason == "not_paid"
    assert site.desk.money_for("s1").paid_fen == 0
    assert site.desk.books.balance(Account.refunds()) == 1_000
    refunds = [e for e in site.audit.entries() if e.action == "payment.refund"]
    assert [(e.actor, e.reason, e.subject) for e in refunds] == [
        ("manager:li", "barrier fault", f"payment:{payment_id}"),
        ("manager:li", "complaint upheld", f"payment:{payment_id}")]
    assert isinstance(refunds[0].after, dict) and refunds[0].after["refunded_fen"] == 300
    with pytest.raises(ValueError, match="reason"):
        site.desk.refund(payment_id, 1, actor="manager:li", reason=" ")
    assert verify(site.db).ok and site.balanced()


def test_a_cash_payment_is_refunded_over_the_counter(site: Site) -> None:
    payment = site.desk.record_exit_payment("s1", PLATE, 500, "cash")
    refund = site.desk.refund(payment.payment_id, 500, actor="cashier:03", reason="overcharged")
    assert refund.via == "cash" and "refund" not in site.provider.calls


def test_a_provider_decline_of_a_refund_records_nothing(site: Site) -> None:
    payment = site.desk.record_exit_payment("s1", PLATE, 500, "exit", provider_ref="gone")
    with pytest.raises(RefundRefusedError) as refused:
        site.desk.refund(payment.payment_id, 100, actor="manager:li", reason="complaint")
    assert refused.value.reason == "unknown_payment"
    assert site.desk.payment(payment.payment_id).refunded_fen == 0
    assert site.actions() == []


def test_a_fee_override_is_audited_and_used_by_due(site: Site) -> None:
    assert site.desk.fee_override("s1") is None
    with pytest.raises(ValueError, match="reason"):
        site.desk.override_fee("s1", 0, actor="manager:li", reason="", quoted_fen=1_500)
    site.desk.override_fee("s1", 500, actor="manager:li", reason="barrier fault kept the car",
                           quoted_fen=1_500)
    site.desk.override_fee("s1", 0, actor="manager:wang", reason="complaint upheld",
                           quoted_fen=1_500)
    assert site.desk.fee_override("s1") == 0
    assert site.desk.due("s1", fee_now_fen=1_500).due_fen == 0
    overrides = [e for e in site.audit.entries() if e.action == "fee.override"]
    assert [(e.before, e.after) for e in overrides] == [
        ({"fee_fen": 1_500}, {"fee_fen": 500}),
        ({"fee_fen": 1_500, "previous_override_fen": 500}, {"fee_fen": 0})]
    assert overrides[0].subject == "session:s1" and verify(site.db).ok
    assert list(site.desk.entries()) == []  # no money moved


def test_existing_merchant_databases_open_and_share_the_books(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    site = Site(path)  # payments first: the books migration makes the ledger tables
    site.prepay("s1", 1_000)
    merchants = MerchantAccounts(site.db, clock=site.clock, audit=site.audit)
    merchants.open_account("M001", name="星巴克", actor="manager:01", reason="tenant")
    merchants.top_up("M001", 2_000, actor="cashier", reason="receipt")
    coupon = merchants.issue_coupon("M001", PLATE, CouponGrant.amount_off(300),
                                    expires_at=site.clock.now() + timedelta(hours=2),
                                    actor="M001", reason="spend")
    merchants.redeem(coupon.coupon_id, session_id="s1", plate=PLATE, applied_fen=300)
    site.db.close()
    again = open_database(path)  # reopening applies nothing twice
    books = Books(again)
    assert len(list(books.entries())) == 3 and sum(books.trial_balance().values()) == 0
    assert books.balance(Account.parking_revenue()) == -1_000
    assert "STRICT" in again.table("payments").schema.upper()
    again.close()


def test_a_merchant_database_made_before_books_existed_still_opens(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    clock = ManualClock(START)
    db = open_database(path)
    # What an old database looks like: the merchants migration made the ledger tables and no
    # "parkguard.books" migration has been recorded.
    MerchantAccounts(db, clock=clock, audit=AuditLog(db, clock=clock)).open_account(
        "M001", name="old", actor="manager", reason="tenant")
    db.execute("DELETE FROM _sqlite_migrations WHERE migration_set = 'parkguard.books'")
    db.close()
    site = Site(path)
    site.prepay("s1", 100)
    assert [m.name for m in ledger.migrations.applied(site.db)] == [
        "m001_ledger_tables", "m002_ledger_entries_by_kind"]
    assert site.balanced()
    site.db.close()


def test_the_revenue_report_ties_payments_and_debts_to_the_ledger(site: Site) -> None:
    site.prepay("s1", 1_000)
    site.desk.record_exit_payment("s2", PLATE, 400, "cash")
    site.desk.pay_with_code("s3", PLATE, WECHAT, 600, captured_at=site.clock.now(),
                            event_id="e1")
    site.provider.declined[ALIPAY] = "code_expired"
    site.desk.pay_with_code("s4", "沪B67890", ALIPAY, 250, captured_at=site.clock.now(),
                            event_id="e2")
    site.desk.refund(site.desk.payments_for("s2")[0].payment_id, 100, actor="cashier",
                     reason="change")
    report = site.desk.revenue_report(START, START + timedelta(days=1))
    assert dict(report.fees_by_method) == {"cash": 400, "payment_code": 600, "prepay": 1_000}
    assert (report.debts_recorded_fen, report.refunds_fen, report.open_debts_fen) == (250, 100,
                                                                                      250)
    assert report.ledger_revenue_fen == sum(report.fees_by_method.values()) + 250
    assert report.ledger_refunds_fen == report.refunds_fen
    assert report.net_revenue_fen == 2_150
    empty = site.desk.revenue_report(START - timedelta(days=1), START)
    assert (empty.ledger_revenue_fen, dict(empty.fees_by_method)) == (0, {})


# --- the books always balance ----------------------------------------------------------------

OPERATIONS = st.lists(st.one_of(
    st.tuples(st.just("prepay"), st.integers(0, 3), st.integers(1, 5_000)),
    st.tuples(st.just("exit"), st.integers(0, 3), st.integers(1, 5_000)),
    st.tuples(st.just("code"), st.integers(0, 3), st.integers(1, 5_000)),
    st.tuples(st.just("bad_code"), st.integers(0, 3), st.integers(1, 5_000)),
    st.tuples(st.just("debt"), st.integers(0, 3), st.integers(1, 5_000)),
    st.tuples(st.just("settle"), st.integers(0, 3), st.just(0)),
    st.tuples(st.just("refund"), st.integers(0, 20), st.integers(1, 3_000)),
    st.tuples(st.just("wait"), st.integers(1, 120), st.just(0)),
), max_size=25)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPERATIONS)
def test_the_trial_balance_is_zero_after_any_mix_of_operations(
        operations: list[tuple[str, int, int]]) -> None:
    plates = ["沪A12345", "沪B67890", "粤B12345", "京A00001"]
    with tempfile.TemporaryDirectory() as folder:
        site = Site(Path(folder) / "gateway.db")
        paid: list[str] = []
        for number, (operation, target, fen) in enumerate(operations):
            session, plate = f"s{target % 4}", plates[target % 4]
            if operation == "prepay":
                paid.append(site.prepay(session, fen, plate))
            elif operation == "exit":
                paid.append(site.desk.record_exit_payment(session, plate, fen, "cash").payment_id)
            elif operation in ("code", "bad_code"):
                code = f"{10 + target % 4}{number:016d}"
                if operation == "bad_code":
                    site.provider.declined[code] = "insufficient_funds"
                result = site.desk.pay_with_code(session, plate, code, fen,
                                                 captured_at=site.clock.now(),
                                                 event_id=f"lane:{number}")
                paid.append(result.payment_id)
            elif operation == "debt":
                site.desk.record_debt(session, plate, fen, "left unpaid")
            elif operation == "settle":
                settled = site.desk.settle_debts(plate, "exit", "gateway")
                if settled is not None:
                    paid.append(settled.payment_id)
            elif operation == "refund" and paid:
                try:
                    site.desk.refund(paid[target % len(paid)], fen, actor="manager",
                                     reason="refund")
                except RefundRefusedError:
                    pass
            elif operation == "wait":
                site.minutes(target)
            for index in range(4):
                assert site.desk.due(f"s{index}", fee_now_fen=1_000).due_fen >= 0
        balances = trial_balance(site.desk.entries())
        assert sum(balances.values()) == 0
        open_debts = sum(d.amount_fen for p in plates for d in site.desk.debts_for(p))
        assert balances.get(Account.parking_debtors(), 0) == open_debts
        refunded = site.db.execute("SELECT coalesce(sum(refunded_fen), 0) FROM payments"
                                   ).fetchone()[0]
        assert balances.get(Account.refunds(), 0) == refunded
        report = site.desk.revenue_report(START, site.clock.now() + timedelta(seconds=1))
        assert report.ledger_revenue_fen == (sum(report.fees_by_method.values())
                                             + report.debts_recorded_fen)
        assert report.open_debts_fen == open_debts
        assert verify(site.db).ok
        site.db.close()
