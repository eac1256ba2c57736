"""The control room's dashboard, its JSON API and the drivers' pay page, as one ASGI app.

This module only assembles: it picks the desks the routes use from the running gateway
(:class:`~gateway.web.deps.Desks`), keeps them with the settings, the clock and the lane
board in ``app.state.web``, and includes one router per area (``gateway.web.routers``).
Routes reach those parts through the providers in :mod:`gateway.web.deps`.

Reads go through ``store.reader()`` (a read-only connection of the request's own); every
write — a manual open, a fee override, a coupon, a refund — runs on the gateway's worker
(``Gateway.call``) so it never interleaves with an exit being billed. Pages are role-gated
on the server: a page a role may not see answers 403, and the navigation lists only what
the role may open.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from gateway.config import GatewayConfig
from gateway.lanes.commands import LaneCommander
from gateway.lanes.evidence import EvidenceFetcher, gateway_stores
from gateway.money.billing import Billing
from gateway.money.payments import PaymentProvider, SimulatedProvider
from gateway.safety.alarms import AlarmMonitor
from gateway.safety.alerts import AlertDesk
from gateway.safety.incident_photos import DirectoryPhotos, IncidentPhotos, photo_root
from gateway.safety.incidents import IncidentDesk
from gateway.storage.store import GatewayStore
from gateway.web.access import PERMISSIONS, Forbidden, LoginRequired
from gateway.web.deps import Desks, Service, WebState, Worker, user_of
from gateway.web.forms import parse_yuan
from gateway.web.lanes import LaneBoard
from gateway.web.logins import WALL
from gateway.web.metrics import GatewayCollector, MetricsAccess, QueueDepth, registry_for
from gateway.web.render import Pages, SiteTime
from gateway.web.routers import (
    alerts,
    audit,
    auth,
    claim,
    cleaning,
    contacts,
    evidence,
    incidents,
    integrations,
    lanes,
    merchant,
    merchants,
    notify,
    operations,
    passes,
    patrols,
    pay,
    plans,
    refunds,
    reports,
    sessions,
    sim_pay,
)
from gateway.web.security import LoginLimiter, RateLimiter
from gateway.web.settings import WebSettings
from gateway.web.tickets import TicketSigner
from parkguard import __version__
from parkguard.clock import Clock
from parkguard.core.patrol import PatrolConfig
from parkguard.errors import ParkGuardError
from wire.bus import Bus

__all__ = ["PERMISSIONS", "RunningGateway", "create_web_app", "parse_yuan"]

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
ROUTERS = (auth, lanes, sessions, audit, pay, notify, merchant, merchants, claim, passes,
           refunds, reports, incidents, alerts, integrations, evidence, contacts, plans,
           operations, patrols, cleaning)
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy":
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; frame-ancestors 'none'; form-action 'self'",
}


class RunningGateway(Protocol):
    """What the web front needs of the running gateway (``gateway.app.GatewayApp``),
    named here so that the web package does not import the app that serves it."""

    @property
    def config(self) -> GatewayConfig: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def bus(self) -> Bus: ...
    @property
    def store(self) -> GatewayStore: ...
    @property
    def service(self) -> Service: ...
    @property
    def billing(self) -> Billing: ...
    @property
    def provider(self) -> PaymentProvider: ...
    @property
    def incidents(self) -> IncidentDesk: ...
    @property
    def commander(self) -> LaneCommander: ...
    @property
    def alerts(self) -> AlertDesk | None: ...
    @property
    def alarms(self) -> AlarmMonitor | None: ...
    @property
    def inbox(self) -> QueueDepth: ...


def desks_of(gateway_app: RunningGateway) -> Desks:
    """The parts of the running gateway the web front uses."""
    return Desks(cashier=gateway_app.service, billing=gateway_app.billing,
                 store=gateway_app.store, provider=gateway_app.provider,
                 incidents=gateway_app.incidents, matching=gateway_app.config.matching,
                 commander=gateway_app.commander, alerts=gateway_app.alerts,
                 alarms=gateway_app.alarms, holds=getattr(gateway_app, "holds", None),
                 handover=getattr(gateway_app, "handover", None),
                 complaints=getattr(gateway_app, "complaints", None),
                 patrols=_patrol_regime(gateway_app))


def _patrol_regime(gateway_app: RunningGateway) -> PatrolConfig | None:
    """The gateway's patrol regime, if it judges taps (``patrol_file``)."""
    regime: PatrolConfig | None = getattr(getattr(gateway_app, "patrols", None), "config",
                                          None)
    return regime


def create_web_app(gateway_app: RunningGateway, *, settings: WebSettings | None = None,
                   clock: Clock | None = None, wall_clock: Clock = WALL) -> FastAPI:
    """The dashboard, the JSON API and the pay page for one running gateway.

    ``clock`` (the site's time on the pages) defaults to the gateway's own; logins and
    sessions run on ``wall_clock``, the host's, even when the site's is simulated.
    """
    settings = settings or WebSettings()
    config = gateway_app.config
    time = SiteTime(clock or gateway_app.clock, ZoneInfo(config.timezone))
    pages = Pages(time, settings, config.site)
    pages.env.globals["site_name"] = config.site_name or config.site  # the pay page's lot
    store = gateway_app.store
    state = WebState(
        desks=desks_of(gateway_app), settings=settings, time=time, pages=pages,
        board=LaneBoard(gateway_app.bus, config.site, clock=time.clock,
                        stale_s=settings.lane_stale_s),
        limiter=LoginLimiter(settings.login_max_failures, settings.login_window_s,
                             per_client=settings.login_max_failures_client,
                             overall=settings.login_max_failures_total),
        worker=Worker(gateway_app.service), reader=store.reader,
        pay_limiter=RateLimiter(settings.pay_lookups_per_client, settings.pay_window_s),
        pay_limiter_total=RateLimiter(settings.pay_lookups_total, settings.pay_window_s),
        tickets=TicketSigner(settings.secret_key), wall=wall_clock)
    alerts.install_banner(pages, enabled=gateway_app.alerts is not None, reader=store.reader,
                          time=time)
    complaints = getattr(gateway_app, "complaints", None)
    operations.install(pages, reader=store.reader, numbers=config.emergency_numbers,
                       clock=time.clock, deadline_hours={} if complaints is None
                       else complaints.settings.deadline_hours,
                       handover=getattr(gateway_app, "handover", None))

    # The schema is served by routers/integrations.py to logged-in staff, not to anyone.
    app = FastAPI(**API_INFO, docs_url=None, redoc_url=None, openapi_url=None)
    app.openapi = api_schema  # type: ignore[method-assign]  # one document, see api_schema
    app.state.web = state
    app.state.site_plans = getattr(gateway_app, "site_plans", None)  # contacts, drills
    pages.env.globals["contacts_on"] = getattr(app.state.site_plans, "contacts", None) is not None
    cache, kept = gateway_stores(config.evidence, config.database)
    app.state.incident_photos = IncidentPhotos(  # photos of incidents, hashes in the audit
        gateway_app.incidents.db, clock=gateway_app.clock, audit=gateway_app.incidents.audit,
        files=DirectoryPhotos(photo_root(config.evidence.path, config.database)))
    app.state.evidence = EvidenceFetcher(  # the reads' images, from their lanes
        gateway_app.bus, config.site, clock=gateway_app.clock, cache=cache, kept=kept,
        settings=config.evidence,
        lane_online=lambda lane: (s.online if (s := state.board.states().get(lane)) else None))
    app.state.metrics = integrations.MetricsEndpoint(
        registry=registry_for(GatewayCollector(
            reader=store.reader, inbox=gateway_app.inbox, lanes=state.board.states,
            alarms=gateway_app.alarms, alerts_enabled=gateway_app.alerts is not None)),
        access=MetricsAccess(settings.metrics_allow, settings.metrics_token))
    app.add_middleware(SessionMiddleware, secret_key=settings.secret_key,
                       session_cookie="parkguard_session",
                       max_age=settings.session_hours * 3600, same_site="lax",
                       https_only=settings.secure_cookies)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    _guard(app, state)
    for area in ROUTERS:
        app.include_router(area.router)
    if isinstance(gateway_app.provider, SimulatedProvider):  # the demo's play wallet only
        app.include_router(sim_pay.router)
    return app


API_INFO: dict[str, Any] = {
    "title": "ParkGuard", "version": __version__,
    "summary": "The site gateway's JSON API, for logged-in staff (docs/integrations.md)"}


@cache
def api_schema() -> dict[str, Any]:
    """The JSON API's OpenAPI document, as ``/api/openapi.json`` serves it: made from the
    same routers as every app, so it needs no running gateway (the schemathesis test loads
    it at import). Only the ``/api/`` routes are in it (routers/integrations.py)."""
    integrations.describe_api(area.router for area in (*ROUTERS, sim_pay))
    bare = FastAPI(**API_INFO)
    for area in ROUTERS:
        bare.include_router(area.router)
    return bare.openapi()


def _guard(app: FastAPI, state: WebState) -> None:
    """What answers a request that may not go on, and the headers every answer carries."""

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, _exc: LoginRequired) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "login required / 请先登录"}, status_code=401)
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, _exc: Forbidden) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "forbidden for your role / 无权访问"}, status_code=403)
        return state.pages.render(request, "forbidden.html",
                                  user_of(request, state.reader, state.wall),
                                  status_code=403)

    @app.exception_handler(ParkGuardError)
    async def _refused(request: Request, error: ParkGuardError) -> Response:
        """A record the domain refuses to work with (a stay no tariff prices, say) answers
        with the reason, never a 500 that takes the page down for every other record."""
        log.warning("web: %s refused: %s", request.url.path, error)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(error)}, status_code=409)
        return state.pages.render(request, "refused.html",
                                  user_of(request, state.reader, state.wall),
                                  status_code=409, reason=str(error))

    @app.middleware("http")
    async def _headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        if request.url.scheme == "https":  # TLS here, or at a proxy we were told to trust
            response.headers.setdefault(
                "Strict-Transport-Security", f"max-age={state.settings.hsts_max_age_s}")
        return response
