"""The front door: logging in and out, who am I, and the health check."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from gateway.web.access import PERMISSIONS, LoginRequired, home, may
from gateway.web.deps import (
    ENDED_KEY,
    SESSION_KEY,
    CurrentUser,
    FormDep,
    LimiterDep,
    PagesDep,
    ReaderDep,
    SettingsDep,
    StoreDep,
    WallDep,
    WorkerDep,
)
from gateway.web.forms import local_target
from gateway.web.logins import close_session, open_session
from gateway.web.security import client_of, csrf_token
from gateway.web.users import User, authenticate

log = logging.getLogger(__name__)
router = APIRouter()
#: What the login page says to someone whose session the server ended.
ENDED_NOTICES = {
    "password_changed": "密码已更改，请用新密码重新登录 / Your password was changed: log in "
                        "again with the new one",
    "disabled": "账户已停用，请联系经理 / This account has been disabled: ask a manager",
}


@router.get("/", response_class=HTMLResponse)
def index(user: CurrentUser) -> Response:
    return RedirectResponse(home(user) if user else "/login", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, pages: PagesDep, next: str = "") -> Response:
    """The form; with a notice when the server ended this browser's session (the reason
    is said once, then forgotten)."""
    ended = request.session.pop(ENDED_KEY, None)
    notice = ENDED_NOTICES.get(ended) if isinstance(ended, str) else None
    return pages.render(request, "login.html", None, next=next, error=None, notice=notice)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, fields: FormDep, pages: PagesDep, limiter: LimiterDep,
                settings: SettingsDep, reader: ReaderDep, worker: WorkerDep,
                store: StoreDep, wall: WallDep) -> Response:
    username, password = fields.get("username", "").lower(), fields.get("password", "")
    client = client_of(request)
    if limiter.blocked(username, client):
        log.warning("web: login of %r from %s refused: too many failures", username, client)
        minutes = int(settings.login_window_s // 60)
        return pages.render(request, "login.html", None, status_code=429, next="",
                            error=f"登录失败次数过多，请 {minutes} 分钟后再试 / Too many failed "
                                  f"logins: try again in {minutes} minutes")

    def check() -> User | None:
        with reader() as db:
            return authenticate(db, username, password)

    user = await run_in_threadpool(check)
    if user is None:
        limiter.failed(username, client)
        log.info("web: failed login for %r from %s", username, client)
        return pages.render(request, "login.html", None, status_code=401, next="",
                            error="用户名或密码错误 / Wrong user name or password")
    limiter.succeeded(username, client)
    session_id = await worker.run(lambda: open_session(
        store.db, user.username, now=wall.now(), hours=settings.session_hours))
    request.session.clear()  # a new session id and CSRF token: no fixation
    request.session[SESSION_KEY] = session_id
    log.info("web: %s logged in from %s", user.actor, client)
    return RedirectResponse(local_target(fields.get("next", ""), home(user)), status_code=303)


@router.post("/logout")
async def logout(request: Request, _fields: FormDep, worker: WorkerDep,
                 store: StoreDep) -> Response:
    """Ends the session on the server: a copy of the cookie saved before is refused."""
    session_id = request.session.get(SESSION_KEY)
    if isinstance(session_id, str):
        await worker.run(lambda: close_session(store.db, session_id))
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@router.get("/api/me")
def me(request: Request, user: CurrentUser) -> dict[str, Any]:
    if user is None:
        raise LoginRequired()
    return {"username": user.username, "role": user.role, "merchant_id": user.merchant_id,
            "may": [perm for perm in PERMISSIONS if may(user, perm)],
            "csrf_token": csrf_token(request)}


@router.get("/healthz")
def health() -> PlainTextResponse:
    return PlainTextResponse("ok")
