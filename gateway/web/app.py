"""The control room's dashboard, its JSON API and the drivers' pay page, as one ASGI app.

Reads go through ``store.reader()`` (a read-only connection of the request's own); every
write — a manual open, a fee override, a coupon, a refund — runs on the gateway's worker
through ``Gateway.call`` so it never interleaves with an exit being billed. Pages are
role-gated on the server: a page a role may not see answers 403, and the navigation lists
only what the role may open.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.middleware.sessions import SessionMiddleware

from gateway.money.merchants import CouponGrant, MerchantError
from gateway.money.payments import (
    BadSignatureError,
    PaymentError,
    SimulatedProvider,
    UnknownOrderError,
)
from gateway.records.audit import read_entries
from gateway.web import pages_alerts, pages_incidents, pages_manager, pages_merchant
from gateway.web.lanes import LaneBoard, lanes_view, plate_snapshot_svg
from gateway.web.search import search_sessions, session_detail
from gateway.web.security import CSRF_FIELD, CSRF_HEADER, LoginLimiter, csrf_ok, csrf_token
from gateway.web.settings import WebSettings
from gateway.web.users import ROLE_LABELS, User, UserStore, authenticate, session_user
from parkguard.clock import Clock, utc_iso
from parkguard.core.privacy import mask_phone, mask_phones_in, mask_plate
from parkguard.core.tariffs import format_yuan
from parkguard.errors import ParkGuardError

if TYPE_CHECKING:
    from gateway.app import GatewayApp

log = logging.getLogger(__name__)
T = TypeVar("T")

HERE = Path(__file__).parent
STAFF = frozenset({"guard", "supervisor", "manager"})
SENIOR = frozenset({"supervisor", "manager"})
MANAGER = frozenset({"manager"})
MERCHANT = frozenset({"merchant"})

#: What each role may do, by permission name. The server checks these on every request.
PERMISSIONS: dict[str, frozenset[str]] = {
    "lanes": STAFF, "sessions": STAFF, "open": STAFF,
    "override": SENIOR, "audit": SENIOR, "incidents": SENIOR,
    "reports": MANAGER, "admin": MANAGER,
    "merchant": MERCHANT,
}

#: The navigation: (permission, path, Chinese, English).
NAV: tuple[tuple[str, str, str, str], ...] = (
    ("lanes", "/lanes", "车道监控", "Lanes"),
    ("lanes", "/alerts", "告警", "Alerts"),
    ("sessions", "/sessions", "车辆记录", "Sessions"),
    ("audit", "/audit", "审计日志", "Audit log"),
    ("incidents", "/incidents", "事件", "Incidents"),
    ("reports", "/reports", "报表", "Reports"),
    ("admin", "/admin/merchants", "商户管理", "Merchants"),
    ("admin", "/admin/passes", "月卡与名单", "Passes & lists"),
    ("admin", "/admin/refunds", "退款", "Refunds"),
    ("merchant", "/merchant", "我的商户", "My account"),
)


class LoginRequired(Exception):
    """No (valid) session: pages redirect to the login form, the API answers 401."""


class Forbidden(Exception):
    """The role may not do this: 403, for pages and API alike."""


class BadForm(ValueError):
    """A form field is missing or wrong: shown to the person, nothing is written."""


def parse_yuan(text: str, *, field: str = "amount") -> int:
    """``"12.5"`` → ``1250`` fen; refuses negatives, more than two decimals and junk."""
    try:
        value = Decimal(text.strip().lstrip("¥"))
    except InvalidOperation as error:
        raise BadForm(f"{field}: {text!r} is not an amount in yuan / 金额格式不对") from error
    fen = value * 100
    if value < 0 or fen != fen.to_integral_value() or fen > 100_000_000:
        raise BadForm(f"{field}: {text!r} is not an amount in yuan (0.00 or more, at most two "
                      "decimals) / 金额格式不对")
    return int(fen)


class Web:
    """Everything the routes share: the gateway, the clock, the lane board, the limiter."""

    def __init__(self, gateway_app: GatewayApp, settings: WebSettings, clock: Clock) -> None:
        self.gw = gateway_app
        self.service = gateway_app.service
        self.store = gateway_app.store
        self.settings = settings
        self.clock = clock
        self.zone = ZoneInfo(gateway_app.config.timezone)
        self.board = LaneBoard(gateway_app.bus, gateway_app.config.site)
        self.limiter = LoginLimiter(settings.login_max_failures, settings.login_window_s)
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        env = self.templates.env
        env.filters.update(yuan=format_yuan, local=self.local, hm=self.hm,
                           mask_plate=mask_plate, mask_phone=mask_phone,
                           mask_phones=mask_phones_in)
        env.globals.update(site=gateway_app.config.site, roles=ROLE_LABELS,
                           poll_ms=settings.live_poll_ms)

    # time --------------------------------------------------------------------------------

    def now(self) -> datetime:
        return self.clock.now()

    def local(self, value: str | datetime | None) -> str:
        moment = self._moment(value)
        return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "—"

    def hm(self, value: str | datetime | None) -> str:
        moment = self._moment(value)
        return moment.strftime("%H:%M") if moment else "—"

    def _moment(self, value: str | datetime | None) -> datetime | None:
        if value is None or value == "":
            return None
        moment = datetime.fromisoformat(value.replace("Z", "+00:00")) \
            if isinstance(value, str) else value
        return moment.astimezone(self.zone)

    # the worker ---------------------------------------------------------------------------

    async def write(self, work: Callable[[], T]) -> T:
        """Run ``work`` on the gateway's worker (writes, and reads on its connection)."""
        return await run_in_threadpool(self.service.call, work)

    # who is asking ------------------------------------------------------------------------

    def user(self, request: Request) -> User | None:
        name = request.session.get("user")
        if not isinstance(name, str):
            return None
        with self.store.reader() as db:
            user = session_user(db, name)
        if user is None or str(request.session.get("since", "")) < user.password_changed_at:
            request.session.pop("user", None)
            return None
        return user

    def need(self, request: Request, permission: str) -> User:
        user = self.user(request)
        if user is None:
            raise LoginRequired()
        if user.role not in PERMISSIONS[permission]:
            raise Forbidden()
        return user

    def may(self, user: User | None, permission: str) -> bool:
        return user is not None and user.role in PERMISSIONS[permission]

    def nav(self, user: User | None) -> list[tuple[str, str, str]]:
        return [(path, zh, en) for perm, path, zh, en in NAV if self.may(user, perm)]

    # rendering ----------------------------------------------------------------------------

    def render(self, request: Request, name: str, user: User | None = None,
               status_code: int = 200, **context: Any) -> HTMLResponse:
        flash = request.session.pop("flash", [])
        base = {"user": user, "nav": self.nav(user), "csrf": csrf_token(request),
                "csrf_field": CSRF_FIELD, "flash": flash,
                "may": lambda perm: self.may(user, perm)}
        return self.templates.TemplateResponse(request, name, {**base, **context},
                                               status_code=status_code)

    @staticmethod
    def flash(request: Request, kind: str, text: str) -> None:
        messages = list(request.session.get("flash", []))
        messages.append([kind, text])
        request.session["flash"] = messages[-5:]

    @staticmethod
    async def form(request: Request) -> dict[str, str]:
        """The POSTed form as text fields, after its CSRF token checked out (else 403)."""
        data = await request.form()
        fields = {key: value.strip() for key, value in data.items() if isinstance(value, str)}
        if not csrf_ok(request, fields.get(CSRF_FIELD)):
            raise HTTPException(403, "CSRF token missing or wrong: reload the page / "
                                     "请刷新页面后重试")
        return fields


def create_web_app(gateway_app: GatewayApp, *, settings: WebSettings | None = None,
                   clock: Clock | None = None) -> FastAPI:
    """The dashboard, the JSON API and the pay page for one running gateway.

    ``clock`` defaults to the gateway's own (``gateway_app.clock`` when it has one).
    """
    settings = settings or WebSettings()
    chosen = clock or getattr(gateway_app, "clock", None) or gateway_app.audit._clock
    web = Web(gateway_app, settings, chosen)
    gateway_app.service.call(lambda: UserStore.migrate(gateway_app.store.db))

    app = FastAPI(title="ParkGuard", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.web = web
    app.add_middleware(SessionMiddleware, secret_key=settings.secret_key,
                       session_cookie="parkguard_session",
                       max_age=settings.session_hours * 3600, same_site="lax",
                       https_only=settings.https_only)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, _exc: LoginRequired) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "login required / 请先登录"}, status_code=401)
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, _exc: Forbidden) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "forbidden for your role / 无权访问"}, status_code=403)
        return web.render(request, "forbidden.html", web.user(request), status_code=403)

    @app.middleware("http")
    async def _headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self'; frame-ancestors 'none'; form-action 'self'")
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    _auth_routes(app, web)
    _staff_routes(app, web)
    _pay_routes(app, web)
    pages_merchant.routes(app, web)
    pages_manager.routes(app, web)
    pages_incidents.routes(app, web)
    pages_alerts.routes(app, web)
    return app


# --- login ---------------------------------------------------------------------------------


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _home(user: User) -> str:
    return "/merchant" if user.role == "merchant" else "/lanes"


def _auth_routes(app: FastAPI, web: Web) -> None:
    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> Response:
        user = web.user(request)
        return RedirectResponse(_home(user) if user else "/login", status_code=303)

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "") -> Response:
        return web.render(request, "login.html", None, next=next, error=None)

    @app.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        fields = await web.form(request)
        username, password = fields.get("username", "").lower(), fields.get("password", "")
        client = _client(request)
        if web.limiter.blocked(username, client):
            log.warning("web: login of %r from %s refused: too many failures", username, client)
            minutes = int(web.settings.login_window_s // 60)
            return web.render(request, "login.html", None, status_code=429, next="",
                              error=f"登录失败次数过多，请 {minutes} 分钟后再试 / Too many failed "
                                    f"logins: try again in {minutes} minutes")

        def check() -> User | None:
            with web.store.reader() as db:
                return authenticate(db, username, password)

        user = await run_in_threadpool(check)
        if user is None:
            web.limiter.failed(username, client)
            log.info("web: failed login for %r from %s", username, client)
            return web.render(request, "login.html", None, status_code=401, next="",
                              error="用户名或密码错误 / Wrong user name or password")
        web.limiter.succeeded(username, client)
        request.session.clear()  # a new session id's worth of state: no fixation
        request.session.update(user=user.username, since=utc_iso(datetime.now().astimezone()))
        log.info("web: %s logged in from %s", user.actor, client)
        target = fields.get("next", "")
        if not target.startswith("/") or target.startswith("//"):
            target = _home(user)
        return RedirectResponse(target, status_code=303)

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        await web.form(request)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/api/me")
    def me(request: Request) -> dict[str, Any]:
        user = web.user(request)
        if user is None:
            raise LoginRequired()
        return {"username": user.username, "role": user.role, "merchant_id": user.merchant_id,
                "may": [perm for perm in PERMISSIONS if web.may(user, perm)],
                "csrf_token": csrf_token(request)}


# --- guards, supervisors ----------------------------------------------------------------------


def _staff_routes(app: FastAPI, web: Web) -> None:
    @app.get("/lanes", response_class=HTMLResponse)
    def lanes(request: Request) -> Response:
        user = web.need(request, "lanes")
        with web.store.reader() as db:
            view = lanes_view(web.board, db)
        return web.render(request, "lanes.html", user, lanes=view)

    @app.get("/api/lanes")
    def api_lanes(request: Request) -> dict[str, Any]:
        web.need(request, "lanes")
        with web.store.reader() as db:
            view = lanes_view(web.board, db)
        for lane in view:
            for read in lane["reads"]:
                read["local"] = web.local(read["ts"])
        return {"lanes": view, "now": utc_iso(web.now())}

    @app.get("/lanes/reads/{event_id}.svg")
    def snapshot(request: Request, event_id: str) -> Response:
        web.need(request, "lanes")
        with web.store.reader() as db:
            rows = list(db.query("SELECT ts, payload FROM events WHERE event_id = ? "
                                 "AND type = 'plate_read'", [event_id]))
        if not rows:
            raise HTTPException(404, "no such read")
        plate = json.loads(rows[0]["payload"]).get("plate")
        return Response(plate_snapshot_svg(plate, web.local(rows[0]["ts"])),
                        media_type="image/svg+xml")

    async def manual_open(request: Request, lane: str, reason: str) -> str:
        user = web.need(request, "open")
        if len(reason) < 4:
            raise BadForm("a reason is required (at least 4 characters) / 必须填写开闸原因")
        commander = getattr(web.gw, "commander", None)
        if commander is None:
            raise BadForm("manual open is not available on this gateway / 本网关不支持远程开闸")
        # Signed, audited, then published: on the worker, so the audit entry never
        # interleaves with an exit being billed.
        await web.write(lambda: commander.open(lane, actor=user.actor, reason=reason))
        log.info("web: %s opened %s", user.actor, lane)
        return f"已发送开闸指令 {lane} / Open sent to {lane}"

    @app.post("/lanes/{lane}/open")
    async def open_lane(request: Request, lane: str) -> Response:
        fields = await web.form(request)
        try:
            web.flash(request, "ok", await manual_open(request, lane,
                                                      fields.get("reason", "")))
        except (BadForm, ParkGuardError, ValueError) as error:
            web.flash(request, "error", str(error))
        return RedirectResponse("/lanes", status_code=303)

    @app.post("/api/lanes/{lane}/open")
    async def api_open_lane(request: Request, lane: str) -> Response:
        web.need(request, "open")
        if not csrf_ok(request, request.headers.get(CSRF_HEADER)):
            return JSONResponse({"error": "CSRF token missing or wrong"}, status_code=403)
        body = await request.json()
        try:
            message = await manual_open(request, lane, str(body.get("reason", "")).strip())
        except (BadForm, ParkGuardError, ValueError) as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        return JSONResponse({"ok": True, "message": message})

    @app.get("/sessions", response_class=HTMLResponse)
    def sessions(request: Request, q: str = "", plate: str = "") -> Response:
        user = web.need(request, "sessions")
        with web.store.reader() as db:
            found = search_sessions(db, q=q, plate=plate, policy=web.gw.config.matching)
        return web.render(request, "sessions.html", user, q=q, plate=plate, found=found)

    @app.get("/api/sessions")
    def api_sessions(request: Request, q: str = "", plate: str = "") -> dict[str, Any]:
        web.need(request, "sessions")
        with web.store.reader() as db:
            return search_sessions(db, q=q, plate=plate, policy=web.gw.config.matching)

    @app.get("/api/bill")
    def api_bill(request: Request, plate: str) -> Response:
        web.need(request, "sessions")
        bill = web.service.bill_for(plate)
        if bill is None:
            return JSONResponse({"error": "no car with this plate is inside / 场内无此车"},
                                status_code=404)
        return JSONResponse(bill.as_json())

    @app.get("/sessions/{session_id}", response_class=HTMLResponse)
    def session_page(request: Request, session_id: str) -> Response:
        user = web.need(request, "sessions")
        with web.store.reader() as db:
            detail = session_detail(db, session_id)
        if detail is None:
            raise HTTPException(404, "no such session")
        bill = None
        if detail["session"]["state"] == "open":
            def price() -> dict[str, Any] | None:
                row = web.store.session(session_id)
                return web.gw.billing.bill(row, web.now()).as_json() if row else None
            bill = web.service.call(price)
        return web.render(request, "session.html", user, detail=detail, bill=bill)

    @app.post("/sessions/{session_id}/override")
    async def override(request: Request, session_id: str) -> Response:
        user = web.need(request, "override")
        fields = await web.form(request)
        try:
            fee = parse_yuan(fields.get("fee", ""), field="fee")
            reason = fields.get("reason", "")
            if len(reason) < 4:
                raise BadForm("a reason is required (at least 4 characters) / 必须填写原因")

            def apply() -> None:
                row = web.store.session(session_id)
                if row is None or row["state"] != "open":
                    raise BadForm("only a car still inside can have its fee overridden / "
                                  "只能修改场内车辆的费用")
                bill = web.gw.billing.bill(row, web.now())
                quoted = bill.quote.total_fen if bill.quote else 0
                web.gw.billing.payments.override_fee(session_id, fee, actor=user.actor,
                                                     reason=reason, quoted_fen=quoted)

            await web.write(apply)
            web.flash(request, "ok", f"费用已改为 {format_yuan(fee)} / Fee set to "
                                     f"{format_yuan(fee)}")
        except (BadForm, ParkGuardError, ValueError) as error:
            web.flash(request, "error", str(error))
        return RedirectResponse(f"/sessions/{session_id}", status_code=303)

    @app.get("/audit", response_class=HTMLResponse)
    def audit(request: Request, action: str = "") -> Response:
        user = web.need(request, "audit")
        with web.store.reader() as db:
            entries = list(read_entries(db, last=300)) if db.table("audit_log").exists() \
                else []
        entries.reverse()
        if action:
            entries = [e for e in entries if e.action.startswith(action)]
        return web.render(request, "audit.html", user, entries=entries, action=action,
                          reveal=user.role == "manager")

    @app.get("/api/audit")
    def api_audit(request: Request) -> dict[str, Any]:
        web.need(request, "audit")
        with web.store.reader() as db:
            entries = list(read_entries(db, last=100)) if db.table("audit_log").exists() \
                else []
        return {"entries": [{"seq": e.seq, "ts": e.ts, "actor": e.actor, "action": e.action,
                             "subject": e.subject, "reason": mask_phones_in(e.reason)}
                            for e in reversed(entries)]}


# --- the drivers' pay page -----------------------------------------------------------------


def _pay_routes(app: FastAPI, web: Web) -> None:
    @app.get("/pay", response_class=HTMLResponse)
    def pay(request: Request, plate: str = "") -> Response:
        plate = plate.strip()
        bill = None
        if plate:
            found = web.service.bill_for(plate)
            bill = found.as_json() if found is not None else None
        return web.render(request, "pay.html", None, plate=plate, bill=bill,
                          searched=bool(plate))

    @app.post("/pay")
    async def prepay(request: Request) -> Response:
        fields = await web.form(request)
        plate = fields.get("plate", "")
        pending = await run_in_threadpool(web.service.prepay, plate)
        if pending is None:
            web.flash(request, "ok", "无需缴费 / Nothing to pay")
            return RedirectResponse(f"/pay?plate={plate}", status_code=303)
        if isinstance(web.gw.provider, SimulatedProvider):
            return RedirectResponse(f"/sim-pay/{pending.provider_ref}", status_code=303)
        return RedirectResponse(pending.pay_url, status_code=303)

    def sim_order(ref: str) -> dict[str, Any]:
        if not isinstance(web.gw.provider, SimulatedProvider):
            raise HTTPException(404, "not a simulated provider")
        with web.store.reader() as db:
            rows = list(db.query("SELECT plate, amount_fen, state FROM payments "
                                 "WHERE provider_ref = ?", [ref]))
        if not rows:
            raise HTTPException(404, "no such order")
        return rows[0]

    @app.get("/sim-pay/{ref}", response_class=HTMLResponse)
    def sim_wallet(request: Request, ref: str) -> Response:
        order = sim_order(ref)
        return web.render(request, "sim_pay.html", None, ref=ref, order=order)

    @app.post("/sim-pay/{ref}")
    async def sim_wallet_pay(request: Request, ref: str) -> Response:
        await web.form(request)
        order = sim_order(ref)
        provider = web.gw.provider
        if not isinstance(provider, SimulatedProvider):  # pragma: no cover - sim_order checked
            raise HTTPException(404, "not a simulated provider")
        body, signature = provider.pay(ref)
        # Deliver the notice as the provider would: an HTTP POST to our callback endpoint.
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://provider") as client:
            answer = await client.post("/api/payments/callback", content=body,
                                       headers={"X-Signature": signature,
                                                "Content-Type": "application/json"})
        if answer.status_code != 200:
            web.flash(request, "error", f"支付通知失败 / Payment notice refused: {answer.text}")
        return RedirectResponse(f"/pay/done?plate={order['plate']}", status_code=303)

    @app.get("/pay/done", response_class=HTMLResponse)
    def paid(request: Request, plate: str) -> Response:
        found = web.service.bill_for(plate)
        bill = found.as_json() if found is not None else None
        return web.render(request, "pay_done.html", None, plate=plate, bill=bill)

    @app.post("/api/payments/callback")
    async def payment_callback(request: Request) -> Response:
        body = await request.body()
        signature = request.headers.get("x-signature", "")
        try:
            payment = await run_in_threadpool(web.service.payment_callback, body, signature)
        except BadSignatureError:
            log.warning("web: payment callback with a bad signature from %s", _client(request))
            return JSONResponse({"ok": False, "error": "bad signature"}, status_code=400)
        except UnknownOrderError:
            return JSONResponse({"ok": False, "error": "unknown order"}, status_code=404)
        except PaymentError as error:
            return JSONResponse({"ok": False, "error": str(error)}, status_code=400)
        return JSONResponse({"ok": True, "payment_id": payment.payment_id})

    @app.get("/healthz")
    def health() -> PlainTextResponse:
        return PlainTextResponse("ok")


def coupon_grant(kind: str, minutes: str, amount: str, cap_fen: int) -> CouponGrant:
    """The coupon a merchant's form asks for."""
    try:
        if kind == "free_minutes":
            return CouponGrant.free_minutes(int(minutes or "0"), cap_fen=cap_fen)
        if kind == "amount_off":
            return CouponGrant.amount_off(parse_yuan(amount, field="amount"))
        if kind == "full_free":
            return CouponGrant.full_free(cap_fen=cap_fen)
    except (ValueError, MerchantError) as error:
        raise BadForm(str(error)) from error
    raise BadForm(f"unknown coupon kind {kind!r}")


def coupon_expiry(web: Web) -> datetime:
    return web.now() + timedelta(hours=web.settings.coupon_valid_hours)
