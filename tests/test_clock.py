"""The clock seam: manual time only moves forward, waits end on their event or their deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from parkguard.clock import Clock, ManualClock, ScaledClock, SystemClock, utc_iso

START = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")
SETTLE = 0.15  # real seconds a waiting thread gets to notice something (it polls every 2 ms)


class _Waiter:
    """Runs ``clock.wait(event, seconds)`` on another thread and keeps what it returned."""

    def __init__(self, clock: Clock, event: threading.Event, seconds: float) -> None:
        self.result: bool | None = None
        self.returned_at: float | None = None  # time.monotonic() when wait() returned
        self._thread = threading.Thread(target=self._run, args=(clock, event, seconds),
                                        daemon=True)
        self._thread.start()

    def _run(self, clock: Clock, event: threading.Event, seconds: float) -> None:
        self.result = clock.wait(event, seconds)
        self.returned_at = time.monotonic()

    def is_waiting(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float = 5.0) -> bool | None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "wait() did not return"
        return self.result


# ManualClock ----------------------------------------------------------------


def test_manual_clock_stands_still_until_moved() -> None:
    clock = ManualClock(START)
    time.sleep(0.01)
    assert clock.now() == START


def test_manual_clock_advance_moves_time_forward_by_the_delta() -> None:
    clock = ManualClock(START)
    clock.advance(timedelta(minutes=90))
    clock.advance(timedelta(0))
    assert clock.now() == START + timedelta(minutes=90)


def test_manual_clock_set_jumps_to_the_moment_and_reports_it_in_utc() -> None:
    clock = ManualClock(START)
    later_local = datetime(2026, 5, 1, 20, 30, tzinfo=SHANGHAI)  # 12:30 UTC
    clock.set(later_local)
    assert clock.now() == later_local
    assert clock.now().utcoffset() == timedelta(0)
    clock.set(later_local)  # the same moment again is not going back
    assert clock.now() == later_local


def test_manual_clock_reports_a_non_utc_start_in_utc() -> None:
    clock = ManualClock(datetime(2026, 5, 1, 18, 0, tzinfo=SHANGHAI))
    assert clock.now() == START
    assert clock.now().tzinfo == UTC


def test_manual_clock_refuses_to_advance_backwards() -> None:
    clock = ManualClock(START)
    with pytest.raises(ValueError, match="back"):
        clock.advance(timedelta(seconds=-1))
    assert clock.now() == START


def test_manual_clock_refuses_to_be_set_backwards() -> None:
    clock = ManualClock(START)
    clock.advance(timedelta(hours=1))
    with pytest.raises(ValueError, match="back"):
        clock.set(START + timedelta(minutes=59))
    assert clock.now() == START + timedelta(hours=1)


def test_manual_clock_refuses_a_backwards_set_given_in_another_zone() -> None:
    clock = ManualClock(START)
    with pytest.raises(ValueError, match="back"):
        clock.set(datetime(2026, 5, 1, 17, 59, tzinfo=SHANGHAI))  # 09:59 UTC


@pytest.mark.parametrize("make", [
    pytest.param(lambda: ManualClock(START.replace(tzinfo=None)), id="manual-start"),
    pytest.param(lambda: ManualClock(START).set(START.replace(tzinfo=None) + timedelta(hours=1)),
                 id="manual-set"),
    pytest.param(lambda: ScaledClock(START.replace(tzinfo=None), speed=10), id="scaled-start"),
])
def test_clocks_refuse_naive_datetimes(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make()


def test_manual_wait_returns_true_at_once_when_the_event_is_set_from_another_thread() -> None:
    clock = ManualClock(START)
    event = threading.Event()
    waiter = _Waiter(clock, event, 3600)
    time.sleep(SETTLE)
    assert waiter.is_waiting()
    set_at = time.monotonic()
    event.set()
    assert waiter.join() is True
    assert waiter.returned_at is not None
    assert waiter.returned_at - set_at < 0.5
    assert clock.now() == START  # nobody advanced the clock


def test_manual_wait_returns_true_when_the_event_is_already_set() -> None:
    event = threading.Event()
    event.set()
    assert ManualClock(START).wait(event, 3600) is True


def test_manual_wait_times_out_only_when_the_clock_passes_the_deadline() -> None:
    clock = ManualClock(START)
    event = threading.Event()
    waiter = _Waiter(clock, event, 60)
    time.sleep(SETTLE)
    assert waiter.is_waiting(), "real time passing must not end a wait on manual time"
    clock.advance(timedelta(seconds=59))
    time.sleep(SETTLE)
    assert waiter.is_waiting(), "advancing less than the deadline must not end the wait"
    clock.advance(timedelta(seconds=2))
    assert waiter.join() is False


def test_manual_wait_times_out_when_the_clock_is_set_past_the_deadline() -> None:
    clock = ManualClock(START)
    event = threading.Event()
    waiter = _Waiter(clock, event, 60)
    time.sleep(SETTLE)
    clock.set(START + timedelta(seconds=30))
    time.sleep(SETTLE)
    assert waiter.is_waiting()
    clock.set(START + timedelta(minutes=5))
    assert waiter.join() is False


def test_manual_wait_counts_its_deadline_from_when_it_began() -> None:
    clock = ManualClock(START)
    clock.advance(timedelta(hours=1))
    event = threading.Event()
    waiter = _Waiter(clock, event, 10)
    time.sleep(SETTLE)
    assert waiter.is_waiting()
    clock.advance(timedelta(seconds=10))
    assert waiter.join() is False


def test_manual_wait_with_no_time_left_returns_false() -> None:
    assert ManualClock(START).wait(threading.Event(), 0) is False
    assert ManualClock(START).wait(threading.Event(), -5) is False


# ScaledClock and SystemClock ----------------------------------------------------


def test_scaled_clock_runs_speed_times_faster_than_real_time() -> None:
    speed = 200.0
    before = time.monotonic()
    clock = ScaledClock(START, speed=speed)
    created = time.monotonic()
    time.sleep(0.2)
    real_low = time.monotonic() - created
    scaled = (clock.now() - START).total_seconds()
    real_high = time.monotonic() - before
    assert real_low * speed * 0.95 <= scaled <= real_high * speed * 1.05


def test_scaled_clock_starts_at_its_start_in_utc() -> None:
    clock = ScaledClock(datetime(2026, 5, 1, 18, 0, tzinfo=SHANGHAI), speed=1)
    assert START <= clock.now() < START + timedelta(seconds=5)
    assert clock.now().utcoffset() == timedelta(0)


def test_scaled_wait_of_clock_seconds_takes_that_divided_by_speed_in_real_time() -> None:
    clock = ScaledClock(START, speed=100)
    began = time.monotonic()
    assert clock.wait(threading.Event(), 20) is False  # 20 clock seconds = 0.2 real seconds
    took = time.monotonic() - began
    assert 0.19 <= took < 2.0


def test_scaled_wait_returns_true_when_the_event_is_set_from_another_thread() -> None:
    clock = ScaledClock(START, speed=1)
    event = threading.Event()
    waiter = _Waiter(clock, event, 3600)
    time.sleep(0.05)
    event.set()
    assert waiter.join() is True


@pytest.mark.parametrize("speed", [0, -1])
def test_scaled_clock_refuses_a_speed_that_is_not_positive(speed: float) -> None:
    with pytest.raises(ValueError, match="speed"):
        ScaledClock(START, speed=speed)


def test_system_clock_is_utc_wall_time() -> None:
    now = SystemClock().now()
    assert now.utcoffset() == timedelta(0)
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)


def test_system_wait_ends_on_its_event_or_its_timeout() -> None:
    clock = SystemClock()
    event = threading.Event()
    began = time.monotonic()
    assert clock.wait(event, 0.05) is False
    assert time.monotonic() - began >= 0.045
    event.set()
    assert clock.wait(event, 60) is True


# utc_iso and the protocol ---------------------------------------------------------


@pytest.mark.parametrize(("moment", "text"), [
    (datetime(2026, 5, 1, 2, 0, tzinfo=UTC), "2026-05-01T02:00:00.000Z"),
    (datetime(2026, 5, 1, 2, 0, 0, 123456, tzinfo=UTC), "2026-05-01T02:00:00.123Z"),
    (datetime(2026, 5, 1, 10, 0, 0, 999999, tzinfo=SHANGHAI), "2026-05-01T02:00:00.999Z"),
    (datetime(2026, 1, 1, 3, 0, tzinfo=SHANGHAI), "2025-12-31T19:00:00.000Z"),
])
def test_utc_iso_writes_utc_with_milliseconds_and_z(moment: datetime, text: str) -> None:
    assert utc_iso(moment) == text


def test_utc_iso_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        utc_iso(datetime(2026, 5, 1, 2, 0))


@pytest.mark.parametrize("clock", [
    pytest.param(SystemClock(), id="system"),
    pytest.param(ScaledClock(START, speed=60), id="scaled"),
    pytest.param(ManualClock(START), id="manual"),
])
def test_every_clock_satisfies_the_clock_protocol(clock: object) -> None:
    assert isinstance(clock, Clock)


def test_an_object_without_wait_is_not_a_clock() -> None:
    class NowOnly:
        def now(self) -> datetime:
            return START

    assert not isinstance(NowOnly(), Clock)
