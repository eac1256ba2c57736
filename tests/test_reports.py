"""Daily reports read back from a real gateway database after real traffic through the broker:
the totals must reconcile with the payments table and the sessions, and every exception a
manager signs off must be listed."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest

from gateway.money.billing import Billing
from gateway.records.days import local_time
from gateway.records.reports import (
    METHODS,
    daily_summary,
    lane_counts,
    mask_phone,
    mask_plate,
    occupancy_over_day,
    revenue_by_hour,
    sessions_csv,
    summary_csv,
)
from simulator.site import SimulatedSite
from simulator.traffic import day_of_visits
from wire.contract.messages import Decision, Passed, PaymentCode

pytestmark = pytest.mark.integration

T = TypeVar("T")
ZONE = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 5, 6)  # the site fixture starts at 10:00 local on this day
NEXT_DAY = date(2026, 5, 7)
MONEY_IN = "state IN ('paid', 'partly_refunded', 'refunded')"


def office(site: SimulatedSite, work: Callable[[Billing], T]) -> T:
    billing = site.gateway.billing
    return site.gateway.service.call(lambda: work(billing))


def drive(site: SimulatedSite, lane: str, plate: str) -> Any:
    passage = site.drive(lane, plate)
    site.settle()
    return passage


def event_fields(site: SimulatedSite, lane: str) -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "seq": 50_000 + len(uuid.uuid4().hex),
            "ts": site.clock.now(), "lane": lane}


def session_id(site: SimulatedSite, plate: str) -> str:
    with site.gateway.store.reader() as db:
        return str(db.execute("SELECT session_id FROM sessions WHERE plate = ?",
                              [plate]).fetchone()[0])


def an_eventful_day(site: SimulatedSite) -> None:
    """Cars that prepay, pay at the exit, are misread, overridden, let in by the lane alone,
    leave with a declined payment code, are refunded, and one that stays overnight."""
    for plate in ("粤B12345", "粤B54321", "湘A88888", "沪A11111", "京A22222"):
        drive(site, "in1", plate)
    site.clock.advance(timedelta(minutes=50))
    pending = site.gateway.service.prepay("粤B54321")
    assert pending is not None
    body, headers = site.wallet.pay(pending.provider_ref)
    paid = site.gateway.service.payment_callback(body, headers)
    site.clock.advance(timedelta(minutes=10))
    assert drive(site, "out1", "粤B54321").opened
    site.clock.advance(timedelta(minutes=30))
    assert drive(site, "out1", "粤B1234S").opened  # mud: the 5 read as S (fuzzy)
    assert not drive(site, "out1", "京Q77770").opened  # never came in: refused
    office(site, lambda b: b.payments.override_fee(
        session_id(site, "沪A11111"), 200, actor="supervisor:02",
        reason="barrier fault held the car", quoted_fen=700))
    assert drive(site, "out1", "沪A11111").fee_fen == 200
    site.gateway.service.call(lambda: site.gateway.audit.record(
        actor="guard:0042", action="lane.open", subject="lane:out1",
        reason="help button: ticket printer jammed", after={"lane": "out1"}))
    site.replay_journal("in1", Decision(
        **event_fields(site, "in1"), correlation_id=uuid.uuid4().hex, direction="entry",
        plate="粤B77777", action="open", reason="offline_entry", decided_by="lane",
        wait_ms=300.0))
    site.wallet.declined["283456789012345678"] = "insufficient_funds"
    site.replay_journal("out1", PaymentCode(**event_fields(site, "out1"),
                                            code="283456789012345678", plate="京A22222",
                                            fee_fen=700))
    site.replay_journal("out1", Passed(**event_fields(site, "out1"), direction="exit",
                                       plate="京A22222", correlation_id=uuid.uuid4().hex))
    office(site, lambda b: b.payments.refund(paid.payment_id, 300, actor="manager:01",
                                             reason="prepaid twice by mistake"))


def test_the_daily_summary_counts_cars_and_money_and_lists_every_exception(
    site: SimulatedSite,
) -> None:
    an_eventful_day(site)
    with site.gateway.store.reader() as db:
        summary = daily_summary(db, DAY, ZONE)
        fees = db.execute(f"SELECT coalesce(sum(amount_fen), 0) FROM payments "  # noqa: S608
                          f"WHERE purpose = 'fee' AND {MONEY_IN}").fetchone()[0]
        counts = lane_counts(db, DAY, ZONE)
    ledger = office(site, lambda b: b.payments.revenue_report(
        site.clock.now() - timedelta(days=1), site.clock.now() + timedelta(days=1)))

    assert (summary.cars_in, summary.cars_out, summary.still_inside) == (5, 4, 1)
    assert list(summary.revenue_by_method) == list(METHODS)
    assert summary.fees_fen == fees
    assert {k: v for k, v in summary.revenue_by_method.items() if v} == dict(
        ledger.fees_by_method)
    assert (summary.refunds, summary.refunds_fen) == (1, 300) == (1, ledger.refunds_fen)
    assert (summary.debts_recorded, summary.debts_recorded_fen) == (1, 700)
    assert [row.lane for row in summary.manual_opens] == ["out1"]
    assert [row.fen for row in summary.fee_overrides] == [-500]
    assert {row.plate for row in summary.fuzzy_matches} == {"粤B12345", "京Q77770"}
    assert [row.plate for row in summary.offline_decisions] == ["粤B77777"]
    assert [(row.plate, row.fen) for row in summary.debts] == [("京A22222", 700)]
    assert "京A22222" in {row.plate for row in summary.reviews}
    assert [(c.lane, c.entries, c.exits, c.refusals) for c in counts] == [
        ("in1", 5, 0, 0), ("out1", 0, 4, 1)]
    moments = [row.at for row in summary.exceptions]
    assert moments == sorted(moments) and all(m.tzinfo == ZONE for m in moments)


def test_the_summary_csv_is_bilingual_and_masks_plates_unless_asked(
    site: SimulatedSite,
) -> None:
    an_eventful_day(site)
    with site.gateway.store.reader() as db:
        summary = daily_summary(db, DAY, ZONE)
        masked = list(csv.reader(io.StringIO(summary_csv(summary))))
        revealed = summary_csv(summary, reveal_plates=True)
        sessions = list(csv.DictReader(io.StringIO(sessions_csv(db, DAY, ZONE))))

    assert masked[0][:3] == ["类别 section", "项目 item", "数值 value"]
    figures = {(row[0], row[1]): row[2] for row in masked[1:]}
    assert figures[("车辆 cars", "入场 in")] == "5"
    assert figures[("收入(分) revenue fen", "实收合计 takings")] == str(summary.takings_fen)
    flat = "\n".join(",".join(row) for row in masked)
    assert "京A22222" not in flat and mask_plate("京A22222") in flat
    assert "京A22222" in revealed
    assert len(sessions) == 5 and {row["车牌 plate"] for row in sessions} == {
        mask_plate(p) for p in ("粤B12345", "粤B54321", "湘A88888", "沪A11111", "京A22222")}
    overridden = next(row for row in sessions if row["车牌 plate"] == mask_plate("沪A11111"))
    assert (overridden["应收(分) fee fen"], overridden["已付(分) paid fen"]) == ("200", "200")


def test_a_simulated_day_reconciles_and_its_series_add_up(site: SimulatedSite) -> None:
    drive(site, "in1", "湘A88888")  # came in the day before and stays
    visits = day_of_visits(NEXT_DAY, cars=16, timezone="Asia/Shanghai", entry_lanes=("in1",),
                           exit_lanes=("out1",))
    site.run_day(visits)
    with site.gateway.store.reader() as db:
        summary = daily_summary(db, NEXT_DAY, ZONE)
        occupancy = occupancy_over_day(db, NEXT_DAY, ZONE)
        hours = revenue_by_hour(db, NEXT_DAY, ZONE)
        counts = lane_counts(db, NEXT_DAY, ZONE)
        takings = db.execute(
            f"SELECT coalesce(sum(amount_fen), 0) FROM payments WHERE {MONEY_IN}"  # noqa: S608
        ).fetchone()[0]
        exit_fees = db.execute("SELECT coalesce(sum(fee_fen), 0) FROM sessions "
                               "WHERE exit_at IS NOT NULL").fetchone()[0]
        rows = sessions_csv(db, NEXT_DAY, ZONE).splitlines()

    assert (summary.cars_in, summary.cars_out, summary.still_inside) == (16, 16, 1)
    assert summary.takings_fen == takings == exit_fees == sum(h.fen for h in hours)
    assert summary.revenue_by_method["prepay"] == takings  # every exit paid by the QR
    assert len(occupancy) == 96 and occupancy[0].cars == 1
    assert occupancy[0].at.isoformat() == "2026-05-07T00:00:00+08:00"
    assert max(p.cars for p in occupancy) > 1 and occupancy[-1].cars == 1
    assert len(hours) == 24 and hours[13].hour.hour == 13
    assert [(c.lane, c.entries, c.exits) for c in counts] == [("in1", 16, 0), ("out1", 0, 16)]
    assert len(rows) == 1 + 16


def test_masking_keeps_enough_to_tell_cars_apart_and_nothing_more() -> None:
    assert mask_plate("粤B12345") == "粤B1***5"
    assert mask_plate("粤BD12345") == "粤BD****5"
    assert mask_plate("") == "" and mask_plate(None) == ""
    assert mask_phone("13812345678") == "138****5678" and mask_phone(None) == ""


def test_a_new_site_with_no_money_tables_still_reports(tmp_path: Any) -> None:
    from gateway.storage.store import GatewayStore

    store = GatewayStore.open(tmp_path / "gateway.db")
    with store.reader() as db:
        summary = daily_summary(db, DAY, ZONE)
        assert (summary.cars_in, summary.takings_fen, summary.exceptions) == (0, 0, ())
        assert sum(h.fen for h in revenue_by_hour(db, DAY, ZONE)) == 0
        assert lane_counts(db, DAY, ZONE) == []
    store.close()


def test_a_stored_time_at_the_edge_of_the_calendar_does_not_take_a_report_down() -> None:
    """A year-9999 stamp stored before the contract bounded times cannot move east of UTC
    (OverflowError before the fix); it stays in UTC, and ordinary times move as before."""
    shanghai = ZoneInfo("Asia/Shanghai")
    edge = local_time("9999-12-31T23:59:59.999Z", shanghai)
    assert edge is not None and edge.year == 9999 and edge.utcoffset() == timedelta(0)
    ordinary = local_time("2026-01-01T00:00:00Z", shanghai)
    assert ordinary is not None and ordinary.hour == 8
