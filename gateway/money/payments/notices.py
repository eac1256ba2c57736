"""Refusing stale and replayed provider notices: the part of a notice's check that needs
the gateway's clock and memory rather than the provider's keys."""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway.money.payments.errors import ReplayedNoticeError, StaleNoticeError
from gateway.money.payments.provider import PaymentNotice
from parkguard.clock import Clock, utc_iso


class NoticeGuard:
    """Refuses a notice signed outside ``window`` of the clock (either way), or one already
    booked under the same nonce / notify id.

    Nonces are remembered only once booked (:meth:`remember`), so a provider re-sending
    after a refusal that was our fault still gets through, and only for the window (an
    older notice is stale anyway). The memory is not kept across a restart: there the
    booking itself is idempotent, so a replay still books nothing twice.
    """

    def __init__(self, clock: Clock, window: timedelta) -> None:
        if window <= timedelta(0):
            raise ValueError(f"the notice window must be positive, got {window}")
        self._clock = clock
        self.window = window
        self._seen: dict[str, datetime] = {}

    def check(self, notice: PaymentNotice) -> None:
        """Raise :class:`StaleNoticeError` or :class:`ReplayedNoticeError`, or return."""
        now = self._clock.now()
        if notice.sent_at is not None and abs(now - notice.sent_at) > self.window:
            raise StaleNoticeError(
                f"payment notice for order {notice.order_id} was signed at "
                f"{utc_iso(notice.sent_at)}, outside {self.window} of now: refused")
        cutoff = now - self.window
        for old in [key for key, at in self._seen.items() if at < cutoff]:
            del self._seen[old]
        if notice.notice_id is not None and notice.notice_id in self._seen:
            raise ReplayedNoticeError(f"payment notice {notice.notice_id} for order "
                                      f"{notice.order_id} was already booked: replay refused")

    def remember(self, notice: PaymentNotice) -> None:
        """The notice was booked: the same nonce again is a replay."""
        if notice.notice_id is not None:
            self._seen[notice.notice_id] = self._clock.now()
