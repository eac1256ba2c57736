"""The pure payment rules: the grace window, only the extra after it, payment-code shapes."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

import parkguard.core.payments
from parkguard.core.payments import amount_due, payment_code_wallet

PAID_AT = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
FEN = st.integers(0, 10**7)
GRACE = st.integers(0, 60)
MINUTES_AFTER = st.integers(-30, 24 * 60)


def test_module_examples_run() -> None:
    assert doctest.testmod(parkguard.core.payments).failed == 0


def test_the_worked_example_of_the_docs() -> None:
    def due_at(minutes: int) -> int:
        return amount_due(fee_now_fen=1_200, paid_fen=1_000, last_paid_at=PAID_AT,
                          grace_minutes=15, now=PAID_AT + timedelta(minutes=minutes)).due_fen

    assert [due_at(m) for m in (0, 14, 15)] == [0, 0, 0]  # the window is inclusive
    assert due_at(16) == 200


def test_nothing_paid_means_no_grace_and_the_whole_fee() -> None:
    due = amount_due(fee_now_fen=700, paid_fen=0, last_paid_at=None, grace_minutes=15,
                     now=PAID_AT)
    assert (due.due_fen, due.grace_until, due.within_grace) == (700, None, False)
    token = amount_due(fee_now_fen=700, paid_fen=0, last_paid_at=PAID_AT, grace_minutes=15,
                       now=PAID_AT)
    assert token.due_fen == 700 and token.grace_until is None


def test_a_debt_booked_for_the_stay_is_not_asked_for_twice() -> None:
    due = amount_due(fee_now_fen=1_000, paid_fen=0, last_paid_at=None, grace_minutes=15,
                     now=PAID_AT, debt_fen=1_000)
    assert (due.due_fen, due.debt_fen) == (0, 1_000)


@pytest.mark.parametrize("kwargs", [
    {"fee_now_fen": -1}, {"paid_fen": 1.5}, {"grace_minutes": -1}, {"debt_fen": True},
    {"now": datetime(2026, 5, 1, 2, 0)},  # naive on purpose
])
def test_nonsense_inputs_are_refused(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"fee_now_fen": 100, "paid_fen": 0, "last_paid_at": None,
                               "grace_minutes": 15, "now": PAID_AT, **kwargs}
    with pytest.raises(ValueError, match=r"must be|timezone"):
        amount_due(**args)  # type: ignore[arg-type]


@given(fee=FEN, paid=FEN, grace=GRACE, after=MINUTES_AFTER, debt=FEN)
def test_due_is_never_negative(fee: int, paid: int, grace: int, after: int,
                               debt: int) -> None:
    due = amount_due(fee_now_fen=fee, paid_fen=paid, last_paid_at=PAID_AT, grace_minutes=grace,
                     now=PAID_AT + timedelta(minutes=after), debt_fen=debt)
    assert due.due_fen >= 0


@given(quoted=st.integers(1, 10**7), growth=FEN, grace=GRACE, data=st.data())
def test_paying_the_quote_then_leaving_within_grace_owes_nothing(
        quoted: int, growth: int, grace: int, data: st.DataObject) -> None:
    # A quote of 0 is paid by paying nothing, which opens no grace: the tariff's own free
    # threshold is that stay's grace (test_nothing_paid_means_no_grace_and_the_whole_fee).
    leave_after = data.draw(st.integers(0, grace * 60), label="seconds after paying")
    due = amount_due(fee_now_fen=quoted + growth, paid_fen=quoted, last_paid_at=PAID_AT,
                     grace_minutes=grace, now=PAID_AT + timedelta(seconds=leave_after))
    assert (due.due_fen, due.within_grace) == (0, True)


@given(fee=FEN, paid=FEN, grace=GRACE, late=st.integers(1, 10**6))
def test_after_grace_only_the_extra_is_due(fee: int, paid: int, grace: int, late: int) -> None:
    due = amount_due(fee_now_fen=fee, paid_fen=paid, last_paid_at=PAID_AT, grace_minutes=grace,
                     now=PAID_AT + timedelta(minutes=grace, seconds=late))
    assert not due.within_grace
    assert due.due_fen <= max(0, fee - paid)
    assert due.due_fen == max(0, fee - paid)


@given(fee=FEN, paid=FEN, more=FEN, grace=GRACE, after=MINUTES_AFTER)
def test_paying_more_never_increases_what_is_due(fee: int, paid: int, more: int, grace: int,
                                                 after: int) -> None:
    now = PAID_AT + timedelta(minutes=after)
    less = amount_due(fee_now_fen=fee, paid_fen=paid, last_paid_at=PAID_AT,
                      grace_minutes=grace, now=now)
    extra = amount_due(fee_now_fen=fee, paid_fen=paid + more, last_paid_at=PAID_AT,
                       grace_minutes=grace, now=now)
    assert extra.due_fen <= less.due_fen


@pytest.mark.parametrize(("code", "wallet"), [
    ("134567890123456789", "wechat"),   # WeChat Pay's documented 18 digits
    ("1012345678901234", "wechat"),     # 16 digits: the shortest accepted
    ("281234567890123456", "alipay"),
    ("300000000000000000000000", "alipay"),  # 24 digits: the longest accepted
    (" 251234567890123456\n", "alipay"),     # scanner whitespace around it is fine
])
def test_payment_codes_name_their_wallet(code: str, wallet: str) -> None:
    assert payment_code_wallet(code) == wallet


@pytest.mark.parametrize(("code", "message"), [
    ("13456789012345", "16-24 digits long"),
    ("1345678901234567890123456", "16-24 digits long"),
    ("1345 6789 0123 4567", "digits and nothing else"),
    ("１３４５６７８９０１２３４５６７８", "digits and nothing else"),
    ("13456789012345678A", "digits and nothing else"),
    ("", "digits and nothing else"),
    ("621234567890123456", "no supported wallet"),
    ("991234567890123456", "no supported wallet"),
])
def test_malformed_payment_codes_are_refused_with_a_reason(code: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        payment_code_wallet(code)
