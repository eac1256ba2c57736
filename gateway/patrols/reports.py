"""Patrol reports a manager can trust: per obligation, guard, route, day and month.

Each report is built from the stored taps by the pure engine (nothing is kept that the taps
do not show), as rectangular CSV tables with bilingual headers (times site-local, like
``gateway/records/reports.py``) and as :class:`PrintablePage` data — titled sections of rows that
the dashboard's printable page renders (:func:`render_html` is a plain fallback).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from html import escape
from zoneinfo import ZoneInfo

from gateway.patrols.desk import PatrolDesk, StoredTap
from gateway.records.cells import csv_cell
from parkguard.core.patrol import ObligationResult, RoundResult
from parkguard.core.patrol.engine import local_midnight

__all__ = [
    "PatrolReport",
    "PrintablePage",
    "Section",
    "build_report",
    "day_report",
    "month_report",
    "obligations_csv",
    "page",
    "render_html",
    "rounds_csv",
    "status_words",
    "taps_csv",
]

_STATUS_ZH = {"met": "达标", "late": "逾时完成", "pending": "未到期", "overdue": "逾期",
              "missed": "未完成", "done": "完成", "out_of_order": "顺序错误",
              "impossible": "不可能(过快)", "accepted": "有效", "refused": "拒绝",
              "not_walked": "未巡查"}


@dataclass(frozen=True, slots=True)
class PatrolReport:
    title: str
    start: datetime
    end: datetime
    generated_at: datetime
    zone: str
    obligations: tuple[ObligationResult, ...]
    taps: tuple[StoredTap, ...]
    seq_gaps: dict[str, list[int]]

    @property
    def refused(self) -> tuple[StoredTap, ...]:
        return tuple(t for t in self.taps if t.status == "refused")

    @property
    def flagged(self) -> tuple[StoredTap, ...]:
        return tuple(t for t in self.taps if t.status == "accepted" and t.flags)

    def rounds(self) -> Iterable[tuple[ObligationResult, RoundResult]]:
        for result in self.obligations:
            for one in result.rounds:
                yield result, one

    def by_subject(self) -> dict[str, dict[str, int]]:
        """Per guard (or team): how many obligations ended in each status."""
        out: dict[str, dict[str, int]] = {}
        for result in self.obligations:
            counts = out.setdefault(result.subject, {})
            counts[result.status] = counts.get(result.status, 0) + 1
        return dict(sorted(out.items()))

    def by_route(self) -> dict[str, dict[str, int]]:
        """Per route: how many rounds ended in each status."""
        out: dict[str, dict[str, int]] = {}
        for _, one in self.rounds():
            counts = out.setdefault(one.route, {})
            counts[one.status] = counts.get(one.status, 0) + 1
        return dict(sorted(out.items()))


def build_report(desk: PatrolDesk, start: datetime, end: datetime, *, title: str,
                 now: datetime | None = None) -> PatrolReport:
    """Obligations whose windows lie within ``[start, end)`` and every tap tapped then."""
    now = now or desk.now()
    results = [r for r in desk.evaluate(start, end, now=now)
               if r.window.start >= start and r.window.end <= end]
    return PatrolReport(title=title, start=start, end=end, generated_at=now,
                        zone=desk.config.timezone, obligations=tuple(results),
                        taps=tuple(desk.stored(start, end)), seq_gaps=desk.seq_gaps(start, end))


def day_report(desk: PatrolDesk, day: date, *, now: datetime | None = None) -> PatrolReport:
    """The day's shifts and daily duties (site-local day)."""
    start = local_midnight(desk.config, day)
    end = local_midnight(desk.config, day + timedelta(days=1))
    return build_report(desk, start, end, title=f"巡查日报 Patrol day {day.isoformat()}",
                        now=now)


def month_report(desk: PatrolDesk, year: int, month: int, *,
                 now: datetime | None = None) -> PatrolReport:
    """Every window of the month: shifts, days, ISO weeks that lie wholly in it, the month."""
    first = date(year, month, 1)
    after = date(year + (month == 12), month % 12 + 1, 1)
    start, end = local_midnight(desk.config, first), local_midnight(desk.config, after)
    return build_report(desk, start, end, title=f"巡查月报 Patrol month {first:%Y-%m}",
                        now=now)


# --- CSV ---------------------------------------------------------------------------------------


def _csv(rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    # tags and badges are what readers sent: no cell may run as a spreadsheet formula
    csv.writer(out, lineterminator="\r\n").writerows(
        [csv_cell(cell) for cell in row] for row in rows)
    return out.getvalue()


def _at(moment: datetime | None, report: PatrolReport) -> str:
    if moment is None:
        return ""
    return moment.astimezone(ZoneInfo(report.zone)).strftime("%Y-%m-%d %H:%M:%S")


def _label(status: str) -> str:
    return f"{_STATUS_ZH.get(status, status)} {status}"


def status_words(status: str) -> str:
    """``完成 done``: a round's or an obligation's status, Chinese with English beside."""
    return _label(status).replace("_", " ")


_OBLIGATIONS_HEADER = ("规定 obligation", "说明 title", "对象 subject", "时段 window",
                       "期限 deadline", "状态 status", "完成 counted", "要求 required",
                       "上报 escalate to")


def obligations_csv(report: PatrolReport) -> str:
    rows: list[Sequence[object]] = [_OBLIGATIONS_HEADER]
    rows += [(r.obligation, r.title, r.subject, r.window.label, _at(r.deadline, report),
              _label(r.status), r.counted, r.required, r.escalate_to or "")
             for r in report.obligations]
    return _csv(rows)


_ROUNDS_HEADER = ("规定 obligation", "时段 window", "对象 subject", "路线 route",
                  "状态 status", "全部标记 flags", "开始 start", "结束 end", "分钟 minutes",
                  "已到 visited", "漏检 missed", "过快 too fast", "故障 faults", "刷卡 taps")


def rounds_csv(report: PatrolReport) -> str:
    rows: list[Sequence[object]] = [_ROUNDS_HEADER]
    for result, one in report.rounds():
        minutes = "" if one.minutes is None else f"{one.minutes:.1f}"
        fast = "; ".join(f"{f.from_checkpoint}→{f.to_checkpoint} {f.seconds:.0f}s<"
                         f"{f.needed_seconds:.0f}s" for f in one.fast_legs)
        faults = "; ".join(f"{c}.{item}={value}" for c, item, value in one.faults)
        rows.append((result.obligation, result.window.label, result.subject, one.route,
                     _label(one.status), " ".join(one.flags), _at(one.start, report),
                     _at(one.end, report), minutes, " ".join(one.visited),
                     " ".join(one.missed), fast, faults, " ".join(one.taps)))
    return _csv(rows)


_TAPS_HEADER = ("读卡器 reader", "序号 seq", "刷卡时间 tapped", "收到 received",
                "延迟分钟 delay min", "标签 tag", "巡更点 checkpoint", "工牌 badge",
                "人员 person", "计数 counter", "结果 status", "原因 reason", "标记 flags")


def taps_csv(report: PatrolReport) -> str:
    """Every tap, refused ones with their reason, in tap order."""
    rows: list[Sequence[object]] = [_TAPS_HEADER]
    rows += [(t.reader, t.seq, _at(t.tapped_at, report), _at(t.received_at, report),
              f"{t.delay_min:.0f}", t.tag_id, t.checkpoint or "", t.badge, t.person or "",
              "" if t.counter is None else t.counter, _label(t.status), t.reason or "",
              " ".join(t.flags)) for t in report.taps]
    return _csv(rows)


# --- printable page ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Section:
    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""


@dataclass(frozen=True, slots=True)
class PrintablePage:
    title: str
    subtitle: str
    sections: tuple[Section, ...]


def _table(text: str, note: str, title: str) -> Section:
    rows = list(csv.reader(io.StringIO(text)))
    return Section(title=title, header=tuple(rows[0]),
                   rows=tuple(tuple(r) for r in rows[1:]), note=note)


def page(report: PatrolReport) -> PrintablePage:
    """The report as sections a printable page renders, most important first."""
    met = sum(r.status == "met" for r in report.obligations)
    summary = Section(
        title="概览 Summary", header=("对象 subject", "状态 statuses"),
        rows=tuple((subject, ", ".join(f"{_label(s)}: {n}" for s, n in sorted(c.items())))
                   for subject, c in report.by_subject().items()),
        note=f"{met} of {len(report.obligations)} obligations met; "
             f"{len(report.refused)} taps refused")
    routes = Section(
        title="路线 Routes", header=("路线 route", "状态 statuses"),
        rows=tuple((route, ", ".join(f"{_label(s)}: {n}" for s, n in sorted(c.items())))
                   for route, c in report.by_route().items()))
    refused = _table(taps_csv(_only(report, report.refused)),
                     "cloned tags, replayed taps and unknown badges", "拒绝的刷卡 Refused taps")
    gaps = Section(title="读卡器序号缺口 Reader seq gaps", header=("读卡器 reader", "缺 missing"),
                   rows=tuple((r, " ".join(map(str, g))) for r, g in report.seq_gaps.items()))
    return PrintablePage(
        title=report.title,
        subtitle=f"{_at(report.start, report)} – {_at(report.end, report)} ({report.zone}); "
                 f"generated {_at(report.generated_at, report)}",
        sections=(summary, _table(obligations_csv(report), "", "规定 Obligations"), routes,
                  _table(rounds_csv(report), "", "巡查轮次 Rounds"), refused, gaps,
                  _table(taps_csv(report), "", "全部刷卡 All taps")))


def _only(report: PatrolReport, taps: tuple[StoredTap, ...]) -> PatrolReport:
    return PatrolReport(report.title, report.start, report.end, report.generated_at,
                        report.zone, report.obligations, taps, report.seq_gaps)


def render_html(printable: PrintablePage) -> str:
    """A self-contained printable HTML page (no scripts, no fetched assets)."""
    parts = [f"<!doctype html><html lang=\"zh-CN\"><meta charset=\"utf-8\">"
             f"<title>{escape(printable.title)}</title><h1>{escape(printable.title)}</h1>"
             f"<p>{escape(printable.subtitle)}</p>"]
    for section in printable.sections:
        parts.append(f"<section><h2>{escape(section.title)}</h2>")
        if section.note:
            parts.append(f"<p>{escape(section.note)}</p>")
        head = "".join(f"<th>{escape(h)}</th>" for h in section.header)
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
                       for row in section.rows)
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
                     "</section>")
    return "".join(parts) + "</html>"
