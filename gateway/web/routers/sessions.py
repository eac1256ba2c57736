"""Finding a car and its stay: the sessions search, a session's page with what it would
pay now, the bill API, and the fee override (supervisors, with a reason)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from gateway.web.deps import (
    BillingDep,
    CashierDep,
    FormDep,
    MatchingDep,
    PagesDep,
    ReaderDep,
    Senior,
    SessionsUser,
    StoreDep,
    TimeDep,
    WorkerDep,
)
from gateway.web.forms import BadForm, parse_yuan, require_reason
from gateway.web.search import search_sessions, session_detail
from parkguard.core.tariffs import format_yuan
from parkguard.errors import ParkGuardError

router = APIRouter()


@router.get("/sessions", response_class=HTMLResponse)
def sessions(request: Request, user: SessionsUser, pages: PagesDep, reader: ReaderDep,
             matching: MatchingDep, q: str = "", plate: str = "") -> Response:
    with reader() as db:
        found = search_sessions(db, q=q, plate=plate, policy=matching)
    return pages.render(request, "sessions.html", user, q=q, plate=plate, found=found)


@router.get("/api/sessions")
def api_sessions(_user: SessionsUser, reader: ReaderDep, matching: MatchingDep, q: str = "",
                 plate: str = "") -> dict[str, Any]:
    with reader() as db:
        return search_sessions(db, q=q, plate=plate, policy=matching)


@router.get("/api/bill")
def api_bill(plate: str, _user: SessionsUser, cashier: CashierDep) -> Response:
    try:
        bill = cashier.bill_for(plate)
    except ParkGuardError as error:  # e.g. no tariff in force on the car's entry day
        return JSONResponse({"error": f"cannot price this stay / 无法计费: {error}"},
                            status_code=409)
    if bill is None:
        return JSONResponse({"error": "no car with this plate is inside / 场内无此车"},
                            status_code=404)
    return JSONResponse(bill.as_json())


@router.get("/sessions/{session_id}", response_class=HTMLResponse)
def session_page(request: Request, session_id: str, user: SessionsUser, pages: PagesDep,
                 reader: ReaderDep, worker: WorkerDep, store: StoreDep, billing: BillingDep,
                 time: TimeDep) -> Response:
    with reader() as db:
        detail = session_detail(db, session_id)
    if detail is None:
        raise HTTPException(404, "no such session")
    bill = None
    unpriced = ""
    if detail["session"]["state"] == "open":
        def price() -> dict[str, Any] | None:
            row = store.session(session_id)
            return billing.bill(row, time.now()).as_json() if row else None
        try:
            bill = worker.call(price)
        except ParkGuardError as error:  # e.g. no tariff in force on its entry day
            unpriced = str(error)
    return pages.render(request, "session.html", user, detail=detail, bill=bill,
                        unpriced=unpriced)


@router.post("/sessions/{session_id}/override")
async def override(request: Request, session_id: str, user: Senior, fields: FormDep,
                   pages: PagesDep, worker: WorkerDep, store: StoreDep, billing: BillingDep,
                   time: TimeDep) -> Response:
    try:
        fee = parse_yuan(fields.get("fee", ""), field="fee")
        reason = require_reason(fields.get("reason", ""))

        def apply() -> None:
            row = store.session(session_id)
            if row is None or row["state"] != "open":
                raise BadForm("only a car still inside can have its fee overridden / "
                              "只能修改场内车辆的费用")
            bill = billing.bill(row, time.now())
            quoted = bill.quote.total_fen if bill.quote else 0
            billing.payments.override_fee(session_id, fee, actor=user.actor, reason=reason,
                                          quoted_fen=quoted)

        await worker.run(apply)
        pages.flash(request, "ok", f"费用已改为 {format_yuan(fee)} / Fee set to "
                                   f"{format_yuan(fee)}")
    except (BadForm, ParkGuardError, ValueError) as error:
        pages.flash(request, "error", str(error))
    return RedirectResponse(f"/sessions/{session_id}", status_code=303)
