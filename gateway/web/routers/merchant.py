"""A merchant's own pages: its balance and coupons, a coupon to a driver's plate (by kind, or
by what the shopper spent under the tariff's spend rules), QR claim codes, its monthly
statement. A merchant user sees only its own account, and plates masked."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.money.merchants import (
    CouponGrant,
    MerchantError,
    describe_rule,
    rule_for_spend,
    spend_rules,
)
from gateway.storage import queries
from gateway.web.deps import (
    BillingDep,
    FormDep,
    MerchantsDep,
    MerchantUser,
    PagesDep,
    ReaderDep,
    SettingsDep,
    TimeDep,
    WorkerDep,
)
from gateway.web.forms import BadForm, coupon_grant, parse_yuan
from gateway.web.users import User
from parkguard.core.privacy import mask_plate
from parkguard.core.tariffs import Tariff, format_yuan
from parkguard.errors import ParkGuardError

router = APIRouter()


def _account(user: MerchantUser) -> tuple[User, str]:
    if not user.merchant_id:
        raise HTTPException(403, "this merchant user has no merchant account")
    return user, user.merchant_id


Account = Annotated[tuple[User, str], Depends(_account)]
"""The merchant user and the merchant account it acts for."""


def _tariff(billing: BillingDep, time: TimeDep) -> Tariff | None:
    """The tariff version in force today: its spend rules are what a till may issue."""
    return billing.pricing.document.book.in_force(time.today())


def _home(request: Request, user: User, merchant_id: str, pages: PagesDep, reader: ReaderDep,
          worker: WorkerDep, desk: MerchantsDep, settings: SettingsDep, time: TimeDep,
          billing: BillingDep, **extra: Any) -> Response:
    try:
        balance, (today, cap) = worker.call(lambda: (desk.balance(merchant_id),
                                                     desk.issued_today(merchant_id)))
    except MerchantError as error:
        raise HTTPException(404, str(error)) from error
    with reader() as db:
        coupons = queries.merchant_coupons(db, merchant_id)
    tariff = _tariff(billing, time)
    rules = [(rule, describe_rule(rule)) for rule in spend_rules(tariff)] if tariff else []
    return pages.render(request, "merchant.html", user, balance=balance, coupons=coupons,
                        cap_fen=settings.coupon_cap_fen, month=time.month(), rules=rules,
                        issued_today=today, daily_cap=cap, **extra)


@router.get("/merchant", response_class=HTMLResponse)
def home(request: Request, account: Account, pages: PagesDep, reader: ReaderDep,
         worker: WorkerDep, desk: MerchantsDep, settings: SettingsDep,
         time: TimeDep, billing: BillingDep) -> Response:
    user, merchant_id = account
    return _home(request, user, merchant_id, pages, reader, worker, desk, settings, time,
                 billing)


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


@router.post("/merchant/spend")
async def issue_for_spend(request: Request, account: Account, fields: FormDep, pages: PagesDep,
                          worker: WorkerDep, desk: MerchantsDep, settings: SettingsDep,
                          time: TimeDep, billing: BillingDep) -> Response:
    """The till types what the shopper spent: the tariff's spend rule becomes the coupon."""
    user, merchant_id = account
    try:
        plate = fields.get("plate", "")
        if not plate:
            raise BadForm("plate is required / 请输入车牌")
        spent = parse_yuan(fields.get("spent", ""), field="spent / 消费金额")
        tariff = _tariff(billing, time)
        if tariff is None:
            raise BadForm("no tariff is in force today / 今日无有效收费标准")
        rule = rule_for_spend(tariff, spent)
        grant = CouponGrant.for_rule(rule.code, cap_fen=settings.coupon_cap_fen)
        expires = time.now() + timedelta(hours=settings.coupon_valid_hours)
        note = f"spent {format_yuan(spent)}: {rule.code}"
        coupon = await worker.run(lambda: desk.issue_coupon(
            merchant_id, plate, grant, expires_at=expires, actor=user.actor, reason=note))
        zh, en = describe_rule(rule)
        shown = mask_plate(coupon.plate)
        pages.flash(request, "ok", f"已发券给 {shown}：{zh} / Coupon for {shown}: {en}")
    except (BadForm, ParkGuardError, ValueError) as error:
        pages.flash(request, "error", str(error))
    return RedirectResponse("/merchant", status_code=303)


_MAX_CODES = 200
"""Claim codes one form may print: a sheet for the counter, not the whole year's."""


@router.post("/merchant/claim-codes", response_class=HTMLResponse)
async def claim_codes(request: Request, account: Account, fields: FormDep, pages: PagesDep,
                      reader: ReaderDep, worker: WorkerDep, desk: MerchantsDep,
                      settings: SettingsDep, time: TimeDep, billing: BillingDep) -> Response:
    """Print QR claim codes: shown on this one page, once (only their hashes are kept)."""
    user, merchant_id = account
    try:
        count = fields.get("count", "")
        if not count.isdigit() or not 1 <= int(count) <= _MAX_CODES:
            raise BadForm(f"count must be 1 to {_MAX_CODES} / 张数须为1至{_MAX_CODES}")
        hours = fields.get("hours", "") or str(settings.coupon_valid_hours)
        if not hours.isdigit() or not 1 <= int(hours) <= 24 * 90:
            raise BadForm("valid hours must be 1 to 2160 / 有效小时数须为1至2160")
        kind = fields.get("kind", "")
        if kind.startswith("rule:"):
            grant = CouponGrant.for_rule(kind[5:], cap_fen=settings.coupon_cap_fen)
            tariff = _tariff(billing, time)
            if tariff is None or tariff.rule(grant.rule) is None:
                raise BadForm(f"the tariff has no rule {grant.rule!r} / 收费标准中无此规则")
        else:
            grant = coupon_grant(kind, fields.get("minutes", ""), fields.get("amount", ""),
                                 settings.coupon_cap_fen)
        expires = time.now() + timedelta(hours=int(hours))
        batch = await worker.run(lambda: desk.create_claim_batch(
            merchant_id, grant, count=int(count), expires_at=expires, actor=user.actor,
            reason=fields.get("note") or "QR claim codes printed on the merchant dashboard"))
    except (BadForm, ParkGuardError, ValueError) as error:
        pages.flash(request, "error", str(error))
        return RedirectResponse("/merchant", status_code=303)
    base = getattr(settings, "public_url", None) or str(request.base_url).rstrip("/")
    links = [(code, f"{base}/claim?{urlencode({'c': code})}") for code in batch.codes]
    return _home(request, user, merchant_id, pages, reader, worker, desk, settings, time,
                 billing, batch=batch, links=links)


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
