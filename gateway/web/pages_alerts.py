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

Reads use ``store.reader()``; writes go through ``Gateway.call``. Without a safety file
(``GatewayApp.alerts is None``) the banner stays empty and the page says alerts are off.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.safety.alarms import AlarmError, AlarmMonitor
from gateway.safety.alerts import AckClaim, AckTokenError, AlertDesk, AlertError, AlertView
from gateway.web.users import User
from parkguard.clock import utc_iso
from parkguard.errors import ParkGuardError

if TYPE_CHECKING:
    from gateway.web.app import Web

log = logging.getLogger(__name__)

RECENT = 50
"""How many resolved alerts the alerts page lists."""

SEVERITY_LABELS: dict[str, tuple[str, str]] = {
    "critical": ("紧急", "Critical"), "warning": ("警告", "Warning"), "info": ("通知", "Info")}
STATE_LABELS: dict[str, tuple[str, str]] = {
    "raised": ("已发出", "Raised"), "notified": ("已通知", "Notified"),
    "acked": ("已确认", "Acknowledged"), "resolved": ("已解除", "Resolved")}
TOKEN_PROBLEMS: dict[str, tuple[int, str, str]] = {
    "malformed": (400, "链接不完整或已损坏", "This link is incomplete or damaged"),
    "forged": (403, "链接无效（签名不符），未做任何操作",
               "This link was not issued by this gateway: nothing was done"),
    "expired": (410, "链接已过期，请登录控制台确认",
                "This link has expired: acknowledge from the dashboard"),
    "used": (409, "此链接已使用过", "This link has been used already"),
}

STAFF_ROLES = frozenset({"guard", "supervisor", "manager"})


def alert_json(view: AlertView, web: Web) -> dict[str, Any]:
    """What the banner script needs of one alert."""
    return {"alert_id": view.alert_id, "key": view.key, "kind": view.kind,
            "severity": view.severity, "state": view.state, "title_zh": view.title_zh,
            "title_en": view.title_en, "detail": view.detail,
            "raised_local": web.local(view.raised_at), "acked_by": view.acked_by,
            "sound": view.kind == "fire" and view.state in ("raised", "notified")}


def read_alerts(web: Web, *, active: bool) -> list[AlertView]:
    """Active alerts (most severe, then oldest first) or the latest resolved ones, read on a
    connection of the request's own."""
    with web.store.reader() as db:
        if not db.table("alerts").exists():
            return []
        if active:
            rows = db.query(
                "SELECT * FROM alerts WHERE state <> 'resolved' ORDER BY CASE severity "
                "WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, id")
        else:
            rows = db.query("SELECT * FROM alerts WHERE state = 'resolved' "
                            "ORDER BY id DESC LIMIT ?", [RECENT])
        return [AlertView.of(row) for row in rows]


def token_used(web: Web, claim: AckClaim) -> bool:
    with web.store.reader() as db:
        if not db.table("alert_ack_tokens").exists():
            return False
        return db.execute("SELECT 1 FROM alert_ack_tokens WHERE digest = ?",
                          [claim.digest]).fetchone() is not None


def routes(app: FastAPI, web: Web) -> None:
    from gateway.web.app import BadForm

    def desk() -> AlertDesk | None:
        found: AlertDesk | None = getattr(web.gw, "alerts", None)
        return found

    def monitor() -> AlarmMonitor | None:
        found: AlarmMonitor | None = getattr(web.gw, "alarms", None)
        return found

    def banner_alerts(user: User | None) -> list[dict[str, Any]]:
        """Called by the banner partial while a staff page renders."""
        if user is None or user.role not in STAFF_ROLES or desk() is None:
            return []
        return [alert_json(view, web) for view in read_alerts(web, active=True)]

    env = web.templates.env
    env.globals.update(banner_alerts=banner_alerts, severity_labels=SEVERITY_LABELS,
                       state_labels=STATE_LABELS)

    def back(fields: dict[str, str]) -> str:
        target = fields.get("next", "")
        if not target.startswith("/") or target.startswith("//"):
            return "/alerts"
        return target

    @app.get("/api/alerts")
    def api_alerts(request: Request) -> dict[str, Any]:
        web.need(request, "lanes")  # every staff role
        alarms = monitor()
        return {"enabled": desk() is not None,
                "alerts": [alert_json(v, web) for v in read_alerts(web, active=True)],
                "fire": bool(alarms and alarms.fire_active()),
                "now": utc_iso(web.now())}

    @app.get("/alerts", response_class=HTMLResponse)
    def alerts_page(request: Request) -> Response:
        user = web.need(request, "lanes")
        alarms, alert_desk = monitor(), desk()
        roster_person = None
        if alert_desk is not None:
            roster_person = next((p for p in alert_desk.settings.people
                                  if p.id == user.username), None)
        may_reset = (user.role in ("supervisor", "manager") and roster_person is not None
                     and alarms is not None
                     and roster_person.role in alarms.settings.fire_reset_roles)
        return web.render(
            request, "alerts.html", user, enabled=alert_desk is not None,
            active=read_alerts(web, active=True), recent=read_alerts(web, active=False),
            fire=bool(alarms and alarms.fire_active()),
            panel_fire=alarms.panel_reports_fire() if alarms is not None else None,
            reset_form=user.role in ("supervisor", "manager"), may_reset=may_reset,
            roster_person=roster_person,
            reset_roles=alarms.settings.fire_reset_roles if alarms is not None else ())

    @app.post("/alerts/{alert_id}/ack")
    async def ack(request: Request, alert_id: str) -> Response:
        user = web.need(request, "lanes")
        fields = await web.form(request)
        alert_desk = desk()
        try:
            if alert_desk is None:
                raise BadForm("alerts are not configured on this gateway / 本网关未启用告警")
            view = await web.write(lambda: alert_desk.ack(alert_id, user.actor, "dashboard"))
            log.info("web: %s acknowledged %s", user.actor, alert_id)
            web.flash(request, "ok", f"已确认 {view.title_zh} / Acknowledged: {view.title_en}")
        except (BadForm, ParkGuardError, LookupError) as error:
            web.flash(request, "error", str(error))
        return RedirectResponse(back(fields), status_code=303)

    @app.post("/alerts/fire/reset")
    async def fire_reset(request: Request) -> Response:
        user = web.need(request, "override")  # supervisors and managers
        fields = await web.form(request)
        alarms = monitor()
        try:
            reason = fields.get("reason", "")
            if len(reason) < 4:
                raise BadForm("a reason is required (at least 4 characters) / 必须填写复位原因")
            if alarms is None:
                raise BadForm("alarms are not configured on this gateway / 本网关未启用报警")
            actor = f"staff:{user.username}"
            await web.write(lambda: alarms.reset_fire(
                actor, f"{reason} (dashboard user {user.actor})"))
            log.warning("web: fire alarm reset by %s", user.actor)
            web.flash(request, "ok", "火警已复位 / Fire alarm reset")
        except (BadForm, AlarmError, ParkGuardError) as error:
            web.flash(request, "error", f"复位被拒绝 / Reset refused: {error}")
        return RedirectResponse("/alerts", status_code=303)

    def link_page(request: Request, token: str, *, claim: AckClaim | None = None,
                  view: AlertView | None = None, done: bool = False,
                  problem: str | None = None, text: tuple[str, str] | None = None,
                  status_code: int = 200) -> HTMLResponse:
        return web.render(request, "alerts_ack.html", web.user(request),
                          status_code=status_code, token=token, claim=claim, view=view,
                          done=done, problem=problem, text=text)

    def refused(request: Request, token: str, reason: str) -> HTMLResponse:
        status, zh, en = TOKEN_PROBLEMS[reason]
        return link_page(request, token, problem=reason, text=(zh, en), status_code=status)

    @app.get("/alerts/ack", response_class=HTMLResponse)
    def ack_link(request: Request, t: str = "") -> Response:
        alert_desk = desk()
        if alert_desk is None:
            return link_page(request, t, problem="disabled", status_code=404,
                             text=("本网关未启用告警", "Alerts are not configured here"))
        try:
            claim = alert_desk.verify_ack_token(t)
        except AckTokenError as error:
            return refused(request, t, error.reason)
        if token_used(web, claim):
            return refused(request, t, "used")
        with web.store.reader() as db:
            rows = list(db.query("SELECT * FROM alerts WHERE alert_id = ?", [claim.alert_id]))
        if not rows:
            return link_page(request, t, problem="unknown", status_code=404,
                             text=("没有此告警", "There is no such alert"))
        return link_page(request, t, claim=claim, view=AlertView.of(rows[0]))

    @app.post("/alerts/ack", response_class=HTMLResponse)
    async def ack_link_confirm(request: Request) -> Response:
        fields = await web.form(request)
        token = fields.get("t", "")
        alert_desk = desk()
        if alert_desk is None:
            return link_page(request, token, problem="disabled", status_code=404,
                             text=("本网关未启用告警", "Alerts are not configured here"))
        try:
            view = await web.write(lambda: alert_desk.ack_with_token(token))
        except AckTokenError as error:
            return refused(request, token, error.reason)
        except LookupError:
            return link_page(request, token, problem="unknown", status_code=404,
                             text=("没有此告警", "There is no such alert"))
        except AlertError as error:  # resolved already
            return link_page(request, token, problem="resolved", status_code=409,
                             text=("告警已解除，无需确认", f"Nothing to acknowledge: {error}"))
        log.info("web: %s acknowledged by signed link (%s)", view.alert_id, view.acked_by)
        return link_page(request, token, view=view, done=True)
