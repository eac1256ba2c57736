"""A merchant's own pages: its balance and coupons, a coupon to a driver's plate, its
monthly statement. A merchant user sees only its own account, and plates masked."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.money.merchants import MerchantError
from gateway.storage import queries
from gateway.web.deps import (
    FormDep,
    MerchantsDep,
    MerchantUser,
    PagesDep,
    ReaderDep,
    SettingsDep,
    TimeDep,
    WorkerDep,
)
from gateway.web.forms import BadForm, coupon_grant
from gateway.web.users import User
from parkguard.core.privacy import mask_plate
from parkguard.core.tariffs import format_yuan
from parkguard.errors import ParkGuardError

router = APIRouter()


def _account(user: MerchantUser) -> tuple[User, str]:
    if not user.merchant_id:
        raise HTTPException(403, "this merchant user has no merchant account")
    return user, user.merchant_id


Account = Annotated[tuple[User, str], Depends(_account)]
"""The merchant user and the merchant account it acts for."""


@router.get("/merchant", response_class=HTMLResponse)
def home(request: Request, account: Account, pages: PagesDep, reader: ReaderDep,
         worker: WorkerDep, desk: MerchantsDep, settings: SettingsDep,
         time: TimeDep) -> Response:
    user, merchant_id = account
    try:
        balance = worker.call(lambda: desk.balance(merchant_id))
    except MerchantError as error:
        raise HTTPException(404, str(error)) from error
    with reader() as db:
        coupons = queries.merchant_coupons(db, merchant_id)
    return pages.render(request, "merchant.html", user, balance=balance, coupons=coupons,
                        cap_fen=settings.coupon_cap_fen, month=time.month())


@router.get("/api/merchant")
def api_home(account: Account, reader: ReaderDep, worker: WorkerDep,
             desk: MerchantsDep) -> dict[str, Any]:
    _user, merchant_id = account
    balance = worker.call(lambda: desk.balance(merchant_id))
    with reader() as db:
        coupons = queries.merchant_coupons(db, merchant_id)
    return {"merchant_id": merchant_id, "prepaid_fen": balance.prepaid_fen,
            "owed_fen": balance.owed_fen, "held_fen": balance.held_fen,
            "available_fen": balance.available_fen,
            "coupons": [{**c, "plate": mask_plate(c["plate"])} for c in coupons]}


@router.post("/merchant/coupons")
async def issue(request: Request, account: Account, fields: FormDep, pages: PagesDep,
                worker: WorkerDep, desk: MerchantsDep, settings: SettingsDep,
                time: TimeDep) -> Response:
    user, merchant_id = account
    try:
        plate = fields.get("plate", "")
        if not plate:
            raise BadForm("plate is required / 请输入车牌")
        grant = coupon_grant(fields.get("kind", ""), fields.get("minutes", ""),
                             fields.get("amount", ""), settings.coupon_cap_fen)
        note = fields.get("note") or "issued on the merchant dashboard / 商户后台发券"
        expires = time.now() + timedelta(hours=settings.coupon_valid_hours)
        coupon = await worker.run(lambda: desk.issue_coupon(
            merchant_id, plate, grant, expires_at=expires, actor=user.actor, reason=note))
        pages.flash(request, "ok", f"已发券给 {mask_plate(coupon.plate)} / Coupon issued to "
                                   f"{mask_plate(coupon.plate)}")
    except (BadForm, ParkGuardError, ValueError) as error:
        pages.flash(request, "error", str(error))
    return RedirectResponse("/merchant", status_code=303)


@router.get("/merchant/statement", response_class=HTMLResponse)
def statement(request: Request, account: Account, pages: PagesDep, worker: WorkerDep,
              desk: MerchantsDep, time: TimeDep, month: str = "") -> Response:
    user, merchant_id = account
    try:
        chosen = datetime.strptime(month or time.month(), "%Y-%m")
    except ValueError as error:
        raise HTTPException(400, "month must be YYYY-MM") from error
    result = worker.call(lambda: desk.statement(
        merchant_id, chosen.year, chosen.month, actor=user.actor,
        reason="statement viewed on the merchant dashboard"))
    return pages.render(request, "statement.html", user, statement=result,
                        month=chosen.strftime("%Y-%m"), yuan=format_yuan)
