"""The manager's refunds: the payments that took money, and refunding part or all of one."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from gateway.storage import queries
from gateway.web.deps import Admin, FormDep, PagesDep, PaymentsDep, ReaderDep, WorkerDep
from gateway.web.forms import parse_yuan, require_reason

router = APIRouter()


@router.get("/admin/refunds", response_class=HTMLResponse)
def refunds(request: Request, user: Admin, pages: PagesDep, reader: ReaderDep) -> Response:
    with reader() as db:
        rows = queries.refundable_payments(db)
    return pages.render(request, "admin_refunds.html", user, payments=rows)


@router.post("/admin/refunds")
async def refund(request: Request, user: Admin, fields: FormDep, pages: PagesDep,
                 worker: WorkerDep, desk: PaymentsDep) -> Response:
    async def work() -> None:
        reason = require_reason(fields.get("reason", ""))
        amount = parse_yuan(fields.get("amount", ""))
        payment_id = fields.get("payment_id", "")
        await worker.run(lambda: desk.refund(payment_id, amount, actor=user.actor,
                                             reason=reason))

    return await pages.act(request, "/admin/refunds", work, "已退款 / Refunded")
