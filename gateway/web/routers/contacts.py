"""The owner contact register on the dashboard (numbers masked; a supervisor reveals one
with a typed reason, deletes one, or deletes every contact under a number the driver gives,
after a confirmation step) and the drivers' consent form reached from the pay page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.contacts import CONCERNS, CONSENT_WORDING, ContactError, ContactRegister
from gateway.contacts.register import MIN_REASON, clean_phone
from gateway.contacts.settings import CURRENT_WORDING, INCIDENT_CONCERNS
from gateway.plans.assembly import SitePlans
from gateway.web.deps import FormDep, PagesDep, Senior, Staff, WorkerDep
from gateway.web.render import Pages
from gateway.web.users import User
from parkguard.core.privacy import mask_phone
from parkguard.errors import ParkGuardError

router = APIRouter()
#: The plain form's concerns: an accident's is sent from its incident (incidents.py).
FORM_CONCERNS = {k: v for k, v in CONCERNS.items() if k not in INCIDENT_CONCERNS}


def register_of(request: Request) -> ContactRegister:
    plans: SitePlans | None = getattr(request.app.state, "site_plans", None)
    if plans is None or plans.contacts is None:
        raise HTTPException(404, "no contact register on this gateway ([contacts])")
    return plans.contacts


def _page(request: Request, pages: Pages, worker: WorkerDep, user: User,
          revealed: dict[str, str] | None = None,
          confirm: dict[str, Any] | None = None) -> Response:
    register = register_of(request)
    shown = worker.call(register.contacts)
    return pages.render(request, "contacts.html", user, contacts=shown,
                        concerns=FORM_CONCERNS, revealed=revealed or {}, confirm=confirm)


@router.get("/contacts", response_class=HTMLResponse)
def contacts(request: Request, user: Staff, pages: PagesDep, worker: WorkerDep) -> Response:
    plans: SitePlans | None = getattr(request.app.state, "site_plans", None)
    if plans is None or plans.contacts is None:  # not set up: say so, not a bare 404
        return pages.render(request, "contacts.html", user, off=True, contacts=[],
                            concerns=FORM_CONCERNS, revealed={})
    return _page(request, pages, worker, user)


@router.post("/contacts/{contact_id}/reveal", response_class=HTMLResponse)
async def reveal(request: Request, contact_id: str, user: Senior, fields: FormDep,
                 pages: PagesDep, worker: WorkerDep) -> Response:
    """The number once, on this answer only (never in a flash or a cookie)."""
    register = register_of(request)
    try:
        phone = await worker.run(lambda: register.reveal(
            contact_id, actor=user.actor, reason=fields.get("reason", "")))
    except (ParkGuardError, ValueError) as error:
        pages.flash(request, "error", str(error))
        return RedirectResponse("/contacts", status_code=303)
    return _page(request, pages, worker, user, revealed={contact_id: phone})


@router.post("/contacts/{contact_id}/delete")
async def delete(request: Request, contact_id: str, user: Senior, fields: FormDep,
                 pages: PagesDep, worker: WorkerDep) -> Response:
    register = register_of(request)

    async def work() -> None:
        await worker.run(lambda: register.delete(contact_id, actor=user.actor,
                                                 reason=fields.get("reason", "")))
    return await pages.act(request, "/contacts", work, "已删除 / Deleted")


@router.post("/contacts/delete-phone", response_class=HTMLResponse)
async def delete_phone(request: Request, user: Senior, fields: FormDep, pages: PagesDep,
                       worker: WorkerDep) -> Response:
    """A driver at the booth asks for their number to go: the first post says how many
    contacts are under it (masked) and asks to confirm; the second, with ``confirm=yes``,
    deletes them all (each audited ``contact.delete`` with the reason)."""
    register = register_of(request)
    reason = fields.get("reason", "").strip()
    try:
        digits = clean_phone(fields.get("phone", ""))
        if len(reason) < MIN_REASON:
            raise ContactError(f"reason: say why (at least {MIN_REASON} characters)")
        masked = mask_phone(digits)
        if fields.get("confirm") != "yes":
            count = await worker.run(lambda: register.count_phone(digits))
            if not count:
                raise ContactError(f"该号码下没有登记 no contact under {masked}")
            return _page(request, pages, worker, user, confirm={
                "phone": digits, "masked": masked, "count": count, "reason": reason})
        gone = await worker.run(lambda: register.delete_phone(digits, actor=user.actor,
                                                              reason=reason))
        if not gone:
            raise ContactError(f"该号码下没有登记 no contact under {masked}")
        pages.flash(request, "ok", f"已删除 {masked} 下 {gone} 条 / {gone} contact(s) under "
                                   f"{masked} deleted")
    except (ParkGuardError, ValueError) as error:
        pages.flash(request, "error", str(error))
    return RedirectResponse("/contacts", status_code=303)


@router.post("/contacts/tell")
async def tell(request: Request, user: Staff, fields: FormDep, pages: PagesDep,
               worker: WorkerDep) -> Response:
    """A guard's "your car needs attention" to the owner of a plate inside."""
    register = register_of(request)

    async def work() -> None:
        sent = await worker.run(lambda: register.tell_owner(
            fields.get("plate", ""), fields.get("concern", ""), actor=user.actor,
            note=fields.get("note", "")))
        pages.flash(request, "ok", f"已通知车主 {sent} 条 / {sent} text(s) to the owner")
    return await pages.act(request, "/contacts", work, "已发送 / Sent")


# the drivers' side: no login -----------------------------------------------------------


@router.get("/pay/contact", response_class=HTMLResponse)
def consent_form(request: Request, pages: PagesDep, plate: str = "") -> Response:
    register_of(request)
    return pages.render(request, "contact_consent.html", None, plate=plate[:16],
                        wording=CONSENT_WORDING[CURRENT_WORDING], version=CURRENT_WORDING,
                        done=False)


@router.post("/pay/contact", response_class=HTMLResponse)
async def consent(request: Request, fields: FormDep, pages: PagesDep,
                  worker: WorkerDep) -> Response:
    """Stored only with the box ticked and the wording's version it was ticked under."""
    register = register_of(request)
    plate = fields.get("plate", "")[:16]
    error = None
    if fields.get("consent") != "yes":
        error = "请勾选同意 / Tick the box to agree"
    else:
        try:
            await worker.run(lambda: register.consent(
                fields.get("phone", ""), plate=plate, source="pay_page",
                wording_version=fields.get("version", "")))
        except (ParkGuardError, ValueError) as refused:
            error = str(refused)
    return pages.render(request, "contact_consent.html", None, plate=plate,
                        wording=CONSENT_WORDING[CURRENT_WORDING], version=CURRENT_WORDING,
                        done=error is None, error=error,
                        status_code=200 if error is None else 400)
