"""The fleet dashboard's FastAPI app: log in, every visible site on one page, one site in
detail. Same stack as the site dashboard (FastAPI, Jinja, a signed session cookie), its own
people (:mod:`fleet.web.users`): a page for a site the user may not see is a 403, and the
overview simply leaves it out."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import psycopg
from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from fleet.web.users import FleetUser, check_login, load_user, visible_sites
from fleet.web.views import SiteRow, all_sites, overview, site_detail

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
#: Machine values on screen: Chinese with English beside.
WORDS = {"fleet_admin": "车队管理员 fleet admin", "operator": "运营员 operator",
         "applied": "已执行 applied", "refused": "已拒绝 refused", "fire": "火警 fire",
         "flood": "水浸 flood", "tariff": "收费标准 tariff", "pass": "月卡 pass",
         "list": "名单 list", "open": "远程开闸 remote open"}


@contextmanager
def _database(dsn: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(dsn) as conn:
        yield conn


def current_user(request: Request) -> FleetUser:
    """The logged-in user, read again on every request (a removed user is out at once)."""
    name = request.session.get("user")
    if not isinstance(name, str):
        raise HTTPException(status_code=303, headers={"Location": "/login"})
    with _database(request.app.state.dsn) as conn:
        found = load_user(conn, name)
    if found is None:
        request.session.clear()
        raise HTTPException(status_code=303, headers={"Location": "/login"})
    return found


User = Annotated[FleetUser, Depends(current_user)]


def yuan(fen: int) -> str:
    return f"¥{fen // 100}.{fen % 100:02d}"


def create_fleet_app(dsn: str, *, secret_key: str, timezone: str = "Asia/Shanghai",
                     now: Callable[[], datetime], https_only: bool = False) -> FastAPI:
    """``now`` is the clock (tests step it); ``dsn`` the fleet database."""
    app = FastAPI(title="ParkGuard fleet", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SessionMiddleware, secret_key=secret_key, same_site="strict",
                       https_only=https_only, session_cookie="parkguard_fleet")
    zone = ZoneInfo(timezone)
    TEMPLATES.env.globals.update(words=WORDS, yuan=yuan, zone=zone)

    app.state.dsn = dsn

    def database() -> AbstractContextManager[psycopg.Connection[tuple[object, ...]]]:
        return _database(dsn)

    def rows_for(user: FleetUser) -> list[SiteRow]:
        with database() as conn:
            return overview(conn, visible_sites(user, all_sites(conn)), now(), zone)

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request) -> Response:
        return TEMPLATES.TemplateResponse(request, "login.html", {"error": None})

    @app.post("/login")
    def login(request: Request, username: Annotated[str, Form(max_length=64)],
              password: Annotated[str, Form(max_length=256)]) -> Response:
        with database() as conn:
            user = check_login(conn, username, password)
        if user is None:
            return TEMPLATES.TemplateResponse(
                request, "login.html", {"error": "用户名或密码错误 wrong name or password"},
                status_code=401)
        request.session.clear()
        request.session["user"] = user.username
        return RedirectResponse("/", status_code=303)

    @app.post("/logout")
    def logout(request: Request) -> Response:
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/", response_class=HTMLResponse)
    def overview_page(request: Request, user: User) -> Response:
        rows = rows_for(user)
        totals = {"occupancy": sum(r.occupancy for r in rows),
                  "revenue_fen": sum(r.revenue_fen for r in rows),
                  "open_alarms": sum(r.open_alarms for r in rows),
                  "lanes_offline": sum(r.lanes_offline for r in rows)}
        return TEMPLATES.TemplateResponse(request, "overview.html", {
            "user": user, "rows": rows, "totals": totals, "now": now()})

    @app.get("/sites/{site}", response_class=HTMLResponse)
    def site_page(request: Request, site: str, user: User) -> Response:
        if not user.sees(site):
            raise HTTPException(status_code=403, detail="这个车场不归您管 not your site")
        with database() as conn:
            if site not in all_sites(conn):
                raise HTTPException(status_code=404, detail="没有这个车场 no such site")
            detail = site_detail(conn, site, now(), zone)
        return TEMPLATES.TemplateResponse(request, "site.html", {
            "user": user, "detail": detail, "now": now()})

    @app.get("/api/sites")
    def sites_json(user: User) -> list[dict[str, object]]:
        return [{"site": r.site, "occupancy": r.occupancy, "revenue_fen": r.revenue_fen,
                 "open_alarms": r.open_alarms, "lanes_offline": r.lanes_offline,
                 "patrol_taps": r.patrol_taps, "patrol_checkpoints": r.patrol_checkpoints,
                 "tariff_version": r.tariff_version} for r in rows_for(user)]

    return app
