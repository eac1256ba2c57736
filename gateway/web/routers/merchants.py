"""The manager's merchant accounts: the list with balances, opening one, topping one up,
setting its daily coupon cap."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from gateway.storage import queries
from gateway.web.deps import Admin, FormDep, MerchantsDep, PagesDep, ReaderDep, WorkerDep
from gateway.web.forms import BadForm, parse_yuan, require_reason

router = APIRouter()


@router.get("/admin/merchants", response_class=HTMLResponse)
def merchants(request: Request, user: Admin, pages: PagesDep, reader: ReaderDep,
              worker: WorkerDep, desk: MerchantsDep) -> Response:
    with reader() as db:
        rows = queries.merchants(db)
    balances = worker.call(lambda: {r["merchant_id"]: desk.balance(r["merchant_id"])
                                    for r in rows})
    return pages.render(request, "admin_merchants.html", user, merchants=rows,
                        balances=balances)


@router.post("/admin/merchants")
async def open_merchant(request: Request, user: Admin, fields: FormDep, pages: PagesDep,
                        worker: WorkerDep, desk: MerchantsDep) -> Response:
    async def work() -> None:
        reason = require_reason(fields.get("reason", ""))
        limit = parse_yuan(fields.get("overdraft", "") or "0", field="overdraft")
        merchant_id, name = fields.get("merchant_id", ""), fields.get("name", "")
        if not name:
            raise BadForm("name is required / 请输入商户名称")
        cap = _daily_cap(fields.get("daily_cap", ""))
        await worker.run(lambda: desk.open_account(
            merchant_id, name=name, actor=user.actor, reason=reason, overdraft_limit_fen=limit,
            daily_cap=cap))

    return await pages.act(request, "/admin/merchants", work,
                           f"已开户 {fields.get('merchant_id', '')} / Account opened")


@router.post("/admin/merchants/{merchant_id}/top-up")
async def top_up(request: Request, merchant_id: str, user: Admin, fields: FormDep,
                 pages: PagesDep, worker: WorkerDep, desk: MerchantsDep) -> Response:
    async def work() -> None:
        reason = require_reason(fields.get("reason", ""))
        amount = parse_yuan(fields.get("amount", ""))
        await worker.run(lambda: desk.top_up(merchant_id, amount, actor=user.actor,
                                             reason=reason))

    return await pages.act(request, "/admin/merchants", work,
                           f"已充值 {merchant_id} / Topped up")


def _daily_cap(text: str) -> int | None:
    """The form's daily cap: empty means none."""
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 100_000:
        raise BadForm("daily cap: 1 to 100000 coupons a day, or empty for none / "
                      "每日上限须为1至100000张，不限请留空")
    return int(text)


@router.post("/admin/merchants/{merchant_id}/daily-cap")
async def daily_cap(request: Request, merchant_id: str, user: Admin, fields: FormDep,
                    pages: PagesDep, worker: WorkerDep, desk: MerchantsDep) -> Response:
    async def work() -> None:
        reason = require_reason(fields.get("reason", ""))
        cap = _daily_cap(fields.get("daily_cap", ""))
        await worker.run(lambda: desk.set_daily_cap(merchant_id, cap, actor=user.actor,
                                                    reason=reason))

    return await pages.act(request, "/admin/merchants", work,
                           f"已设置 {merchant_id} 每日上限 / Daily cap set")
