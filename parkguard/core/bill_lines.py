"""One itemised bill: every line a driver, a guard or a fee complaint is shown, as data.

The pay page, the dashboard, ``parkguard tariff quote`` and the lane display used to each
pick some numbers off a :class:`~parkguard.core.tariffs.Quote` and the payments beside it,
and each forgot a different one (a new-energy plate's class adjustment, the debt already
booked for the stay, the grace after paying). Here the bill is built once, line by line,
and every total is the sum of its lines, so no screen can show ``10 + 5 - 7.50 = 0``.

The lines, in order, and their signs (fen; money the driver owes is positive):

1. **Stay** (``section="stay"``): each charged period or tier of the quote, free time
   (0 fen), each cap taken off (negative), the vehicle-class adjustment (negative for a
   new-energy car at half price, positive for a large one), each coupon and exemption
   (negative). A pass or the whitelist covering the whole stay is one 0-fen line. A
   manager's fee override is one line taking the fee from the quote's total to the
   override. These sum to the stay's fee.
2. **Settled** (``section="settled"``): what was paid (negative), the part of this stay
   already booked as a debt (negative: it is asked for at the plate's next visit, not
   twice), "paid more than the fee" (positive, so nothing is due below zero), and inside
   the grace after paying, the rest (negative: nothing is due until the grace ends).
   Stay and settled lines sum to what this stay owes now (``stay_due_fen``: the pay page).
3. **Suspended** (``section="suspended"``): while a fire alarm suspends billing, one line
   taking this stay's due off: the exits are free and nobody is asked to pay. The lines so
   far sum to ``payable_fen``: what holds the car at the exit and what the pay page takes.
4. **Debts** (``section="debts"``): earlier exits of this plate left unpaid: shown, and
   still owed by the plate.

All lines sum to ``due_fen``: everything the plate owes now. Pure: no IO, no clock.

>>> bill = itemise(None, access="pass")
>>> [(line.kind, line.fen) for line in bill.lines], bill.due_fen
([('pass', 0)], 0)
>>> stay_zh(183), stay_en(183), stay_zh(183, spaced=True)
('3小时3分', '3h 3m', '3 小时 3 分')
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from parkguard.core.ledger import Fen
from parkguard.core.tariffs import Quote, format_yuan

__all__ = ["BillLine", "Itemised", "LineKind", "Section", "itemise", "lane_display",
           "started_minutes", "stay_en", "stay_zh"]

LineKind = Literal["period", "free", "cap", "class", "coupon", "exemption", "pass",
                   "whitelisted", "override", "paid", "stay_debt", "overpaid", "grace",
                   "debt", "suspended"]
Section = Literal["stay", "settled", "debts", "suspended"]

#: The lane display's line limit (wire contract: ``display_zh``/``display_en``).
DISPLAY_CHARS = 64


@dataclass(frozen=True, slots=True)
class BillLine:
    """One line of a bill: what it is, its words in Chinese and English, a short detail
    (minutes, a cap's day, a coupon's reason) and its signed amount in fen."""

    kind: LineKind
    section: Section
    label_zh: str
    label_en: str
    fen: Fen
    detail: str = ""
    ref: str | None = None
    """A merchant coupon's id (so its merchant is charged what it took off), else None."""

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "section": self.section, "label_zh": self.label_zh,
                "label_en": self.label_en, "fen": self.fen, "detail": self.detail,
                "ref": self.ref}


@dataclass(frozen=True, slots=True)
class Itemised:
    """The lines and the totals they sum to (each total is computed from the lines)."""

    lines: tuple[BillLine, ...]
    minutes: int
    """How long the car has stayed (started minutes), for the headline and the display."""

    def _sum(self, *sections: Section) -> Fen:
        return sum(line.fen for line in self.lines if line.section in sections)

    @property
    def fee_fen(self) -> Fen:
        """The stay's fee: the stay lines."""
        return self._sum("stay")

    @property
    def stay_due_fen(self) -> Fen:
        """What this stay owes now by the grace rule, before a fire suspends billing."""
        return self._sum("stay", "settled")

    @property
    def debts_fen(self) -> Fen:
        return self._sum("debts")

    @property
    def suspended(self) -> bool:
        """Whether a fire suspension took this stay's due off."""
        return any(line.section == "suspended" for line in self.lines)

    @property
    def payable_fen(self) -> Fen:
        """What holds the car and the pay page takes now: this stay's due, nothing while
        billing is suspended (the lines above the debts)."""
        return self._sum("stay", "settled", "suspended")

    @property
    def due_fen(self) -> Fen:
        """Everything the plate owes now, earlier debts included: every line."""
        return sum(line.fen for line in self.lines)

    def public(self) -> Itemised:
        """What anyone typing the plate may see (no ticket token), so that the page tells no
        more than what is due: nothing owed reads exactly like a car not inside (one 0 fee
        line); else the stay's charges (periods, caps, class, pass, exemption, override)
        folded into one "parking fee" line, so neither its start nor its length shows, then
        the coupons and payments as they are. Earlier debts are the plate's history: not
        shown. Sums to the same :attr:`payable_fen`."""
        if self.payable_fen == 0:
            return Itemised((BillLine("period", "stay", "停车费", "parking fee", 0),), 0)
        kept = [line for line in self.lines if line.section != "debts"]
        charge = sum(line.fen for line in kept if line.kind in _FOLDED)
        rest = [line for line in kept if line.kind not in _FOLDED]
        return Itemised((BillLine("period", "stay", "停车费", "parking fee", charge), *rest), 0)

    def as_json(self) -> dict[str, Any]:
        return {"lines": [line.as_json() for line in self.lines], "minutes": self.minutes,
                "stay_zh": stay_zh(self.minutes, spaced=True), "stay_en": stay_en(self.minutes),
                "fee_fen": self.fee_fen, "stay_due_fen": self.stay_due_fen,
                "debts_fen": self.debts_fen, "payable_fen": self.payable_fen,
                "due_fen": self.due_fen, "suspended": self.suspended}


#: Lines that tell how long or how the car stayed (folded on a page anyone may open).
_FOLDED = frozenset({"period", "free", "cap", "class", "pass", "whitelisted", "exemption",
                     "override"})


def started_minutes(entry: datetime, now: datetime) -> int:
    """How long a car has stayed in started minutes, as the tariff counts (never below 0)."""
    return max(0, -int(-(now - entry).total_seconds() // 60))


def stay_zh(minutes: int, *, spaced: bool = False) -> str:
    """``183`` → ``'3小时3分'`` (``'3 小时 3 分'`` spaced, as the pay page shows it)."""
    hours, rest = divmod(max(0, minutes), 60)
    parts = ([f"{hours}", "小时"] if hours else []) + ([f"{rest}", "分"] if rest or not hours
                                                       else [])
    return " ".join(parts) if spaced else "".join(parts)


def stay_en(minutes: int) -> str:
    """``183`` → ``'3h 3m'``; ``180`` → ``'3h'``; ``5`` → ``'5m'``."""
    hours, rest = divmod(max(0, minutes), 60)
    if not hours:
        return f"{rest}m"
    return f"{hours}h {rest}m" if rest else f"{hours}h"


#: The usual class names in words (a tariff may name others: those show as named).
_CLASS_WORDS: dict[str, str] = {"small": "小型车 small car", "large": "大型车 large vehicle",
                                "new_energy": "新能源车 new-energy"}


def _quote_lines(quote: Quote) -> list[BillLine]:
    lines: list[BillLine] = []
    for part in quote.lines:
        kind: LineKind = "free" if part.code == "free" else "period"
        counted = f"{part.minutes}→{part.rounded_minutes}" \
            if part.rounded_minutes != part.minutes else f"{part.minutes}"
        detail = f"{part.start:%H:%M} {counted} 分钟 min"
        lines.append(BillLine(kind, "stay", part.label_zh, part.label_en, part.fen, detail))
    lines += [BillLine("cap", "stay", cap.label_zh, cap.label_en, -cap.fen, cap.key)
              for cap in quote.caps]
    if quote.class_fen:
        lines.append(BillLine("class", "stay", "车型调整", "vehicle class", quote.class_fen,
                              _CLASS_WORDS.get(quote.vehicle_class, quote.vehicle_class)))
    for discount in quote.discounts:
        waived: LineKind = "exemption" if quote.exemption and discount.code == "exemption" \
            else "coupon"
        lines.append(BillLine(waived, "stay", discount.label_zh, discount.label_en,
                              -discount.fen, discount.reason, discount.ref))
    return lines


def itemise(quote: Quote | None, *, access: str = "visitor", fee_fen: Fen | None = None,
            paid_fen: Fen = 0, stay_debt_fen: Fen = 0, within_grace: bool = False,
            debts_fen: Fen = 0, minutes: int | None = None, suspended: bool = False) -> Itemised:
    """The bill's lines from the receipt and the money on record.

    ``fee_fen`` is the stay's fee if a manager overrode it (None: the quote's total);
    ``paid_fen`` what was paid for the stay, net of refunds; ``stay_debt_fen`` the part of
    this stay already booked as a debt; ``within_grace`` whether the car is inside the grace
    after paying (the page shows until when); ``debts_fen`` earlier exits left unpaid;
    ``minutes`` how long the car stayed (default the quote's minutes); ``suspended`` a fire
    alarm suspends billing. The due amounts follow the grace rule
    (:func:`parkguard.core.payments.amount_due`) from the lines themselves.
    """
    if min(paid_fen, stay_debt_fen, debts_fen) < 0 or (fee_fen is not None and fee_fen < 0):
        raise ValueError("bill amounts are fen and never negative")
    lines: list[BillLine] = []
    if quote is not None:
        lines += _quote_lines(quote)
    elif access == "whitelisted":
        lines.append(BillLine("whitelisted", "stay", "免费车辆", "whitelisted: free", 0))
    else:
        lines.append(BillLine("pass", "stay", "月卡覆盖", "covered by a pass", 0))
    quoted = sum(line.fen for line in lines)
    if fee_fen is not None:
        lines.append(BillLine("override", "stay", "人工调整", "fee set by a manager",
                              fee_fen - quoted, f"{format_yuan(quoted)} → {format_yuan(fee_fen)}"))
    fee = quoted if fee_fen is None else fee_fen
    if paid_fen:
        lines.append(BillLine("paid", "settled", "已付", "paid", -paid_fen))
    if stay_debt_fen:
        lines.append(BillLine("stay_debt", "settled", "已记欠费", "booked as a debt",
                              -stay_debt_fen, "下次入场收取 asked at the next visit"))
    left = fee - paid_fen - stay_debt_fen
    if left < 0:
        lines.append(BillLine("overpaid", "settled", "已付超过本次费用",
                              "paid more than the fee", -left, "不另收 nothing more due"))
        left = 0
    if left and within_grace:
        lines.append(BillLine("grace", "settled", "缴费后离场免费时段", "grace after paying",
                              -left))
    owed = sum(line.fen for line in lines)
    if suspended and owed:
        lines.append(BillLine("suspended", "suspended", "消防警报 暂停收费",
                              "fire alarm: billing suspended", -owed))
    if debts_fen:
        lines.append(BillLine("debt", "debts", "往次欠费", "unpaid from earlier visits",
                              debts_fen))
    if minutes is None:
        minutes = quote.minutes if quote is not None else 0
    return Itemised(tuple(lines), minutes)


def lane_display(shown_plate: str, bill: Itemised, *, qr: bool) -> tuple[str, str]:
    """The exit display's short form while this stay owes money (Chinese, English; 64
    characters each): ``粤B12345 停3小时3分 应付¥15.00`` / ``Stay 3h 3m: pay ¥15.00 - scan
    QR``. The amount is what holds the car (:attr:`Itemised.payable_fen`; older debts stay
    on the plate); ``qr`` says whether the lane shows the pay-page QR, else a 付款码.

    >>> bill = itemise(None, fee_fen=1500, minutes=183)
    >>> lane_display("粤B12345", bill, qr=True)
    ('粤B12345 停3小时3分 应付¥15.00', 'Stay 3h 3m: pay ¥15.00 - scan QR')
    """
    due = format_yuan(bill.payable_fen)
    zh = f"{shown_plate} 停{stay_zh(bill.minutes)} 应付{due}"
    how = "scan QR" if qr else "show pay code"
    en = f"Stay {stay_en(bill.minutes)}: pay {due} - {how}"
    return zh[:DISPLAY_CHARS], en[:DISPLAY_CHARS]
