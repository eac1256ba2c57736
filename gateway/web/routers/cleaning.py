"""The cleaning page ``/cleaning``: a cleaner's own tasks of the day (the cleaning schedule of
the patrol regime, docs/patrols.md), each with its status, and a form to tick one done with
its checklist when it was not tapped at the cleaning points; supervisors and managers see
every cleaning task and the day's compliance.

A dashboard user is the regime's person of the same id (as on the alerts page): user
``ma`` of role ``cleaner`` is person ``ma``. A cleaner sees nothing else of the dashboard
(``gateway.web.access``). Reads use the request's reader; a tick is written on the worker.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.patrols.cleaning import (
    CleaningDesk,
    CleaningError,
    cleaning_compliance,
    read_cleaning,
)
from gateway.patrols.reports import status_words
from gateway.records.audit import AuditLog
from gateway.web.deps import (
    AskedDay,
    DesksDep,
    FormDep,
    PagesDep,
    PatrolsDep,
    ReaderDep,
    TimeDep,
    WorkerDep,
    need,
)
from gateway.web.users import User

router = APIRouter()

CleaningUser = Annotated[User, Depends(need("cleaning"))]
OFF = ("本网关未配置巡查与保洁", "Patrols and cleaning are not configured on this gateway")


@router.get("/cleaning", response_class=HTMLResponse)
def cleaning_page(request: Request, user: CleaningUser, pages: PagesDep, reader: ReaderDep,
                  time: TimeDep, regime: PatrolsDep,
                  chosen: AskedDay) -> Response:
    if regime is None:
        return pages.render(request, "cleaning.html", user, off=OFF, tasks=[], person=None,
                            day=chosen, done=0, due=0)
    person = regime.person.get(user.username)
    if user.role == "cleaner" and person is None:
        return pages.render(request, "cleaning.html", user,
                            off=(f"{user.username} 不在排班表中", f"{user.username} is not on "
                                 "the patrol roster (patrol_file people)"),
                            tasks=[], person=None, day=chosen, done=0, due=0)
    mine = person if user.role == "cleaner" else None
    with reader() as db:
        tasks = read_cleaning(db, regime, chosen, chosen, now=time.now(), person=mine)
    done, due = cleaning_compliance(tasks)
    now = time.now()
    return pages.render(
        request, "cleaning.html", user, off=None, tasks=tasks, person=person, day=chosen,
        done=done, due=due, status_words=status_words, today=time.today(),
        previous=chosen - timedelta(days=1), next=chosen + timedelta(days=1),
        open_now={t.obligation for t in tasks if t.window_start <= now < t.window_end
                  and not t.done})


@router.post("/cleaning/tick")
async def tick_task(request: Request, user: CleaningUser, fields: FormDep, pages: PagesDep,
                    worker: WorkerDep, desks: DesksDep, time: TimeDep,
                    regime: PatrolsDep) -> Response:
    try:
        if regime is None:
            raise CleaningError(" / ".join(OFF))
        obligation = fields.get("obligation", "").strip()
        answers = {key.removeprefix("item_"): value for key, value in fields.items()
                   if key.startswith("item_")}
        note = fields.get("note", "")
        store = desks.store

        def tick() -> str:
            desk = CleaningDesk(store.db, config=regime, clock=time.clock,
                                audit=AuditLog(store.db, clock=time.clock))
            return desk.tick(user.username, obligation, answers, note).title

        title = await worker.run(tick)
        pages.flash(request, "ok", f"已完成 / done: {title}")
    except CleaningError as error:
        pages.flash(request, "error", str(error))
    return RedirectResponse("/cleaning", status_code=303)
