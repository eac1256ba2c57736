"""Running the site by the book on the dashboard: the emergency numbers on every staff page,
plates held at the exit, and the shift handover (docs/handover.md, docs/incidents.md).

- **Emergency numbers**: ``_emergency.html`` (in ``base.html`` for staff) shows the
  configured numbers as ``tel:`` links, 119 first.
- **Holds** ``/holds`` (any staff): the plates held now and the latest lifted; ``POST
  /holds`` holds a plate with a reason (from the lanes page, an incident, or this page),
  ``POST /holds/lift`` lifts one with a reason. The desk audits both and tells the lanes.
- **Complaints**: ``POST /complaints/{incident}/callback`` (supervisors, managers) records
  a call-back; the incidents page shows each complaint's answer-by time and call-backs.
- **Handover** ``/handover`` (any staff): the handover waiting, what is open now, the
  outgoing guard's form (keys and cash typed in) and the incoming guard's accept button;
  ``_handover_banner.html`` (in ``base.html`` for staff) says when one is waiting, and
  from each roster shift start until a handover for it is started, 交接班时间 Handover due
  with the outgoing and incoming shift.

Reads of the banner use the request's own reader; every write goes through the worker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.safety.complaints import ComplaintDesk
from gateway.safety.emergency import EmergencyNumber
from gateway.safety.handover import ITEM_KINDS, HandoverDesk
from gateway.safety.holds import HoldDesk
from gateway.web.access import STAFF
from gateway.web.deps import (
    DesksDep,
    FormDep,
    IncidentsUser,
    PagesDep,
    Reader,
    Staff,
    WorkerDep,
)
from gateway.web.forms import BadForm, local_target, parse_yuan, require_reason
from gateway.web.render import Pages
from gateway.web.users import User
from parkguard.clock import Clock, utc_iso
from parkguard.errors import ParkGuardError

router = APIRouter()

OFF = ("本网关未启用此功能", "Not available on this gateway")


def install(pages: Pages, *, reader: Reader, numbers: Sequence[EmergencyNumber],
            clock: Clock, deadline_hours: Mapping[str, float],
            handover: HandoverDesk | None = None) -> None:
    """Give the templates the emergency numbers, the handover banner's questions and each
    complaint's answer-by time and call-backs."""

    def complaint_of(incident_id: str) -> dict[str, Any] | None:
        """The incident's answer-by time and call-backs, if its kind has a deadline."""
        with reader() as db:
            rows = list(db.query("SELECT * FROM incident_deadlines WHERE incident_id = ?",
                                 [incident_id]))
            calls = list(db.query("SELECT * FROM incident_callbacks WHERE incident_id = ? "
                                  "ORDER BY id", [incident_id]))
            if not rows:  # opened since the desk's last look: the same sum it will store
                rows = [{"incident_id": incident_id, "answered_at": None, "due_at": utc_iso(
                    datetime.fromisoformat(r["opened_at"])
                    + timedelta(hours=deadline_hours[r["kind"]]))}
                    for r in db.query("SELECT kind, opened_at FROM incidents "
                                      "WHERE incident_id = ?", [incident_id])
                    if r["kind"] in deadline_hours]
            if not rows:
                return None
        row = rows[0]
        return {**row, "callbacks": calls,
                "overdue": row["answered_at"] is None and row["due_at"] <= utc_iso(clock.now())}

    def handover_waiting(user: User | None) -> dict[str, Any] | None:
        """The handover waiting for someone to accept it (banner on every staff page)."""
        if user is None or user.role not in STAFF:
            return None
        with reader() as db:
            if not db["handovers"].exists():
                return None
            rows = list(db.query("SELECT handover_id, outgoing, created_at FROM handovers "
                                 "WHERE state = 'waiting' ORDER BY created_at DESC LIMIT 1"))
        return rows[0] if rows else None

    def handover_due(user: User | None) -> dict[str, Any] | None:
        """The roster's latest shift start while no handover for it was started."""
        if user is None or user.role not in STAFF or handover is None \
                or handover.roster is None:
            return None
        now = clock.now()
        with reader() as db:
            if not db["handovers"].exists():
                return None
            change = handover.shift_change(now, db=db)
        if change is None or change.state != "due":
            return None
        b = change.boundary
        return {"from_shift": b.from_shift, "to_shift": b.to_shift, "at": b.at,
                "key": change.key, "overdue": change.overdue(now)}

    pages.env.globals.update(emergency_numbers=tuple(numbers),
                             handover_waiting=handover_waiting, handover_due=handover_due,
                             item_kinds=ITEM_KINDS,
                             complaint_of=complaint_of)


def _holds(desks: DesksDep) -> HoldDesk | None:
    return desks.holds


def _handover(desks: DesksDep) -> HandoverDesk | None:
    return desks.handover


def _complaints(desks: DesksDep) -> ComplaintDesk | None:
    return desks.complaints


HoldsDep = Annotated[HoldDesk | None, Depends(_holds)]
HandoverDep = Annotated[HandoverDesk | None, Depends(_handover)]
ComplaintsDep = Annotated[ComplaintDesk | None, Depends(_complaints)]


# --- holds ---------------------------------------------------------------------------------


@router.get("/holds", response_class=HTMLResponse)
def holds_page(request: Request, user: Staff, pages: PagesDep, worker: WorkerDep,
               desk: HoldsDep) -> Response:
    if desk is None:
        return pages.render(request, "holds.html", user, off=OFF, active=[], history=[])
    active = worker.call(desk.active)
    history = [h for h in worker.call(desk.history) if not h.in_force]
    return pages.render(request, "holds.html", user, off=None, active=active,
                        history=history)


@router.post("/holds")
async def hold_plate(request: Request, user: Staff, fields: FormDep, pages: PagesDep,
                     worker: WorkerDep, desk: HoldsDep) -> Response:
    back = local_target(fields.get("next", ""), "/holds")
    try:
        if desk is None:
            raise BadForm(" / ".join(OFF))
        plate = fields.get("plate", "").strip()
        reason = require_reason(fields.get("reason", "").strip())
        incident = fields.get("incident_id", "").strip() or None
        held = await worker.run(lambda: desk.hold(plate, reason=reason, actor=user.actor,
                                                  incident_id=incident))
        pages.flash(request, "ok", f"已扣留 {held.plate}，出口将拒绝放行 / {held.plate} is "
                                   "held at the exit")
    except (BadForm, ParkGuardError, ValueError) as error:
        pages.flash(request, "error", str(error))
    return RedirectResponse(back, status_code=303)


@router.post("/holds/lift")
async def lift_hold(request: Request, user: Staff, fields: FormDep, pages: PagesDep,
                    worker: WorkerDep, desk: HoldsDep) -> Response:
    back = local_target(fields.get("next", ""), "/holds")
    try:
        if desk is None:
            raise BadForm(" / ".join(OFF))
        plate = fields.get("plate", "").strip()
        reason = require_reason(fields.get("reason", "").strip(), "解除原因")
        lifted = await worker.run(lambda: desk.lift(plate, reason=reason, actor=user.actor))
        pages.flash(request, "ok", f"已解除扣留 {lifted.plate} / hold on {lifted.plate} "
                                   "lifted")
    except (BadForm, ParkGuardError, ValueError) as error:
        pages.flash(request, "error", str(error))
    return RedirectResponse(back, status_code=303)


# --- complaints ----------------------------------------------------------------------------


@router.post("/complaints/{incident_id}/callback")
async def record_callback(request: Request, incident_id: str, user: IncidentsUser,
                          fields: FormDep, pages: PagesDep, worker: WorkerDep,
                          desk: ComplaintsDep) -> Response:
    try:
        if desk is None:
            raise BadForm(" / ".join(OFF))
        outcome = require_reason(fields.get("outcome", "").strip(), "回访结果")
        reached = fields.get("reached", "yes") != "no"
        await worker.run(lambda: desk.callback(incident_id, by=user.actor, outcome=outcome,
                                               reached=reached))
        pages.flash(request, "ok", "已记录回访 / Call-back recorded")
    except (BadForm, ParkGuardError, ValueError) as error:
        pages.flash(request, "error", str(error))
    return RedirectResponse(f"/incidents#{incident_id}", status_code=303)


# --- handover ------------------------------------------------------------------------------


@router.get("/handover", response_class=HTMLResponse)
def handover_page(request: Request, user: Staff, pages: PagesDep, worker: WorkerDep,
                  desk: HandoverDep) -> Response:
    if desk is None:
        return pages.render(request, "handover.html", user, off=OFF, waiting=None,
                            open_items=[], recent=[])
    waiting, open_items, recent = worker.call(
        lambda: (desk.waiting(), desk.open_items(), desk.recent()))
    return pages.render(request, "handover.html", user, off=None, waiting=waiting,
                        open_items=open_items, recent=recent,
                        mine=waiting is not None and waiting.outgoing == user.actor)


@router.post("/handover")
async def start_handover(request: Request, user: Staff, fields: FormDep, pages: PagesDep,
                         worker: WorkerDep, desk: HandoverDep) -> Response:
    try:
        if desk is None:
            raise BadForm(" / ".join(OFF))
        keys = [line.strip() for line in fields.get("keys", "").splitlines() if line.strip()]
        cash: list[tuple[str, int]] = []
        if fields.get("cash_yuan", "").strip():
            cash.append((fields.get("cash_what", "").strip() or "岗亭现金 booth cash",
                         parse_yuan(fields.get("cash_yuan", ""), field="cash_yuan")))
        note = fields.get("note", "")
        started = await worker.run(lambda: desk.start(user.actor, keys=keys, cash=cash,
                                                      note=note))
        pages.flash(request, "ok", f"已提交交接，等待接班人确认 / Handed over "
                                   f"({len(started.items)} items): waiting for the incoming "
                                   "guard")
    except (BadForm, ParkGuardError, ValueError) as error:
        pages.flash(request, "error", str(error))
    return RedirectResponse("/handover", status_code=303)


@router.post("/handover/{handover_id}/accept")
async def accept_handover(request: Request, handover_id: str, user: Staff, fields: FormDep,
                          pages: PagesDep, worker: WorkerDep,
                          desk: HandoverDep) -> Response:
    del fields  # CSRF-checked by reading it
    try:
        if desk is None:
            raise BadForm(" / ".join(OFF))
        await worker.run(lambda: desk.accept(handover_id, user.actor))
        pages.flash(request, "ok", "已接班 / Handover accepted")
    except (BadForm, ParkGuardError, ValueError) as error:
        pages.flash(request, "error", str(error))
    return RedirectResponse("/handover", status_code=303)
