"""The manager's pages: merchants, passes and lists, refunds, and the daily reports."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from gateway.records import charts, reports
from parkguard.core.access import PassKind
from parkguard.core.tariffs import format_yuan
from parkguard.errors import ParkGuardError

if TYPE_CHECKING:
    from gateway.web.app import Web


def routes(app: FastAPI, web: Web) -> None:
    from gateway.web.app import BadForm, parse_yuan

    def reason_of(fields: dict[str, str]) -> str:
        reason = fields.get("reason", "")
        if len(reason) < 4:
            raise BadForm("a reason is required (at least 4 characters) / 必须填写原因")
        return reason

    async def act(request: Request, back: str, work: Any, done: str) -> Response:
        try:
            await work()
            web.flash(request, "ok", done)
        except (BadForm, ParkGuardError, ValueError, LookupError) as error:
            web.flash(request, "error", str(error))
        return RedirectResponse(back, status_code=303)

    # merchants -----------------------------------------------------------------------------

    @app.get("/admin/merchants", response_class=HTMLResponse)
    def merchants(request: Request) -> Response:
        user = web.need(request, "admin")
        with web.store.reader() as db:
            rows = list(db.query("SELECT * FROM merchants ORDER BY merchant_id")) \
                if db.table("merchants").exists() else []
        desk = web.gw.billing.merchants
        balances = web.service.call(lambda: {r["merchant_id"]: desk.balance(r["merchant_id"])
                                             for r in rows})
        return web.render(request, "admin_merchants.html", user, merchants=rows,
                          balances=balances)

    @app.post("/admin/merchants")
    async def open_merchant(request: Request) -> Response:
        user = web.need(request, "admin")
        fields = await web.form(request)

        async def work() -> None:
            reason = reason_of(fields)
            limit = parse_yuan(fields.get("overdraft", "") or "0", field="overdraft")
            merchant_id, name = fields.get("merchant_id", ""), fields.get("name", "")
            if not name:
                raise BadForm("name is required / 请输入商户名称")
            await web.write(lambda: web.gw.billing.merchants.open_account(
                merchant_id, name=name, actor=user.actor, reason=reason,
                overdraft_limit_fen=limit))

        return await act(request, "/admin/merchants", work,
                         f"已开户 {fields.get('merchant_id', '')} / Account opened")

    @app.post("/admin/merchants/{merchant_id}/top-up")
    async def top_up(request: Request, merchant_id: str) -> Response:
        user = web.need(request, "admin")
        fields = await web.form(request)

        async def work() -> None:
            reason = reason_of(fields)
            amount = parse_yuan(fields.get("amount", ""))
            await web.write(lambda: web.gw.billing.merchants.top_up(
                merchant_id, amount, actor=user.actor, reason=reason))

        return await act(request, "/admin/merchants", work, f"已充值 {merchant_id} / Topped up")

    # passes and lists ----------------------------------------------------------------------

    @app.get("/admin/passes", response_class=HTMLResponse)
    def passes(request: Request) -> Response:
        user = web.need(request, "admin")
        with web.store.reader() as db:
            rows = list(db.query(
                "SELECT p.*, group_concat(pp.plate, ' ') AS plates FROM passes p "
                "LEFT JOIN pass_plates pp USING (pass_id) GROUP BY p.pass_id "
                "ORDER BY p.issued_at_ms DESC LIMIT 200")) if db.table("passes").exists() else []
            lists = list(db.query("SELECT * FROM access_lists ORDER BY list_name, plate")) \
                if db.table("access_lists").exists() else []
        for row in rows:
            row["valid_until"] = datetime.fromtimestamp(row["valid_until_ms"] / 1000).astimezone()
            row["revoked"] = row["revoked_at_ms"] is not None
        return web.render(request, "admin_passes.html", user, passes=rows, lists=lists)

    @app.post("/admin/passes")
    async def issue_pass(request: Request) -> Response:
        user = web.need(request, "admin")
        fields = await web.form(request)

        async def work() -> None:
            reason = reason_of(fields)
            plates = [p for p in fields.get("plates", "").replace(",", " ").split() if p]
            kind: PassKind = "family" if fields.get("kind") == "family" else "monthly"
            days = int(fields.get("days", "30") or "30")
            start = web.now()
            holder = fields.get("holder", "")
            if not holder or not plates:
                raise BadForm("holder and plates are required / 请填写持卡人和车牌")
            await web.write(lambda: web.gw.billing.access.issue_pass(
                kind, plates, start, start + timedelta(days=days), holder, user.actor, reason,
                phone=fields.get("phone") or None,
                max_inside=int(fields.get("max_inside", "1") or "1")))

        return await act(request, "/admin/passes", work, "已发月卡 / Pass issued")

    @app.post("/admin/passes/{pass_id}/revoke")
    async def revoke_pass(request: Request, pass_id: str) -> Response:
        user = web.need(request, "admin")
        fields = await web.form(request)

        async def work() -> None:
            reason = reason_of(fields)
            await web.write(lambda: web.gw.billing.access.revoke(pass_id, user.actor, reason))

        return await act(request, "/admin/passes", work, "已注销 / Pass revoked")

    @app.post("/admin/lists")
    async def list_plate(request: Request) -> Response:
        user = web.need(request, "admin")
        fields = await web.form(request)

        async def work() -> None:
            reason = reason_of(fields)
            name = fields.get("list_name", "")
            if name not in ("whitelist", "blacklist"):
                raise BadForm("list must be whitelist or blacklist")
            plate = fields.get("plate", "")
            if fields.get("remove"):
                await web.write(lambda: web.gw.billing.access.unlist(
                    name, plate, user.actor, reason))  # type: ignore[arg-type]
            else:
                await web.write(lambda: web.gw.billing.access.list_plate(
                    name, plate, reason, user.actor))  # type: ignore[arg-type]

        return await act(request, "/admin/passes", work, "名单已更新 / List updated")

    # refunds ------------------------------------------------------------------------------

    @app.get("/admin/refunds", response_class=HTMLResponse)
    def refunds(request: Request) -> Response:
        user = web.need(request, "admin")
        with web.store.reader() as db:
            rows = list(db.query(
                "SELECT payment_id, session_id, plate, method, amount_fen, refunded_fen, state, "
                "paid_at FROM payments WHERE state IN ('paid', 'partly_refunded', 'refunded') "
                "ORDER BY paid_at DESC LIMIT 100")) if db.table("payments").exists() else []
        return web.render(request, "admin_refunds.html", user, payments=rows)

    @app.post("/admin/refunds")
    async def refund(request: Request) -> Response:
        user = web.need(request, "admin")
        fields = await web.form(request)

        async def work() -> None:
            reason = reason_of(fields)
            amount = parse_yuan(fields.get("amount", ""))
            payment_id = fields.get("payment_id", "")
            await web.write(lambda: web.gw.billing.payments.refund(
                payment_id, amount, actor=user.actor, reason=reason))

        return await act(request, "/admin/refunds", work, "已退款 / Refunded")

    # reports -------------------------------------------------------------------------------

    def day_of(text: str) -> date:
        if not text:
            return web.now().astimezone(web.zone).date()
        try:
            return date.fromisoformat(text)
        except ValueError as error:
            raise HTTPException(400, "day must be YYYY-MM-DD") from error

    @app.get("/reports", response_class=HTMLResponse)
    def report(request: Request, day: str = "") -> Response:
        user = web.need(request, "reports")
        chosen = day_of(day)
        with web.store.reader() as db:
            summary = reports.daily_summary(db, chosen, web.zone)
            svg: dict[str, Any] = {
                "occupancy": charts.occupancy_chart(
                    reports.occupancy_over_day(db, chosen, web.zone)),
                "revenue": charts.revenue_chart(reports.revenue_by_hour(db, chosen, web.zone)),
                "lanes": charts.lane_counts_chart(reports.lane_counts(db, chosen, web.zone)),
            }
        return web.render(request, "reports.html", user, summary=summary, day=chosen,
                          charts={k: Markup(v) for k, v in svg.items()},  # noqa: S704 - ours
                          previous=chosen - timedelta(days=1), next=chosen + timedelta(days=1),
                          yuan=format_yuan)

    @app.get("/reports/{day}/summary.csv")
    def summary_csv(request: Request, day: str) -> Response:
        web.need(request, "reports")
        chosen = day_of(day)
        with web.store.reader() as db:
            text = reports.summary_csv(reports.daily_summary(db, chosen, web.zone))
        return _csv(text, f"summary-{chosen}.csv")

    @app.get("/reports/{day}/sessions.csv")
    def sessions_csv(request: Request, day: str) -> Response:
        web.need(request, "reports")
        chosen = day_of(day)
        with web.store.reader() as db:
            text = reports.sessions_csv(db, chosen, web.zone)
        return _csv(text, f"sessions-{chosen}.csv")


def _csv(text: str, name: str) -> Response:
    # A BOM so spreadsheet programs open the Chinese headers as UTF-8.
    return Response("\ufeff" + text, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
