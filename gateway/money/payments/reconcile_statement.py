"""Daily reconciliation of the payments table against a provider's statement file: every
order either side has for the day, and every way they disagree.

The comparison (:func:`reconcile`) is pure; :func:`our_side` reads what the gateway booked
for the statement's day (Beijing, as the providers cut their days) from a database
connection. Orders are matched on the merchant's out_trade_no, which the gateway keeps as
each payment's ``provider_ref``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Literal

import sqlite_utils

from gateway.money.payments.statements import BEIJING, Statement
from parkguard.clock import utc_iso
from parkguard.core.ledger import Fen

MismatchKind = Literal["missing_ours", "missing_theirs", "amount_differs", "refund_differs"]

LABELS: dict[MismatchKind, str] = {
    "missing_ours": "我方缺失 missing on our side",
    "missing_theirs": "对方缺失 missing on theirs",
    "amount_differs": "金额不符 amount differs",
    "refund_differs": "退款不符 refund differs",
}


@dataclass(frozen=True, slots=True)
class Booked:
    """One provider payment as the gateway booked it."""

    out_trade_no: str
    payment_id: str
    amount_fen: Fen
    state: str
    paid_at: str | None


@dataclass(frozen=True, slots=True)
class OurSide:
    """What the gateway has for one day: payments paid that day, refunds made that day
    (by out_trade_no), and every provider order it knows, for explaining a gap."""

    day: date
    paid: Mapping[str, Booked]
    refunds: Mapping[str, Fen]
    known: Mapping[str, Booked] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Mismatch:
    kind: MismatchKind
    out_trade_no: str
    ours_fen: Fen | None
    theirs_fen: Fen | None
    note: str = ""


def day_bounds(day: date) -> tuple[str, str]:
    """The Beijing day as UTC ISO text bounds ``[start, end)``, comparable with the table."""
    start = datetime.combine(day, time(0), tzinfo=BEIJING)
    return utc_iso(start), utc_iso(start + timedelta(days=1))


def reconcile(statement: Statement, ours: OurSide) -> list[Mismatch]:
    """Every disagreement between the statement and the gateway's books for the day,
    ordered by out_trade_no: an order paid on one side only, a different amount, and
    different refunds."""
    theirs_paid: dict[str, Fen] = defaultdict(int)
    theirs_refunds: dict[str, Fen] = defaultdict(int)
    for line in statement.lines:
        target = theirs_paid if line.kind == "payment" else theirs_refunds
        target[line.out_trade_no] += line.amount_fen
    found: list[Mismatch] = []
    for no, fen in theirs_paid.items():
        booked = ours.paid.get(no)
        if booked is None:
            known = ours.known.get(no)
            note = "我方无此订单 no such order here" if known is None else \
                f"我方为 ours is {known.state}" + (f" ({known.paid_at})" if known.paid_at else "")
            found.append(Mismatch("missing_ours", no, None, fen, note))
        elif booked.amount_fen != fen:
            found.append(Mismatch("amount_differs", no, booked.amount_fen, fen,
                                  f"payment {booked.payment_id}"))
    for no, booked in ours.paid.items():
        if no not in theirs_paid:
            found.append(Mismatch("missing_theirs", no, booked.amount_fen, None,
                                  f"payment {booked.payment_id}"))
    for no in sorted(set(theirs_refunds) | set(ours.refunds)):
        mine, theirs = ours.refunds.get(no, 0), theirs_refunds.get(no, 0)
        if mine != theirs:
            found.append(Mismatch("refund_differs", no, mine, theirs))
    return sorted(found, key=lambda m: (m.out_trade_no, m.kind))


def our_side(db: sqlite_utils.Database, day: date, *, wallet: str | None = None) -> OurSide:
    """The gateway's provider payments paid on ``day`` and provider refunds made on it.

    Cash and refunds over the counter never reach a provider and are left out; so are
    payment codes of another wallet than ``wallet`` (``wechat`` / ``alipay``), which that
    provider could not have charged.
    """
    start, end = day_bounds(day)
    known: dict[str, Booked] = {}
    paid: dict[str, Booked] = {}
    for row in db.query(
            "SELECT payment_id, provider_ref, amount_fen, state, paid_at, method, wallet "
            "FROM payments WHERE provider_ref IS NOT NULL AND method != 'cash'"):
        if wallet is not None and row["method"] == "payment_code" \
                and row["wallet"] not in (None, wallet):
            continue
        booked = Booked(row["provider_ref"], row["payment_id"], int(row["amount_fen"]),
                        row["state"], row["paid_at"])
        known[booked.out_trade_no] = booked
        if row["state"] in ("paid", "partly_refunded", "refunded") and row["paid_at"] \
                and start <= row["paid_at"] < end:
            paid[booked.out_trade_no] = booked
    refunds: dict[str, Fen] = defaultdict(int)
    for row in db.query(
            "SELECT p.provider_ref AS ref, r.amount_fen AS fen FROM refunds r "
            "JOIN payments p ON p.payment_id = r.payment_id "
            "WHERE r.via = 'provider' AND r.created_at >= ? AND r.created_at < ?",
            [start, end]):
        if row["ref"] in known:
            refunds[row["ref"]] += int(row["fen"])
    return OurSide(day, paid, dict(refunds), known)
