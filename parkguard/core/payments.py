"""What a driver still owes for a stay, and whether a scanned payment code looks like one.

Pure: no IO and no clock (``now`` comes in), so the pay page, the exit lane and the gateway
compute the same amount from the same facts.

**The grace rule.** A driver who pays on the pay page (or at a pay station) before walking
to the car gets ``grace_minutes`` to drive out. Inside that window nothing is due, even
though the tariff meter kept running. After it, only the *extra* is due: the fee for the
whole stay now, minus what was paid (and minus any part of this stay already booked as a
debt), never below zero. Paying ¥10 at 10:00 with 15 minutes' grace and leaving at 10:20,
when the stay has grown to ¥12, costs ¥2 more; leaving at 10:14 costs nothing.

>>> from datetime import UTC, datetime
>>> paid_at = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
>>> amount_due(fee_now_fen=1_200, paid_fen=1_000, last_paid_at=paid_at, grace_minutes=15,
...            now=datetime(2026, 5, 1, 2, 14, tzinfo=UTC)).due_fen
0
>>> amount_due(fee_now_fen=1_200, paid_fen=1_000, last_paid_at=paid_at, grace_minutes=15,
...            now=datetime(2026, 5, 1, 2, 20, tzinfo=UTC)).due_fen
200
>>> payment_code_wallet("134567890123456789")
'wechat'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, TypeAlias

from parkguard.core.ledger import Fen

__all__ = ["Due", "Wallet", "amount_due", "payment_code_wallet"]

Wallet: TypeAlias = Literal["wechat", "alipay"]

_CODE_LENGTHS = range(16, 25)
_WECHAT_PREFIXES = frozenset({"10", "11", "12", "13", "14", "15"})
_ALIPAY_PREFIXES = frozenset({"25", "26", "27", "28", "29", "30"})


@dataclass(frozen=True, slots=True)
class Due:
    """What the exit should ask for now, and why.

    ``paid_fen`` is what was paid for the stay (net of refunds), ``debt_fen`` the part of the
    stay already booked as a debt; ``grace_until`` is when the grace after the last payment
    ends (None if nothing was paid) and ``within_grace`` says whether ``now`` is inside it.
    """

    due_fen: Fen
    paid_fen: Fen
    grace_until: datetime | None
    within_grace: bool
    debt_fen: Fen = 0


def _check_fen(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int (fen), got {value!r}")


def amount_due(*, fee_now_fen: Fen, paid_fen: Fen, last_paid_at: datetime | None,
               grace_minutes: int, now: datetime, debt_fen: Fen = 0) -> Due:
    """Apply the grace rule: nothing inside the window after the last payment, then the extra.

    ``fee_now_fen`` is the stay's fee if it ended ``now`` (the quote's total, or a manager's
    override); ``paid_fen`` what was paid for it, net of refunds; ``last_paid_at`` when the
    latest payment was made. ``debt_fen`` is the part of this stay already booked as a debt
    (a payment code that failed after the lane let the car go): it is owed, and shows at the
    next entry, so it is not asked for twice. The window is inclusive (leaving exactly
    ``grace_minutes`` after paying is still free) and only a payment of more than 0 opens it.

    The rule trusts that a payment settled the fee quoted when it was made; the payment desk
    only opens a prepayment for the whole quoted amount, so a token payment cannot buy grace.
    """
    _check_fen("fee_now_fen", fee_now_fen)
    _check_fen("paid_fen", paid_fen)
    _check_fen("debt_fen", debt_fen)
    if isinstance(grace_minutes, bool) or not isinstance(grace_minutes, int) \
            or grace_minutes < 0:
        raise ValueError(f"grace_minutes must be a non-negative int, got {grace_minutes!r}")
    if now.tzinfo is None or (last_paid_at is not None and last_paid_at.tzinfo is None):
        raise ValueError("amount_due needs timezone-aware datetimes")
    grace_until = None
    if last_paid_at is not None and paid_fen > 0:
        grace_until = last_paid_at + timedelta(minutes=grace_minutes)
    if grace_until is not None and now <= grace_until:
        return Due(0, paid_fen, grace_until, True, debt_fen)
    return Due(max(0, fee_now_fen - paid_fen - debt_fen), paid_fen, grace_until, False, debt_fen)


def payment_code_wallet(code: str) -> Wallet:
    """Which wallet made a scanned 付款码 (payment code), or ValueError saying what is wrong.

    A payment code is the barcode a driver's wallet app shows to be charged by the merchant
    (Alipay and WeChat Pay call this "付款码" / "auth_code"); the app can make one offline
    and the payee submits it to the provider. The checks here are **conventions the
    providers publish, not guarantees**, and the provider is the only authority on whether
    a code is good:

    - 16 to 24 ASCII digits;
    - WeChat Pay: starts with 10–15 (its documentation says 18 digits long);
    - Alipay: starts with 25–30 (its documentation says 16–24 digits).

    Other wallets (UnionPay QuickPass codes start with 62) are refused until a provider that
    takes them is plugged in. Surrounding whitespace from a scanner is ignored; anything
    else (spaces inside, letters, full-width digits) is refused rather than guessed at.

    >>> payment_code_wallet(" 2812345678901234 ")
    'alipay'
    >>> payment_code_wallet("6212345678901234567")
    Traceback (most recent call last):
    ...
    ValueError: payment code starting 62 is from no supported wallet (WeChat Pay 10-15, \
Alipay 25-30)
    """
    text = code.strip()
    if not (text.isascii() and text.isdigit()):
        raise ValueError("a payment code is 16-24 digits and nothing else")
    if len(text) not in _CODE_LENGTHS:
        raise ValueError(f"a payment code is 16-24 digits long, this one has {len(text)}")
    if text[:2] in _WECHAT_PREFIXES:
        return "wechat"
    if text[:2] in _ALIPAY_PREFIXES:
        return "alipay"
    raise ValueError(f"payment code starting {text[:2]} is from no supported wallet "
                     "(WeChat Pay 10-15, Alipay 25-30)")
