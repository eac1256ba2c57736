"""Fire drills and the heavy-rain readiness checklist on the dashboard: supervisors start
them, anyone on staff ticks a checklist item, the drill report says who acknowledged when."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from gateway.plans import DrillDesk, FloodPlanDesk
from gateway.plans.assembly import SitePlans
from gateway.plans.equipment import EquipmentDesk
from gateway.web.deps import FormDep, PagesDep, Senior, Staff, TimeDep, WorkerDep
from gateway.web.forms import BadForm

router = APIRouter()


def _equipment(request: Request) -> EquipmentDesk:
    plans: SitePlans | None = getattr(request.app.state, "site_plans", None)
    if plans is None or plans.equipment is None:
        raise HTTPException(404, "no fire plan on this gateway (a safety file)")
    return plans.equipment


def _plans(request: Request) -> tuple[DrillDesk, FloodPlanDesk]:
    plans: SitePlans | None = getattr(request.app.state, "site_plans", None)
    if plans is None or plans.drills is None or plans.flood is None:
        raise HTTPException(404, "no fire and flood plans on this gateway (a safety file)")
    return plans.drills, plans.flood


@router.get("/plans", response_class=HTMLResponse)
def plans(request: Request, user: Staff, pages: PagesDep, worker: WorkerDep) -> Response:
    site: SitePlans | None = getattr(request.app.state, "site_plans", None)
    if site is None or site.drills is None:  # no safety file: say so, not a bare 404
        return pages.render(request, "plans.html", user, off=True, readiness=None, drills=[],
                            reports=[], equipment=None)
    drills, flood = _plans(request)

    def read() -> tuple[object, ...]:
        return flood.current(), drills.drills(), [drills.report(d["drill_id"]) for d in
                                                   drills.drills(5) if d["state"] != "scheduled"]
    readiness, drill_rows, reports = worker.call(read)
    equipment = worker.call(_equipment(request).summary)
    return pages.render(request, "plans.html", user, readiness=readiness, drills=drill_rows,
                        reports=reports, equipment=equipment)


@router.post("/plans/equipment/{item}")
async def check_equipment(request: Request, item: str, user: Staff, fields: FormDep,
                          pages: PagesDep, worker: WorkerDep) -> Response:
    desk = _equipment(request)
    fault = fields.get("result") == "fault"

    async def work() -> None:
        await worker.run(lambda: desk.check(item, actor=user.actor, via="page",
                                            result="fault" if fault else "ok",
                                            note=fields.get("note", "")))
    return await pages.act(request, "/plans#equipment", work, "已检查 / Checked")


@router.post("/plans/heavy-rain")
async def heavy_rain(request: Request, user: Senior, fields: FormDep, pages: PagesDep,
                     worker: WorkerDep) -> Response:
    _drills, flood = _plans(request)

    async def work() -> None:
        await worker.run(lambda: flood.heavy_rain(actor=user.actor, note=fields.get("note", "")))
    return await pages.act(request, "/plans", work, "已启动防汛准备 / Readiness checklist started")


@router.post("/plans/checklist/{item}")
async def check(request: Request, item: str, user: Staff, fields: FormDep, pages: PagesDep,
                worker: WorkerDep) -> Response:
    _drills, flood = _plans(request)

    async def work() -> None:
        await worker.run(lambda: flood.check(item, actor=user.actor, via="page"))
    return await pages.act(request, "/plans", work, "已检查 / Checked")


@router.post("/plans/drills")
async def start_drill(request: Request, user: Senior, fields: FormDep, pages: PagesDep,
                      worker: WorkerDep, time: TimeDep) -> Response:
    drills, _flood = _plans(request)
    note, at = fields.get("note", ""), fields.get("at", "").strip()

    async def work() -> None:
        if at:
            try:
                when = datetime.fromisoformat(at).replace(tzinfo=time.zone)
            except ValueError as error:
                raise BadForm("at: a date and time, e.g. 2026-05-06T15:00") from error
            await worker.run(lambda: drills.schedule(when, actor=user.actor, note=note))
        else:
            await worker.run(lambda: drills.start(actor=user.actor, note=note))
    return await pages.act(request, "/plans", work, "演习已登记 / Drill set")


@router.post("/plans/drills/{drill_id}/end")
async def end_drill(request: Request, drill_id: str, user: Senior, fields: FormDep,
                    pages: PagesDep, worker: WorkerDep) -> Response:
    drills, _flood = _plans(request)

    async def work() -> None:
        await worker.run(lambda: drills.end(drill_id, actor=user.actor))
    return await pages.act(request, "/plans", work, "演习结束 / Drill over")
