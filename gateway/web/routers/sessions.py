"""Finding a car and its stay: the sessions search (the cars inside with their fee so
far), a session's page with its itemised bill now, the bill API, and the fee override
(supervisors, with a reason)."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from gateway.web.deps import (
    AlarmsDep,
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
from parkguard.core.bill_lines import stay_en, stay_zh
from parkguard.core.tariffs import format_yuan
from parkguard.errors import ParkGuardError

router = APIRouter()


#: Cars priced per turn of the gateway's worker: the lanes' decisions queue between turns,
#: so a long "cars inside" list never holds an exit up for long (about 1 ms a car).
PRICED_PER_TURN = 25


def fees_so_far(rows: list[dict[str, Any]], worker: WorkerDep, billing: BillingDep,
                time: TimeDep) -> dict[str, dict[str, Any]]:
    """What each car still inside would pay leaving now, by session id: the bill's fee,
    what is due and how long it has stayed (``error`` for a stay no tariff prices), so the
    "cars inside" list shows the fee so far rather than the 0 stored until the exit."""
    open_rows = [row for row in rows if row.get("state") == "open"]
    now = time.now()
    fees: dict[str, dict[str, Any]] = {}

    def price(batch: list[dict[str, Any]]) -> None:
        for row in batch:
            try:
                bill = billing.bill(row, now)
            except ParkGuardError as error:
                fees[row["session_id"]] = {"error": str(error)}
                continue
            items = bill.lines()
            fees[row["session_id"]] = {
                "fee_fen": items.fee_fen, "due_fen": items.payable_fen,
                "paid_fen": bill.paid_fen, "stay_zh": stay_zh(items.minutes, spaced=True),
                "stay_en": stay_en(items.minutes)}

    for start in range(0, len(open_rows), PRICED_PER_TURN):
        worker.call(partial(price, open_rows[start:start + PRICED_PER_TURN]))
    return fees


@router.get("/sessions", response_class=HTMLResponse)
def sessions(request: Request, user: SessionsUser, pages: PagesDep, reader: ReaderDep,
             matching: MatchingDep, worker: WorkerDep, billing: BillingDep, time: TimeDep,
             q: str = "", plate: str = "") -> Response:
    with reader() as db:
        found = search_sessions(db, q=q, plate=plate, policy=matching)
    fees = fees_so_far(found["inside"] + found["history"], worker, billing, time)
    return pages.render(request, "sessions.html", user, q=q, plate=plate, found=found,
                        fees=fees)


@router.get("/api/sessions")
def api_sessions(_user: SessionsUser, reader: ReaderDep, matching: MatchingDep,
                 worker: WorkerDep, billing: BillingDep, time: TimeDep, q: str = "",
                 plate: str = "") -> dict[str, Any]:
    """The search as JSON; each car inside carries ``so_far``: its fee, due and stay now."""
    with reader() as db:
        found = search_sessions(db, q=q, plate=plate, policy=matching)
    fees = fees_so_far(found["inside"] + found["history"], worker, billing, time)
    for row in found["inside"] + found["history"]:
        if row["session_id"] in fees:
            row["so_far"] = fees[row["session_id"]]
    return found


@router.get("/api/bill", responses={404: {
    "description": "no car with this plate is inside / 场内无此车",
    "content": {"application/json": {"schema": {
        "type": "object", "properties": {"error": {"type": "string"}}}}}}})
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
                 time: TimeDep, alarms: AlarmsDep) -> Response:
    with reader() as db:
        detail = session_detail(db, session_id)
    if detail is None:
        raise HTTPException(404, "no such session")
    bill = items = None
    unpriced = ""
    if detail["session"]["state"] == "open":
        suspended = alarms is not None and alarms.billing_suspended()

        def price() -> tuple[dict[str, Any], dict[str, Any]] | None:
            row = store.session(session_id)
            if row is None:
                return None
            now = billing.bill(row, time.now())
            return now.as_json(), now.lines(suspended=suspended).as_json()
        try:
            priced = worker.call(price)
        except ParkGuardError as error:  # e.g. no tariff in force on its entry day
            unpriced = str(error)
        else:
            bill, items = priced if priced else (None, None)
    elif detail["session"].get("exit_at"):
        exit_items, unpriced = _bill_at_exit(detail["session"], worker, store, billing)
        return pages.render(request, "session.html", user, detail=detail, bill=None,
                            items=None, exit_items=exit_items, unpriced=unpriced)
    return pages.render(request, "session.html", user, detail=detail, bill=bill,
                        items=items, unpriced=unpriced)


def _bill_at_exit(session: dict[str, Any], worker: WorkerDep, store: StoreDep,
                  billing: BillingDep) -> tuple[dict[str, Any] | None, str]:
    """A closed stay's itemised bill, priced again at its exit time: shown only when it
    comes to the fee booked at the exit (a tariff changed since, or a fire exit booked
    free, would make it a different bill; the page then says so and shows the booked fee)."""
    def price() -> dict[str, Any] | None:
        row = store.session(str(session["session_id"]))
        if row is None or not row.get("exit_at"):
            return None
        return billing.bill(row, datetime.fromisoformat(row["exit_at"])).lines().as_json()
    try:
        items = worker.call(price)
    except ParkGuardError as error:
        return None, str(error)
    if items is None or items["fee_fen"] != session["fee_fen"]:
        return None, ""
    return items, ""


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
