"""The drivers' pay page (no login): look up what a car owes and prepay it. The provider's
signed notice arrives at :mod:`.notify`; with the simulated provider (demo and tests only)
the wallet page of :mod:`.sim_pay` stands in for the provider's.

Anyone may type any plate, so a typed plate alone shows only what is due now: never
whether that car is inside, when it came or how long it stayed (a plate not inside reads
"nothing to pay", like one that owes nothing). The stay itself needs the ticket token
(``?t=``, :mod:`gateway.web.tickets`) that a printed ticket or the exit lane's QR carries.
Every look-up counts against a per-address and a site-wide limit: a 429 past either.

Pay with a real provider renders a hand-off page (``pay_go.html``) rather than redirecting:
the site's ``form-action 'self'`` applies to a form POST's redirects too, so a 303 to
``weixin://…`` or ``https://qr.alipay.com/…`` would be blocked by the browser. The page
gives the provider's link to tap (a navigation, which the policy allows) and the same link
as a QR code drawn here as inline SVG (no script, no image from elsewhere).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import segno
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from gateway.money.billing import Bill
from gateway.money.payments import PaymentError, PendingPayment, SimulatedProvider
from gateway.web.deps import (
    CashierDep,
    Desks,
    DesksDep,
    FormDep,
    PagesDep,
    State,
    TicketsDep,
    TimeDep,
)
from gateway.web.render import Pages
from gateway.web.security import GLOBAL, client_of
from parkguard.core.bill_lines import itemise
from parkguard.core.plates import (
    PlateError,
    PlateSeries,
    is_no_plate,
    normalise_plate,
    parse_plate,
)
from parkguard.core.plates.charset import PROVINCE_ORDER, tidy

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
    response = pages.render(request, "pay.html", None, **_form(), status_code=429)
    response.headers["Retry-After"] = "60"
    return response


Shown = dict[str, Any]
#: The keypad's first characters: the 31 provinces, then 使 (an embassy plate's first).
KEYPAD: Final = (*PROVINCE_ORDER, "使")
#: Characters that end a special plate (警 police, 学 coach, 挂 trailer, 港/澳, 领 consulate).
SUFFIXES: Final = ("警", "学", "挂", "港", "澳", "领")
#: What a plate nobody inside has, or one that owes nothing, shows: the same lines.
NOTHING_DUE: Final = itemise(None).public()
_LANE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def _form(plate: str = "", province: str = "", new_energy: bool = False, lane: str = "",
          **more: object) -> Shown:
    """What every rendering of the pay page's form needs (empty: a fresh page)."""
    return {"plate": plate, "province": province, "new_energy": new_energy, "lane": lane,
            "keypad": KEYPAD, "suffixes": SUFFIXES, "bill": None, "items": None,
            "token": "", "suspended": False, "suggestion": None, "problem": "", **more}


def typed_plate(plate: str, province: str = "", new_energy: bool = False) -> tuple[str, str]:
    """(the plate a driver typed, in its canonical spelling; or why it is not a plate, in
    Chinese and English). ``province`` is the keypad's choice, put in front of the typed
    rest unless the rest already opens with a province (or 使); ``new_energy`` is the
    toggle, and a plate it does not fit is refused: a new-energy plate has 8 characters.
    A ticket's no-plate identity (from a lane QR) passes as it is."""
    text = tidy(plate)
    if is_no_plate(plate.strip()):
        return plate.strip(), ""
    if province in KEYPAD and text and text[0] not in KEYPAD and not text.startswith("WJ"):
        text = province + text
    if not text:
        return "", "请输入车牌 / Enter your plate"
    try:
        parsed = parse_plate(normalise_plate(text))
    except PlateError as error:
        return text, f"车牌号有误 / Not a plate: {error}"
    energy = parsed.series in (PlateSeries.NEW_ENERGY_SMALL, PlateSeries.NEW_ENERGY_LARGE)
    if new_energy and not energy:
        return parsed.text, (f"新能源车牌为8位（如 {parsed.text[:2]}D{parsed.text[2:]}）/ "
                             "A new-energy plate has 8 characters: untick 新能源 if yours "
                             "has 7")
    return parsed.text, ""


def _suspended(desks: Desks) -> bool:
    """Whether a fire alarm suspends billing now: the page asks for nothing."""
    return desks.alarms is not None and desks.alarms.billing_suspended()


def _shown(bill: Bill | None, token: str, tickets: TicketsDep, time: TimeDep,
           suspended: bool) -> tuple[Shown | None, Shown]:
    """(the whole bill, if the token proves this car's session, else None; and its lines:
    every line with the token, else what anyone typing the plate may see, the stay's
    charges folded into one fee so neither its start nor its length shows). A car that is
    not inside reads as nothing to pay, the same as one that owes nothing."""
    if bill is None:
        return None, NOTHING_DUE.as_json()
    items = bill.lines(suspended=suspended)
    if token and tickets.proves(token, bill.plate, bill.session_id, now=time.now()):
        return bill.as_json(), items.as_json()
    return None, items.public().as_json()


def _looked_up(request: Request, state: State, pages: PagesDep, cashier: CashierDep,
               tickets: TicketsDep, time: TimeDep, plate: str, token: str, template: str,
               form: Shown) -> Response:
    """One counted look-up of a plate's bill, shown on ``template`` (the stay only with a
    valid ticket token), or 429 once the look-up limits are reached. A plate nobody inside
    owes money under may get one "did you mean" (:meth:`Gateway.suggest_plate`): only a
    car the fuzzy matcher is sure of *and* that owes money now, which typing its plate
    would show anyway, so the suggestion reveals nothing the page did not already."""
    try:
        _count_lookup(request, state)
    except Throttled:
        return _throttled(request, pages)
    suspended = _suspended(state.desks)
    found = cashier.bill_for(plate)
    bill, items = _shown(found, token, tickets, time, suspended)
    suggestion = cashier.suggest_plate(plate) if found is None and not suspended else None
    return pages.render(request, template, None, **{
        **form, "plate": plate, "bill": bill, "items": items, "suspended": suspended,
        "token": token if bill is not None else "", "suggestion": suggestion})


@router.get("/pay", response_class=HTMLResponse)
def pay(request: Request, state: State, pages: PagesDep, cashier: CashierDep,
        tickets: TicketsDep, time: TimeDep, plate: str = "", province: str = "",
        ne: str = "", lane: str = "", t: str = "") -> Response:
    lane = lane if _LANE.match(lane) else ""
    if not plate.strip():
        return pages.render(request, "pay.html", None, **_form(
            province=province if province in KEYPAD else "", new_energy=bool(ne), lane=lane))
    text, problem = typed_plate(plate, province, bool(ne))
    energy = len(text) == 8 and not problem and not is_no_plate(text)
    shown_province = text[0] if text and text[0] in KEYPAD else ""
    form = _form(plate=text, province=shown_province, new_energy=bool(ne) or energy,
                 lane=lane)
    if problem:
        return pages.render(request, "pay.html", None, **{**form, "problem": problem},
                            status_code=422)
    return _looked_up(request, state, pages, cashier, tickets, time, text, t, "pay.html",
                      form)


#: The provider's name on the hand-off page (Chinese, English), by ``PaymentProvider.name``.
PROVIDERS: Final = {"wechat": ("微信支付", "WeChat Pay"), "alipay": ("支付宝", "Alipay")}
#: The schemes a provider's pay link may have: WeChat Native's ``weixin://`` code, Alipay's
#: ``https://qr.alipay.com/…`` (and its app's ``alipays://``). Anything else, above all a
#: ``javascript:`` link, is never put on the page.
LINK_SCHEMES: Final = frozenset({"https", "weixin", "alipays"})


def qr_svg(text: str) -> Markup:
    """``text`` as a QR code in inline SVG (error correction M, the standard quiet zone):
    markup the page carries itself, so it needs neither a script nor an image from
    another origin, and it stays sharp at any size (a ``viewBox``, no fixed size)."""
    code = segno.make(text, error="m", micro=False, boost_error=False)
    svg = code.svg_inline(scale=1, omitsize=True, svgclass="qr", lineclass=None,
                          dark="#000", light="#fff", title="支付二维码 Payment QR code")
    # segno writes paths from the code's modules and our fixed title: ``text`` itself
    # is never in the markup, so nothing a provider sends can be injected through it.
    return Markup(svg)  # noqa: S704


def _hand_off(request: Request, pages: Pages, provider: str, pending: PendingPayment,
              token: str, lane: str) -> Response:
    """The page that hands the driver to the provider: its link and the same link as a
    QR code, and "I have paid" back to ``/pay/done``. Kept in this browser only
    (``private``) and never shown fresh from a cache, but, unlike the site's other pages
    (``no-store``), kept: a driver who went to the provider's page and presses Back gets
    this page again, not a "resubmit the form?" error."""
    zh, en = PROVIDERS.get(provider, ("在线支付", "Online payment"))
    response = pages.render(
        request, "pay_go.html", None, plate=pending.plate, amount_fen=pending.amount_fen,
        provider=provider, provider_zh=zh, provider_en=en, pay_url=pending.pay_url,
        qr=qr_svg(pending.pay_url), lane=lane,
        done_query=urlencode({"plate": pending.plate, "t": token}),
        back_query=urlencode({"plate": pending.plate, "t": token, "lane": lane}))
    response.headers["Cache-Control"] = "private, no-cache"
    return response


def _back_to_pay(plate: str, token: str) -> Response:
    """303 to this plate's pay page on this site (a path, never another origin)."""
    return RedirectResponse(f"/pay?{urlencode({'plate': plate, 't': token})}", status_code=303)


@router.post("/pay")
async def prepay(request: Request, state: State, fields: FormDep, pages: PagesDep,
                 cashier: CashierDep, desks: DesksDep) -> Response:
    plate, token = fields.get("plate", ""), fields.get("t", "")
    lane = fields.get("lane", "")
    lane = lane if _LANE.match(lane) else ""
    try:
        _count_lookup(request, state)
    except Throttled:
        return _throttled(request, pages)
    if _suspended(desks):  # a page loaded before the alarm: take no money during a fire
        pages.flash(request, "ok", "消防警报期间暂停收费，无需付款 / Billing is suspended "
                                   "during the fire alarm: nothing to pay")
        return _back_to_pay(plate, token)
    try:
        pending = await run_in_threadpool(cashier.prepay, plate)
        if pending is not None and not isinstance(desks.provider, SimulatedProvider) \
                and urlsplit(pending.pay_url).scheme.lower() not in LINK_SCHEMES:
            raise PaymentError(f"the provider's pay link {pending.pay_url[:40]!r} is not "
                               f"one of {sorted(LINK_SCHEMES)}")
    except PaymentError as error:  # no provider, or it did not answer: say so, keep the page
        log.warning("web: prepayment for %s not opened: %s", plate, error)
        pages.flash(request, "error", "暂时无法在线支付，请在出口付款 / Online payment is not "
                                      "available now: pay at the exit")
        return _back_to_pay(plate, token)
    if pending is None:
        pages.flash(request, "ok", "无需缴费 / Nothing to pay")
        return _back_to_pay(plate, token)
    if isinstance(desks.provider, SimulatedProvider):  # its wallet page is on this site
        return RedirectResponse(f"/sim-pay/{pending.provider_ref}", status_code=303)
    return _hand_off(request, pages, desks.provider.name, pending, token, lane)


@router.get("/pay/done", response_class=HTMLResponse)
def paid(request: Request, state: State, pages: PagesDep, cashier: CashierDep,
         tickets: TicketsDep, time: TimeDep, plate: str, t: str = "") -> Response:
    return _looked_up(request, state, pages, cashier, tickets, time, plate, t,
                      "pay_done.html", _form(plate=plate))
