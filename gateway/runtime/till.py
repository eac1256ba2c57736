"""Money at the lanes: what a car leaving pays, owes or had its coupons pay, and the codes
scanned at a lane.

Runs on the worker inside the transaction that closes the session (or stores the code), so
the money and the passage commit together or not at all.
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.money.billing import Bill, Billing
from gateway.money.merchants import MerchantError
from gateway.money.payments import PendingPayment
from gateway.runtime.inside import CarsInside
from gateway.storage.store import GatewayStore
from parkguard.clock import Clock
from parkguard.core.tariffs import format_yuan
from parkguard.errors import ContractError
from wire.contract.messages import Passed, PaymentCode

log = logging.getLogger(__name__)


class Till:
    """Books exit money and lane payment codes; prices the pay page's bills."""

    def __init__(self, *, store: GatewayStore, billing: Billing, inside: CarsInside,
                 clock: Clock) -> None:
        self._store = store
        self._billing = billing
        self._inside = inside
        self._clock = clock

    def bill_for(self, plate: str) -> Bill | None:
        """What the car inside with this plate would pay leaving now, or None if no car with
        that plate is inside. Looked up as spelled (normalised), never guessed."""
        session_id = self._inside.session_of(plate)
        session = self._store.session(session_id) if session_id else None
        return self._billing.bill(session, self._clock.now()) if session else None

    def prepay(self, plate: str) -> PendingPayment | None:
        """Open a provider order for what this stay owes now; None if nothing is owed."""
        bill = self.bill_for(plate)
        if bill is None or bill.stay_due_fen == 0:
            return None
        return self._billing.payments.start_prepayment(bill.session_id, bill.plate,
                                                       bill.stay_due_fen)

    def take_exit_money(self, session: dict[str, Any], bill: dict[str, Any],
                        event: Passed) -> str | None:
        """Book what the lane collected, what the merchants' coupons paid, and any shortfall
        as a debt the plate's next entry shows; say what a person should look at, if any."""
        session_id, plate = session["session_id"], session["plate"]
        payments, collected = self._billing.payments, event.fee_fen
        stay_paid = min(collected, bill["stay_due_fen"])
        if stay_paid:
            payments.record_exit_payment(session_id, plate, stay_paid, "exit",
                                         idempotency_key=event.event_id)
        if bill["debts_fen"] and collected - stay_paid >= bill["debts_fen"]:
            payments.settle_debts(plate, "exit", "gateway", idempotency_key=event.event_id)
        note = None
        shortfall = bill["stay_due_fen"] - stay_paid
        if shortfall and plate:
            payments.record_debt(session_id, plate, shortfall,
                                 f"left {event.lane} without paying",
                                 idempotency_key=event.event_id)
            note = f"left without paying {format_yuan(shortfall)}: booked as a debt"
        for coupon_id, applied in bill["coupons"]:
            try:
                self._billing.merchants.redeem(coupon_id, session_id=session_id, plate=plate,
                                               applied_fen=applied)
            except MerchantError as error:
                log.warning("gateway: coupon %s not charged for %s: %s", coupon_id, session_id,
                            error)
                note = f"coupon {coupon_id} could not be charged: {error}"
        return note

    def payment_code(self, event: PaymentCode) -> None:
        """A code scanned at a lane, live or from its journal: charge it once; a declined
        code becomes a debt on the plate."""
        plate = self._inside.spelling(event.plate) if event.plate else ""
        session_id = self._inside.session_of(plate) if plate else None
        if session_id is None and plate:
            session_id = self._store.last_session_id(plate)
        if session_id is None:
            raise ContractError(f"payment code at {event.lane} for plate {event.plate!r}, "
                                "which has no session: kept for a person to settle")
        self._billing.payments.pay_with_code(session_id, plate, event.code, event.fee_fen,
                                             captured_at=event.ts, event_id=event.event_id)
