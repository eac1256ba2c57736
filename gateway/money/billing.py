"""What a car owes when it leaves: its stay priced with its pass, coupons, payments and old debts.

One place composes the money cores, so the exit display, the pay page and the answer to a
fee complaint show the same bill. Pure questions go to the cores (``quote``,
``billable_span``, ``amount_due``); the desks only say what is on record.

The order, and why:

1. **Access.** A whitelisted car pays nothing. A pass car pays only for the part of the stay
   its pass did not cover (:func:`~parkguard.core.access.billable_span`), priced in the pass's
   vehicle class.
2. **Coupons.** Every live merchant coupon for the plate is offered to the quote; the tariff's
   stacking policy decides which apply, and each discount carries its coupon's id so the
   merchant is charged exactly what it took off when the car leaves.
3. **Payments.** A fee override replaces the quote; what was paid on the pay page counts, and
   inside the grace time after paying nothing is due (:func:`~parkguard.core.payments.amount_due`).
4. **Old debts.** Fees this plate left without paying before are on the bill (and were shown
   on the lane display when it came in); they do not hold the car at the exit, and nothing
   collects them yet (docs/payments.md, "Not done yet").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.money.merchants import MerchantAccounts
from gateway.money.passes import AccessDesk
from gateway.money.payments import PaymentDesk
from gateway.money.pricing import SitePricing
from parkguard.core.access import billable_span
from parkguard.core.bill_lines import Itemised, itemise, lane_display, started_minutes
from parkguard.core.ledger import Fen
from parkguard.core.plates import NoPlateId, PlateError, is_no_plate
from parkguard.core.tariffs import Quote, format_yuan
from parkguard.errors import TariffError
from wire.contract.messages import EARLIEST, LATEST


@dataclass(frozen=True, slots=True)
class Bill:
    """A session's money at one moment: the receipt, what was paid, and what is due now."""

    session_id: str
    plate: str
    access: str
    """How the car came in: ``visitor``, ``pass`` or ``whitelisted``."""
    quote: Quote | None
    """The itemised receipt; None when a pass or the whitelist covered the whole stay."""
    fee_fen: Fen
    """This stay's fee: the quote's total, or a manager's override."""
    overridden: bool
    paid_fen: Fen
    stay_due_fen: Fen
    """What this stay still owes now (0 inside the grace time after paying)."""
    debts_fen: Fen
    """Earlier unpaid exits of this plate, collected with this one."""
    grace_until: datetime | None
    stay_debt_fen: Fen = 0
    """The part of this stay already booked as a debt (a declined payment code)."""
    within_grace: bool = False
    """Whether the car is inside the grace after paying (nothing due until it ends)."""
    stay_minutes: int = 0
    """How long the car has stayed, entry to the moment billed (started minutes)."""

    def lines(self, *, suspended: bool = False) -> Itemised:
        """The itemised bill every screen renders (:mod:`parkguard.core.bill_lines`): its
        lines sum to this bill's totals. ``suspended``: a fire alarm suspends billing
        (``AlarmMonitor.billing_suspended()``), so nothing is asked for."""
        return itemise(self.quote, access=self.access,
                       fee_fen=self.fee_fen if self.overridden else None,
                       paid_fen=self.paid_fen, stay_debt_fen=self.stay_debt_fen,
                       within_grace=self.within_grace, debts_fen=self.debts_fen,
                       minutes=self.stay_minutes, suspended=suspended)

    @property
    def due_fen(self) -> Fen:
        """What the exit collects now."""
        return self.stay_due_fen + self.debts_fen

    @property
    def coupons(self) -> tuple[tuple[str, Fen], ...]:
        """(merchant coupon id, fen it took off) for each merchant coupon the quote used."""
        if self.quote is None or self.overridden:
            return ()
        return tuple((d.ref, d.fen) for d in self.quote.discounts if d.ref is not None)

    @property
    def reason(self) -> str:
        """The decision's reason code at the exit: ``payment_due`` while this stay still owes
        money (the barrier stays down until it is taken); older debts alone do not hold the
        car, they stay on the plate and are shown."""
        if self.stay_due_fen:
            return "payment_due"
        if self.access in ("pass", "whitelisted") and self.fee_fen == 0:
            return self.access
        if self.quote is not None and self.quote.exemption and not self.overridden:
            return "exempt"
        return "prepaid" if self.paid_fen else "free"

    def display(self, *, qr: bool = True) -> tuple[str, str]:
        """The exit display's two lines (Chinese, English; 64 characters at most): with money
        due, plate, stay and amount, and how to pay (the lane's QR when ``qr``, else a
        付款码); else why the car may go, and any older debt still on the plate."""
        shown = shown_on_display(self.plate)
        if self.stay_due_fen:
            return lane_display(shown, self.lines(), qr=qr)
        words = {"pass": ("月卡", "Pass"), "whitelisted": ("免费放行", "Free exit"),
                 "exempt": ("免费放行", "Free exit"), "prepaid": ("已缴费", "Paid"),
                 "free": ("免费", "No charge")}
        zh, en = words[self.reason]
        if self.debts_fen:
            owed = format_yuan(self.debts_fen)
            return (f"{shown} {zh} 另欠费{owed} 请补缴"[:64],
                    f"{shown} {en}: {owed} unpaid from before"[:64])
        return f"{shown} {zh} 一路平安", f"{shown} {en}: goodbye"

    def as_json(self) -> dict[str, Any]:
        """What the decision keeps: the receipt and the money beside it."""
        return {
            "session_id": self.session_id, "plate": self.plate, "access": self.access,
            "quote": self.quote.as_json() if self.quote else None, "fee_fen": self.fee_fen,
            "overridden": self.overridden, "paid_fen": self.paid_fen,
            "stay_due_fen": self.stay_due_fen, "debts_fen": self.debts_fen,
            "due_fen": self.due_fen, "reason": self.reason,
            "grace_until": self.grace_until.isoformat() if self.grace_until else None,
            "coupons": [list(pair) for pair in self.coupons],
        }


def shown_on_display(plate: str) -> str:
    """What a lane display may show for a session's plate: the plate itself, or for a
    no-plate identity only its masked form (尾号5678, 票…31QZ), as the lane shows offline."""
    if not is_no_plate(plate):
        return plate
    try:
        return NoPlateId.parse(plate).masked
    except PlateError:
        return "无牌车"


class Billing:
    """Prices sessions for the gateway's worker thread (the desks share its connection)."""

    def __init__(self, *, pricing: SitePricing, merchants: MerchantAccounts,
                 access: AccessDesk, payments: PaymentDesk) -> None:
        self.pricing = pricing
        self.merchants = merchants
        self.access = access
        self.payments = payments

    def bill(self, session: Mapping[str, Any], now: datetime) -> Bill:
        """The bill if the car in ``session`` (a ``sessions`` row) left at ``now``."""
        session_id, plate = str(session["session_id"]), str(session["plate"])
        access = session.get("access") or "visitor"
        quote = self._quote(session_id, plate, access,
                            datetime.fromisoformat(session["entry_at"]), now)
        fee = quote.total_fen if quote is not None else 0
        override = self.payments.fee_override(session_id)
        due = self.payments.due(session_id, fee, at=now)
        debts = sum(debt.amount_fen for debt in self.payments.debts_for(plate)
                    if debt.session_id != session_id) if plate else 0
        entry = datetime.fromisoformat(session["entry_at"])
        return Bill(session_id, plate, access, quote,
                    fee if override is None else override, override is not None,
                    due.paid_fen, due.due_fen, debts, due.grace_until,
                    stay_debt_fen=due.debt_fen, within_grace=due.within_grace,
                    stay_minutes=started_minutes(entry, now))

    def _quote(self, session_id: str, plate: str, access: str, entry: datetime,
               exit: datetime) -> Quote | None:
        if access == "whitelisted":
            return None
        span: tuple[datetime, datetime] | None = (entry, exit)
        vehicle_class = None
        if access == "pass":
            held = self.access.pass_of_session(session_id)
            if held is not None:
                span = billable_span(entry, exit, held)
                vehicle_class = held.vehicle_class
        if span is None:
            return None
        if not EARLIEST <= span[0] < LATEST:  # a record from before the contract bounded times
            raise TariffError(f"entry {span[0].isoformat()} is out of the range a stay can be "
                              f"priced in ({EARLIEST.year}-{LATEST.year - 1}): price it by hand")
        # The entry is stamped by the lane's clock and ``exit`` is the gateway's now: within
        # the skew the receipt window allows (wire.contract.window), a car may look as if it
        # left before it came in; it has stayed no time at all, not a negative time.
        span = (span[0], max(span[0], span[1]))
        coupons = [c.as_tariff_coupon() for c in self.merchants.coupons_for(plate)] \
            if plate else []
        return self.pricing.quote(plate=plate, entry=span[0], exit=span[1], coupons=coupons,
                                  vehicle_class=vehicle_class)

