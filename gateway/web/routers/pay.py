"""The drivers' pay page (no login): look up what a car owes, prepay it, and the
provider's signed callback. With the simulated provider, a wallet page stands in for
the provider's and delivers its notice as an HTTP POST, as a real provider would."""

from __future__ import annotations

import logging

import httpx
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from gateway.money.payments import (
    BadSignatureError,
    PaymentError,
    SimulatedProvider,
    UnknownOrderError,
)
from gateway.storage import queries
from gateway.web.deps import CashierDep, DesksDep, FormDep, PagesDep, ReaderDep
from gateway.web.security import client_of

log = logging.getLogger(__name__)
router = APIRouter()


@router.get("/pay", response_class=HTMLResponse)
def pay(request: Request, pages: PagesDep, cashier: CashierDep, plate: str = "") -> Response:
    plate = plate.strip()
    bill = None
    if plate:
        found = cashier.bill_for(plate)
        bill = found.as_json() if found is not None else None
    return pages.render(request, "pay.html", None, plate=plate, bill=bill,
                        searched=bool(plate))


@router.post("/pay")
async def prepay(request: Request, fields: FormDep, pages: PagesDep, cashier: CashierDep,
                 desks: DesksDep) -> Response:
    plate = fields.get("plate", "")
    pending = await run_in_threadpool(cashier.prepay, plate)
    if pending is None:
        pages.flash(request, "ok", "无需缴费 / Nothing to pay")
        return RedirectResponse(f"/pay?plate={plate}", status_code=303)
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
                         pages: PagesDep, reader: ReaderDep) -> Response:
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
    return RedirectResponse(f"/pay/done?plate={order['plate']}", status_code=303)


@router.get("/pay/done", response_class=HTMLResponse)
def paid(request: Request, plate: str, pages: PagesDep, cashier: CashierDep) -> Response:
    found = cashier.bill_for(plate)
    bill = found.as_json() if found is not None else None
    return pages.render(request, "pay_done.html", None, plate=plate, bill=bill)


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
