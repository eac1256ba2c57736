"""The simulated provider's wallet page (``parkguard demo`` and tests only): it plays the
driver paying and delivers the provider's notice as an HTTP POST to our notify route, as a
real provider would. ``gateway.web.app`` includes this router only when the gateway's
provider is the :class:`SimulatedProvider`, which only the demo and tests may build."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from gateway.money.payments import SimulatedProvider
from gateway.storage import queries
from gateway.web.deps import (
    CashierDep,
    DesksDep,
    FormDep,
    PagesDep,
    ReaderDep,
    TicketsDep,
    TimeDep,
)

router = APIRouter()


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
    body, headers = provider.pay(ref)
    # Deliver the notice as the provider would: an HTTP POST to our notify endpoint.
    transport = httpx.ASGITransport(app=request.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://provider") as client:
        answer = await client.post("/api/payments/callback", content=body, headers=headers)
    if answer.status_code != 200:
        pages.flash(request, "error", f"支付通知失败 / Payment notice refused: {answer.text}")
    # Whoever just paid this order holds its receipt: the wallet hands back a ticket token
    # for the stay, as a real provider's return page would carry the one it was given.
    bill = await run_in_threadpool(cashier.bill_for, order["plate"])
    token = tickets.issue(bill.plate, bill.session_id, now=time.now()) if bill else ""
    return RedirectResponse(f"/pay/done?{urlencode({'plate': order['plate'], 't': token})}",
                            status_code=303)
