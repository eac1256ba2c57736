"""Money at the lanes: what a car leaving owes or had its coupons pay, the codes scanned at
a lane, and cash or a waiver a guard takes at the dashboard for a car waiting at an exit.

Runs on the worker inside the transaction that closes the session (or stores the code), so
the money and the passage commit together or not at all. Money is booked only where it was
taken (docs/payments.md, "The exit waits for money").
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.money.billing import Bill, Billing
from gateway.money.merchants import MerchantError
from gateway.money.payments import Payment, PendingPayment
from gateway.records.audit import AuditLog
from gateway.runtime.exits import ExitLanes, WaitingCar
from gateway.runtime.inside import CarsInside
from gateway.storage.store import GatewayStore
from parkguard.clock import Clock
from parkguard.core.tariffs import format_yuan
from parkguard.errors import ContractError, ParkGuardError
from wire.contract.messages import Passed, PaymentCode

log = logging.getLogger(__name__)

#: How a car may leave without paying and without owing: billing was suspended.
FREE_EXITS = frozenset({"free_open", "fire"})


class TillError(ParkGuardError, ValueError):
    """Cash or a waiver refused: no car waits, nothing is due, or the amount changed."""


class Till:
    """Books exit money and lane payment codes; prices the pay page's bills."""

    def __init__(self, *, store: GatewayStore, billing: Billing, inside: CarsInside,
                 clock: Clock, audit: AuditLog | None = None,
                 exits: ExitLanes | None = None) -> None:
        self._exits = exits
        self._store = store
        self._billing = billing
        self._inside = inside
        self._clock = clock
        self._audit = audit or AuditLog(store.db, clock=clock)

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

    def owes_nothing(self, session_id: str) -> bool:
        """Whether the stay owes nothing more now (a waiting car may go: its money is in)."""
        session = self._store.session(session_id)
        if session is None or session["state"] != "open":
            return False
        return self._billing.bill(session, self._clock.now()).stay_due_fen == 0

    def take_exit_money(self, session: dict[str, Any], bill: dict[str, Any],
                        event: Passed) -> str | None:
        """Book what a car leaving leaves on the books; say what a person should look at.

        Never a payment: money is booked where it was taken (the provider's callback, a
        charged 付款码, cash at the dashboard), whatever ``event.fee_fen`` says. The
        merchants' coupons the bill used are charged (not for a waived fee). What was due
        and not taken becomes one debt for the session ("left without paying"), except when
        the car went free (``free_open``, ``fire``) or the fee was waived; a declined code
        already booked as a debt counts as that debt. A car let go on a 付款码 by the lane
        alone whose code has not reached the gateway yet owes no debt now: the code, charged
        when it comes, pays or becomes the debt.
        """
        session_id, plate = session["session_id"], session["plate"]
        payments, note = self._billing.payments, None
        if event.settled in FREE_EXITS:
            return None
        if event.settled != "waived":
            for coupon_id, applied in bill["coupons"]:
                try:
                    self._billing.merchants.redeem(coupon_id, session_id=session_id,
                                                   plate=plate, applied_fen=applied)
                except MerchantError as error:
                    log.warning("gateway: coupon %s not charged for %s: %s", coupon_id,
                                session_id, error)
                    note = f"coupon {coupon_id} could not be charged: {error}"
        if event.settled == "waived" or not plate:
            return note
        if event.settled == "payment_code_offline" and not any(
                p.method == "payment_code" for p in payments.payments_for(session_id)):
            return note  # the code is still on its way from the lane's journal: it pays,
            # or its decline is the session's one debt (booking one here made two charges)
        untaken = payments.due(session_id, bill["fee_fen"], at=event.ts).due_fen
        if untaken:
            payments.record_debt(session_id, plate, untaken,
                                 f"left {event.lane} without paying ({event.settled})",
                                 idempotency_key=f"left:{session_id}")
            note = f"left without paying {format_yuan(untaken)}: booked as a debt"
        return note

    def take_cash(self, car: WaitingCar, *, actor: str, reason: str,
                  expected_fen: int | None = None) -> Payment:
        """A guard took the stay's fee in cash from the car waiting at ``car.lane``: booked
        as a ``cash`` payment and audited (``payment.cash``) in one transaction. Refused when
        nothing is due or the amount changed since the guard saw it (``expected_fen``)."""
        bill = self._waiting_bill(car)
        due = bill.stay_due_fen
        if due == 0:
            raise TillError(f"{car.plate} owes nothing now at {car.lane}: open the lane instead")
        if expected_fen is not None and expected_fen != due:
            raise TillError(f"{car.plate} now owes {format_yuan(due)}, not "
                            f"{format_yuan(expected_fen)}: look again before taking cash")
        payments = self._billing.payments
        with self._store.atomic():
            payment = payments.record_exit_payment(car.session_id, car.plate, due, "cash")
            self._audit.record(actor=actor, action="payment.cash",
                               subject=f"session:{car.session_id}", reason=reason,
                               after={"payment_id": payment.payment_id, "amount_fen": due,
                                      "lane": car.lane, "plate": car.plate})
        return payment

    def waive(self, car: WaitingCar, *, actor: str, reason: str) -> int:
        """A guard waived the fee of the car waiting at ``car.lane``: a fee override to 0
        with the reason (audited as ``fee.override``); returns the fee waived."""
        bill = self._waiting_bill(car)
        self._billing.payments.override_fee(car.session_id, 0, actor=actor,
                                            reason=f"waived at {car.lane}: {reason}",
                                            quoted_fen=bill.fee_fen)
        return bill.fee_fen

    def _waiting_bill(self, car: WaitingCar) -> Bill:
        session = self._store.session(car.session_id)
        if session is None or session["state"] != "open":
            raise TillError(f"session {car.session_id} of {car.plate} is not open")
        return self._billing.bill(session, self._clock.now())

    def payment_code(self, event: PaymentCode) -> tuple[Payment | None, WaitingCar | None]:
        """A code scanned at a lane, live or from its journal: charged once (the lane's
        ``event_id`` is the key). Returns the payment (``paid`` or ``failed``; None when the
        car still at the lane owes nothing any more, a second scan, say: not charged) and
        the car waiting at that lane for it, if the lane waits for the gateway's answer.

        A declined code is one debt for the session when the car is gone (the lane let it
        go offline), never a second one; while the car still waits it is no debt: the
        driver can pay another way or back out."""
        read = event.plate or event.identity  # a car without a plate: its kiosk identity
        plate = self._inside.spelling(read) if read else ""
        session_id = self._inside.session_of(plate) if plate else None
        named = self._store.session(event.session_id) if event.session_id else None
        if session_id is None and named is not None and named["plate"] == plate:
            session_id = event.session_id  # the car has left: the stay the lane named
        here = self._exits.at(event.lane) if self._exits is not None else None
        if session_id is None and not plate and here is not None:
            session_id, plate = here.session_id, here.plate  # a no-plate car waiting here
        if session_id is None and plate:
            session_id = self._store.last_session_id(plate)
        if session_id is None:
            raise ContractError(f"payment code at {event.lane} for plate {event.plate!r}, "
                                "which has no session: kept for a person to settle")
        waiting = here if here is not None and here.session_id == session_id else None
        if waiting is not None and self.owes_nothing(session_id):
            log.info("gateway: payment code at %s not charged: %s owes nothing now",
                     event.lane, session_id)
            return None, None
        payments = self._billing.payments
        owes_already = payments.money_for(session_id).booked_debt_fen > 0
        payment = payments.pay_with_code(
            session_id, plate, event.code, event.fee_fen, captured_at=event.ts,
            event_id=event.event_id, debt_on_decline=waiting is None and not owes_already)
        return payment, waiting
