"""The drivers' coupon claim page (no login): a merchant's QR code opens it, the driver types
or confirms the plate and the code becomes that plate's parking coupon.

The QR carries ``/claim?c=CODE`` (and may carry ``&plate=`` when the till knows it). The page
says whose coupon it is, what it gives, until when, and the rules: one coupon per car per
visit from each shop, the shop's daily limit if it has one. A refusal names the rule in
Chinese and English and writes nothing. Every code look-up and claim counts against the pay
page's per-address and site-wide limits, so the codes (80 random bits) cannot be walked.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from gateway.money.merchants import (
    CLAIM_REFUSALS,
    ClaimCode,
    ClaimRefusedError,
    DailyCapError,
    InsufficientFundsError,
    IssuedCoupon,
    TooManyCouponsError,
    describe_grant,
)
from gateway.web.deps import BillingDep, FormDep, MerchantsDep, PagesDep, State, TimeDep, WorkerDep
from gateway.web.render import Pages
from gateway.web.security import GLOBAL, client_of
from parkguard.clock import utc_iso

log = logging.getLogger(__name__)
router = APIRouter()

_PLATE_KEY = "claim_plate"
"""The plate this browser last claimed for: prefilled on its next claim page."""
_CODE_MAX = 32


def _counted(request: Request, state: State) -> bool:
    """One look-up or claim: False once this address or the site is over its limit."""
    client = client_of(request)
    if state.pay_limiter.take(client) and state.pay_limiter_total.take(GLOBAL):
        return True
    log.warning("web: claim-page look-ups throttled for %s", client)
    return False


def _page(request: Request, pages: Pages, *, code: str, plate: str, info: ClaimCode | None,
          billing: BillingDep, time: TimeDep, refusal: str | None = None,
          coupon: IssuedCoupon | None = None, status_code: int = 200) -> Response:
    tariff = billing.pricing.document.book.in_force(time.today())
    context: dict[str, Any] = {"code": code, "plate": plate, "info": info, "coupon": coupon,
                               "refusal": CLAIM_REFUSALS.get(refusal) if refusal else None,
                               "gives": describe_grant(info.grant, tariff) if info else None}
    response = pages.render(request, "claim.html", None, status_code=status_code, **context)
    if status_code == 429:
        response.headers["Retry-After"] = "60"
    return response


def _refusal_of(info: ClaimCode | None, now: str) -> str | None:
    """Why a code cannot be claimed whatever the plate, before the driver types one."""
    if info is None:
        return "unknown"
    if info.claimed:
        return "used"
    if now >= info.expires_at:
        return "expired"
    return None


@router.get("/claim", response_class=HTMLResponse)
def claim_page(request: Request, state: State, pages: PagesDep, desk: MerchantsDep,
               worker: WorkerDep, billing: BillingDep, time: TimeDep, c: str = "",
               plate: str = "") -> Response:
    code = c.strip()[:_CODE_MAX]
    plate = plate.strip()[:16] or str(request.session.get(_PLATE_KEY, ""))
    if not code:
        return _page(request, pages, code="", plate=plate, info=None, billing=billing,
                     time=time)
    if not _counted(request, state):
        return _page(request, pages, code=code, plate=plate, info=None, billing=billing,
                     time=time, refusal="throttled", status_code=429)
    info = worker.call(lambda: desk.claim_code(code))
    refusal = _refusal_of(info, utc_iso(time.now()))
    return _page(request, pages, code=code, plate=plate, info=info, billing=billing,
                 time=time, refusal=refusal, status_code=404 if refusal == "unknown" else 200)


def _claimed(desk: MerchantsDep, code: str, plate: str) -> tuple[IssuedCoupon | None, str]:
    """Claim on the worker: (the coupon, "") or (None, why it was refused)."""
    try:
        return desk.claim(code, plate=plate), ""
    except ClaimRefusedError as error:
        return None, error.reason
    except DailyCapError:
        return None, "daily_cap"
    except (InsufficientFundsError, TooManyCouponsError) as error:
        log.warning("web: claim refused by the merchant's terms: %s", error)
        return None, "funds"


_STATUS = {"unknown": 404, "bad_plate": 400}


@router.post("/claim", response_class=HTMLResponse)
async def claim(request: Request, state: State, fields: FormDep, pages: PagesDep,
                desk: MerchantsDep, worker: WorkerDep, billing: BillingDep,
                time: TimeDep) -> Response:
    code, plate = fields.get("c", "")[:_CODE_MAX], fields.get("plate", "")[:16]
    if not _counted(request, state):
        return _page(request, pages, code=code, plate=plate, info=None, billing=billing,
                     time=time, refusal="throttled", status_code=429)
    info = await worker.run(lambda: desk.claim_code(code))
    coupon, refusal = (None, "bad_plate") if not plate \
        else await worker.run(lambda: _claimed(desk, code, plate))
    if coupon is None:
        return _page(request, pages, code=code, plate=plate, info=info, billing=billing,
                     time=time, refusal=refusal, status_code=_STATUS.get(refusal, 409))
    request.session[_PLATE_KEY] = coupon.plate
    return _page(request, pages, code=code, plate=coupon.plate, info=info, billing=billing,
                 time=time, coupon=coupon)
