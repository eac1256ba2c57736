"""Daily reports for the control room and the office: what happened on one site-local day.

Everything here *reads*: the caller hands in a sqlite-utils ``Database`` on a read-only
connection (``GatewayStore.reader()``), so a report never waits on, or blocks, the worker
that ingests lane events (WAL). Nothing is cached or written.

A "day" is the site's calendar day (``zone``, Asia/Shanghai by default): from local midnight
to the next local midnight, turned into UTC ISO text once, so every query compares stored
UTC text with UTC text (ParkGuard's ISO form sorts in time order). Times handed back are
site-local ``datetime`` values, ready for a screen or a printed page.

Where each figure comes from is listed in ``docs/reports.md``; the short version:
sessions → cars; ``payments``/``debts``/``refunds`` → money (the same queries as
:meth:`gateway.money.payments.PaymentDesk.revenue_report`, so the two always agree);
``merchant_coupons`` → coupon discounts; ``audit_log`` → manual opens; ``fee_overrides``,
``decisions.match`` and ``decision`` events → the exceptions a manager signs off.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeAlias
from zoneinfo import ZoneInfo

from sqlite_utils import Database

from gateway.money.payments.reports import MONEY_IN_STATES
from gateway.records.cells import csv_cell
from gateway.records.days import (
    bounds_text,
    day_bounds,
    local_time,
    scalar,
)
from gateway.records.series import (
    HourRevenue,
    LaneCount,
    OccupancyPoint,
    lane_counts,
    occupancy_over_day,
    revenue_by_hour,
)
from gateway.records.site_ops import (
    ComplaintTally,
    HandoverAlertRow,
    HandoverRow,
    complaint_tally,
    handover_alerts_of_day,
    handovers_of_day,
)
from parkguard.core.privacy import mask_phone, mask_plate
from parkguard.core.tariffs import format_yuan

if TYPE_CHECKING:  # the patrol reports use this module's CSV cells: imported when asked
    from gateway.patrols.duties import DutyDay
    from parkguard.core.patrol import PatrolConfig

__all__ = [
    "CSV_ENCODING",
    "METHODS",
    "ComplaintTally",
    "DailySummary",
    "ExceptionKind",
    "ExceptionRow",
    "HandoverAlertRow",
    "HandoverRow",
    "HourRevenue",
    "LaneCount",
    "OccupancyPoint",
    "daily_summary",
    "day_bounds",
    "is_fuzzy",
    "lane_counts",
    "mask_phone",
    "mask_plate",
    "occupancy_over_day",
    "revenue_by_hour",
    "sessions_csv",
    "summary_csv",
]

CSV_ENCODING = "utf-8-sig"
"""Encode CSV text with a BOM when serving or saving it: Excel then reads the Chinese right."""

METHODS: tuple[str, ...] = ("prepay", "exit", "payment_code", "cash")
"""Every payment method, in the order reports list them (zero rows are shown, not dropped)."""

_METHOD_LABELS = {"prepay": "预付 prepay", "exit": "出口支付 exit", "payment_code":
                  "付款码 payment code", "cash": "现金 cash"}

ExceptionKind: TypeAlias = Literal["manual_open", "fee_override", "fuzzy_match",
                                   "offline_decision", "debt", "review"]
_KIND_LABELS: dict[str, str] = {
    "manual_open": "手动开闸 manual open", "fee_override": "改价 fee override",
    "fuzzy_match": "模糊匹配 fuzzy match", "offline_decision": "脱机放行 offline decision",
    "debt": "欠费 debt", "review": "待复核 review",
}


@dataclass(frozen=True, slots=True)
class ExceptionRow:
    """One thing a manager should look at: what kind, when (site-local), where and why.

    ``plate`` is as stored; writers mask it. ``fen`` is the money involved, if any.
    """

    kind: ExceptionKind
    at: datetime
    lane: str | None
    plate: str | None
    subject: str
    detail: str
    fen: int | None = None

    @property
    def label(self) -> str:
        """The kind in Chinese with English beside it."""
        return _KIND_LABELS[self.kind]


@dataclass(frozen=True, slots=True)
class DailySummary:
    """One site-local day on one page. Money is integer fen.

    Identities the tests check: ``sum(revenue_by_method.values()) == fees_fen`` and
    ``takings_fen == fees_fen + debts_settled_fen`` is what the payments table took in.
    """

    day: date
    zone: str
    cars_in: int
    """Sessions whose entry passage was on this day."""
    cars_out: int
    """Sessions whose exit passage was on this day (whenever they came in)."""
    still_inside: int
    """Cars inside at the end of the day: came in before it ended, had not left by then."""
    revenue_by_method: Mapping[str, int]
    """Parking fees paid this day by method (all of :data:`METHODS`, zero if none)."""
    debts_recorded_fen: int
    debts_recorded: int
    debts_settled_fen: int
    refunds_fen: int
    refunds: int
    coupon_discount_fen: int
    """What merchant coupons took off exits this day (charged to the merchants)."""
    coupons_redeemed: int
    manual_opens: tuple[ExceptionRow, ...] = ()
    fee_overrides: tuple[ExceptionRow, ...] = ()
    fuzzy_matches: tuple[ExceptionRow, ...] = ()
    offline_decisions: tuple[ExceptionRow, ...] = ()
    debts: tuple[ExceptionRow, ...] = ()
    reviews: tuple[ExceptionRow, ...] = ()
    handovers: tuple[HandoverRow, ...] = ()
    """Shift handovers started this day, in time order (docs/handover.md)."""
    handover_alerts: tuple[HandoverAlertRow, ...] = ()
    """Shift changes whose handover was late: ``handover:{boundary}`` alerts raised this
    day (docs/handover.md)."""
    complaints: ComplaintTally | None = None
    """Incidents and complaints of the day, and how the ones with an answer-by time were
    answered (docs/incidents.md)."""
    duties: DutyDay | None = None
    """The kind of day, cleaning compliance and short-roster hours (docs/patrols.md); none
    without a patrol regime."""
    generated_from: str = field(default="gateway database", repr=False)

    @property
    def fees_fen(self) -> int:
        return sum(self.revenue_by_method.values())

    @property
    def takings_fen(self) -> int:
        """Money in this day: fees plus old debts paid off."""
        return self.fees_fen + self.debts_settled_fen

    @property
    def net_takings_fen(self) -> int:
        """Money in minus refunds paid out this day."""
        return self.takings_fen - self.refunds_fen

    @property
    def exceptions(self) -> tuple[ExceptionRow, ...]:
        """Every exception of the day in time order."""
        rows = (*self.manual_opens, *self.fee_overrides, *self.fuzzy_matches,
                *self.offline_decisions, *self.debts, *self.reviews)
        return tuple(sorted(rows, key=lambda row: (row.at, row.kind, row.subject)))


def daily_summary(db: Database, day: date, zone: ZoneInfo, *,
                  regime: PatrolConfig | None = None,
                  now: datetime | None = None) -> DailySummary:
    """Cars, money and exceptions of one site-local day, read from the gateway's database;
    with a patrol ``regime``, its duties too (cleaning judged as of ``now``)."""
    start, end = bounds_text(day, zone)
    cars_in = scalar(db, "SELECT count(*) FROM sessions WHERE entry_at >= ? AND entry_at < ?",
                      [start, end])
    cars_out = scalar(db, "SELECT count(*) FROM sessions WHERE state = 'closed' "
                           "AND exit_at >= ? AND exit_at < ?", [start, end])
    inside = scalar(db, "SELECT count(*) FROM sessions WHERE entry_at < ? "
                         "AND (exit_at IS NULL OR exit_at >= ?)", [end, end])
    by_method = dict.fromkeys(METHODS, 0)
    for row in db.query(
            "SELECT method, sum(amount_fen) AS fen FROM payments WHERE purpose = 'fee' "
            "AND state IN (?, ?, ?) AND paid_at >= ? AND paid_at < ? GROUP BY method",
            [*MONEY_IN_STATES, start, end]):
        by_method[row["method"]] = by_method.get(row["method"], 0) + int(row["fen"])
    settled = scalar(db, "SELECT coalesce(sum(amount_fen), 0) FROM payments "
                          "WHERE purpose = 'debts' AND state IN (?, ?, ?) "
                          "AND paid_at >= ? AND paid_at < ?",
                      [*MONEY_IN_STATES, start, end])
    recorded_n, recorded = db.execute(
        "SELECT count(*), coalesce(sum(amount_fen), 0) FROM debts "
        "WHERE created_at >= ? AND created_at < ?", [start, end]).fetchone()
    refunds_n, refunds = db.execute(
        "SELECT count(*), coalesce(sum(amount_fen), 0) FROM refunds "
        "WHERE created_at >= ? AND created_at < ?", [start, end]).fetchone()
    coupons_n, coupon_fen = db.execute(
        "SELECT count(*), coalesce(sum(applied_fen), 0) FROM merchant_coupons "
        "WHERE state = 'redeemed' AND redeemed_at >= ? AND redeemed_at < ?",
        [start, end]).fetchone()
    return DailySummary(
        day=day, zone=zone.key, cars_in=cars_in, cars_out=cars_out, still_inside=inside,
        revenue_by_method=by_method, debts_recorded_fen=int(recorded),
        debts_recorded=int(recorded_n), debts_settled_fen=settled, refunds_fen=int(refunds),
        refunds=int(refunds_n), coupon_discount_fen=int(coupon_fen),
        coupons_redeemed=int(coupons_n),
        manual_opens=tuple(_manual_opens(db, start, end, zone)),
        fee_overrides=tuple(_fee_overrides(db, start, end, zone)),
        fuzzy_matches=tuple(_fuzzy_matches(db, start, end, zone)),
        offline_decisions=tuple(_offline_decisions(db, start, end, zone)),
        debts=tuple(_debts(db, start, end, zone)),
        reviews=tuple(_reviews(db, start, end, zone)),
        handovers=tuple(handovers_of_day(db, start, end, zone)),
        handover_alerts=tuple(handover_alerts_of_day(db, start, end, zone)),
        complaints=complaint_tally(db, start, end),
        duties=None if regime is None or now is None else _duties(db, regime, day, now),
    )


def _duties(db: Database, regime: PatrolConfig, day: date, now: datetime) -> DutyDay:
    from gateway.patrols.duties import duties_of_day  # here: the patrol reports import us

    return duties_of_day(db, regime, day, now=now)


def _at(text: str, zone: ZoneInfo) -> datetime:
    moment = local_time(text, zone)
    assert moment is not None  # noqa: S101 - callers pass NOT NULL columns
    return moment


def _manual_opens(db: Database, start: str, end: str,
                  zone: ZoneInfo) -> Iterator[ExceptionRow]:
    """Audit entries ``lane.open``: who opened which barrier by hand, and why. An open
    that followed money taken (its args say how it was ``settled``) is not one."""
    for row in db.query("SELECT ts, actor, subject, reason, after FROM audit_log "
                        "WHERE action = 'lane.open' AND ts >= ? AND ts < ? ORDER BY seq",
                        [start, end]):
        after = _json(row["after"])
        args = after.get("args") if isinstance(after, dict) else None
        if isinstance(args, dict) and args.get("settled"):
            continue
        lane = after.get("lane") if isinstance(after, dict) else None
        if lane is None and str(row["subject"]).startswith("lane:"):
            lane = str(row["subject"]).removeprefix("lane:")
        plate = after.get("plate") if isinstance(after, dict) else None
        yield ExceptionRow("manual_open", _at(row["ts"], zone), lane, plate, row["subject"],
                           f"{row['actor']}: {row['reason']}")


def _fee_overrides(db: Database, start: str, end: str,
                   zone: ZoneInfo) -> Iterator[ExceptionRow]:
    """Fees set by hand (the ``fee_overrides`` table, each also audited as ``fee.override``)."""
    for row in db.query(
            "SELECT o.*, s.plate, s.exit_lane FROM fee_overrides o LEFT JOIN sessions s "
            "ON s.session_id = o.session_id WHERE o.created_at >= ? AND o.created_at < ? "
            "ORDER BY o.id", [start, end]):
        yield ExceptionRow(
            "fee_override", _at(row["created_at"], zone), row["exit_lane"], row["plate"],
            f"session:{row['session_id']}",
            f"{row['actor']}: {format_yuan(row['quoted_fen'])} → {format_yuan(row['fee_fen'])}"
            f" ({row['reason']})", int(row["fee_fen"]) - int(row["quoted_fen"]))


def is_fuzzy(evidence: Mapping[str, Any]) -> bool:
    """A match that was not an exact read: a non-zero distance, or no unique car at all."""
    score = evidence.get("score")
    return evidence.get("outcome") != "match" or (score is not None and float(score) > 0)


def _fuzzy_matches(db: Database, start: str, end: str,
                   zone: ZoneInfo) -> Iterator[ExceptionRow]:
    """Exit decisions whose matcher evidence was not an exact read."""
    for row in db.query(
            "SELECT answered_at, lane, plate, action, reason, session_id, match FROM decisions "
            "WHERE direction = 'exit' AND match IS NOT NULL AND answered_at >= ? "
            "AND answered_at < ? ORDER BY answered_at", [start, end]):
        evidence = _json(row["match"])
        if not isinstance(evidence, dict) or not is_fuzzy(evidence):
            continue
        matched = evidence.get("plate")
        yield ExceptionRow(
            "fuzzy_match", _at(row["answered_at"], zone), row["lane"], matched or row["plate"],
            f"session:{row['session_id']}" if row["session_id"] else f"read:{row['plate']}",
            f"{evidence.get('outcome')} score={evidence.get('score')} read={row['plate']} "
            f"→ {row['action']}/{row['reason']}: {evidence.get('reason', '')}")


def _offline_decisions(db: Database, start: str, end: str,
                       zone: ZoneInfo) -> Iterator[ExceptionRow]:
    """``decision`` events a lane made alone (``decided_by: "lane"``)."""
    for row in db.query(
            "SELECT ts, lane, payload FROM events WHERE type = 'decision' AND ts >= ? AND ts < ? "
            "AND json_extract(payload, '$.decided_by') = 'lane' ORDER BY ts, lane, seq",
            [start, end]):
        payload = _json(row["payload"])
        if not isinstance(payload, dict):
            continue
        yield ExceptionRow(
            "offline_decision", _at(row["ts"], zone), row["lane"], payload.get("plate"),
            f"correlation:{payload.get('correlation_id')}",
            f"{payload.get('direction')} {payload.get('action')}/{payload.get('reason')}",
            payload.get("fee_fen"))


def _debts(db: Database, start: str, end: str, zone: ZoneInfo) -> Iterator[ExceptionRow]:
    for row in db.query(
            "SELECT d.*, s.exit_lane FROM debts d LEFT JOIN sessions s "
            "ON s.session_id = d.session_id WHERE d.created_at >= ? AND d.created_at < ? "
            "ORDER BY d.created_at", [start, end]):
        yield ExceptionRow("debt", _at(row["created_at"], zone), row["exit_lane"], row["plate"],
                           f"debt:{row['debt_id']}", row["reason"], int(row["amount_fen"]))


def _reviews(db: Database, start: str, end: str, zone: ZoneInfo) -> Iterator[ExceptionRow]:
    """Sessions the gateway flagged for a person, that entered or left this day."""
    for row in db.query(
            "SELECT session_id, plate, review, entry_lane, entry_at, exit_lane, exit_at "
            "FROM sessions WHERE review IS NOT NULL AND ((entry_at >= ? AND entry_at < ?) "
            "OR (exit_at >= ? AND exit_at < ?)) ORDER BY coalesce(exit_at, entry_at)",
            [start, end, start, end]):
        left = row["exit_at"] is not None and start <= row["exit_at"] < end
        yield ExceptionRow("review", _at(row["exit_at"] if left else row["entry_at"], zone),
                           row["exit_lane"] if left else row["entry_lane"], row["plate"],
                           f"session:{row['session_id']}", row["review"])


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


# --- CSV ---------------------------------------------------------------------------------

_SUMMARY_HEADER = ("类别 section", "项目 item", "数值 value", "时间 time", "车道 lane",
                   "车牌 plate", "说明 detail")


def _csv(rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows([csv_cell(cell) for cell in row] for row in rows)
    return out.getvalue()


def _clock(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def summary_csv(summary: DailySummary, *, reveal_plates: bool = False) -> str:
    """The daily summary as one rectangular CSV table with bilingual headers: the figures
    (section 车辆/收入/欠费…, money in fen), then one row per exception in time order.
    Plates are masked unless ``reveal_plates``."""
    figures: list[tuple[str, str, object]] = [
        ("日期 day", summary.day.isoformat(), summary.zone),
        ("车辆 cars", "入场 in", summary.cars_in),
        ("车辆 cars", "出场 out", summary.cars_out),
        ("车辆 cars", "日终在场 inside at end of day", summary.still_inside),
    ]
    figures += [("收入(分) revenue fen", _METHOD_LABELS.get(method, method), fen)
                for method, fen in summary.revenue_by_method.items()]
    figures += [
        ("收入(分) revenue fen", "停车费合计 fees total", summary.fees_fen),
        ("收入(分) revenue fen", "补缴欠费 debts settled", summary.debts_settled_fen),
        ("收入(分) revenue fen", "实收合计 takings", summary.takings_fen),
        ("退款 refunds", "笔数 count", summary.refunds),
        ("退款 refunds", "金额(分) fen", summary.refunds_fen),
        ("收入(分) revenue fen", "扣除退款 net of refunds", summary.net_takings_fen),
        ("欠费 debts", "新增笔数 booked count", summary.debts_recorded),
        ("欠费 debts", "新增金额(分) booked fen", summary.debts_recorded_fen),
        ("优惠券 coupons", "核销张数 redeemed", summary.coupons_redeemed),
        ("优惠券 coupons", "抵扣金额(分) discount fen", summary.coupon_discount_fen),
    ]
    counts = [("异常 exceptions", _KIND_LABELS[kind], len(rows)) for kind, rows in (
        ("manual_open", summary.manual_opens), ("fee_override", summary.fee_overrides),
        ("fuzzy_match", summary.fuzzy_matches), ("offline_decision", summary.offline_decisions),
        ("debt", summary.debts), ("review", summary.reviews))]
    rows: list[Sequence[object]] = [_SUMMARY_HEADER]
    rows += [(section, item, value, "", "", "", "") for section, item, value in
             [*figures, *counts]]
    if summary.duties is not None:
        rows += [(section, item, value, "", "", "", "")
                 for section, item, value in summary.duties.csv_rows()]
    for row in summary.exceptions:
        plate = row.plate if reveal_plates else mask_plate(row.plate)
        rows.append((f"异常 exception: {row.label}", row.subject,
                     "" if row.fen is None else row.fen, _clock(row.at), row.lane or "",
                     plate or "", row.detail))
    return _csv(rows)


_SESSIONS_HEADER = ("会话 session", "车牌 plate", "类型 access", "入场车道 entry lane",
                    "入场时间 entry time", "出场车道 exit lane", "出场时间 exit time",
                    "停留分钟 minutes", "状态 state", "应收(分) fee fen", "已付(分) paid fen",
                    "复核 review")


def sessions_csv(db: Database, day: date, zone: ZoneInfo, *,
                 reveal_plates: bool = False) -> str:
    """Every session that entered or left on the day, oldest entry first, times site-local;
    ``paid fen`` is fee payments net of refunds. Plates are masked unless ``reveal_plates``."""
    start, end = bounds_text(day, zone)
    paid_sql = ("(SELECT coalesce(sum(p.amount_fen - p.refunded_fen), 0) FROM payments p "
                "WHERE p.session_id = s.session_id AND p.purpose = 'fee' "
                "AND p.state IN ('paid', 'partly_refunded', 'refunded'))")
    rows: list[Sequence[object]] = [_SESSIONS_HEADER]
    for row in db.query(
            f"SELECT s.*, {paid_sql} AS paid_fen FROM sessions s "  # noqa: S608 - constant
            "WHERE (s.entry_at >= ? AND s.entry_at < ?) OR (s.exit_at >= ? AND s.exit_at < ?) "
            "ORDER BY s.entry_at, s.session_id", [start, end, start, end]):
        entered, left = local_time(row["entry_at"], zone), local_time(row["exit_at"], zone)
        minutes = "" if entered is None or left is None \
            else int((left - entered).total_seconds() // 60)
        rows.append((row["session_id"], row["plate"] if reveal_plates else mask_plate(
            row["plate"]), row.get("access") or "", row["entry_lane"], _clock(entered),
            row["exit_lane"] or "", _clock(left), minutes, row["state"], row["fee_fen"],
            row["paid_fen"], row["review"] or ""))
    return _csv(rows)
