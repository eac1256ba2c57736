"""The lanes page and its live API: each lane's state and last reads, the read snapshot,
and the manual open (a guard lets a car through, with a reason)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from gateway.storage import queries
from gateway.web.deps import (
    BoardDep,
    CommanderDep,
    FormDep,
    Opener,
    PagesDep,
    ReaderDep,
    Staff,
    TimeDep,
    WorkerDep,
)
from gateway.web.forms import BadForm, require_reason
from gateway.web.lanes import lanes_view, plate_snapshot_svg
from gateway.web.security import CSRF_HEADER, csrf_ok
from gateway.web.users import User
from parkguard.clock import utc_iso
from parkguard.errors import ParkGuardError

log = logging.getLogger(__name__)
router = APIRouter()


@router.get("/lanes", response_class=HTMLResponse)
def lanes(request: Request, user: Staff, pages: PagesDep, board: BoardDep,
          reader: ReaderDep) -> Response:
    with reader() as db:
        view = lanes_view(board, db)
    return pages.render(request, "lanes.html", user, lanes=view)


@router.get("/api/lanes")
def api_lanes(_user: Staff, board: BoardDep, reader: ReaderDep,
              time: TimeDep) -> dict[str, Any]:
    with reader() as db:
        view = lanes_view(board, db)
    for lane in view:
        lane["reads"] = [{**read, "local": time.local(read["ts"])} for read in lane["reads"]]
    return {"lanes": view, "now": utc_iso(time.now())}


@router.get("/lanes/reads/{event_id}.svg")
def snapshot(event_id: str, _user: Staff, reader: ReaderDep, time: TimeDep) -> Response:
    with reader() as db:
        read = queries.plate_read(db, event_id)
    if read is None:
        raise HTTPException(404, "no such read")
    return Response(plate_snapshot_svg(read.plate, time.local(read.ts)),
                    media_type="image/svg+xml")


async def manual_open(user: User, commander: CommanderDep, worker: WorkerDep, lane: str,
                      reason: str) -> str:
    require_reason(reason, "开闸原因")
    if commander is None:
        raise BadForm("manual open is not available on this gateway / 本网关不支持远程开闸")
    # Signed, audited, then published: on the worker, so the audit entry never
    # interleaves with an exit being billed.
    await worker.run(lambda: commander.open(lane, actor=user.actor, reason=reason))
    log.info("web: %s opened %s", user.actor, lane)
    return f"已发送开闸指令 {lane} / Open sent to {lane}"


@router.post("/lanes/{lane}/open")  # the form's token is checked before the role
async def open_lane(request: Request, lane: str, fields: FormDep, user: Opener,
                    commander: CommanderDep, worker: WorkerDep, pages: PagesDep) -> Response:
    try:
        pages.flash(request, "ok", await manual_open(user, commander, worker, lane,
                                                     fields.get("reason", "")))
    except (BadForm, ParkGuardError, ValueError) as error:
        pages.flash(request, "error", str(error))
    return RedirectResponse("/lanes", status_code=303)


@router.post("/api/lanes/{lane}/open")
async def api_open_lane(request: Request, lane: str, user: Opener, commander: CommanderDep,
                        worker: WorkerDep) -> Response:
    if not csrf_ok(request, request.headers.get(CSRF_HEADER)):
        return JSONResponse({"error": "CSRF token missing or wrong"}, status_code=403)
    body = await request.json()
    try:
        message = await manual_open(user, commander, worker, lane,
                                    str(body.get("reason", "")).strip())
    except (BadForm, ParkGuardError, ValueError) as error:
        return JSONResponse({"error": str(error)}, status_code=400)
    return JSONResponse({"ok": True, "message": message})
