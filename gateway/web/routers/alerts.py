"""Alerts on the dashboard: the banner on every staff page, the alerts page, acknowledging
(from the dashboard and from the signed link in a message) and the fire reset.

- **Banner**: ``_alert_banner.html`` (included by ``base.html`` for guards, supervisors and
  managers) is rendered with the page and kept current by ``static/alerts.js``, which polls
  ``GET /api/alerts`` every ``live_poll_ms``; an unacknowledged fire sounds an alarm tone
  (Web Audio API: no audio file, nothing downloaded).
- **Alerts page** ``/alerts``: active alerts (most severe first), the recent ones, the fire
  state and, for supervisors and managers, the fire reset form.
- **Acknowledge** ``POST /alerts/{id}/ack``: ``AlertDesk.ack(id, <role>:<user>, "dashboard")``
  on the gateway's worker (audited as ``alert.ack`` by the desk).
- **Signed link** ``GET /alerts/ack?t=TOKEN``: no login (the token is the credential). The
  page checks the token (``verify_ack_token``, plus "used") and shows who it acknowledges
  for; its button POSTs the token back and ``ack_with_token`` acknowledges, once. A GET
  never acknowledges: chat apps (DingTalk, WeCom, Feishu) fetch links to preview them, and
  a preview must not silence a fire. A forged, expired, used or malformed link gets a page
  that says so.
- **Fire reset** ``POST /alerts/fire/reset`` (supervisor, manager; reason required):
  ``AlarmMonitor.reset_fire("staff:<username>", reason)``. A dashboard user *is* the roster
  person whose ``id`` equals the user name; ``reset_fire`` then refuses anyone whose roster
  role is not in ``fire_reset_roles`` and refuses while the panel still reports fire.

Reads use the request's own reader; writes go through the worker. Without a safety file
(no alert desk) the banner stays empty and the page says alerts are off.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.safety.alarms import AlarmError
from gateway.safety.alerts import AckClaim, AckTokenError, AlertError, AlertView
from gateway.storage import queries
from gateway.web.access import STAFF
from gateway.web.deps import (
    AlarmsDep,
    AlertsDep,
    CurrentUser,
    FormDep,
    PagesDep,
    Reader,
    ReaderDep,
    Senior,
    Staff,
    TimeDep,
    WorkerDep,
)
from gateway.web.forms import BadForm, local_target, require_reason
from gateway.web.render import Pages, SiteTime
from gateway.web.users import User
from gateway.web.words import pairs, say
from parkguard.clock import utc_iso
from parkguard.errors import ParkGuardError

log = logging.getLogger(__name__)
router = APIRouter()

RECENT = 50
"""How many resolved alerts the alerts page lists."""

#: The alert pages' words, from the one translation table (gateway/web/words.py).
SEVERITY_LABELS: dict[str, tuple[str, str]] = pairs("severity")
STATE_LABELS: dict[str, tuple[str, str]] = {
    state: pairs("state")[state] for state in ("raised", "notified", "acked", "resolved")}
TOKEN_PROBLEMS: dict[str, tuple[int, str, str]] = {
    "malformed": (400, "链接不完整或已损坏", "This link is incomplete or damaged"),
    "forged": (403, "链接无效（签名不符），未做任何操作",
               "This link was not issued by this gateway: nothing was done"),
    "expired": (410, "链接已过期，请登录控制台确认",
                "This link has expired: acknowledge from the dashboard"),
    "used": (409, "此链接已使用过", "This link has been used already"),
}
DISABLED = ("本网关未启用告警", "Alerts are not configured here")
UNKNOWN = ("没有此告警", "There is no such alert")


def alert_json(view: AlertView, time: SiteTime) -> dict[str, Any]:
    """What the banner script needs of one alert."""
    return {"alert_id": view.alert_id, "key": view.key, "kind": view.kind,
            "severity": view.severity, "state": view.state, "title_zh": view.title_zh,
            "title_en": view.title_en, "detail": view.detail,
            "raised_local": time.local(view.raised_at), "acked_by": view.acked_by,
            "sound": view.kind == "fire" and view.state in ("raised", "notified"),
            "severity_zh": SEVERITY_LABELS.get(view.severity, (view.severity, ""))[0],
            "state_words": say(view.state, "state")}


def read_alerts(reader: Reader, *, active: bool) -> list[AlertView]:
    """Active alerts (most severe, then oldest first) or the latest resolved ones, read on a
    connection of the request's own."""
    with reader() as db:
        rows = queries.active_alerts(db) if active else queries.resolved_alerts(db, RECENT)
    return [AlertView.of(row) for row in rows]


def install_banner(pages: Pages, *, enabled: bool, reader: Reader, time: SiteTime) -> None:
    """Give the templates the banner's alerts and the labels the alert pages show."""
    def banner_alerts(user: User | None) -> list[dict[str, Any]]:
        """Called by the banner partial while a staff page renders."""
        if user is None or user.role not in STAFF or not enabled:
            return []
        return [alert_json(view, time) for view in read_alerts(reader, active=True)]

    pages.env.globals.update(banner_alerts=banner_alerts, severity_labels=SEVERITY_LABELS,
                             state_labels=STATE_LABELS)


@router.get("/api/alerts")
def api_alerts(_user: Staff, desk: AlertsDep, alarms: AlarmsDep, reader: ReaderDep,
               time: TimeDep) -> dict[str, Any]:
    return {"enabled": desk is not None,
            "alerts": [alert_json(v, time) for v in read_alerts(reader, active=True)],
            "fire": bool(alarms and alarms.fire_active()),
            "now": utc_iso(time.now())}


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(request: Request, user: Staff, desk: AlertsDep, alarms: AlarmsDep,
                pages: PagesDep, reader: ReaderDep) -> Response:
    roster_person = None
    if desk is not None:
        roster_person = next((p for p in desk.settings.people if p.id == user.username), None)
    may_reset = (user.role in ("supervisor", "manager") and roster_person is not None
                 and alarms is not None
                 and roster_person.role in alarms.settings.fire_reset_roles)
    return pages.render(
        request, "alerts.html", user, enabled=desk is not None,
        active=read_alerts(reader, active=True), recent=read_alerts(reader, active=False),
        fire=bool(alarms and alarms.fire_active()),
        panel_fire=alarms.panel_reports_fire() if alarms is not None else None,
        reset_form=user.role in ("supervisor", "manager"), may_reset=may_reset,
        roster_person=roster_person,
        reset_roles=alarms.settings.fire_reset_roles if alarms is not None else ())


@router.post("/alerts/{alert_id}/ack")
async def ack(request: Request, alert_id: str, user: Staff, fields: FormDep, desk: AlertsDep,
              pages: PagesDep, worker: WorkerDep) -> Response:
    try:
        if desk is None:
            raise BadForm("alerts are not configured on this gateway / 本网关未启用告警")
        view = await worker.run(lambda: desk.ack(alert_id, user.actor, "dashboard"))
        log.info("web: %s acknowledged %s", user.actor, alert_id)
        pages.flash(request, "ok", f"已确认 {view.title_zh} / Acknowledged: {view.title_en}")
    except (BadForm, ParkGuardError, LookupError) as error:
        pages.flash(request, "error", str(error))
    return RedirectResponse(local_target(fields.get("next", ""), "/alerts"), status_code=303)


@router.post("/alerts/fire/reset")
async def fire_reset(request: Request, user: Senior, fields: FormDep, alarms: AlarmsDep,
                     pages: PagesDep, worker: WorkerDep) -> Response:
    try:
        reason = require_reason(fields.get("reason", ""), "复位原因")
        if alarms is None:
            raise BadForm("alarms are not configured on this gateway / 本网关未启用报警")
        actor = f"staff:{user.username}"
        await worker.run(lambda: alarms.reset_fire(
            actor, f"{reason} (dashboard user {user.actor})"))
        log.warning("web: fire alarm reset by %s", user.actor)
        pages.flash(request, "ok", "火警已复位 / Fire alarm reset")
    except (BadForm, AlarmError, ParkGuardError) as error:
        pages.flash(request, "error", f"复位被拒绝 / Reset refused: {error}")
    return RedirectResponse("/alerts", status_code=303)


def link_page(request: Request, pages: Pages, user: User | None, token: str, *,
              claim: AckClaim | None = None, view: AlertView | None = None,
              done: bool = False, problem: str | None = None,
              text: tuple[str, str] | None = None, status_code: int = 200) -> HTMLResponse:
    """The signed link's page: what it acknowledges, that it did, or why it will not."""
    return pages.render(request, "alerts_ack.html", user, status_code=status_code,
                        token=token, claim=claim, view=view, done=done, problem=problem,
                        text=text)


def refused(request: Request, pages: Pages, user: User | None, token: str,
            reason: str) -> HTMLResponse:
    status, zh, en = TOKEN_PROBLEMS[reason]
    return link_page(request, pages, user, token, problem=reason, text=(zh, en),
                     status_code=status)


@router.get("/alerts/ack", response_class=HTMLResponse)
def ack_link(request: Request, user: CurrentUser, desk: AlertsDep, pages: PagesDep,
             reader: ReaderDep, t: str = "") -> Response:
    if desk is None:
        return link_page(request, pages, user, t, problem="disabled", status_code=404,
                         text=DISABLED)
    try:
        claim = desk.verify_ack_token(t)
    except AckTokenError as error:
        return refused(request, pages, user, t, error.reason)
    with reader() as db:
        used = queries.ack_token_used(db, claim.digest)
        row = None if used else queries.alert(db, claim.alert_id)
    if used:
        return refused(request, pages, user, t, "used")
    if row is None:
        return link_page(request, pages, user, t, problem="unknown", status_code=404,
                         text=UNKNOWN)
    return link_page(request, pages, user, t, claim=claim, view=AlertView.of(row))


@router.post("/alerts/ack", response_class=HTMLResponse)
async def ack_link_confirm(request: Request, fields: FormDep, user: CurrentUser,
                           desk: AlertsDep, pages: PagesDep, worker: WorkerDep) -> Response:
    token = fields.get("t", "")
    if desk is None:
        return link_page(request, pages, user, token, problem="disabled", status_code=404,
                         text=DISABLED)
    try:
        view = await worker.run(lambda: desk.ack_with_token(token))
    except AckTokenError as error:
        return refused(request, pages, user, token, error.reason)
    except LookupError:
        return link_page(request, pages, user, token, problem="unknown", status_code=404,
                         text=UNKNOWN)
    except AlertError as error:  # resolved already
        return link_page(request, pages, user, token, problem="resolved", status_code=409,
                         text=("告警已解除，无需确认", f"Nothing to acknowledge: {error}"))
    log.info("web: %s acknowledged by signed link (%s)", view.alert_id, view.acked_by)
    return link_page(request, pages, user, token, view=view, done=True)
