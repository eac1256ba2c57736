"""The manager's passes and lists: monthly and family passes (issue, revoke) and the
white and black lists."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from gateway.storage import queries
from gateway.web.deps import AccessDep, Admin, FormDep, PagesDep, ReaderDep, TimeDep, WorkerDep
from gateway.web.forms import BadForm, require_reason
from parkguard.core.access import PassKind

router = APIRouter()


@router.get("/admin/passes", response_class=HTMLResponse)
def passes(request: Request, user: Admin, pages: PagesDep, reader: ReaderDep) -> Response:
    with reader() as db:
        rows = queries.passes(db)
        lists = queries.access_lists(db)
    for row in rows:
        row["valid_until"] = datetime.fromtimestamp(row["valid_until_ms"] / 1000).astimezone()
        row["revoked"] = row["revoked_at_ms"] is not None
    return pages.render(request, "admin_passes.html", user, passes=rows, lists=lists)


@router.post("/admin/passes")
async def issue_pass(request: Request, user: Admin, fields: FormDep, pages: PagesDep,
                     worker: WorkerDep, desk: AccessDep, time: TimeDep) -> Response:
    async def work() -> None:
        reason = require_reason(fields.get("reason", ""))
        plates = [p for p in fields.get("plates", "").replace(",", " ").split() if p]
        kind: PassKind = "family" if fields.get("kind") == "family" else "monthly"
        days = int(fields.get("days", "30") or "30")
        start = time.now()
        holder = fields.get("holder", "")
        if not holder or not plates:
            raise BadForm("holder and plates are required / 请填写持卡人和车牌")
        await worker.run(lambda: desk.issue_pass(
            kind, plates, start, start + timedelta(days=days), holder, user.actor, reason,
            phone=fields.get("phone") or None,
            max_inside=int(fields.get("max_inside", "1") or "1")))

    return await pages.act(request, "/admin/passes", work, "已发月卡 / Pass issued")


@router.post("/admin/passes/{pass_id}/revoke")
async def revoke_pass(request: Request, pass_id: str, user: Admin, fields: FormDep,
                      pages: PagesDep, worker: WorkerDep, desk: AccessDep) -> Response:
    async def work() -> None:
        reason = require_reason(fields.get("reason", ""))
        await worker.run(lambda: desk.revoke(pass_id, user.actor, reason))

    return await pages.act(request, "/admin/passes", work, "已注销 / Pass revoked")


@router.post("/admin/lists")
async def list_plate(request: Request, user: Admin, fields: FormDep, pages: PagesDep,
                     worker: WorkerDep, desk: AccessDep) -> Response:
    async def work() -> None:
        reason = require_reason(fields.get("reason", ""))
        name = fields.get("list_name", "")
        if name not in ("whitelist", "blacklist"):
            raise BadForm("list must be whitelist or blacklist")
        plate = fields.get("plate", "")
        if fields.get("remove"):
            await worker.run(lambda: desk.unlist(
                name, plate, user.actor, reason))  # type: ignore[arg-type]
        else:
            await worker.run(lambda: desk.list_plate(
                name, plate, reason, user.actor))  # type: ignore[arg-type]

    return await pages.act(request, "/admin/passes", work, "名单已更新 / List updated")
