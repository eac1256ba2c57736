"""The itemised bill adds up: over random tariffs (caps, classes, exemptions, every stacking
policy), stays, coupons, payments, grace, stay debts, older debts, overrides and fire, the
lines sum to every total, and the totals are the grace rule's (``amount_due``)."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

import parkguard.core.bill_lines
from parkguard.core.bill_lines import itemise, lane_display, stay_en, stay_zh
from parkguard.core.payments import amount_due
from parkguard.core.tariffs import Coupon, Tariff, parse_tariff_document, quote

SHANGHAI = ZoneInfo("Asia/Shanghai")
MALL = parse_tariff_document(
    (Path(__file__).resolve().parents[1] / "docs/examples/tariff-mall.toml").read_text("utf-8"))


def _tariff(rounding: str, free_mode: str, segmentation: str, day_cap: int | None,
            occurrence_cap: int | None, session_cap: int | None, stacking: str,
            apply: str, permille: int) -> Tariff:
    return Tariff.model_validate({
        "name": "p", "version": "1", "effective_from": "2026-01-01",
        "free": {"minutes": 15, "mode": free_mode}, "segmentation": segmentation,
        "caps": {"calendar_day_fen": day_cap, "session_fen": session_cap},
        "classes": {"small": {"permille": 1000, "label_zh": "小", "label_en": "small"},
                    "odd": {"permille": permille, "label_zh": "奇", "label_en": "odd"}},
        "exemptions": [{"reason": "duty", "label_zh": "执勤", "label_en": "duty",
                        "series": ["police"]}],
        "periods": [
            {"name": "day", "label_zh": "日", "label_en": "day", "when": "07:30-21:00",
             "cap_fen": occurrence_cap,
             "tiers": [{"upto_minutes": 45, "flat_fen": 300},
                       {"every_minutes": 20, "step_fen": 155, "rounding": rounding}]},
            {"name": "night", "label_zh": "夜", "label_en": "night", "when": "21:00-07:30",
             "tiers": [{"every_minutes": 120, "step_fen": 101, "rounding": rounding}]}],
        "coupons": {"stacking": stacking, "apply": apply, "rules": [
            {"code": "spend_88", "label_zh": "满88", "label_en": "spend 88",
             "kind": "free_minutes", "minutes": 120},
            {"code": "member", "label_zh": "会员", "label_en": "member",
             "kind": "percent_off", "percent": 15}]},
    })


maybe_fen = st.one_of(st.none(), st.integers(0, 8000))
tariffs = st.one_of(
    st.sampled_from(MALL.tariffs),
    st.builds(_tariff, st.sampled_from(["ceil", "floor", "nearest"]),
              st.sampled_from(["threshold", "deduct"]),
              st.sampled_from(["split", "follow_through"]), maybe_fen, maybe_fen, maybe_fen,
              st.sampled_from(["additive", "best_of", "none"]),
              st.sampled_from(["front", "back"]), st.integers(0, 3000)))
coupons = st.lists(st.sampled_from([
    Coupon.parse("percent_off:33"), Coupon.parse("rule:member"), Coupon.parse("rule:spend_88"),
    Coupon.parse("free_minutes:30"), Coupon.parse("amount_off:150"),
    Coupon.parse("amount_off:99999"), Coupon("full_free"), Coupon.parse("rule:unknown"),
    Coupon("amount_off", fen=275, ref="merchant-coupon-1")]), max_size=3)
plates = st.sampled_from(["粤B12345", "沪AD12345", "粤B1234警", "粤B88888"])
entries = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31),
                       timezones=st.just(UTC))


@settings(max_examples=300, deadline=None)
@given(tariff=tariffs, plate=plates, entry=entries, seconds=st.integers(0, 3 * 24 * 3600),
       presented=coupons, odd_class=st.booleans(), override=maybe_fen,
       paid=st.integers(0, 9000), paid_minutes_ago=st.integers(0, 120),
       grace=st.integers(0, 30), stay_debt=st.integers(0, 3000),
       debts=st.integers(0, 5000), suspended=st.booleans())
def test_the_lines_sum_to_every_total(tariff: Tariff, plate: str, entry: datetime,
                                      seconds: int, presented: list[Coupon], odd_class: bool,
                                      override: int | None, paid: int, paid_minutes_ago: int,
                                      grace: int, stay_debt: int, debts: int,
                                      suspended: bool) -> None:
    exit_ = entry + timedelta(seconds=seconds)
    vehicle_class = "odd" if odd_class and "odd" in tariff.classes else \
        ("new_energy" if odd_class and "new_energy" in tariff.classes else "small")
    receipt = quote(tariff, entry=entry, exit=exit_, plate=plate, vehicle_class=vehicle_class,
                    coupons=presented, calendar=MALL.calendar, timezone=SHANGHAI)
    fee = receipt.total_fen if override is None else override
    due = amount_due(fee_now_fen=fee, paid_fen=paid,
                     last_paid_at=exit_ - timedelta(minutes=paid_minutes_ago),
                     grace_minutes=grace, now=exit_, debt_fen=stay_debt)
    bill = itemise(receipt, fee_fen=override, paid_fen=paid, stay_debt_fen=stay_debt,
                   within_grace=due.within_grace, debts_fen=debts, suspended=suspended)

    assert sum(line.fen for line in bill.lines) == bill.due_fen
    assert sum(line.fen for line in bill.lines if line.section == "stay") == fee
    quoted = [line for line in bill.lines if line.kind != "override" and line.section == "stay"]
    assert sum(line.fen for line in quoted) == receipt.total_fen
    assert bill.stay_due_fen == due.due_fen
    assert bill.debts_fen == debts
    assert bill.payable_fen == (0 if suspended else due.due_fen)
    assert bill.due_fen == bill.payable_fen + debts
    payable = [line for line in bill.lines if line.section != "debts"]
    assert sum(line.fen for line in payable) == bill.payable_fen
    assert bill.lines[len(payable):] == tuple(line for line in bill.lines
                                              if line.section == "debts")
    # every part of the receipt is a line: nothing a screen could leave out
    kinds = [line.kind for line in bill.lines]
    assert kinds.count("cap") == len(receipt.caps)
    assert kinds.count("coupon") + kinds.count("exemption") == len(receipt.discounts)
    assert ("class" in kinds) == (receipt.class_fen != 0)
    refs = {line.ref for line in bill.lines if line.ref}
    assert refs == {d.ref for d in receipt.discounts if d.ref}
    # what anyone typing the plate sees: the same amount due, nothing of the stay's length
    # or the plate's history, and nothing owed reads like a car not inside
    public = bill.public()
    assert public.payable_fen == public.due_fen == bill.payable_fen
    assert sum(line.fen for line in public.lines) == public.due_fen
    assert not {line.kind for line in public.lines} & {"free", "cap", "class", "debt",
                                                       "pass", "exemption"}
    assert all("分钟" not in line.detail for line in public.lines)
    if bill.payable_fen == 0:
        assert public == itemise(None).public()


def test_a_new_energy_car_sees_its_class_adjustment() -> None:
    """The issue's bill: day ¥5 + night ¥10 for a new-energy plate at half price. The pay
    page showed 10 + 5 - 7.50 = ¥0.00; the lines now show the class and sum to ¥7.50."""
    at = datetime(2026, 3, 2, 21, 0, tzinfo=SHANGHAI)
    plate = "沪AD12345"
    receipt = quote(MALL.book, entry=at, exit=at + timedelta(hours=2), plate=plate,
                    vehicle_class=MALL.vehicle_class(plate, at), calendar=MALL.calendar,
                    timezone=SHANGHAI)
    bill = itemise(receipt)
    assert [(line.kind, line.fen) for line in bill.lines] == [
        ("period", 500), ("period", 1000), ("class", -750)]
    assert bill.due_fen == receipt.total_fen == 750


def test_grace_overpaid_and_fire_lines() -> None:
    paid_more = itemise(None, fee_fen=500, paid_fen=800)
    assert [line.kind for line in paid_more.lines] == ["pass", "override", "paid", "overpaid"]
    assert paid_more.due_fen == 0
    in_grace = itemise(None, fee_fen=1200, paid_fen=1000, within_grace=True, debts_fen=300)
    assert [(line.kind, line.fen) for line in in_grace.lines][-2:] == [("grace", -200),
                                                                       ("debt", 300)]
    assert in_grace.stay_due_fen == 0 and in_grace.due_fen == 300
    fire = itemise(None, fee_fen=1500, debts_fen=300, suspended=True)
    assert [(line.kind, line.fen) for line in fire.lines][-2:] == [("suspended", -1500),
                                                                   ("debt", 300)]
    assert fire.payable_fen == 0 and fire.stay_due_fen == 1500 and fire.due_fen == 300


def test_durations_and_the_lane_display_short_form() -> None:
    assert [stay_zh(m, spaced=True) for m in (0, 5, 60, 183)] == [
        "0 分", "5 分", "1 小时", "3 小时 3 分"]
    assert [stay_en(m) for m in (0, 5, 60, 183)] == ["0m", "5m", "1h", "3h 3m"]
    bill = itemise(None, fee_fen=1500, minutes=183, debts_fen=900)
    zh, en = lane_display("粤B12345", bill, qr=False)
    assert zh == "粤B12345 停3小时3分 应付¥15.00"
    assert en == "Stay 3h 3m: pay ¥15.00 - show pay code"
    long = itemise(None, fee_fen=99_999_999, minutes=10**7)
    assert all(len(text) <= 64 for text in lane_display("粤B12345", long, qr=True))


def test_doctests() -> None:
    assert doctest.testmod(parkguard.core.bill_lines).failed == 0


def test_the_bill_as_json_carries_its_lines_and_totals() -> None:
    data = itemise(None, fee_fen=700, paid_fen=200, minutes=75).as_json()
    assert data["stay_zh"] == "1 小时 15 分" and data["stay_en"] == "1h 15m"
    assert sum(line["fen"] for line in data["lines"]) == data["due_fen"] == 500
