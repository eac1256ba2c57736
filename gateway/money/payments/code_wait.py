"""The till's flow for a 付款码 whose outcome is not known at once, the same at Alipay
(trade.pay, ``WAIT_BUYER_PAY``) and WeChat Pay (micropay, ``USERPAYING``): submit; while
unknown, query the same order number every ``code_poll_s`` for up to ``code_wait_s``; if the
provider never saw the order, submit it once more under the same number (so it cannot be
charged twice); if the payer never completes, give the order up (cancel / reverse) so no
money stays taken. Kept in one place so the two providers cannot drift apart on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.money.payments.provider import CodeCharge
from parkguard.core.ledger import Fen


@dataclass(frozen=True)
class OrderStates:
    """How one provider's query answers read: ``paid`` states, final ``failed`` states with
    the desk's decline reason for each, and the answer for an order it never received."""

    paid: frozenset[str]
    failed: Mapping[str, str]
    missing: str


class CodeWait:
    """One provider's waits between queries (``sleep``: a test passes one that steps its
    clock) and the final answer of each order number charged in this process."""

    def __init__(self, *, code_wait_s: float, code_poll_s: float,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._polls = int(code_wait_s // code_poll_s)
        self._poll_s = code_poll_s
        self._sleep = sleep
        self._final: dict[str, CodeCharge] = {}

    def once(self, out_trade_no: str, charge: Callable[[], CodeCharge]) -> CodeCharge:
        """``charge()``'s answer, remembered: the same order number again returns it."""
        if out_trade_no not in self._final:
            self._final[out_trade_no] = charge()
        return self._final[out_trade_no]

    def settle(self, amount_fen: Fen, out_trade_no: str, *, states: OrderStates,
               submit: Callable[[], CodeCharge | None], query: Callable[[], str | None],
               give_up: Callable[[], None]) -> CodeCharge:
        """Submit, then query until final. ``submit`` returns None while the outcome is
        unknown; ``query`` returns the order's state, or None for no answer."""
        answer = submit()
        if answer is not None:
            return answer
        resubmitted = False
        for poll in range(self._polls + 1):
            if poll:
                self._sleep(self._poll_s)
            state = query()
            if state in states.paid:
                return CodeCharge(True, amount_fen, provider_ref=out_trade_no)
            if state is not None and state in states.failed:
                return CodeCharge(False, amount_fen, reason=states.failed[state])
            if state == states.missing and not resubmitted:
                resubmitted = True  # the first submission never arrived
                answer = submit()
                if answer is not None:
                    return answer
        give_up()
        return CodeCharge(False, amount_fen, reason="payer_timeout")
