"""The pure ledger: only balanced entries of whole, one-sided fen exist; books always balance."""

from __future__ import annotations

import doctest
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

import parkguard.core.ledger
from parkguard.core.ledger import (
    Account,
    AccountKind,
    Entry,
    InvalidPostingError,
    LedgerError,
    Posting,
    UnbalancedEntryError,
    trial_balance,
)

TS = "2026-05-01T02:00:00.000Z"


def test_module_examples_run() -> None:
    assert doctest.testmod(parkguard.core.ledger).failed == 0


def test_a_balanced_entry_reports_its_totals_and_movements() -> None:
    redemption = Entry("r1", TS, "coupon used", (
        Posting(Account.merchant_prepaid("M001"), debit_fen=700),
        Posting(Account.merchant_receivable("M001"), debit_fen=300),
        Posting(Account.coupon_discounts(), credit_fen=1_000),
    ))
    assert (redemption.debit_fen, redemption.credit_fen) == (1_000, 1_000)
    assert redemption.movement(Account.coupon_discounts()) == -1_000
    assert redemption.movement(Account.merchant_prepaid("M001")) == 700
    assert redemption.movement(Account.clearing()) == 0


@pytest.mark.parametrize("postings", [
    (Posting(Account.clearing(), debit_fen=100), Posting(Account.parking_revenue(),
                                                          credit_fen=99)),
    (Posting(Account.clearing(), debit_fen=100),),
    (Posting(Account.clearing(), credit_fen=1), Posting(Account.parking_revenue(),
                                                         credit_fen=1)),
])
def test_an_unbalanced_entry_is_refused(postings: tuple[Posting, ...]) -> None:
    with pytest.raises(UnbalancedEntryError, match="does not balance"):
        Entry("bad", TS, "lopsided", postings)


def test_an_entry_with_no_postings_or_a_list_of_them_is_refused() -> None:
    with pytest.raises(InvalidPostingError):
        Entry("empty", TS, "nothing", ())
    with pytest.raises(InvalidPostingError, match="tuple"):
        Entry("list", TS, "list", [  # type: ignore[arg-type]
            Posting(Account.clearing(), debit_fen=1), Posting(Account.parking_revenue(),
                                                              credit_fen=1)])


@pytest.mark.parametrize(("debit", "credit"), [
    (0, 0), (5, 5), (-5, 0), (0, -1), (1.5, 0), (True, 0), ("100", 0),
])
def test_a_posting_needs_exactly_one_non_negative_whole_fen_side(debit: object,
                                                                credit: object) -> None:
    with pytest.raises(InvalidPostingError):
        Posting(Account.clearing(), debit_fen=debit, credit_fen=credit)  # type: ignore[arg-type]


def test_merchant_accounts_need_a_merchant_and_site_accounts_refuse_one() -> None:
    with pytest.raises(InvalidPostingError):
        Account(AccountKind.MERCHANT_PREPAID)
    with pytest.raises(InvalidPostingError):
        Account(AccountKind.MERCHANT_RECEIVABLE, "M:1")
    with pytest.raises(InvalidPostingError):
        Account(AccountKind.CLEARING, "M001")
    with pytest.raises(InvalidPostingError):
        Account(AccountKind.PARKING_DEBTORS, "M001")
    with pytest.raises(InvalidPostingError, match="unknown account"):
        Account.parse("petty_cash")


def test_ledger_errors_are_value_errors_in_the_parkguard_family() -> None:
    from parkguard.errors import ParkGuardError
    assert issubclass(UnbalancedEntryError, LedgerError)
    assert issubclass(LedgerError, ParkGuardError)
    assert issubclass(InvalidPostingError, ValueError)


ACCOUNTS = st.one_of(
    st.sampled_from([Account.parking_revenue(), Account.coupon_discounts(), Account.clearing(),
                     Account.parking_debtors(), Account.refunds()]),
    st.builds(Account.merchant_prepaid, st.sampled_from(["M001", "M002"])),
    st.builds(Account.merchant_receivable, st.sampled_from(["M001", "M002"])),
)


@st.composite
def balanced_entries(draw: st.DrawFn) -> Entry:
    """A valid entry: some debits, and credits that split the same total."""
    debits = draw(st.lists(st.integers(1, 10**9), min_size=1, max_size=4))
    total = sum(debits)
    cuts = sorted(draw(st.lists(st.integers(1, total - 1), max_size=3, unique=True))) \
        if total > 1 else []
    bounds = [0, *cuts, total]
    credits = [b - a for a, b in pairwise(bounds)]
    postings = [Posting(draw(ACCOUNTS), debit_fen=d) for d in debits]
    postings += [Posting(draw(ACCOUNTS), credit_fen=c) for c in credits]
    order = draw(st.permutations(postings))
    return Entry(draw(st.uuids()).hex, TS, "random", tuple(order))


@given(st.lists(balanced_entries(), max_size=30))
def test_any_sequence_of_valid_entries_keeps_the_books_balanced(entries: list[Entry]) -> None:
    assert sum(e.debit_fen for e in entries) == sum(e.credit_fen for e in entries)
    assert sum(trial_balance(entries).values()) == 0
    round_trip = {Account.parse(str(account)) for account in trial_balance(entries)}
    assert round_trip == set(trial_balance(entries))


@given(balanced_entries(), st.integers(1, 10**6))
def test_tipping_any_balanced_entry_by_one_posting_is_refused(entry: Entry,
                                                              extra: int) -> None:
    tipped = (*entry.postings, Posting(Account.clearing(), debit_fen=extra))
    with pytest.raises(UnbalancedEntryError):
        Entry(entry.entry_id, entry.ts, entry.memo, tipped)
