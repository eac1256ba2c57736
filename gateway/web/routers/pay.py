"""The drivers' pay page (no login): look up what a car owes, prepay it, and the
provider's signed callback. With the simulated provider, a wallet page stands in for
the provider's and delivers its notice as an HTTP POST, as a real provider would.

Anyone may type any plate, so a typed plate alone shows only what is due now: never
whether that car is inside, when it came or how long it stayed (a plate not inside reads
"nothing to pay", like one that owes nothing). The stay itself needs the ticket token
(``?t=``, :mod:`gateway.web.tickets`) that a printed ticket or the exit lane's QR carries.
Every look-up counts against a per-address and a site-wide limit: a 429 past either.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from gateway.money.billing import Bill
from gateway.money.payments import (
    BadSignatureError,
    PaymentError,
    SimulatedProvider,
    UnknownOrderError,
)
from gateway.storage import queries
from gateway.web.deps import (
    CashierDep,
    DesksDep,
    FormDep,
    PagesDep,
    ReaderDep,
    State,
    TicketsDep,
    TimeDep,
)
from gateway.web.render import Pages
from gateway.web.security import GLOBAL, client_of

log = logging.getLogger(__name__)
router = APIRouter()


class Throttled(Exception):
    """Too many pay-page look-ups from this address or over the site."""


def _count_lookup(request: Request, state: State) -> None:
    """One plate look-up: refused once the address's or the site's window is full."""
    client = client_of(request)
    if not state.pay_limiter.take(client) or not state.pay_limiter_total.take(GLOBAL):
        log.warning("web: pay-page look-ups throttled for %s", client)
        raise Throttled()


def _throttled(request: Request, pages: Pages) -> Response:
    pages.flash(request, "error", "查询过于频繁，请稍后再试 / Too many look-ups: try again in "
                                  "a minute")
    response = pages.render(request, "pay.html", None, plate="", bill=None, due=None,
                            token="", status_code=429)
    response.headers["Retry-After"] = "60"
    return response


Shown = dict[str, object]


def _shown(bill: Bill | None, token: str, tickets: TicketsDep,
           time: TimeDep) -> tuple[Shown | None, Shown]:
    """(the whole bill, if the token proves this car's session, else None; and what any
    driver typing the plate may see: the fee, its discounts and what is due now). A car
    that is not inside reads as nothing to pay, the same as one that owes nothing."""
    if bill is None:
        return None, {"fee_fen": 0, "discounts": [], "stay_due_fen": 0}
    whole = bill.as_json()
    quote = whole.get("quote") or {}
    due: Shown = {"fee_fen": bill.fee_fen, "discounts": quote.get("discounts", []),
                  "stay_due_fen": bill.stay_due_fen}
    if token and tickets.proves(token, bill.plate, bill.session_id, now=time.now()):
        return whole, due
    return None, due


def _looked_up(request: Request, state: State, pages: PagesDep, cashier: CashierDep,
               tickets: TicketsDep, time: TimeDep, plate: str, token: str,
               template: str) -> Response:
    """One counted look-up of a plate's bill, shown on ``template`` (the stay only with a
    valid ticket token), or 429 once the look-up limits are reached."""
    try:
        _count_lookup(request, state)
    except Throttled:
        return _throttled(request, pages)
    bill, due = _shown(cashier.bill_for(plate), token, tickets, time)
    return pages.render(request, template, None, plate=plate, bill=bill, due=due,
                        token=token if bill is not None else "")


@router.get("/pay", response_class=HTMLResponse)
def pay(request: Request, state: State, pages: PagesDep, cashier: CashierDep,
        tickets: TicketsDep, time: TimeDep, plate: str = "", t: str = "") -> Response:
    plate = plate.strip()
    if not plate:
        return pages.render(request, "pay.html", None, plate="", bill=None, due=None, token="")
    return _looked_up(request, state, pages, cashier, tickets, time, plate, t, "pay.html")


@router.post("/pay")
async def prepay(request: Request, state: State, fields: FormDep, pages: PagesDep,
                 cashier: CashierDep, desks: DesksDep) -> Response:
    plate = fields.get("plate", "")
    try:
        _count_lookup(request, state)
    except Throttled:
        return _throttled(request, pages)
    pending = await run_in_threadpool(cashier.prepay, plate)
    if pending is None:
        pages.flash(request, "ok", "无需缴费 / Nothing to pay")
        return RedirectResponse(f"/pay?{urlencode({'plate': plate, 't': fields.get('t', '')})}",
                                status_code=303)
    if isinstance(desks.provider, SimulatedProvider):
        return RedirectResponse(f"/sim-pay/{pending.provider_ref}", status_code=303)
    return RedirectResponse(pending.pay_url, status_code=303)


def simulated(desks: DesksDep) -> SimulatedProvider:
    """The simulated provider, or 404: a real one has no wallet page here."""
    if not isinstance(desks.provider, SimulatedProvider):
        raise HTTPException(404, "not a simulated provider")
    return desks.provider


def sim_order(reader: ReaderDep, ref: str) -> queries.PaymentOrder:
    with reader() as db:
        order = queries.payment_order(db, ref)
    if order is None:
        raise HTTPException(404, "no such order")
    return order


@router.get("/sim-pay/{ref}", response_class=HTMLResponse)
def sim_wallet(request: Request, ref: str, desks: DesksDep, pages: PagesDep,
               reader: ReaderDep) -> Response:
    simulated(desks)
    order = sim_order(reader, ref)
    return pages.render(request, "sim_pay.html", None, ref=ref, order=order)


@router.post("/sim-pay/{ref}")
async def sim_wallet_pay(request: Request, ref: str, _fields: FormDep, desks: DesksDep,
                         pages: PagesDep, reader: ReaderDep, cashier: CashierDep,
                         tickets: TicketsDep, time: TimeDep) -> Response:
    provider = simulated(desks)
    order = sim_order(reader, ref)
    body, signature = provider.pay(ref)
    # Deliver the notice as the provider would: an HTTP POST to our callback endpoint.
    transport = httpx.ASGITransport(app=request.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://provider") as client:
        answer = await client.post("/api/payments/callback", content=body,
                                   headers={"X-Signature": signature,
                                            "Content-Type": "application/json"})
    if answer.status_code != 200:
        pages.flash(request, "error", f"支付通知失败 / Payment notice refused: {answer.text}")
    # Whoever just paid this order holds its receipt: the wallet hands back a ticket token
    # for the stay, as a real provider's return page would carry the one it was given.
    bill = await run_in_threadpool(cashier.bill_for, order["plate"])
    token = tickets.issue(bill.plate, bill.session_id, now=time.now()) if bill else ""
    return RedirectResponse(f"/pay/done?{urlencode({'plate': order['plate'], 't': token})}",
                            status_code=303)


@router.get("/pay/done", response_class=HTMLResponse)
def paid(request: Request, state: State, pages: PagesDep, cashier: CashierDep,
         tickets: TicketsDep, time: TimeDep, plate: str, t: str = "") -> Response:
    return _looked_up(request, state, pages, cashier, tickets, time, plate, t, "pay_done.html")


@router.post("/api/payments/callback")
async def payment_callback(request: Request, cashier: CashierDep) -> Response:
    body = await request.body()
    signature = request.headers.get("x-signature", "")
    try:
        payment = await run_in_threadpool(cashier.payment_callback, body, signature)
    except BadSignatureError:
        log.warning("web: payment callback with a bad signature from %s", client_of(request))
        return JSONResponse({"ok": False, "error": "bad signature"}, status_code=400)
    except UnknownOrderError:
        return JSONResponse({"ok": False, "error": "unknown order"}, status_code=404)
    except PaymentError as error:
        return JSONResponse({"ok": False, "error": str(error)}, status_code=400)
    return JSONResponse({"ok": True, "payment_id": payment.payment_id})
