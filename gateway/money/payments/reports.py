"""Revenue for a period from the payment tables, beside what the ledger says for it (they
must agree)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import sqlite_utils

from gateway.money.books import Books
from parkguard.clock import utc_iso
from parkguard.core.ledger import Account, Fen

MONEY_IN_STATES = ("paid", "partly_refunded", "refunded")


_LEDGER_KINDS = ("payment", "debt", "debt_settlement", "refund")


@dataclass(frozen=True, slots=True)
class RevenueReport:
    """Money for ``since <= t < until`` from the payment tables, beside the ledger's view.

    Identities that hold for any period (the tests check them):
    ``ledger_revenue_fen == sum(fees_by_method.values()) + debts_recorded_fen`` and
    ``ledger_refunds_fen == refunds_fen``. ``debts_settled_fen`` is money in that was already
    revenue (when the debt was booked), so it is not revenue again.
    """

    since: str
    until: str
    fees_by_method: Mapping[str, Fen]
    debts_recorded_fen: Fen
    debts_settled_fen: Fen
    refunds_fen: Fen
    ledger_revenue_fen: Fen
    ledger_refunds_fen: Fen
    open_debts_fen: Fen
    """Debts booked before ``until`` and not settled by then: what drivers still owe."""

    @property
    def net_revenue_fen(self) -> Fen:
        """Parking revenue earned in the period minus refunds paid in it."""
        return self.ledger_revenue_fen - self.ledger_refunds_fen


def revenue_report(db: sqlite_utils.Database, books: Books, since: datetime,
                   until: datetime) -> RevenueReport:
    """Fees by method, debts booked and settled, and refunds for ``since <= t < until``,
    beside what the ledger says for the same period (they must agree)."""
    start, end = utc_iso(since), utc_iso(until)
    fees: dict[str, Fen] = {}
    for row in db.query(
            "SELECT method, sum(amount_fen) AS fen FROM payments WHERE purpose = 'fee' "
            "AND state IN (?, ?, ?) AND paid_at >= ? AND paid_at < ? GROUP BY method "
            "ORDER BY method", [*MONEY_IN_STATES, start, end]):
        fees[row["method"]] = int(row["fen"])

    def scalar(sql: str, params: list[str]) -> Fen:
        return int(db.execute(sql, params).fetchone()[0])

    settled = scalar(
        "SELECT coalesce(sum(amount_fen), 0) FROM payments WHERE purpose = 'debts' "
        "AND state IN (?, ?, ?) AND paid_at >= ? AND paid_at < ?",
        [*MONEY_IN_STATES, start, end])
    recorded = scalar("SELECT coalesce(sum(amount_fen), 0) FROM debts "
                      "WHERE created_at >= ? AND created_at < ?", [start, end])
    still_open = scalar("SELECT coalesce(sum(amount_fen), 0) FROM debts "
                        "WHERE created_at < ? AND (settled_at IS NULL OR settled_at >= ?)",
                        [end, end])
    refunds = scalar("SELECT coalesce(sum(amount_fen), 0) FROM refunds "
                     "WHERE created_at >= ? AND created_at < ?", [start, end])
    revenue = 0
    for kind in _LEDGER_KINDS:
        debit, credit = books.totals([Account.parking_revenue()], since=start,
                                     until=end, kind=kind)
        revenue += credit - debit
    refund_debit, refund_credit = books.totals([Account.refunds()], since=start,
                                               until=end, kind="refund")
    return RevenueReport(start, end, fees, recorded, settled, refunds, revenue,
                         refund_debit - refund_credit, still_open)
