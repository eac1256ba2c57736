"""The merchant's pages: its own balance, coupons to a plate, its monthly statement."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.money.merchants import MerchantError
from parkguard.core.privacy import mask_plate
from parkguard.core.tariffs import format_yuan
from parkguard.errors import ParkGuardError

if TYPE_CHECKING:
    from gateway.web.app import Web


def routes(app: FastAPI, web: Web) -> None:
    from gateway.web.app import BadForm, coupon_expiry, coupon_grant

    def merchant_of(request: Request) -> tuple[Any, str]:
        user = web.need(request, "merchant")
        if not user.merchant_id:
            raise HTTPException(403, "this merchant user has no merchant account")
        return user, user.merchant_id

    def coupons(merchant_id: str) -> list[dict[str, Any]]:
        with web.store.reader() as db:
            if not db.table("merchant_coupons").exists():
                return []
            return list(db.query(
                "SELECT coupon_id, plate, kind, minutes, fen, cap_fen, issued_at, expires_at, "
                "state, applied_fen, charged_fen FROM merchant_coupons WHERE merchant_id = ? "
                "ORDER BY issued_at DESC LIMIT 50", [merchant_id]))

    @app.get("/merchant", response_class=HTMLResponse)
    def home(request: Request) -> Response:
        user, merchant_id = merchant_of(request)
        try:
            balance = web.service.call(lambda: web.gw.billing.merchants.balance(merchant_id))
        except MerchantError as error:
            raise HTTPException(404, str(error)) from error
        return web.render(request, "merchant.html", user, balance=balance,
                          coupons=coupons(merchant_id),
                          cap_fen=web.settings.coupon_cap_fen,
                          month=web.now().astimezone(web.zone).strftime("%Y-%m"))

    @app.get("/api/merchant")
    def api_home(request: Request) -> dict[str, Any]:
        _user, merchant_id = merchant_of(request)
        balance = web.service.call(lambda: web.gw.billing.merchants.balance(merchant_id))
        return {"merchant_id": merchant_id, "prepaid_fen": balance.prepaid_fen,
                "owed_fen": balance.owed_fen, "held_fen": balance.held_fen,
                "available_fen": balance.available_fen,
                "coupons": [{**c, "plate": mask_plate(c["plate"])} for c in coupons(merchant_id)]}

    @app.post("/merchant/coupons")
    async def issue(request: Request) -> Response:
        user, merchant_id = merchant_of(request)
        fields = await web.form(request)
        try:
            plate = fields.get("plate", "")
            if not plate:
                raise BadForm("plate is required / 请输入车牌")
            grant = coupon_grant(fields.get("kind", ""), fields.get("minutes", ""),
                                 fields.get("amount", ""), web.settings.coupon_cap_fen)
            note = fields.get("note") or "issued on the merchant dashboard / 商户后台发券"
            expires = coupon_expiry(web)
            coupon = await web.write(lambda: web.gw.billing.merchants.issue_coupon(
                merchant_id, plate, grant, expires_at=expires, actor=user.actor, reason=note))
            web.flash(request, "ok", f"已发券给 {mask_plate(coupon.plate)} / Coupon issued to "
                                     f"{mask_plate(coupon.plate)}")
        except (BadForm, ParkGuardError, ValueError) as error:
            web.flash(request, "error", str(error))
        return RedirectResponse("/merchant", status_code=303)

    @app.get("/merchant/statement", response_class=HTMLResponse)
    def statement(request: Request, month: str = "") -> Response:
        user, merchant_id = merchant_of(request)
        try:
            chosen = datetime.strptime(month or web.now().astimezone(web.zone).strftime("%Y-%m"),
                                       "%Y-%m")
        except ValueError as error:
            raise HTTPException(400, "month must be YYYY-MM") from error
        result = web.service.call(lambda: web.gw.billing.merchants.statement(
            merchant_id, chosen.year, chosen.month, actor=user.actor,
            reason="statement viewed on the merchant dashboard"))
        return web.render(request, "statement.html", user, statement=result,
                          month=chosen.strftime("%Y-%m"), yuan=format_yuan)
