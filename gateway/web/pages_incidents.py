"""Incidents for supervisors and managers: open one with its evidence, add notes, close it."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast, get_args

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from gateway.safety.incidents import KIND_LABELS, IncidentDesk, IncidentKind
from parkguard.errors import ParkGuardError

if TYPE_CHECKING:
    from gateway.web.app import Web


def routes(app: FastAPI, web: Web) -> None:
    from gateway.web.app import BadForm

    desk: IncidentDesk | None = getattr(web.gw, "incidents", None)

    def the_desk() -> IncidentDesk:
        nonlocal desk
        if desk is None:  # made on the worker: its migrations write
            desk = web.service.call(lambda: IncidentDesk(web.store.db, clock=web.clock,
                                                         audit=web.gw.audit))
        return desk

    @app.get("/incidents", response_class=HTMLResponse)
    def incidents(request: Request, state: str = "open") -> Response:
        user = web.need(request, "incidents")
        chosen = state if state in ("open", "closed") else None
        incident_desk = the_desk()  # not inside the call below: the worker cannot wait on itself
        found = web.service.call(lambda: incident_desk.incidents(state=chosen))  # type: ignore[arg-type]
        return web.render(request, "incidents.html", user, incidents=found, state=state,
                          kinds=KIND_LABELS)

    @app.post("/incidents")
    async def open_incident(request: Request) -> Response:
        user = web.need(request, "incidents")
        fields = await web.form(request)
        try:
            kind = fields.get("kind", "")
            if kind not in get_args(IncidentKind):
                raise BadForm(f"unknown kind {kind!r}")
            description = fields.get("description", "")
            incident_desk = await run_in_threadpool(the_desk)
            await web.write(lambda: incident_desk.open(
                cast(IncidentKind, kind), description=description, reported_by=user.actor,
                lane=fields.get("lane") or None, session_id=fields.get("session_id") or None,
                contact_phone=fields.get("contact_phone") or None))
            web.flash(request, "ok", "已登记事件 / Incident opened")
        except (BadForm, ParkGuardError, ValueError) as error:
            web.flash(request, "error", str(error))
        return RedirectResponse("/incidents", status_code=303)

    @app.post("/incidents/{incident_id}/{action}")
    async def change(request: Request, incident_id: str, action: str) -> Response:
        user = web.need(request, "incidents")
        fields = await web.form(request)
        text = fields.get("text", "")
        incident_desk = await run_in_threadpool(the_desk)
        try:
            if action == "note":
                await web.write(lambda: incident_desk.add_note(incident_id, text,
                                                               author=user.actor))
            elif action == "close":
                await web.write(lambda: incident_desk.close(incident_id, outcome=text,
                                                            actor=user.actor))
            else:
                raise HTTPException(404, "no such action")
            web.flash(request, "ok", "已保存 / Saved")
        except (ParkGuardError, ValueError, LookupError) as error:
            web.flash(request, "error", str(error))
        return RedirectResponse("/incidents", status_code=303)
