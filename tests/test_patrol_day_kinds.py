"""Obligations and staffing by the kind of day (docs/patrols.md): the example regime on the
example tariff's calendar (docs/examples/tariff-mall.toml: National Day 1-7 October 2026 is
a holiday, Saturday 10 October a make-up workday, Sunday 11 October a weekend), on a real
SQLite file through the patrol desk."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.patrols.desk import PatrolDesk
from gateway.patrols.regime import load_site_regime
from gateway.storage.store import GatewayStore
from parkguard.clock import ManualClock
from parkguard.core.patrol import (
    PatrolConfig,
    Tap,
    evaluate,
    load_patrol_config,
    on_duty,
    staffing_gaps,
)
from parkguard.core.patrol.engine import local_midnight
from parkguard.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[1] / "docs/examples"
REGIME = load_site_regime(EXAMPLES / "patrols.toml", EXAMPLES / "tariff-mall.toml")
HOLIDAY, MAKE_UP, SUNDAY = date(2026, 10, 2), date(2026, 10, 10), date(2026, 10, 11)


def results_of(regime: PatrolConfig, day: date, taps: list[Tap] | None = None,
               only: tuple[str, ...] = ("holiday-roving", "guard-round")) -> dict[str, Any]:
    start, end = local_midnight(regime, day), local_midnight(regime, day + timedelta(1))
    found: dict[str, Any] = {}
    for r in evaluate(regime, taps or [], start, end, now=end, only=only):
        if r.window.start >= start:
            found.setdefault(f"{r.obligation}:{r.subject}", []).append(r.status)
    return found


def test_the_tariff_calendar_gives_the_kind_of_each_day() -> None:
    assert [REGIME.day_kind(d) for d in (HOLIDAY, MAKE_UP, SUNDAY)] == [
        "holiday", "workday", "weekend"]
    bare = load_patrol_config(EXAMPLES / "patrols.toml")  # no calendar: the weekday decides
    assert [bare.day_kind(d) for d in (HOLIDAY, MAKE_UP, SUNDAY)] == [
        "workday", "weekend", "weekend"]


def test_holiday_rules_bind_on_holidays_only_and_rules_without_days_every_day() -> None:
    holiday, make_up, sunday = (results_of(REGIME, d) for d in (HOLIDAY, MAKE_UP, SUNDAY))
    assert holiday["holiday-roving:guard"] == ["missed"]
    assert "holiday-roving:guard" not in make_up and "holiday-roving:guard" not in sunday
    # the roving guards are rostered on holidays only (`days`): their rounds are due then
    assert holiday["guard-round:qian"] == ["missed"] and holiday["guard-round:sun"] == ["missed"]
    for other in (make_up, sunday):
        assert "guard-round:qian" not in other and "guard-round:sun" not in other
    # a rule without days (the guard's own round every shift) binds on every kind of day
    for day in (holiday, make_up, sunday):
        assert day["guard-round:wang"] == ["missed"]


def test_a_holiday_rule_is_met_by_two_walks_of_the_whole_car_park() -> None:
    route = REGIME.route["full"]
    taps: list[Tap] = []
    for start_hour in (10, 15):
        at = datetime.combine(HOLIDAY, time(start_hour), REGIME.zone).astimezone(UTC)
        for n, point in enumerate(route.checkpoints):
            taps.append(Tap(key=f"r#{start_hour}{n}", at=at + timedelta(minutes=5 * n),
                            checkpoint=point, person="qian"))
    holiday = results_of(REGIME, HOLIDAY, taps)
    assert holiday["holiday-roving:guard"] == ["met"]
    assert holiday["guard-round:qian"][0] == "met"  # shift a: his own route, the whole park


def test_days_are_checked_when_the_file_is_loaded(tmp_path: Path) -> None:
    text = (EXAMPLES / "patrols.toml").read_text(encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('per = "day"\ntimes = 2\neach = false\ndays = ["holiday"]',
                                'per = "week"\ntimes = 2\neach = false\ndays = ["holiday"]'),
                   encoding="utf-8")
    with pytest.raises(ConfigError, match="holiday-roving: days needs per = shift or day"):
        load_patrol_config(bad)
    bad.write_text(text.replace('days = ["holiday"]', 'days = ["feast"]', 1), encoding="utf-8")
    with pytest.raises(ConfigError, match="days"):
        load_patrol_config(bad)
    bad.write_text(text.replace("from_hour = 10\nto_hour = 22", "from_hour = 22\nto_hour = 10"),
                   encoding="utf-8")
    with pytest.raises(ConfigError, match="to_hour 10 must be after from_hour 22"):
        load_patrol_config(bad)


def test_a_patrol_file_with_another_calendar_than_the_tariffs_is_refused(
        tmp_path: Path) -> None:
    own = tmp_path / "patrols.toml"
    own.write_text((EXAMPLES / "patrols.toml").read_text(encoding="utf-8")
                   + '\n[calendar]\nworkdays = [2026-10-11]\n', encoding="utf-8")
    assert load_patrol_config(own).day_kind(SUNDAY) == "workday"  # alone, its own calendar
    with pytest.raises(ConfigError, match="calendar: differs from the tariff file"):
        load_site_regime(own, EXAMPLES / "tariff-mall.toml")


def without_roving(regime: PatrolConfig) -> PatrolConfig:
    return regime.model_copy(update={
        "people": tuple(p for p in regime.people if p.days is None)})


def test_the_example_roster_meets_its_staffing_and_a_roster_without_roving_is_short() -> None:
    assert staffing_gaps(REGIME, date(2026, 9, 28), date(2026, 10, 12)) == []
    assert [p.id for p in on_duty(REGIME, HOLIDAY, time(11), ["guard"])] == ["wang", "qian"]
    assert [p.id for p in on_duty(REGIME, MAKE_UP, time(11), ["guard"])] == ["wang"]
    # 03:00 on the 2nd is shift c, which started on the 1st (a holiday too)
    assert [p.id for p in on_duty(REGIME, HOLIDAY, time(3), ["guard"])] == ["zhao"]
    short = without_roving(REGIME)
    gaps = staffing_gaps(short, date(2026, 9, 30), date(2026, 10, 10))
    assert {g.day for g in gaps} == {date(2026, 10, d) for d in range(1, 8)}  # the holidays
    first = [g for g in gaps if g.day == date(2026, 10, 1)]
    assert [(g.hours, g.rostered, g.required, g.short, g.people) for g in first] == [
        ("10:00–16:00", 1, 2, 1, ("wang",)), ("16:00–22:00", 1, 2, 1, ("li",))]
    assert "缺 1 人" in first[0].line() and "short 1" in first[0].line()


def test_peak_periods_of_the_calendar_add_staffing_on_workdays() -> None:
    peak = REGIME.model_copy(update={"staffing": (
        *REGIME.staffing,
        REGIME.staffing[1].model_copy(update={
            "id": "peak", "periods": ("pre_spring_festival",), "min_on_duty": 3})),
    })
    gaps = staffing_gaps(peak, date(2026, 1, 19), date(2026, 1, 19))  # a Monday, before
    assert [(g.rule, g.day_kind, g.short) for g in gaps] == [  # the festival: a peak
        ("peak", "workday", 2), ("peak", "workday", 2)]
    assert staffing_gaps(peak, date(2026, 3, 2), date(2026, 3, 2)) == []  # no peak


def test_a_short_roster_is_warned_about_once_a_day_ahead_on_real_sqlite(
        tmp_path: Path) -> None:
    raised: list[tuple[str, dict[str, Any]]] = []

    def raise_alert(key: str, **fields: Any) -> None:
        raised.append((key, fields))

    clock = ManualClock(datetime(2026, 9, 30, 4, 0, tzinfo=UTC))  # 12:00 on the 30th
    store = GatewayStore.open(tmp_path / "gateway.db")
    desk = PatrolDesk(store.db, config=without_roving(REGIME), clock=clock,
                      raise_alert=raise_alert)
    warned = desk.check_staffing()
    assert [(g.day, g.hours) for g in warned] == [  # tomorrow is National Day
        (date(2026, 10, 1), "10:00–16:00"), (date(2026, 10, 1), "16:00–22:00")]
    key, fields = raised[0]
    assert key == "staffing:holiday-day:2026-10-01:10"
    assert fields["kind"] == "staffing_short" and fields["severity"] == "warning"
    assert fields["team"] == "patrol-captain" and "缺 1 人" in fields["title_zh"]
    assert desk.check_staffing() == []  # once
    store.close()
    store = GatewayStore.open(tmp_path / "gateway.db")  # a restart warns no one again
    again = PatrolDesk(store.db, config=without_roving(REGIME), clock=clock,
                       raise_alert=raise_alert)
    assert again.check_staffing() == [] and len(raised) == 2
    clock.advance(timedelta(days=1))
    assert [g.day for g in again.check_staffing()] == [date(2026, 10, 2)] * 2
    store.close()
