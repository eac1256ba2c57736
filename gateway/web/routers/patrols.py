"""The patrol page ``/patrols`` (supervisors and managers): a day's rounds by person and
route with their compliance, missed and late checkpoints, rounds walked too fast and cloned
tags, and ``/api/patrols`` with the same figures as JSON. Both come from
:func:`gateway.patrols.summary.read_summary`, as ``parkguard patrol report`` does; times are
site-local. Without a patrol file the page says patrols are not configured.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from gateway.patrols.reports import status_words
from gateway.patrols.summary import ROLE_WORDS, read_summary
from gateway.web.deps import AskedDay, PagesDep, PatrolsDep, PatrolsUser, ReaderDep, TimeDep

router = APIRouter()


@router.get("/patrols", response_class=HTMLResponse)
def patrol_page(request: Request, user: PatrolsUser, chosen: AskedDay, pages: PagesDep,
                reader: ReaderDep, time: TimeDep, regime: PatrolsDep) -> Response:
    summary = None
    if regime is not None:
        with reader() as db:
            summary = read_summary(db, regime, chosen, chosen, now=time.now())
    return pages.render(request, "patrols.html", user, summary=summary, day=chosen,
                        today=time.today(), previous=chosen - timedelta(days=1),
                        next=chosen + timedelta(days=1), status_words=status_words,
                        role_words=ROLE_WORDS,
                        places={} if regime is None else {
                            c.id: c.place for c in regime.checkpoints})


@router.get("/api/patrols")
def patrol_api(_user: PatrolsUser, chosen: AskedDay, reader: ReaderDep, time: TimeDep,
               regime: PatrolsDep) -> Response:
    if regime is None:
        return JSONResponse({"error": "patrols are not configured / 未配置巡查"},
                            status_code=404)
    with reader() as db:
        summary = read_summary(db, regime, chosen, chosen, now=time.now())
    return JSONResponse(summary.as_json())
