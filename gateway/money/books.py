"""The site's double-entry books in SQLite: one place that writes and reads ledger entries.

Merchant money (:mod:`gateway.money.merchants`) and drivers' money
(:mod:`gateway.money.payments`) post to the same two tables, so one trial balance covers the
whole car park. The pure rules (what a valid, balanced entry is) live in
:mod:`parkguard.core.ledger`; this module only stores entries that passed them and reads
them back through them again.

The tables belong to the ledger migration set (:mod:`gateway.storage.migrations.ledger`),
applied when the gateway's file is opened, before any desk that posts to them.

>>> from datetime import UTC, datetime
>>> import sqlite_utils
>>> from gateway.storage.migrations import migrate
>>> from parkguard.clock import ManualClock
>>> books = Books(migrate(sqlite_utils.Database(memory=True)),
...               clock=ManualClock(datetime(2026, 5, 1, 2, 0, tzinfo=UTC)))
>>> _ = books.post("payment", "paid at exit", [Posting(Account.clearing(), debit_fen=700),
...                Posting(Account.parking_revenue(), credit_fen=700)])
>>> books.balance(Account.parking_revenue()), sum(books.trial_balance().values())
(-700, 0)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence

import sqlite_utils

from parkguard.clock import Clock, utc_iso
from parkguard.core.ledger import Account, Entry, Fen, Posting, trial_balance

__all__ = ["Books"]

class Books:
    """Balanced entries in, balances and entries out; the caller holds the transaction.

    ``clock`` stamps entries posted without an explicit ``ts``; a reader that never posts
    may leave it out.
    """

    def __init__(self, db: sqlite_utils.Database, *, clock: Clock | None = None) -> None:
        self.db = db
        self._clock = clock

    def post(self, kind: str, memo: str, postings: Sequence[Posting], *,
             merchant_id: str | None = None, ts: str | None = None) -> str:
        """Store one entry and return its id; an unbalanced one raises before anything is written.

        ``kind`` says which business event it is (``top_up``, ``redemption``, ``payment``,
        ...) so reports can pick entries without parsing memos; ``ts`` is UTC ISO text.
        """
        if ts is None:
            if self._clock is None:
                raise ValueError("Books was made without a clock: pass ts= to post()")
            ts = utc_iso(self._clock.now())
        entry = Entry(uuid.uuid4().hex, ts, memo, tuple(postings))
        self.db.table("ledger_entries").insert({"entry_id": entry.entry_id, "ts": entry.ts,
                                                "memo": memo, "merchant_id": merchant_id,
                                                "kind": kind})
        self.db.table("ledger_postings").insert_all(
            {"entry_id": entry.entry_id, "account": str(p.account), "debit_fen": p.debit_fen,
             "credit_fen": p.credit_fen} for p in entry.postings)
        return entry.entry_id

    def balance(self, account: Account) -> Fen:
        """``debits - credits`` on one account over all time."""
        value = self.db.execute(
            "SELECT coalesce(sum(debit_fen - credit_fen), 0) FROM ledger_postings "
            "WHERE account = ?", [str(account)]).fetchone()[0]
        return int(value)

    def totals(self, accounts: Iterable[Account], *, since: str = "",
               until: str | None = None, kind: str | None = None) -> tuple[Fen, Fen]:
        """Debits and credits on ``accounts`` for entries with ``since <= ts < until``,
        only of one ``kind`` if given (``until`` None: no upper bound)."""
        debit_total = credit_total = 0
        for account in accounts:
            debit, credit = self.db.execute(
                "SELECT coalesce(sum(p.debit_fen), 0), coalesce(sum(p.credit_fen), 0) "
                "FROM ledger_postings p JOIN ledger_entries e USING (entry_id) "
                "WHERE p.account = ? AND e.ts >= ? AND (? IS NULL OR e.ts < ?) "
                "AND (? IS NULL OR e.kind = ?)",
                [str(account), since, until, until, kind, kind]).fetchone()
            debit_total += int(debit)
            credit_total += int(credit)
        return debit_total, credit_total

    def entries(self) -> Iterator[Entry]:
        """Every ledger entry, rebuilt (and so re-checked for balance) from the tables."""
        postings: dict[str, list[Posting]] = {}
        for row in self.db.query("SELECT * FROM ledger_postings ORDER BY id"):
            postings.setdefault(row["entry_id"], []).append(Posting(
                Account.parse(row["account"]), row["debit_fen"], row["credit_fen"]))
        for row in self.db.query("SELECT * FROM ledger_entries ORDER BY ts, entry_id"):
            yield Entry(row["entry_id"], row["ts"], row["memo"],
                        tuple(postings.get(row["entry_id"], ())))

    def trial_balance(self) -> Mapping[Account, Fen]:
        """Every touched account's balance; the values sum to 0 or the books are broken."""
        return trial_balance(self.entries())
