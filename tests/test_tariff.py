"""SimpleTariff: golden fees, the properties every fee keeps, refusals; and format_fen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from parkguard.core.tariff import Quote, SimpleTariff, format_fen
from parkguard.errors import TariffError

ENTRY = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
DEFAULT = SimpleTariff()  # free <= 15 min, first 60 min 500, then 200 per started 30 min, cap 4000
MINUTE = timedelta(minutes=1)
TEN_DAYS_MS = 10 * 24 * 3600 * 1000


def _quote(stay: timedelta, tariff: SimpleTariff = DEFAULT) -> Quote:
    return tariff.quote(ENTRY, ENTRY + stay)


# Golden vectors (default tariff) ---------------------------------------------


@pytest.mark.parametrize(("stay", "fee"), [
    (timedelta(0), 0),                              # nothing parked: free
    (10 * MINUTE, 0),                               # 10 <= 15 free minutes
    (15 * MINUTE, 0),                               # 15 <= 15: the threshold itself is free
    (15 * MINUTE + timedelta(seconds=1), 500),      # 15 min 1 s = 16 started min > 15: first 500
    (16 * MINUTE, 500),                             # 16 > 15: first period 500
    (60 * MINUTE, 500),                             # all inside the first 60 min: 500
    (60 * MINUTE + timedelta(seconds=1), 700),      # 61 started min: 500 + 1 step x 200
    (61 * MINUTE, 700),                             # 500 + ceil(1/30)=1 x 200 = 700
    (90 * MINUTE, 700),                             # 500 + ceil(30/30)=1 x 200 = 700
    (91 * MINUTE, 900),                             # 500 + ceil(31/30)=2 x 200 = 900
    (120 * MINUTE, 900),                            # 500 + ceil(60/30)=2 x 200 = 900
    (121 * MINUTE, 1100),                           # 500 + ceil(61/30)=3 x 200 = 1100
    (570 * MINUTE, 3900),                           # 500 + ceil(510/30)=17 x 200 = 3900 < cap
    (571 * MINUTE, 4000),                           # 500 + 18 x 200 = 4100, capped at 4000
    (timedelta(hours=24), 4000),                    # one full day: 500 + 46 x 200 = 9700 -> 4000
    (timedelta(hours=24) + MINUTE, 4500),           # day 4000 + part day of 1 min: 500 (no free)
    (timedelta(hours=25), 4500),                    # day 4000 + part day of 60 min: 500
    (timedelta(hours=26), 4900),                    # 4000 + (500 + ceil(60/30)=2 x 200) = 4900
    (timedelta(hours=48), 8000),                    # two full days: 2 x 4000
    (timedelta(hours=72, minutes=10), 12500),       # 3 x 4000 + part day of 10 min: 500
])
def test_default_tariff_charges_the_golden_fee(stay: timedelta, fee: int) -> None:
    assert _quote(stay).total_fen == fee


def test_free_stay_is_one_free_item_of_zero() -> None:
    quote = _quote(10 * MINUTE)
    assert quote.minutes == 10
    assert [(i.code, i.minutes, i.fen) for i in quote.items] == [("free", 10, 0)]


def test_stay_of_90_minutes_is_itemised_as_first_period_and_steps() -> None:
    quote = _quote(90 * MINUTE)
    # first 60 min for 500, then 30 min = 1 started step of 200
    assert [(i.code, i.minutes, i.fen) for i in quote.items] == [
        ("first", 60, 500), ("steps", 30, 200)]


def test_capped_stay_shows_the_cap_as_a_negative_line() -> None:
    quote = _quote(600 * MINUTE)
    # 500 + ceil(540/30)=18 x 200 = 4100; the cap takes 100 off
    assert [(i.code, i.minutes, i.fen) for i in quote.items] == [
        ("first", 60, 500), ("steps", 540, 3600), ("cap", 0, -100)]
    assert quote.total_fen == 4000


def test_stay_of_25_hours_is_itemised_as_a_day_and_a_part_day() -> None:
    quote = _quote(timedelta(hours=25))
    assert quote.minutes == 25 * 60
    assert [(i.code, i.minutes, i.fen) for i in quote.items] == [
        ("day", 1440, 4000), ("part", 60, 500)]


def test_quote_carries_entry_exit_and_started_minutes() -> None:
    exit_ = ENTRY + timedelta(minutes=60, seconds=1)
    quote = DEFAULT.quote(ENTRY, exit_)
    assert (quote.entry, quote.exit, quote.minutes) == (ENTRY, exit_, 61)


def test_same_instants_in_other_time_zones_give_the_same_quote() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    exit_ = ENTRY + timedelta(minutes=95)
    local = DEFAULT.quote(ENTRY.astimezone(shanghai), exit_.astimezone(ZoneInfo("Europe/Berlin")))
    assert local.total_fen == DEFAULT.quote(ENTRY, exit_).total_fen == 900
    assert local.minutes == 95


def test_tariff_without_cap_charges_every_step() -> None:
    uncapped = SimpleTariff(cap_24h_fen=None)
    # 500 + ceil((1440 - 60)/30)=46 x 200 = 9700
    assert _quote(timedelta(hours=24), uncapped).total_fen == 9700


@pytest.mark.parametrize("minutes", [547, 2190])
def test_stay_one_millisecond_past_a_whole_minute_counts_the_started_minute(
    minutes: int,
) -> None:
    quote = _quote(timedelta(minutes=minutes, milliseconds=1))
    assert quote.minutes == minutes + 1


def test_per_minute_tariff_charges_the_minute_started_by_one_millisecond() -> None:
    per_minute = SimpleTariff(free_minutes=0, first_minutes=60, first_fen=500, step_minutes=1,
                              step_fen=10, cap_24h_fen=None)
    # 548 started minutes: 500 + (548 - 60) x 10 = 5380
    assert _quote(timedelta(minutes=547, milliseconds=1), per_minute).total_fen == 5380


# Properties -------------------------------------------------------------------

stays = st.integers(min_value=0, max_value=TEN_DAYS_MS).map(lambda ms: timedelta(milliseconds=ms))
tariffs = st.builds(
    SimpleTariff,
    free_minutes=st.integers(0, 180),
    first_minutes=st.integers(1, 240),
    first_fen=st.integers(0, 2000),
    step_minutes=st.integers(1, 180),
    step_fen=st.integers(0, 1000),
    cap_24h_fen=st.one_of(st.none(), st.integers(2000, 20_000)),
)
capped_tariffs = tariffs.filter(lambda tariff: tariff.cap_24h_fen is not None)


@given(tariff=tariffs, a=stays, b=stays)
def test_fee_never_decreases_as_the_stay_grows(
    tariff: SimpleTariff, a: timedelta, b: timedelta
) -> None:
    shorter, longer = sorted((a, b))
    assert _quote(shorter, tariff).total_fen <= _quote(longer, tariff).total_fen


@given(a=stays, b=stays)
def test_default_fee_never_decreases_as_the_stay_grows(a: timedelta, b: timedelta) -> None:
    shorter, longer = sorted((a, b))
    assert _quote(shorter).total_fen <= _quote(longer).total_fen


@given(tariff=tariffs, stay=stays)
def test_items_sum_to_the_total(tariff: SimpleTariff, stay: timedelta) -> None:
    quote = _quote(stay, tariff)
    assert quote.items
    assert sum(item.fen for item in quote.items) == quote.total_fen


@given(tariff=capped_tariffs,
       stay=st.integers(0, 24 * 3600 * 1000).map(lambda ms: timedelta(milliseconds=ms)))
def test_a_stay_within_one_24h_window_never_costs_more_than_the_cap(
    tariff: SimpleTariff, stay: timedelta
) -> None:
    assert tariff.cap_24h_fen is not None
    assert _quote(stay, tariff).total_fen <= tariff.cap_24h_fen


@given(tariff=capped_tariffs, stay=stays)
def test_no_24h_window_from_entry_is_charged_more_than_the_cap(
    tariff: SimpleTariff, stay: timedelta
) -> None:
    assert tariff.cap_24h_fen is not None
    quote = _quote(stay, tariff)
    days = quote.minutes // 1440 + (1 if quote.minutes % 1440 else 0)
    assert quote.total_fen <= max(days, 1) * tariff.cap_24h_fen
    for item in quote.items:
        if item.code in ("day", "part"):
            assert item.fen <= tariff.cap_24h_fen


@given(tariff=tariffs, stay=stays)
def test_fee_is_whole_fen_and_never_negative(tariff: SimpleTariff, stay: timedelta) -> None:
    quote = _quote(stay, tariff)
    assert type(quote.total_fen) is int
    assert all(type(item.fen) is int for item in quote.items)
    assert quote.total_fen >= 0


@given(stay=st.integers(1, TEN_DAYS_MS).map(lambda ms: timedelta(milliseconds=ms)))
def test_exit_before_entry_is_refused(stay: timedelta) -> None:
    with pytest.raises(TariffError, match="before entry"):
        DEFAULT.quote(ENTRY, ENTRY - stay)


@pytest.mark.parametrize(("entry", "exit_"), [
    pytest.param(ENTRY.replace(tzinfo=None), ENTRY + MINUTE, id="naive-entry"),
    pytest.param(ENTRY, (ENTRY + MINUTE).replace(tzinfo=None), id="naive-exit"),
    pytest.param(ENTRY.replace(tzinfo=None), (ENTRY + MINUTE).replace(tzinfo=None), id="both"),
])
def test_naive_datetimes_are_refused(entry: datetime, exit_: datetime) -> None:
    with pytest.raises(TariffError, match="timezone-aware"):
        DEFAULT.quote(entry, exit_)


# Construction -----------------------------------------------------------------


def test_cap_below_the_first_period_price_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="cap_24h_fen"):
        SimpleTariff(first_fen=500, cap_24h_fen=499)


@pytest.mark.parametrize("cap", [500, None])
def test_cap_equal_to_the_first_period_price_or_no_cap_is_accepted(cap: int | None) -> None:
    assert SimpleTariff(first_fen=500, cap_24h_fen=cap).cap_24h_fen == cap


@pytest.mark.parametrize(("field", "value"), [
    ("first_fen", -1), ("step_fen", -1), ("cap_24h_fen", -1), ("step_minutes", 0),
    ("first_minutes", 0), ("free_minutes", -1), ("colour", "red"),
])
def test_invalid_tariff_settings_are_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        SimpleTariff.model_validate({field: value})


# format_fen --------------------------------------------------------------------


@pytest.mark.parametrize(("fen", "shown"), [
    (0, "0.00"), (5, "0.05"), (700, "7.00"), (123456, "1234.56"), (-250, "-2.50"), (-5, "-0.05"),
])
def test_format_fen_shows_yuan_with_two_decimals(fen: int, shown: str) -> None:
    assert format_fen(fen) == shown
