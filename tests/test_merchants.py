"""Merchant accounts and coupons on real SQLite files: money held, charged, settled, audited."""

from __future__ import annotations

import doctest
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlite_utils
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gateway.money.merchants
from gateway.money.merchants import (
    ClaimRefusedError,
    CouponGrant,
    CouponRefusedError,
    DailyCapError,
    InsufficientFundsError,
    IssuedCoupon,
    MerchantAccounts,
    UnknownMerchantError,
)
from gateway.records.audit import AuditLog, verify
from gateway.storage.database import open_database
from parkguard.clock import ManualClock, utc_iso
from parkguard.core.ledger import trial_balance
from parkguard.core.tariffs.quote import Coupon

START = datetime(2026, 5, 10, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
PLATE = "沪A12345"
OTHER = "沪B67890"


class Site:
    """One gateway database with a merchant desk and its audit log on it."""

    def __init__(self, path: Path) -> None:
        self.clock = ManualClock(START)
        self.db = open_database(path)
        self.audit = AuditLog(self.db, clock=self.clock)
        self.desk = MerchantAccounts(self.db, clock=self.clock, audit=self.audit)

    def later(self, hours: float = 1) -> datetime:
        return self.clock.now() + timedelta(hours=hours)

    def issue(self, grant: CouponGrant, *, merchant: str = "M001", plate: str = PLATE,
              hours: float = 6) -> IssuedCoupon:
        return self.desk.issue_coupon(merchant, plate, grant, expires_at=self.later(hours),
                                      actor="merchant:M001:till1", reason="spend ¥88")

    def actions(self) -> list[str]:
        return [entry.action for entry in self.audit.entries()]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    made = Site(tmp_path / "gateway.db")
    yield made
    made.db.close()


def _prepaid(site: Site, fen: int = 2_000) -> None:
    site.desk.open_account("M001", name="星巴克 Starbucks", actor="manager:01", reason="tenant")
    if fen:
        site.desk.top_up("M001", fen, actor="cashier:03", reason="receipt 5521")


def _overdraft(site: Site, limit: int = 1_500) -> None:
    site.desk.open_account("M002", name="海底捞 Haidilao", actor="manager:01", reason="tenant",
                           overdraft_limit_fen=limit)


def test_module_examples_run() -> None:
    assert doctest.testmod(gateway.money.merchants).failed == 0
    assert doctest.testmod(gateway.money.merchants.values).failed == 0


def test_the_schema_is_strict_integer_fen_and_survives_reopening(tmp_path: Path) -> None:
    first = Site(tmp_path / "g.db")
    _prepaid(first)
    first.db.close()
    again = Site(tmp_path / "g.db")  # migrations are applied once, the money is still there
    assert again.desk.balance("M001").prepaid_fen == 2_000
    columns = {c.name: c.type for c in again.db.table("ledger_postings").columns}
    assert columns["debit_fen"] == "INTEGER"
    assert "STRICT" in again.db.table("merchant_coupons").schema.upper()


def test_a_prepaid_merchant_cannot_issue_beyond_its_balance(site: Site) -> None:
    _prepaid(site, 2_000)
    site.issue(CouponGrant.amount_off(1_500))
    assert site.desk.balance("M001").available_fen == 500
    with pytest.raises(InsufficientFundsError, match="500 fen available"):
        site.issue(CouponGrant.free_minutes(120, cap_fen=600))
    site.issue(CouponGrant.full_free(cap_fen=500))
    assert site.desk.balance("M001").available_fen == 0


def test_an_overdraft_merchant_can_issue_until_its_limit_and_top_up_repays_first(
        site: Site) -> None:
    _overdraft(site, 1_500)
    first = site.desk.issue_coupon("M002", PLATE, CouponGrant.amount_off(1_000),
                                   expires_at=site.later(), actor="M002", reason="dinner")
    with pytest.raises(InsufficientFundsError):
        site.desk.issue_coupon("M002", OTHER, CouponGrant.amount_off(600),
                               expires_at=site.later(), actor="M002", reason="dinner")
    site.desk.redeem(first.coupon_id, session_id="s1", plate=PLATE, applied_fen=1_000)
    owing = site.desk.balance("M002")
    assert (owing.prepaid_fen, owing.owed_fen, owing.available_fen) == (0, 1_000, 500)
    after = site.desk.top_up("M002", 1_200, actor="cashier:03", reason="monthly bill")
    assert (after.prepaid_fen, after.owed_fen, after.available_fen) == (200, 0, 1_700)


def test_a_coupon_is_charged_what_the_quote_applied_capped_at_its_cap(site: Site) -> None:
    _prepaid(site, 5_000)
    short_stay = site.issue(CouponGrant.free_minutes(120, cap_fen=1_000))
    long_stay = site.issue(CouponGrant.full_free(cap_fen=1_000))
    assert short_stay.grant.as_tariff_coupon() == Coupon("free_minutes", minutes=120)
    assert site.desk.redeem(short_stay.coupon_id, session_id="s1", plate=PLATE,
                            applied_fen=400).charged_fen == 400
    assert site.desk.redeem(long_stay.coupon_id, session_id="s2", plate=PLATE,
                            applied_fen=3_500).charged_fen == 1_000
    balance = site.desk.balance("M001")
    assert (balance.prepaid_fen, balance.held_fen) == (3_600, 0)


def test_a_coupon_that_took_nothing_off_is_used_up_but_charges_nothing(site: Site) -> None:
    _prepaid(site)
    coupon = site.issue(CouponGrant.free_minutes(60, cap_fen=500))
    used = site.desk.redeem(coupon.coupon_id, session_id="s1", plate=PLATE, applied_fen=0)
    assert (used.charged_fen, used.entry_id) == (0, None)
    assert site.desk.balance("M001").prepaid_fen == 2_000


def test_a_coupon_is_single_use(site: Site) -> None:
    _prepaid(site)
    coupon = site.issue(CouponGrant.amount_off(500))
    site.desk.redeem(coupon.coupon_id, session_id="s1", plate=PLATE, applied_fen=500)
    with pytest.raises(CouponRefusedError, match="already used") as refused:
        site.desk.redeem(coupon.coupon_id, session_id="s2", plate=PLATE, applied_fen=500)
    assert refused.value.reason == "used"
    assert site.desk.balance("M001").prepaid_fen == 1_500
    assert site.desk.coupons_for(PLATE) == []


def test_an_expired_coupon_is_refused_and_its_hold_released(site: Site) -> None:
    _prepaid(site)
    coupon = site.issue(CouponGrant.amount_off(800), hours=2)
    assert site.desk.balance("M001").held_fen == 800
    site.clock.advance(timedelta(hours=2))
    assert site.desk.balance("M001").held_fen == 0
    assert site.desk.coupons_for(PLATE) == []
    with pytest.raises(CouponRefusedError) as refused:
        site.desk.redeem(coupon.coupon_id, session_id="s1", plate=PLATE, applied_fen=800)
    assert refused.value.reason == "expired"


def test_a_coupon_for_another_plate_is_refused_but_spelling_does_not_matter(
        site: Site) -> None:
    _prepaid(site)
    coupon = site.issue(CouponGrant.amount_off(500))
    with pytest.raises(CouponRefusedError) as refused:
        site.desk.redeem(coupon.coupon_id, session_id="s1", plate=OTHER, applied_fen=500)
    assert refused.value.reason == "wrong_plate"
    assert [c.coupon_id for c in site.desk.coupons_for("沪a·12345")] == [coupon.coupon_id]
    site.desk.redeem(coupon.coupon_id, session_id="s1", plate="沪a 12345", applied_fen=500)


def test_a_revoked_coupon_is_refused_and_cannot_be_revoked_twice(site: Site) -> None:
    _prepaid(site)
    coupon = site.issue(CouponGrant.amount_off(500))
    site.desk.revoke(coupon.coupon_id, actor="merchant:M001:mgr", reason="customer refunded")
    assert site.desk.balance("M001").held_fen == 0
    with pytest.raises(CouponRefusedError, match="customer refunded") as refused:
        site.desk.redeem(coupon.coupon_id, session_id="s1", plate=PLATE, applied_fen=500)
    assert refused.value.reason == "revoked"
    with pytest.raises(CouponRefusedError):
        site.desk.revoke(coupon.coupon_id, actor="merchant:M001:mgr", reason="again")


def test_a_used_coupon_cannot_be_revoked(site: Site) -> None:
    _prepaid(site)
    coupon = site.issue(CouponGrant.amount_off(500))
    site.desk.redeem(coupon.coupon_id, session_id="s1", plate=PLATE, applied_fen=500)
    with pytest.raises(CouponRefusedError) as refused:
        site.desk.revoke(coupon.coupon_id, actor="merchant:M001:mgr", reason="too late")
    assert refused.value.reason == "used"


def test_unknown_merchants_and_coupons_are_named(site: Site) -> None:
    with pytest.raises(UnknownMerchantError, match="M404"):
        site.desk.top_up("M404", 100, actor="cashier:03", reason="typo")
    with pytest.raises(CouponRefusedError) as refused:
        site.desk.redeem("nope", session_id="s1", plate=PLATE, applied_fen=1)
    assert refused.value.reason == "unknown"


@pytest.mark.parametrize("bad", [
    lambda: CouponGrant("amount_off", fen=500, cap_fen=900),
    lambda: CouponGrant.free_minutes(0, cap_fen=100),
    lambda: CouponGrant.full_free(cap_fen=0),
    lambda: CouponGrant.amount_off(-1),
    lambda: CouponGrant("rule", cap_fen=6_000),
    lambda: CouponGrant.for_rule("x" * 33, cap_fen=6_000),
    lambda: CouponGrant("rule", minutes=120, cap_fen=6_000, rule="spend_88"),
    lambda: CouponGrant("free_minutes", minutes=120, cap_fen=6_000, rule="spend_88"),
])
def test_nonsense_coupon_grants_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="coupon"):
        bad()  # type: ignore[operator]


def test_qr_claim_codes_are_random_single_use_and_bound_to_the_claiming_plate(
        site: Site) -> None:
    _prepaid(site, 1_000)
    batch = site.desk.create_claim_batch("M001", CouponGrant.amount_off(300), count=5,
                                         expires_at=site.later(24), actor="merchant:M001",
                                         reason="weekend promotion")
    assert len(set(batch.codes)) == 5 and all(len(code) == 16 for code in batch.codes)
    stored = [row["code_hash"] for row in site.db.table("claim_codes").rows]
    assert not set(batch.codes) & set(stored)  # only hashes are kept
    assert site.desk.balance("M001").held_fen == 0  # nothing held until claimed
    coupon = site.desk.claim(batch.codes[0], plate=PLATE)
    assert coupon.plate == PLATE and site.desk.balance("M001").held_fen == 300
    with pytest.raises(ClaimRefusedError) as again:
        site.desk.claim(batch.codes[0], plate=OTHER)
    assert again.value.reason == "used"
    with pytest.raises(CouponRefusedError) as wrong:
        site.desk.redeem(coupon.coupon_id, session_id="s1", plate=OTHER, applied_fen=300)
    assert wrong.value.reason == "wrong_plate"
    with pytest.raises(ClaimRefusedError) as guessed:
        site.desk.claim("A" * 16, plate=OTHER)
    assert guessed.value.reason == "unknown"


def test_claims_beyond_the_merchants_money_or_after_expiry_are_refused(site: Site) -> None:
    _prepaid(site, 500)
    batch = site.desk.create_claim_batch("M001", CouponGrant.amount_off(300), count=3,
                                         expires_at=site.later(2), actor="merchant:M001",
                                         reason="promotion")
    site.desk.claim(batch.codes[0], plate=PLATE)
    with pytest.raises(InsufficientFundsError):
        site.desk.claim(batch.codes[1], plate=OTHER)
    site.clock.advance(timedelta(hours=2))
    with pytest.raises(ClaimRefusedError) as expired:
        site.desk.claim(batch.codes[2], plate=OTHER)
    assert expired.value.reason == "expired"


def test_every_money_action_is_audited_with_before_and_after(site: Site) -> None:
    _prepaid(site)
    coupon = site.issue(CouponGrant.amount_off(500))
    spare = site.issue(CouponGrant.amount_off(200))
    site.desk.revoke(spare.coupon_id, actor="merchant:M001:mgr", reason="mistake")
    site.desk.redeem(coupon.coupon_id, session_id="s1", plate=PLATE, applied_fen=450)
    batch = site.desk.create_claim_batch("M001", CouponGrant.amount_off(100), count=2,
                                         expires_at=site.later(), actor="merchant:M001",
                                         reason="promo")
    site.desk.claim(batch.codes[0], plate=OTHER)
    site.desk.statement("M001", 2026, 5, actor="accountant:07")
    assert site.actions() == ["merchant.open", "merchant.top_up", "coupon.issue",
                              "coupon.issue", "coupon.revoke", "coupon.redeem",
                              "coupon.claim_batch", "coupon.issue", "merchant.settlement"]
    top_up = next(e for e in site.audit.entries() if e.action == "merchant.top_up")
    assert top_up.actor == "cashier:03" and top_up.reason == "receipt 5521"
    assert isinstance(top_up.before, dict) and isinstance(top_up.after, dict)
    assert (top_up.before["prepaid_fen"], top_up.after["prepaid_fen"]) == (0, 2_000)
    redeem = next(e for e in site.audit.entries() if e.action == "coupon.redeem")
    assert isinstance(redeem.after, dict) and redeem.after["charged_fen"] == 450
    assert verify(site.db).ok


def test_a_refused_action_leaves_no_money_and_no_audit_trace(site: Site) -> None:
    _prepaid(site, 100)
    before = site.actions()
    with pytest.raises(InsufficientFundsError):
        site.issue(CouponGrant.amount_off(500))
    assert site.actions() == before
    assert site.db.table("merchant_coupons").count == 0


def test_the_statement_uses_the_site_local_month(site: Site) -> None:
    _prepaid(site, 5_000)
    # 2026-05-31 23:30 in Shanghai is 15:30 UTC: still May on the merchant's statement.
    site.clock.set(datetime(2026, 5, 31, 15, 0, tzinfo=UTC))
    may = site.issue(CouponGrant.amount_off(500))
    site.clock.set(datetime(2026, 5, 31, 15, 30, tzinfo=UTC))
    site.desk.redeem(may.coupon_id, session_id="s-may", plate=PLATE, applied_fen=500)
    # 2026-06-01 00:30 in Shanghai is 16:30 UTC on 31 May: June's statement.
    june = site.issue(CouponGrant.amount_off(300))
    site.clock.set(datetime(2026, 5, 31, 16, 30, tzinfo=UTC))
    site.desk.redeem(june.coupon_id, session_id="s-june", plate=PLATE, applied_fen=300)
    may_statement = site.desk.statement("M001", 2026, 5, actor="accountant:07")
    june_statement = site.desk.statement("M001", 2026, 6, actor="accountant:07")
    assert [line.session_id for line in may_statement.lines] == ["s-may"]
    assert [line.session_id for line in june_statement.lines] == ["s-june"]
    assert may_statement.period_end == "2026-05-31T16:00:00.000Z"
    assert (may_statement.opening_balance_fen, may_statement.top_ups_fen,
            may_statement.closing_balance_fen) == (0, 5_000, 4_500)
    assert june_statement.opening_balance_fen == 4_500
    assert june_statement.closing_balance_fen == 4_200


# --- the reconciliation property -----------------------------------------------------------

STEPS = st.lists(st.one_of(
    st.tuples(st.just("top_up"), st.sampled_from(["M001", "M002"]), st.integers(1, 3_000)),
    st.tuples(st.just("issue"), st.sampled_from(["M001", "M002"]), st.integers(1, 2_000)),
    st.tuples(st.just("redeem"), st.integers(0, 50), st.integers(0, 3_000)),
    st.tuples(st.just("revoke"), st.integers(0, 50), st.just(0)),
    st.tuples(st.just("wait"), st.integers(1, 20 * 24), st.just(0)),
), max_size=40)


def _months_until(moment: datetime) -> list[tuple[int, int]]:
    """Every site-local month from May 2026 (the start) to the one ``moment`` falls in."""
    local = moment.astimezone(ZoneInfo("Asia/Shanghai"))
    months = [(2026, 5)]
    while months[-1] != (local.year, local.month):
        year, month = months[-1]
        months.append((year + month // 12, month % 12 + 1))
    return months


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(STEPS)
def test_statements_reconcile_with_coupons_and_ledger_over_random_histories(
        steps: list[tuple[str, object, int]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        site = Site(Path(folder) / "gateway.db")
        _prepaid(site, 0)
        _overdraft(site, 2_500)
        issued: list[IssuedCoupon] = []
        for action, target, amount in steps:
            try:
                if action == "top_up":
                    site.desk.top_up(str(target), amount, actor="cashier", reason="top-up")
                elif action == "issue":
                    issued.append(site.desk.issue_coupon(
                        str(target), PLATE, CouponGrant.full_free(cap_fen=amount),
                        expires_at=site.later(72), actor="merchant", reason="spend"))
                elif action == "redeem" and issued:
                    coupon = issued[int(str(target)) % len(issued)]
                    site.desk.redeem(coupon.coupon_id, session_id=f"s{len(steps)}",
                                     plate=PLATE, applied_fen=amount)
                elif action == "revoke" and issued:
                    coupon = issued[int(str(target)) % len(issued)]
                    site.desk.revoke(coupon.coupon_id, actor="merchant", reason="mistake")
                elif action == "wait":
                    site.clock.advance(timedelta(hours=int(str(target))))
            except (InsufficientFundsError, CouponRefusedError):
                pass
            for merchant in ("M001", "M002"):
                balance = site.desk.balance(merchant)
                assert balance.prepaid_fen >= 0 and balance.owed_fen >= 0
                assert balance.owed_fen <= balance.overdraft_limit_fen
                assert balance.available_fen >= 0
        entries = list(site.desk.entries())
        assert sum(trial_balance(entries).values()) == 0
        redeemed = {row["coupon_id"]: row["charged_fen"] for row in site.db.query(
            "SELECT coupon_id, charged_fen FROM merchant_coupons WHERE state = 'redeemed'")}
        for merchant in ("M001", "M002"):
            closing = None
            for year, month in _months_until(site.clock.now()):
                statement = site.desk.statement(merchant, year, month, actor="accountant")
                total = sum(line.charged_fen for line in statement.lines)
                assert statement.coupons_charged_fen == total == statement.ledger_debits_fen
                assert all(redeemed[line.coupon_id] == line.charged_fen
                           for line in statement.lines)
                assert statement.closing_balance_fen == (statement.opening_balance_fen
                                                         + statement.top_ups_fen - total)
                if closing is not None:
                    assert statement.opening_balance_fen == closing
                closing = statement.closing_balance_fen
            now = site.desk.balance(merchant)
            assert closing == now.prepaid_fen - now.owed_fen
        assert verify(site.db).ok
        site.db.close()


def test_the_same_file_read_through_a_second_connection_sees_committed_money(
        site: Site, tmp_path: Path) -> None:
    _prepaid(site, 700)
    reader = sqlite_utils.Database(tmp_path / "gateway.db")
    try:
        total = reader.execute("SELECT sum(credit_fen) FROM ledger_postings "
                               "WHERE account = 'merchant_prepaid:M001'").fetchone()[0]
        assert total == 700
    finally:
        reader.close()


# --- rule coupons, claims per visit, daily caps ----------------------------------------------


def test_a_rule_coupon_is_stored_and_offered_as_the_tariffs_rule(site: Site) -> None:
    _prepaid(site, 10_000)
    coupon = site.issue(CouponGrant.for_rule("spend_88", cap_fen=6_000))
    [offered] = site.desk.coupons_for(PLATE)
    assert offered.grant == CouponGrant("rule", cap_fen=6_000, rule="spend_88")
    assert offered.as_tariff_coupon() == Coupon("rule", rule="spend_88")
    assert offered.as_tariff_coupon().ref == coupon.coupon_id
    assert site.desk.balance("M001").held_fen == 6_000  # the cap is held like any coupon
    assert site.desk.redeem(coupon.coupon_id, session_id="s-1", plate=PLATE,
                            applied_fen=1_300).charged_fen == 1_300
    [row] = site.db.query("SELECT rule, state FROM merchant_coupons")
    assert row == {"rule": "spend_88", "state": "redeemed"}


def _open_session(site: Site, plate: str, hours_ago: float = 1) -> None:
    site.db.table("sessions").insert({
        "session_id": f"s-{plate}", "plate": plate, "state": "open", "entry_lane": "in1",
        "entry_at": utc_iso(site.clock.now() - timedelta(hours=hours_ago)), "fee_fen": 0})


def test_one_claim_per_plate_per_visit_from_each_merchant(site: Site) -> None:
    _prepaid(site, 100_000)
    site.desk.open_account("M009", name="书店", actor="manager:01", reason="tenant")
    site.desk.top_up("M009", 10_000, actor="cashier:03", reason="deposit")
    grant = CouponGrant.for_rule("spend_88", cap_fen=6_000)
    codes = site.desk.create_claim_batch("M001", grant, count=4, expires_at=site.later(48),
                                         actor="M001", reason="counter").codes
    other = site.desk.create_claim_batch("M009", grant, count=1, expires_at=site.later(48),
                                         actor="M009", reason="counter").codes
    _open_session(site, PLATE)
    first = site.desk.claim(codes[0], plate=PLATE)
    with pytest.raises(ClaimRefusedError) as twice:
        site.desk.claim(codes[1], plate="沪a·12345")
    assert twice.value.reason == "claimed_this_visit"
    site.desk.claim(other[0], plate=PLATE)  # another shop's coupon is its own
    site.desk.revoke(first.coupon_id, actor="M001", reason="purchase refunded")
    with pytest.raises(ClaimRefusedError):  # still this visit: given since the car came in
        site.desk.claim(codes[1], plate=PLATE)
    site.db.execute("UPDATE sessions SET state = 'closed'")  # the car left: a new visit
    site.clock.advance(timedelta(minutes=1))
    assert site.desk.claim(codes[1], plate=PLATE).plate == PLATE
    with pytest.raises(ClaimRefusedError) as live:  # not inside, but a live coupon of M001
        site.desk.claim(codes[2], plate=PLATE)
    assert live.value.reason == "claimed_this_visit"
    with pytest.raises(ClaimRefusedError) as typed:
        site.desk.claim(codes[2], plate="沪A1234")
    assert typed.value.reason == "bad_plate"
    assert site.db.table("claim_codes").count_where("claimed_at IS NOT NULL") == 3


def test_the_daily_cap_counts_the_till_and_claims_in_the_site_local_day(site: Site) -> None:
    site.desk.open_account("M001", name="星巴克", actor="manager:01", reason="tenant",
                           daily_cap=2)
    site.desk.top_up("M001", 100_000, actor="cashier:03", reason="deposit")
    assert site.desk.issued_today("M001") == (0, 2)
    site.issue(CouponGrant.amount_off(100))
    [code] = site.desk.create_claim_batch("M001", CouponGrant.amount_off(100), count=1,
                                          expires_at=site.later(48), actor="M001",
                                          reason="counter").codes
    site.desk.claim(code, plate=OTHER)
    with pytest.raises(DailyCapError):
        site.issue(CouponGrant.amount_off(100), plate="沪C11111")
    site.desk.set_daily_cap("M001", None, actor="manager:01", reason="holiday promotion")
    site.issue(CouponGrant.amount_off(100), plate="沪C11111")
    site.desk.set_daily_cap("M001", 3, actor="manager:01", reason="back to normal")
    with pytest.raises(DailyCapError):
        site.issue(CouponGrant.amount_off(100), plate="沪C22222")
    site.clock.set(datetime(2026, 5, 10, 16, 0, tzinfo=UTC))  # midnight in Shanghai
    assert site.desk.issued_today("M001") == (0, 3)
    site.issue(CouponGrant.amount_off(100), plate="沪C22222")
    with pytest.raises(ValueError, match="daily_cap"):
        site.desk.set_daily_cap("M001", 0, actor="manager:01", reason="nonsense")
    terms = [e for e in site.audit.entries() if e.action == "merchant.terms"]
    assert [(e.before, e.after) for e in terms] == [
        ({"daily_cap": 2}, {"daily_cap": None}), ({"daily_cap": None}, {"daily_cap": 3})]


def test_the_desk_remembers_which_plates_changed_for_the_lanes(site: Site) -> None:
    _prepaid(site, 10_000)
    coupon = site.issue(CouponGrant.amount_off(100), plate="沪a·12345")
    assert site.desk.drain_touched() == {PLATE} and site.desk.drain_touched() == set()
    site.desk.revoke(coupon.coupon_id, actor="M001", reason="mistake")
    assert site.desk.drain_touched() == {PLATE}
    used = site.issue(CouponGrant.amount_off(100), plate=OTHER)
    site.desk.drain_touched()
    site.desk.redeem(used.coupon_id, session_id="s-1", plate=OTHER, applied_fen=100)
    assert site.desk.drain_touched() == {OTHER}
    assert [c.coupon_id for c in site.desk.live_coupons()] == []
