"""The stale and replay check on provider notices, by the gateway's clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.money.payments import PaymentNotice, ReplayedNoticeError, StaleNoticeError
from gateway.money.payments.notices import NoticeGuard
from gateway.money.payments.provider import merchant_no
from parkguard.clock import ManualClock
from tests.payments.conftest import START


def notice(nonce: str | None, minutes: float) -> PaymentNotice:
    return PaymentNotice("o-1", "o-1", 500, "2026-12-06T02:00:00.000Z", notice_id=nonce,
                         sent_at=START + timedelta(minutes=minutes))


def test_notices_outside_the_window_either_way_are_stale() -> None:
    guard = NoticeGuard(ManualClock(START), timedelta(minutes=5))
    for minutes in (-5.01, 5.01, -60, 60):
        with pytest.raises(StaleNoticeError):
            guard.check(notice("n", minutes))
    for minutes in (-5, 0, 5):
        guard.check(notice("n", minutes))


def test_a_nonce_is_a_replay_only_once_booked_and_only_within_the_window() -> None:
    clock = ManualClock(START)
    guard = NoticeGuard(clock, timedelta(minutes=5))
    first = notice("n-1", 0)
    guard.check(first)
    guard.check(first)  # refused for our own reasons before booking: may come again
    guard.remember(first)
    with pytest.raises(ReplayedNoticeError):
        guard.check(first)
    guard.check(notice(None, 0))  # a provider without nonces: nothing to remember
    clock.advance(timedelta(minutes=6))
    with pytest.raises(StaleNoticeError):
        guard.check(first)  # older than the window: stale, and forgotten as a nonce
    guard.check(notice("n-1", 6))


def test_merchant_numbers_fit_wechat_and_are_stable_per_key() -> None:
    number = merchant_no("pc", "code:4f1c0a3e-9b2d-4c55-8f0e-6d3f2a1b7c9e")
    assert len(number) == 32 and number.isalnum() and number.startswith("pc")
    assert number == merchant_no("pc", "code:4f1c0a3e-9b2d-4c55-8f0e-6d3f2a1b7c9e")
    assert number != merchant_no("pc", "code:another")
