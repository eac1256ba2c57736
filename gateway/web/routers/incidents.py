"""Incidents for supervisors and managers: open one with its evidence, add notes, close it,
attach photos of the scene (gateway/safety/incident_photos.py: JPEG or PNG, re-encoded
without their metadata, each file's hash in the audit chain) and look at them.

Any staff member — the guard at the scene, on a phone — reports one at
``/incidents/report`` with its plates and photos (an accident alerts the guard on duty and
the squad leader), without seeing the incidents list.

An accident's card lists its plates with whether each owner agreed to be reached (numbers
masked, never revealed here) and a 联系车主 Contact owner button that texts them through the
contact register (:func:`contact_owner`: the text, the note on the incident and both audit
entries in one transaction)."""

from __future__ import annotations

import re
import threading
from functools import partial
from typing import Any, cast, get_args

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from gateway.contacts import CONCERNS, ContactError, ContactRegister
from gateway.plans.assembly import SitePlans
from gateway.safety.incident_photos import (
    MAX_BYTES,
    MAX_PHOTOS,
    IncidentPhotos,
    PhotoError,
    clean_image,
)
from gateway.safety.incidents import (
    KIND_LABELS,
    Incident,
    IncidentDesk,
    IncidentError,
    IncidentKind,
)
from gateway.web.deps import (
    FormDep,
    IncidentsDep,
    IncidentsUser,
    PagesDep,
    ReportUser,
    WorkerDep,
)
from gateway.web.forms import BadForm, Fields
from gateway.web.routers.evidence import fetcher_of
from gateway.web.users import User
from parkguard.errors import ParkGuardError

router = APIRouter()
_PLATES = re.compile(r"[\s,，;；]+")


def photos_of(request: Request) -> IncidentPhotos | None:
    """The app's photo desk (None: an app built without one)."""
    desk: IncidentPhotos | None = getattr(request.app.state, "incident_photos", None)
    return desk


@router.get("/incidents", response_class=HTMLResponse)
def incidents(request: Request, user: IncidentsUser, pages: PagesDep, worker: WorkerDep,
              desk: IncidentsDep, state: str = "open") -> Response:
    chosen = state if state in ("open", "closed") else None
    found = worker.call(lambda: desk.incidents(state=chosen))  # type: ignore[arg-type]
    photo_desk = photos_of(request)
    photos = {} if photo_desk is None else worker.call(photo_desk.by_incident)
    register = register_of(request)
    owners = {} if register is None else worker.call(lambda: owners_of(register, found))
    return pages.render(request, "incidents.html", user, incidents=found, state=state,
                        kinds=KIND_LABELS, photos=photos, photos_on=photo_desk is not None,
                        max_photos=MAX_PHOTOS, max_mb=MAX_BYTES // (1024 * 1024),
                        owners=owners, contacts_off=register is None,
                        other_routes=OTHER_ROUTES)


@router.post("/incidents")
async def open_incident(request: Request, user: IncidentsUser, fields: FormDep,
                        pages: PagesDep, worker: WorkerDep, desk: IncidentsDep) -> Response:
    try:
        opened = await _open(request, user, fields, pages, worker, desk)
        return RedirectResponse(f"/incidents#{opened}", status_code=303)
    except (BadForm, ParkGuardError, ValueError) as error:
        pages.flash(request, "error", str(error))
    return RedirectResponse("/incidents", status_code=303)


@router.get("/incidents/report", response_class=HTMLResponse)
def report_form(request: Request, user: ReportUser, pages: PagesDep, lane: str = "",
                plate: str = "") -> Response:
    """The guard's form at the scene: kind, what happened, plates, photos."""
    return pages.render(request, "incident_report.html", user, kinds=KIND_LABELS,
                        photos_on=photos_of(request) is not None, max_photos=MAX_PHOTOS,
                        max_mb=MAX_BYTES // (1024 * 1024), lane=lane[:16], plate=plate[:16])


@router.post("/incidents/report")
async def report(request: Request, user: ReportUser, fields: FormDep, pages: PagesDep,
                 worker: WorkerDep, desk: IncidentsDep) -> Response:
    try:
        opened = await _open(request, user, fields, pages, worker, desk)
        pages.flash(request, "ok", f"已上报 {opened}，主管已收到 / Reported as {opened}; "
                                   "the supervisors have it")
    except (BadForm, ParkGuardError, ValueError) as error:
        pages.flash(request, "error", str(error))
    return RedirectResponse("/incidents/report", status_code=303)


async def _open(request: Request, user: User, fields: Fields, pages: PagesDep,
                worker: WorkerDep, desk: IncidentsDep) -> str:
    """Open the incident the form describes, with its photos; its id."""
    kind = fields.get("kind", "")
    if kind not in get_args(IncidentKind):
        raise BadForm(f"unknown kind {kind!r}")
    description = fields.get("description", "")
    plates = [p for p in _PLATES.split(fields.get("plates", "")) if p]
    uploads = await _uploads(request)
    opened = await worker.run(lambda: desk.open(
        cast(IncidentKind, kind), description=description, reported_by=user.actor,
        lane=fields.get("lane") or None, session_id=fields.get("session_id") or None,
        contact_phone=fields.get("contact_phone") or None, plates=plates))
    _keep_images(request, opened.evidence["snapshots"])
    pages.flash(request, "ok", "已登记事件 / Incident opened")
    if uploads:
        await _add_photos(request, worker, opened.incident_id, uploads, user.actor, pages)
    return opened.incident_id


async def _uploads(request: Request) -> list[UploadFile]:
    """The files of the form's ``photo`` field (a phone sends none, one or several)."""
    form = await request.form()
    files = [item for item in form.getlist("photo")
             if isinstance(item, UploadFile) and (item.filename or item.size)]
    if len(files) > MAX_PHOTOS:
        raise BadForm(f"照片太多 at most {MAX_PHOTOS} photos at once, got {len(files)}")
    return files


async def _add_photos(request: Request, worker: WorkerDep, incident_id: str,
                      uploads: list[UploadFile], actor: str, pages: PagesDep) -> None:
    """Decode and clean each upload off the worker, keep it on the worker; each refusal is
    said by name (the others are kept)."""
    photo_desk = photos_of(request)
    if photo_desk is None:
        raise BadForm("照片未启用 photos are not kept on this gateway")
    kept = 0
    for upload in uploads:
        name = upload.filename or "photo"
        try:
            data = await upload.read(MAX_BYTES + 1)
            cleaned = await run_in_threadpool(clean_image, data)
            await worker.run(partial(photo_desk.keep, incident_id, cleaned, actor=actor))
            kept += 1
        except PhotoError as error:
            pages.flash(request, "error", f"{name}: {error}")
        finally:
            await upload.close()
    if kept:
        pages.flash(request, "ok", f"已保存照片 {kept} / {kept} photo(s) kept")


@router.post("/incidents/{incident_id}/photos")
async def add_photos(request: Request, incident_id: str, user: IncidentsUser,
                     fields: FormDep, pages: PagesDep, worker: WorkerDep) -> Response:
    del fields  # read for its CSRF check
    try:
        uploads = await _uploads(request)
        if not uploads:
            raise BadForm("请选择照片 choose a photo to upload")
        await _add_photos(request, worker, incident_id, uploads, user.actor, pages)
    except (BadForm, ParkGuardError) as error:
        pages.flash(request, "error", str(error))
    return RedirectResponse(f"/incidents#{incident_id}", status_code=303)


@router.get("/incidents/{incident_id}/photos/{file_name}")
def photo(request: Request, incident_id: str, file_name: str, user: IncidentsUser,
          worker: WorkerDep) -> Response:
    del user  # checked by the dependency: staff who may see incidents
    photo_desk = photos_of(request)
    found = None if photo_desk is None else worker.call(
        lambda: photo_desk.read(incident_id, file_name))
    if found is None:
        raise HTTPException(404, "照片不存在 no such photo")
    kept, data = found
    return Response(data, media_type=kept.media_type,
                    headers={"Cache-Control": "private, max-age=3600"})


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


# --- the accident's other owner -----------------------------------------------------------

SENT_WORDS = {"queued": "排队 queued", "sent": "已发送 sent", "failed": "失败 failed",
              "skipped": "未发送 not sent (no SMS channel)"}
OTHER_ROUTES = ("其他途径 Other routes: 出口扣留 hold it at the exit · 挡风玻璃留言 a note on "
                "the windscreen · 车主到岗亭时登记 ask the driver at the booth · 122 交通事故报警 "
                "traffic police")


def register_of(request: Request) -> ContactRegister | None:
    """The app's contact register (None: no ``[contacts]`` on this gateway)."""
    plans: SitePlans | None = getattr(request.app.state, "site_plans", None)
    return None if plans is None else plans.contacts


def owners_of(register: ContactRegister, found: list[Incident]) -> dict[str, list[dict[str, Any]]]:
    """For each accident: each plate with its consenting owners (masked), whether the car is
    inside, and the texts sent about the incident. On the worker."""
    accidents = [i for i in found if i.kind == "accident"]
    if not accidents:
        return {}
    consented: dict[str, list[str]] = {}
    inside: dict[str, bool] = {}
    for view in register.contacts():
        consented.setdefault(view.plate, []).append(view.phone_masked)
        inside[view.plate] = view.inside
    kinds = [f"incident:{i.incident_id}" for i in accidents]
    texts: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in register.db.query(
            "SELECT m.kind, m.actor, m.status, m.queued_at, m.done_at, c.plate FROM "  # noqa: S608
            "contact_messages m JOIN contacts c ON c.contact_id = m.contact_id "
            f"WHERE m.kind IN ({', '.join('?' * len(kinds))}) ORDER BY m.id",
            kinds):
        texts.setdefault((row["kind"], row["plate"]), []).append(
            {**row, "status_words": SENT_WORDS.get(row["status"], row["status"])})
    return {i.incident_id: [
        {"plate": plate, "masked": consented.get(plate, []), "inside": inside.get(plate, False),
         "texts": texts.get((f"incident:{i.incident_id}", plate), [])}
        for plate in i.evidence.get("plates", [])] for i in accidents}


def contact_owner(desk: IncidentDesk, register: ContactRegister, incident_id: str, plate: str,
                  *, actor: str) -> int:
    """Text the consenting owners of ``plate`` about the open accident ``incident_id`` and
    note it on the incident (who, when, which concern; never the number): the texts' rows,
    ``contact.message`` (naming the incident), the note and ``incident.note`` commit
    together or not at all. Returns the texts queued (0: no SMS channel, recorded so)."""
    incident = desk.incident(incident_id)
    if incident.kind != "accident":
        raise IncidentError("只有事故可联系对方车主 only an accident's owners are contacted here")
    if incident.state != "open":
        raise IncidentError(f"incident {incident_id} is closed")
    plate = plate.strip().upper()
    if plate not in incident.evidence.get("plates", []):
        raise IncidentError(f"{plate or '?'} is not a plate of incident {incident_id}")
    with desk.db.atomic():
        sent = register.tell_owner(plate, "accident", actor=actor, incident_id=incident_id)
        told = (f"短信 {sent} 条 {sent} text(s)" if sent
                else "未发出：无短信通道 not sent: no SMS channel")
        desk.add_note(incident_id, f"联系车主 Owner contacted: {plate} · 事故 accident "
                                   f"({CONCERNS['accident'][1]}) · {told}", author=actor)
    return sent


@router.post("/incidents/{incident_id}/contact")
async def contact(request: Request, incident_id: str, user: IncidentsUser, fields: FormDep,
                  pages: PagesDep, worker: WorkerDep, desk: IncidentsDep) -> Response:
    """联系车主: the accident's other owner, by the plate on the incident."""
    plate = fields.get("plate", "")
    register = register_of(request)
    try:
        if register is None:
            raise BadForm("本网关未启用车主联系登记 no contact register on this gateway "
                          "([contacts])")
        sent = await worker.run(lambda: contact_owner(desk, register, incident_id, plate,
                                                      actor=user.actor))
        pages.flash(request, "ok", f"已通知车主 {plate}：{sent} 条短信 / {sent} text(s) to "
                                   f"the owner of {plate}")
    except ContactError as error:
        pages.flash(request, "error", f"{error}. {OTHER_ROUTES}")
    except (BadForm, ParkGuardError, ValueError, LookupError) as error:
        pages.flash(request, "error", str(error))
    return RedirectResponse(f"/incidents#{incident_id}", status_code=303)


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
