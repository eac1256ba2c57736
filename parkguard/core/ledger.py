"""Double-entry bookkeeping for parking money: accounts, postings, balanced entries.

Pure: no IO and no clock (timestamps come in as text). The gateway stores entries in SQLite;
this module only decides what a valid entry *is*, so every writer agrees on it.

Sign convention: an account's balance is ``debits - credits``. Asset-like accounts (the
merchant receivable, the clearing account, drivers' unpaid fees, coupon discounts given,
refunds paid out) then read positive; liability- and income-like accounts (a merchant's
prepaid balance, parking revenue) read negative. Because every entry balances, the trial
balance of any set of entries sums to 0.

>>> topup = Entry("e1", "2026-05-01T02:00:00.000Z", "top-up M001", (
...     Posting(Account.clearing(), debit_fen=10_000),
...     Posting(Account.merchant_prepaid("M001"), credit_fen=10_000),
... ))
>>> trial_balance([topup])[Account.merchant_prepaid("M001")]
-10000
>>> try:
...     Entry("e2", "2026-05-01T02:00:00.000Z", "lopsided", (
...         Posting(Account.clearing(), debit_fen=100),))
... except UnbalancedEntryError as refused:
...     print(refused)
entry 'e2' does not balance: debits 100 fen, credits 0 fen
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from parkguard.errors import ParkGuardError

__all__ = [
    "Account",
    "AccountKind",
    "Entry",
    "Fen",
    "InvalidPostingError",
    "LedgerError",
    "Posting",
    "UnbalancedEntryError",
    "trial_balance",
]

Fen = int
"""Money: whole fen (0.01 CNY). Never a float."""


class LedgerError(ParkGuardError, ValueError):
    """Base of every ledger error: something would make the books wrong."""


class InvalidPostingError(LedgerError):
    """A posting has a negative, non-integer, two-sided or empty amount, or a bad account."""


class UnbalancedEntryError(LedgerError):
    """An entry's debits and credits differ, so it was refused."""


class AccountKind(StrEnum):
    """What an account holds. Merchant accounts belong to one merchant; the rest are the site's."""

    MERCHANT_PREPAID = "merchant_prepaid"
    """Money a merchant paid in advance and the car park owes back as parking (a liability)."""
    MERCHANT_RECEIVABLE = "merchant_receivable"
    """What an overdraft merchant owes the car park for coupons beyond its prepaid money."""
    PARKING_REVENUE = "parking_revenue"
    """Parking fees earned."""
    COUPON_DISCOUNTS = "coupon_discounts"
    """Parking fees waived at exit because a merchant's coupon paid for them."""
    CLEARING = "clearing"
    """Cash and payment-provider money in transit to the bank."""
    PARKING_DEBTORS = "parking_debtors"
    """Unpaid exit fees owed by drivers: booked when a car leaves without paying (or its
    offline payment code fails later), cleared when the plate pays at a later visit."""
    REFUNDS = "refunds"
    """Parking fees paid back to drivers. Kept apart from ``parking_revenue`` (a contra-revenue
    account) so refunds stay visible: net revenue is revenue minus refunds."""


_MERCHANT_KINDS = frozenset({AccountKind.MERCHANT_PREPAID, AccountKind.MERCHANT_RECEIVABLE})


@dataclass(frozen=True, slots=True, order=True)
class Account:
    """One account in the books: a kind, and the merchant for merchant accounts.

    >>> str(Account.merchant_prepaid("M001")), Account.parse("clearing") == Account.clearing()
    ('merchant_prepaid:M001', True)
    """

    kind: AccountKind
    merchant_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind in _MERCHANT_KINDS:
            if not self.merchant_id or ":" in self.merchant_id:
                raise InvalidPostingError(
                    f"a {self.kind.value} account needs a merchant id without ':', "
                    f"got {self.merchant_id!r}")
        elif self.merchant_id is not None:
            raise InvalidPostingError(f"the {self.kind.value} account belongs to the site, "
                                      f"not to merchant {self.merchant_id!r}")

    def __str__(self) -> str:
        """The spelling stored in the database and read back by :meth:`parse`."""
        if self.merchant_id is None:
            return self.kind.value
        return f"{self.kind.value}:{self.merchant_id}"

    @classmethod
    def parse(cls, text: str) -> Account:
        kind, _, merchant = text.partition(":")
        try:
            return cls(AccountKind(kind), merchant or None)
        except ValueError as error:
            raise InvalidPostingError(f"unknown account {text!r}") from error

    @classmethod
    def merchant_prepaid(cls, merchant_id: str) -> Account:
        return cls(AccountKind.MERCHANT_PREPAID, merchant_id)

    @classmethod
    def merchant_receivable(cls, merchant_id: str) -> Account:
        return cls(AccountKind.MERCHANT_RECEIVABLE, merchant_id)

    @classmethod
    def parking_revenue(cls) -> Account:
        return cls(AccountKind.PARKING_REVENUE)

    @classmethod
    def coupon_discounts(cls) -> Account:
        return cls(AccountKind.COUPON_DISCOUNTS)

    @classmethod
    def clearing(cls) -> Account:
        return cls(AccountKind.CLEARING)

    @classmethod
    def parking_debtors(cls) -> Account:
        return cls(AccountKind.PARKING_DEBTORS)

    @classmethod
    def refunds(cls) -> Account:
        return cls(AccountKind.REFUNDS)


def _check_amount(name: str, value: object) -> None:
    # bool is an int subclass; True fen is a bug, not one fen.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidPostingError(f"{name} must be whole fen (int), got {value!r}")
    if value < 0:
        raise InvalidPostingError(f"{name} must not be negative, got {value}")


@dataclass(frozen=True, slots=True)
class Posting:
    """One line of an entry: money into (debit) or out of (credit) one account — one side only.

    Exactly one of ``debit_fen``/``credit_fen`` is positive: a zero posting records nothing
    and a two-sided one hides a net amount, so both are refused.
    """

    account: Account
    debit_fen: Fen = 0
    credit_fen: Fen = 0

    def __post_init__(self) -> None:
        if not isinstance(self.account, Account):
            raise InvalidPostingError(f"posting account must be an Account, got "
                                      f"{self.account!r}")
        _check_amount("debit_fen", self.debit_fen)
        _check_amount("credit_fen", self.credit_fen)
        if (self.debit_fen > 0) == (self.credit_fen > 0):
            raise InvalidPostingError(
                f"posting to {self.account} needs exactly one side set, got debit "
                f"{self.debit_fen} fen and credit {self.credit_fen} fen")

    @property
    def signed_fen(self) -> Fen:
        """``debit - credit``: this posting's effect on its account's balance."""
        return self.debit_fen - self.credit_fen


@dataclass(frozen=True, slots=True)
class Entry:
    """One business event in the books; it cannot exist unless it balances.

    ``ts`` is the UTC ISO-8601 time the gateway recorded it (the core takes no clock).
    """

    entry_id: str
    ts: str
    memo: str
    postings: tuple[Posting, ...]

    def __post_init__(self) -> None:
        if not self.entry_id:
            raise InvalidPostingError("an entry needs an entry_id")
        if not isinstance(self.postings, tuple):
            raise InvalidPostingError(
                f"entry {self.entry_id!r}: postings must be a tuple, got {self.postings!r}")
        for posting in self.postings:
            if not isinstance(posting, Posting):
                raise InvalidPostingError(f"entry {self.entry_id!r}: {posting!r} is not a Posting")
        # One posting can never balance (it has exactly one side set), so the sum check
        # below also refuses single-posting and empty-but-nonzero entries.
        if not self.postings:
            raise InvalidPostingError(f"entry {self.entry_id!r} has no postings")
        if self.debit_fen != self.credit_fen:
            raise UnbalancedEntryError(
                f"entry {self.entry_id!r} does not balance: debits {self.debit_fen} fen, "
                f"credits {self.credit_fen} fen")

    @property
    def debit_fen(self) -> Fen:
        return sum(posting.debit_fen for posting in self.postings)

    @property
    def credit_fen(self) -> Fen:
        return sum(posting.credit_fen for posting in self.postings)

    def movement(self, account: Account) -> Fen:
        """This entry's signed effect (``debit - credit``) on ``account``."""
        return sum(p.signed_fen for p in self.postings if p.account == account)


def trial_balance(entries: Iterable[Entry]) -> Mapping[Account, Fen]:
    """Every touched account's balance (``debits - credits``); the values always sum to 0."""
    balances: dict[Account, Fen] = {}
    for entry in entries:
        for posting in entry.postings:
            balances[posting.account] = balances.get(posting.account, 0) + posting.signed_fen
    return balances
