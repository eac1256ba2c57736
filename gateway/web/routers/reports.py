"""The manager's daily reports: the summary with its charts, and the two CSV downloads."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from gateway.records import charts, reports
from gateway.safety.incidents import KIND_LABELS
from gateway.web.deps import Manager, PagesDep, PatrolsDep, ReaderDep, TimeDep
from parkguard.core.tariffs import format_yuan

router = APIRouter()


def _day(time: TimeDep, text: str) -> date:
    """The report's day: ``text`` (YYYY-MM-DD, else 400), or the site's today."""
    if not text:
        return time.today()
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise HTTPException(400, "day must be YYYY-MM-DD") from error


def _asked_day(time: TimeDep, day: str = "") -> date:
    return _day(time, day)


def _day_in_path(time: TimeDep, day: str) -> date:
    return _day(time, day)


Day = Annotated[date, Depends(_asked_day)]
"""``?day=`` of the reports page."""
DayInPath = Annotated[date, Depends(_day_in_path)]
"""``/reports/{day}/...`` of a CSV download."""


@router.get("/reports", response_class=HTMLResponse)
def report(request: Request, user: Manager, chosen: Day, pages: PagesDep, reader: ReaderDep,
           time: TimeDep, regime: PatrolsDep) -> Response:
    zone = time.zone
    with reader() as db:
        summary = reports.daily_summary(db, chosen, zone, regime=regime, now=time.now())
        svg: dict[str, Any] = {
            "occupancy": charts.occupancy_chart(reports.occupancy_over_day(db, chosen, zone)),
            "revenue": charts.revenue_chart(reports.revenue_by_hour(db, chosen, zone)),
            "lanes": charts.lane_counts_chart(reports.lane_counts(db, chosen, zone)),
        }
    return pages.render(request, "reports.html", user, summary=summary, day=chosen,
                        charts={k: Markup(v) for k, v in svg.items()},  # noqa: S704 - ours
                        previous=chosen - timedelta(days=1), next=chosen + timedelta(days=1),
                        yuan=format_yuan, kind_labels=KIND_LABELS)


@router.get("/reports/{day}/summary.csv")
def summary_csv(_user: Manager, chosen: DayInPath, reader: ReaderDep, time: TimeDep,
                regime: PatrolsDep) -> Response:
    with reader() as db:
        text = reports.summary_csv(reports.daily_summary(db, chosen, time.zone, regime=regime,
                                                         now=time.now()))
    return _csv(text, f"summary-{chosen}.csv")


@router.get("/reports/{day}/sessions.csv")
def sessions_csv(_user: Manager, chosen: DayInPath, reader: ReaderDep, time: TimeDep) -> Response:
    with reader() as db:
        text = reports.sessions_csv(db, chosen, time.zone)
    return _csv(text, f"sessions-{chosen}.csv")


def _csv(text: str, name: str) -> Response:
    # A BOM so spreadsheet programs open the Chinese headers as UTF-8.
    return Response("\ufeff" + text, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
