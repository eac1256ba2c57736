"""Incidents for supervisors and managers: open one with its evidence, add notes, close it."""

from __future__ import annotations

import threading
from typing import Any, cast, get_args

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.safety.incidents import KIND_LABELS, IncidentKind
from gateway.web.deps import FormDep, IncidentsDep, IncidentsUser, PagesDep, WorkerDep
from gateway.web.forms import BadForm
from gateway.web.routers.evidence import fetcher_of
from parkguard.errors import ParkGuardError

router = APIRouter()


@router.get("/incidents", response_class=HTMLResponse)
def incidents(request: Request, user: IncidentsUser, pages: PagesDep, worker: WorkerDep,
              desk: IncidentsDep, state: str = "open") -> Response:
    chosen = state if state in ("open", "closed") else None
    found = worker.call(lambda: desk.incidents(state=chosen))  # type: ignore[arg-type]
    return pages.render(request, "incidents.html", user, incidents=found, state=state,
                        kinds=KIND_LABELS)


@router.post("/incidents")
async def open_incident(request: Request, user: IncidentsUser, fields: FormDep,
                        pages: PagesDep, worker: WorkerDep, desk: IncidentsDep) -> Response:
    try:
        kind = fields.get("kind", "")
        if kind not in get_args(IncidentKind):
            raise BadForm(f"unknown kind {kind!r}")
        description = fields.get("description", "")
        opened = await worker.run(lambda: desk.open(
            cast(IncidentKind, kind), description=description, reported_by=user.actor,
            lane=fields.get("lane") or None, session_id=fields.get("session_id") or None,
            contact_phone=fields.get("contact_phone") or None))
        _keep_images(request, opened.evidence["snapshots"])
        pages.flash(request, "ok", "已登记事件 / Incident opened")
    except (BadForm, ParkGuardError, ValueError) as error:
        pages.flash(request, "error", str(error))
    return RedirectResponse("/incidents", status_code=303)


def _keep_images(request: Request, snapshots: list[dict[str, Any]]) -> None:
    """Copy the incident's read images from their lanes into the gateway's kept store, in
    the background (a lane that does not answer must not hold up the page)."""
    fetcher = fetcher_of(request)
    reads = {(ref["lane"], ref["event_id"]) for ref in snapshots}
    if fetcher is None or not reads:
        return

    def keep() -> None:
        for lane, event_id in sorted(reads):
            fetcher.keep(lane, event_id)

    threading.Thread(target=keep, name="incident-evidence", daemon=True).start()


@router.post("/incidents/{incident_id}/{action}")
async def change(request: Request, incident_id: str, action: str, user: IncidentsUser,
                 fields: FormDep, pages: PagesDep, worker: WorkerDep,
                 desk: IncidentsDep) -> Response:
    text = fields.get("text", "")
    try:
        if action == "note":
            await worker.run(lambda: desk.add_note(incident_id, text, author=user.actor))
        elif action == "close":
            await worker.run(lambda: desk.close(incident_id, outcome=text, actor=user.actor))
        else:
            raise HTTPException(404, "no such action")
        pages.flash(request, "ok", "已保存 / Saved")
    except (ParkGuardError, ValueError, LookupError) as error:
        pages.flash(request, "error", str(error))
    return RedirectResponse("/incidents", status_code=303)
