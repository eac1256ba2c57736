"""Drivers' money as values: payments, pending orders, debts, refunds, fee overrides, and
the checks on what callers hand the desk."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeAlias

from gateway.money.payments.errors import IdempotencyConflictError, RefundRefusedError
from parkguard.clock import utc_iso
from parkguard.core.ledger import Fen
from parkguard.core.plates.normalise import normalise_plate

Method: TypeAlias = Literal["prepay", "exit", "payment_code", "cash"]
ExitMethod: TypeAlias = Literal["exit", "cash"]
PaymentState: TypeAlias = Literal["pending", "paid", "failed", "refunded", "partly_refunded"]
Purpose: TypeAlias = Literal["fee", "debts"]


_REFUNDABLE_STATES = frozenset({"paid", "partly_refunded"})


@dataclass(frozen=True, slots=True)
class Payment:
    """One payment as stored. ``session_id`` is None for a payment of old debts;
    ``refunded_fen`` is what was paid back of ``amount_fen``; ``failure`` is a declined
    code's reason."""

    payment_id: str
    purpose: Purpose
    session_id: str | None
    plate: str
    method: Method
    amount_fen: Fen
    refunded_fen: Fen
    state: PaymentState
    provider_ref: str | None
    created_at: str
    paid_at: str | None
    failure: str | None
    entry_id: str | None


@dataclass(frozen=True, slots=True)
class PendingPayment:
    """A prepayment waiting for the driver: the pay page shows ``pay_url``."""

    payment_id: str
    session_id: str
    plate: str
    amount_fen: Fen
    provider_ref: str
    pay_url: str


@dataclass(frozen=True, slots=True)
class Debt:
    """A fee a plate left without paying; open until ``settled_at`` (by payment ``settled_by``)."""

    debt_id: str
    plate: str
    session_id: str | None
    amount_fen: Fen
    reason: str
    created_at: str
    settled_at: str | None
    settled_by: str | None


@dataclass(frozen=True, slots=True)
class Refund:
    """Money paid back on one payment, through the provider or over the counter (``via``)."""

    refund_id: str
    payment_id: str
    amount_fen: Fen
    via: Literal["provider", "cash"]
    provider_ref: str | None
    created_at: str
    entry_id: str


@dataclass(frozen=True, slots=True)
class FeeOverride:
    """A person set a session's fee by hand: the quote said ``quoted_fen``, they said
    ``fee_fen``."""

    session_id: str
    quoted_fen: Fen
    fee_fen: Fen
    actor: str
    reason: str
    created_at: str


@dataclass(frozen=True, slots=True)
class SessionMoney:
    """A session's money: ``paid_fen`` net of refunds, when it was last paid, and its debts
    (``booked_debt_fen`` all ever recorded for it, ``open_debt_fen`` those not yet paid)."""

    session_id: str
    paid_fen: Fen
    last_paid_at: datetime | None
    open_debt_fen: Fen
    booked_debt_fen: Fen


def _payment_from(row: dict[str, Any]) -> Payment:
    return Payment(row["payment_id"], row["purpose"], row["session_id"], row["plate"],
                   row["method"], row["amount_fen"], row["refunded_fen"], row["state"],
                   row["provider_ref"], row["created_at"], row["paid_at"], row["failure"],
                   row["entry_id"])


def _debt_from(row: dict[str, Any]) -> Debt:
    return Debt(row["debt_id"], row["plate"], row["session_id"], row["amount_fen"],
                row["reason"], row["created_at"], row["settled_at"], row["settled_by"])


def _plate(plate: str) -> str:
    normalised = normalise_plate(plate)
    if not normalised:
        raise ValueError(f"plate {plate!r} has no letters or digits")
    return normalised


def _iso(text: str) -> str:
    """Any ISO-8601 instant with a zone, as ParkGuard's UTC text (so text order is time order)."""
    return utc_iso(datetime.fromisoformat(text.replace("Z", "+00:00")))


def _require_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int (fen), got {value!r}")


def _require_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")


def _check_refundable(row: dict[str, Any], amount_fen: Fen) -> None:
    if row["state"] not in _REFUNDABLE_STATES:
        raise RefundRefusedError("not_paid", f"payment {row['payment_id']} is {row['state']}: "
                                             "there is nothing to refund")
    left = int(row["amount_fen"]) - int(row["refunded_fen"])
    if amount_fen > left:
        raise RefundRefusedError(
            "exceeds_paid", f"payment {row['payment_id']} has {left} fen left to refund "
                            f"(paid {row['amount_fen']}, refunded {row['refunded_fen']}); "
                            f"{amount_fen} fen refused")


def _same_payment(row: dict[str, Any], session_id: str, amount_fen: Fen) -> Payment:
    """The payment an idempotency key already made, if the retry asks for the same thing."""
    if row["session_id"] != session_id or int(row["amount_fen"]) != amount_fen:
        raise IdempotencyConflictError(
            f"idempotency key {row['idempotency_key']!r} already paid {row['amount_fen']} fen "
            f"for session {row['session_id']}, not {amount_fen} fen for {session_id}")
    return _payment_from(row)
